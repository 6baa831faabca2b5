//! Development helpers: signing keys and tokens shaped like a Kubernetes API server's projected
//! service-account tokens, for `podid dev` and tests.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    EcdsaKeyPair, EcdsaSigningAlgorithm, KeyPair as _, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_FIXED_SIGNING, RSA_PKCS1_SHA256,
};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Value};

use crate::verify::SUBJECT_PREFIX;
use crate::TokenError;

/// The algorithms a development key signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DevAlgorithm {
    /// RSA 2048, PKCS#1 v1.5 with SHA-256 (the Kubernetes default).
    Rs256,
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// ECDSA P-384 with SHA-384.
    Es384,
}

impl DevAlgorithm {
    /// The JWS name: `RS256`, `ES256` or `ES384`.
    pub fn as_str(self) -> &'static str {
        match self {
            DevAlgorithm::Rs256 => "RS256",
            DevAlgorithm::Es256 => "ES256",
            DevAlgorithm::Es384 => "ES384",
        }
    }

    /// Parses a JWS name (exact case).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "RS256" => Some(DevAlgorithm::Rs256),
            "ES256" => Some(DevAlgorithm::Es256),
            "ES384" => Some(DevAlgorithm::Es384),
            _ => None,
        }
    }

    fn ecdsa(self) -> Option<&'static EcdsaSigningAlgorithm> {
        match self {
            DevAlgorithm::Rs256 => None,
            DevAlgorithm::Es256 => Some(&ECDSA_P256_SHA256_FIXED_SIGNING),
            DevAlgorithm::Es384 => Some(&ECDSA_P384_SHA384_FIXED_SIGNING),
        }
    }
}

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// A private key that signs tokens, with its key id.
pub struct SigningKey {
    alg: DevAlgorithm,
    kid: String,
    pair: Pair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn key_error(what: &str) -> TokenError {
    TokenError::SigningKey {
        what: what.to_owned(),
        source: None,
    }
}

fn key_rejected(what: String, source: aws_lc_rs::error::KeyRejected) -> TokenError {
    TokenError::SigningKey {
        what,
        source: Some(source),
    }
}

/// Base64url (no padding) of the JSON of `value`: one JWS segment.
pub fn encode_segment(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

impl SigningKey {
    /// Generates a key: RSA 2048 for RS256, P-256 for ES256, P-384 for ES384.
    ///
    /// # Errors
    /// [`TokenError::SigningKey`] if the crypto library fails.
    pub fn generate(alg: DevAlgorithm, kid: &str) -> Result<Self, TokenError> {
        let pair = match alg.ecdsa() {
            None => Pair::Rsa(
                RsaKeyPair::generate(KeySize::Rsa2048)
                    .map_err(|_| key_error("RSA key generation failed"))?,
            ),
            Some(ecdsa) => Pair::Ec(
                EcdsaKeyPair::generate(ecdsa)
                    .map_err(|_| key_error("ECDSA key generation failed"))?,
            ),
        };
        Ok(SigningKey {
            alg,
            kid: kid.to_string(),
            pair,
        })
    }

    /// Reads an unencrypted PKCS#8 private key (DER).
    ///
    /// # Errors
    /// [`TokenError::SigningKey`] if the bytes are not such a key for `alg`.
    pub fn from_pkcs8_der(der: &[u8], alg: DevAlgorithm, kid: &str) -> Result<Self, TokenError> {
        let pair = match alg.ecdsa() {
            None => Pair::Rsa(
                RsaKeyPair::from_pkcs8(der)
                    .map_err(|e| key_rejected("not an RSA key".into(), e))?,
            ),
            Some(ecdsa) => Pair::Ec(
                EcdsaKeyPair::from_pkcs8(ecdsa, der)
                    .map_err(|e| key_rejected(format!("not a key for {}", alg.as_str()), e))?,
            ),
        };
        Ok(SigningKey {
            alg,
            kid: kid.to_string(),
            pair,
        })
    }

    /// Reads a PEM `PRIVATE KEY` (unencrypted PKCS#8); for RS256 a PKCS#1
    /// `RSA PRIVATE KEY` (what kubeadm writes as `sa.key`) is accepted too.
    ///
    /// # Errors
    /// [`TokenError::SigningKey`] if the text holds no such key for `alg`.
    pub fn from_pkcs8_pem(pem: &str, alg: DevAlgorithm, kid: &str) -> Result<Self, TokenError> {
        if let Some(der) = pem_block(pem, "PRIVATE KEY") {
            return Self::from_pkcs8_der(&der, alg, kid);
        }
        if alg == DevAlgorithm::Rs256 {
            if let Some(der) = pem_block(pem, "RSA PRIVATE KEY") {
                let pair = RsaKeyPair::from_der(&der)
                    .map_err(|e| key_rejected("not an RSA key".into(), e))?;
                return Ok(SigningKey {
                    alg,
                    kid: kid.to_string(),
                    pair: Pair::Rsa(pair),
                });
            }
        }
        Err(key_error("no PEM PRIVATE KEY block"))
    }

    /// The private key as PEM `PRIVATE KEY` (PKCS#8 v1).
    ///
    /// # Errors
    /// [`TokenError::SigningKey`] if the crypto library fails.
    pub fn to_pkcs8_pem(&self) -> Result<String, TokenError> {
        let der: Vec<u8> = match &self.pair {
            Pair::Rsa(pair) => {
                let doc: Pkcs8V1Der<'static> = pair
                    .as_der()
                    .map_err(|_| key_error("PKCS#8 encoding failed"))?;
                doc.as_ref().to_vec()
            }
            Pair::Ec(pair) => pair
                .to_pkcs8v1()
                .map_err(|_| key_error("PKCS#8 encoding failed"))?
                .as_ref()
                .to_vec(),
        };
        Ok(pem_encode("PRIVATE KEY", &der))
    }

    /// The public key as PEM `PUBLIC KEY` (X.509 SubjectPublicKeyInfo), as
    /// an API server's `--service-account-key-file` takes it.
    ///
    /// # Errors
    /// [`TokenError::SigningKey`] if the crypto library fails.
    pub fn public_key_pem(&self) -> Result<String, TokenError> {
        let der: PublicKeyX509Der<'static> = match &self.pair {
            Pair::Rsa(pair) => pair.public_key().as_der(),
            Pair::Ec(pair) => pair.public_key().as_der(),
        }
        .map_err(|_| key_error("public key encoding failed"))?;
        Ok(pem_encode("PUBLIC KEY", der.as_ref()))
    }

    /// The algorithm the key signs with.
    pub fn algorithm(&self) -> DevAlgorithm {
        self.alg
    }

    /// The key id put in the JWK and in every token header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK with `kid`, `alg` and `use: sig`.
    pub fn jwk(&self) -> Value {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        match &self.pair {
            Pair::Rsa(pair) => {
                let (n, e) = rsa_public_components(pair.public_key().as_ref()).unwrap_or_default();
                json!({"kty": "RSA", "alg": self.alg.as_str(), "use": "sig", "kid": self.kid,
                       "n": b64(&n), "e": b64(&e)})
            }
            Pair::Ec(pair) => {
                let point = pair.public_key().as_ref();
                // Uncompressed: 0x04 || x || y.
                let coords = point.get(1..).unwrap_or_default();
                let (x, y) = coords.split_at(coords.len() / 2);
                let crv = if self.alg == DevAlgorithm::Es384 {
                    "P-384"
                } else {
                    "P-256"
                };
                json!({"kty": "EC", "alg": self.alg.as_str(), "use": "sig", "kid": self.kid,
                       "crv": crv, "x": b64(x), "y": b64(y)})
            }
        }
    }

    /// A JWKS holding just this key: `{"keys": [jwk]}`.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk()] })
    }

    /// Signs `header.payload` and returns the signature bytes.
    fn signature(&self, message: &[u8]) -> Result<Vec<u8>, TokenError> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(|_| key_error("RSA signing failed"))?;
                Ok(sig)
            }
            Pair::Ec(pair) => pair
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| key_error("ECDSA signing failed")),
        }
    }

    /// A compact JWS of `claims` with the header `{"alg", "kid"}` (no `typ`,
    /// as Kubernetes writes none).
    ///
    /// # Errors
    /// [`TokenError::SigningKey`] if the crypto library fails.
    pub fn try_sign(&self, claims: &Value) -> Result<String, TokenError> {
        self.sign_with_header(&json!({"alg": self.alg.as_str(), "kid": self.kid}), claims)
    }

    /// Like [`SigningKey::try_sign`].
    ///
    /// # Panics
    /// Only if the crypto library fails to sign with a key it made or
    /// accepted, which does not happen in practice.
    pub fn sign(&self, claims: &Value) -> String {
        #[allow(clippy::expect_used)]
        self.try_sign(claims)
            .expect("signing with an in-memory key does not fail")
    }

    /// A compact JWS of `claims` under exactly `header` (which need not
    /// match the key: tests use it to build tokens that must be refused).
    ///
    /// # Errors
    /// [`TokenError::SigningKey`] if the crypto library fails.
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> Result<String, TokenError> {
        let signing_input = format!("{}.{}", encode_segment(header), encode_segment(claims));
        let sig = self.signature(signing_input.as_bytes())?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}

/// Reads `n` and `e` from a DER RSAPublicKey (RFC 8017):
/// `SEQUENCE { INTEGER n, INTEGER e }`.
fn rsa_public_components(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    fn read_tlv(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (&t, rest) = input.split_first()?;
        if t != tag {
            return None;
        }
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let (len_bytes, rest) = rest.split_at(n);
            let len = len_bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, rest)
        };
        if rest.len() < len {
            return None;
        }
        Some(rest.split_at(len))
    }
    fn unsigned(int: &[u8]) -> Vec<u8> {
        let zeros = int.iter().take_while(|b| **b == 0).count();
        int[zeros..].to_vec()
    }
    let (seq, _) = read_tlv(der, 0x30)?;
    let (n, rest) = read_tlv(seq, 0x02)?;
    let (e, _) = read_tlv(rest, 0x02)?;
    Some((unsigned(n), unsigned(e)))
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    let bytes = b64.as_bytes();
    for chunk in bytes.chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn pem_block(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let body: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD.decode(body).ok()
}

/// The facts of a projected service-account token, as a kubelet requests
/// one for a pod; [`ProjectedToken::claims`] lays them out like the API
/// server does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectedToken {
    /// `iss`.
    pub issuer: String,
    /// `aud` (always written as an array).
    pub audience: Vec<String>,
    /// `kubernetes.io.namespace`.
    pub namespace: String,
    /// `kubernetes.io.serviceaccount.name`.
    pub service_account: String,
    /// `kubernetes.io.serviceaccount.uid`.
    pub service_account_uid: String,
    /// `kubernetes.io.pod.name`.
    pub pod_name: String,
    /// `kubernetes.io.pod.uid`.
    pub pod_uid: String,
    /// `kubernetes.io.node.name`; no `node` claim without it.
    pub node_name: Option<String>,
    /// `kubernetes.io.node.uid`; random when `None` and a node is named.
    pub node_uid: Option<String>,
    /// `iat` and `nbf`, seconds since the Unix epoch.
    pub issued_at: i64,
    /// `exp` − `iat`.
    pub expires_in_secs: i64,
    /// `kubernetes.io.warnafter`, if set (the API server writes it for
    /// tokens whose lifetime it extended).
    pub warn_after: Option<i64>,
    /// `jti`; random when `None`.
    pub jti: Option<String>,
}

fn random_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl ProjectedToken {
    /// A token for pod `{service_account}-pod` on node `node-1`, audience
    /// `pods.eks.amazonaws.com`, valid 24 hours from `issued_at`, with random
    /// uids.
    pub fn new(
        issuer: impl Into<String>,
        namespace: impl Into<String>,
        service_account: impl Into<String>,
        issued_at: i64,
    ) -> Self {
        let service_account = service_account.into();
        ProjectedToken {
            issuer: issuer.into(),
            audience: vec!["pods.eks.amazonaws.com".to_string()],
            namespace: namespace.into(),
            pod_name: format!("{service_account}-pod"),
            service_account,
            service_account_uid: random_uuid(),
            pod_uid: random_uuid(),
            node_name: Some("node-1".to_string()),
            node_uid: None,
            issued_at,
            expires_in_secs: 86_400,
            warn_after: None,
            jti: None,
        }
    }

    /// The claims, in the layout of a Kubernetes projected token: `aud`,
    /// `exp`, `iat`, `iss`, `jti`, `kubernetes.io` {`namespace`, `node`
    /// {`name`, `uid`}, `pod` {`name`, `uid`}, `serviceaccount` {`name`,
    /// `uid`}, `warnafter`?}, `nbf`, `sub`.
    pub fn claims(&self) -> Value {
        let mut k8s = json!({
            "namespace": self.namespace,
            "pod": {"name": self.pod_name, "uid": self.pod_uid},
            "serviceaccount": {"name": self.service_account, "uid": self.service_account_uid},
        });
        if let Some(node) = &self.node_name {
            let uid = self.node_uid.clone().unwrap_or_else(random_uuid);
            k8s["node"] = json!({"name": node, "uid": uid});
        }
        if let Some(warn_after) = self.warn_after {
            k8s["warnafter"] = json!(warn_after);
        }
        json!({
            "aud": self.audience,
            "exp": self.issued_at.saturating_add(self.expires_in_secs),
            "iat": self.issued_at,
            "iss": self.issuer,
            "jti": self.jti.clone().unwrap_or_else(random_uuid),
            "kubernetes.io": k8s,
            "nbf": self.issued_at,
            "sub": format!("{SUBJECT_PREFIX}{}:{}", self.namespace, self.service_account),
        })
    }

    /// The token signed by `key`.
    pub fn sign(&self, key: &SigningKey) -> String {
        key.sign(&self.claims())
    }
}

#[cfg(test)]
mod tests;
