//! Parsing a JWKS document into keys that can verify signatures.

use std::fmt;

use aws_lc_rs::digest::{Context, SHA256};
use aws_lc_rs::signature::{
    ParsedPublicKey, RsaPublicKeyComponents, ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED,
    RSA_PKCS1_2048_8192_SHA256,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};

use crate::error::{shorten, KeyRejection, KeySetError};
use crate::TokenError;

/// The most keys one key set may hold (Kubernetes serves one or two).
pub const MAX_JWKS_KEYS: usize = 100;

/// A JWS algorithm this crate verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Alg {
    Rs256,
    Rs384,
    Rs512,
    Es256,
    Es384,
}

impl Alg {
    pub(crate) fn parse(name: &str) -> Option<Alg> {
        match name {
            "RS256" => Some(Alg::Rs256),
            "RS384" => Some(Alg::Rs384),
            "RS512" => Some(Alg::Rs512),
            "ES256" => Some(Alg::Es256),
            "ES384" => Some(Alg::Es384),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Rs384 => "RS384",
            Alg::Rs512 => "RS512",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
        }
    }
}

/// An elliptic curve of an EC key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
}

impl Curve {
    fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }
}

enum Material {
    /// Big-endian modulus and exponent without leading zeros, and the key
    /// parsed once for RS256 (the Kubernetes default), so verifying does not
    /// build the key again for every token.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
        rs256: ParsedPublicKey,
    },
    /// The public point, already parsed (and checked to be on the curve) for
    /// the curve's one algorithm.
    Ec { curve: Curve, key: ParsedPublicKey },
}

/// The SHA-256 of what makes a key verify a token (its `kid`, `alg` and public material): a
/// cached verdict names the key that verified it by this, to check that the key is still trusted.
pub(crate) type KeyFingerprint = [u8; 32];

/// One usable public key of a key set.
pub(crate) struct Key {
    kid: Option<String>,
    alg: Option<Alg>,
    material: Material,
    fingerprint: KeyFingerprint,
}

impl Key {
    pub(crate) fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    pub(crate) fn fingerprint(&self) -> &KeyFingerprint {
        &self.fingerprint
    }

    /// Whether this key may verify a token signed with `alg`: the key type
    /// (and curve) fits, and the key's own `alg`, if any, is the same.
    pub(crate) fn fits(&self, alg: Alg) -> bool {
        if self.alg.is_some_and(|own| own != alg) {
            return false;
        }
        match (&self.material, alg) {
            (Material::Rsa { .. }, Alg::Rs256 | Alg::Rs384 | Alg::Rs512) => true,
            (Material::Ec { curve, .. }, Alg::Es256) => *curve == Curve::P256,
            (Material::Ec { curve, .. }, Alg::Es384) => *curve == Curve::P384,
            _ => false,
        }
    }

    /// Verifies `signature` over `message` for `alg`; false on any failure
    /// (including a key that does not fit `alg`).
    pub(crate) fn verify(&self, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
        if !self.fits(alg) {
            return false;
        }
        match &self.material {
            Material::Rsa { rs256, .. } if alg == Alg::Rs256 => {
                rs256.verify_sig(message, signature).is_ok()
            }
            Material::Rsa { n, e, .. } => {
                let params = match alg {
                    Alg::Rs256 => &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
                    Alg::Rs384 => &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA384,
                    Alg::Rs512 => &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA512,
                    Alg::Es256 | Alg::Es384 => return false,
                };
                RsaPublicKeyComponents { n, e }
                    .verify(params, message, signature)
                    .is_ok()
            }
            Material::Ec { key, .. } => key.verify_sig(message, signature).is_ok(),
        }
    }
}

/// The usable keys of a cluster's JWKS, parsed once.
///
/// Accepted: RSA keys (`n`, `e`; 2048 to 8192 bits) and EC keys (`crv`
/// `P-256` or `P-384`, `x`, `y`). Skipped: keys whose `use` is not `sig`,
/// unknown `kty`, keys whose `alg` is not one this crate verifies or does not
/// fit the key type, and keys that do not parse. A document without any
/// usable key is an error.
pub struct KeySet {
    keys: Vec<Key>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.kids().collect::<Vec<_>>())
            .finish()
    }
}

impl KeySet {
    /// Parses a JWKS document (`{"keys": [...]}`).
    ///
    /// # Errors
    /// [`TokenError::KeySet`] if the document is not a JWKS, holds more than
    /// [`MAX_JWKS_KEYS`] keys, or holds no usable key.
    pub fn from_jwks(jwks: &Value) -> Result<KeySet, TokenError> {
        let entries = jwks
            .as_object()
            .and_then(|o| o.get("keys"))
            .and_then(Value::as_array)
            .ok_or(TokenError::KeySet(KeySetError::NotJwks))?;
        if entries.len() > MAX_JWKS_KEYS {
            return Err(TokenError::KeySet(KeySetError::TooManyKeys {
                count: entries.len(),
            }));
        }
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            match parse_key(entry) {
                Ok(key) => keys.push(key),
                Err(why) => skipped.push((i, why)),
            }
        }
        if keys.is_empty() {
            return Err(TokenError::KeySet(if skipped.is_empty() {
                KeySetError::Empty
            } else {
                skipped.truncate(5);
                KeySetError::NoUsableKey { skipped }
            }));
        }
        Ok(KeySet { keys })
    }

    /// The number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false for a parsed key set (parsing rejects an empty one).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key ids of the usable keys, in document order.
    pub fn kids(&self) -> impl Iterator<Item = Option<&str>> + '_ {
        self.keys.iter().map(Key::kid)
    }

    /// Whether a usable key has this key id.
    pub fn contains_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid() == Some(kid))
    }

    /// Whether the set holds the key with this fingerprint (same `kid`, `alg` and material).
    pub(crate) fn contains_fingerprint(&self, fingerprint: &KeyFingerprint) -> bool {
        self.keys.iter().any(|k| k.fingerprint() == fingerprint)
    }

    /// Whether both sets hold the same keys (same `kid`, `alg` and material), in any order.
    pub fn same_keys(&self, other: &KeySet) -> bool {
        let within = |a: &KeySet, b: &KeySet| {
            a.keys
                .iter()
                .all(|k| b.contains_fingerprint(k.fingerprint()))
        };
        within(self, other) && within(other, self)
    }

    /// The keys a token with `kid` and `alg` may be verified with.
    ///
    /// With a `kid`: the keys with that id that fit `alg`
    /// ([`TokenError::UnknownKey`] if none has the id,
    /// [`TokenError::KeyAlgorithmMismatch`] if none of them fits). Without:
    /// the one key that fits `alg`, if there is exactly one.
    pub(crate) fn candidates(&self, kid: Option<&str>, alg: Alg) -> Result<Vec<&Key>, TokenError> {
        let shown_kid = || kid.map(|k| shorten(k, 64));
        match kid {
            Some(kid) => {
                let named: Vec<&Key> = self.keys.iter().filter(|k| k.kid() == Some(kid)).collect();
                if named.is_empty() {
                    return Err(TokenError::UnknownKey { kid: shown_kid() });
                }
                let fitting: Vec<&Key> = named.into_iter().filter(|k| k.fits(alg)).collect();
                if fitting.is_empty() {
                    return Err(TokenError::KeyAlgorithmMismatch {
                        kid: shown_kid(),
                        alg: alg.name().to_string(),
                    });
                }
                Ok(fitting)
            }
            None => {
                let fitting: Vec<&Key> = self.keys.iter().filter(|k| k.fits(alg)).collect();
                if fitting.len() == 1 {
                    Ok(fitting)
                } else {
                    Err(TokenError::UnknownKey { kid: None })
                }
            }
        }
    }
}

fn optional_str<'a>(
    obj: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, KeyRejection> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(KeyRejection::NotString(name)),
    }
}

fn required_b64(obj: &Map<String, Value>, name: &'static str) -> Result<Vec<u8>, KeyRejection> {
    let s = optional_str(obj, name)?.ok_or(KeyRejection::Missing(name))?;
    // Keys come from the cluster's operator, not from the token: tolerate
    // padding, which some JWKS writers add.
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|source| KeyRejection::NotBase64 {
            member: name,
            source,
        })
}

fn strip_leading_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    bytes.drain(..zeros);
    bytes
}

/// The fingerprint of a key: its `kid`, `alg`, type and public material, each length-prefixed.
fn fingerprint(kid: Option<&str>, alg: Option<Alg>, material: &[&[u8]]) -> KeyFingerprint {
    let mut ctx = Context::new(&SHA256);
    ctx.update(b"podid-jwk-v1\0");
    let kid = kid.map(str::as_bytes);
    let alg = alg.map(|a| a.name().as_bytes());
    for part in [kid, alg] {
        match part {
            Some(bytes) => {
                ctx.update(&[1]);
                ctx.update(&(bytes.len() as u64).to_be_bytes());
                ctx.update(bytes);
            }
            None => ctx.update(&[0]),
        }
    }
    for part in material {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

fn parse_key(entry: &Value) -> Result<Key, KeyRejection> {
    let obj = entry.as_object().ok_or(KeyRejection::NotObject)?;
    if let Some(usage) = optional_str(obj, "use")? {
        if usage != "sig" {
            return Err(KeyRejection::Use(shorten(usage, 16)));
        }
    }
    let kid = optional_str(obj, "kid")?.map(str::to_string);
    let alg = match optional_str(obj, "alg")? {
        None => None,
        Some(name) => Some(Alg::parse(name).ok_or_else(|| KeyRejection::Alg(shorten(name, 16)))?),
    };
    let kty = optional_str(obj, "kty")?.ok_or(KeyRejection::Missing("kty"))?;
    let (material, fingerprint) = match kty {
        "RSA" => {
            let n = strip_leading_zeros(required_b64(obj, "n")?);
            let e = strip_leading_zeros(required_b64(obj, "e")?);
            let bits = match n.first() {
                Some(top) => n.len() * 8 - top.leading_zeros() as usize,
                None => 0,
            };
            if !(2048..=8192).contains(&bits) {
                return Err(KeyRejection::RsaModulusBits(bits));
            }
            if e.is_empty() || e.len() > 8 {
                return Err(KeyRejection::RsaExponent);
            }
            let rs256 = RsaPublicKeyComponents { n: &n, e: &e }
                .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
                .map_err(|_| KeyRejection::RsaKey)?;
            let fingerprint = fingerprint(kid.as_deref(), alg, &[b"RSA", &n, &e]);
            (Material::Rsa { n, e, rs256 }, fingerprint)
        }
        "EC" => {
            let crv = optional_str(obj, "crv")?.ok_or(KeyRejection::Missing("crv"))?;
            let (curve, algorithm) = match crv {
                "P-256" => (Curve::P256, &ECDSA_P256_SHA256_FIXED),
                "P-384" => (Curve::P384, &ECDSA_P384_SHA384_FIXED),
                other => return Err(KeyRejection::Curve(shorten(other, 16))),
            };
            let x = required_b64(obj, "x")?;
            let y = required_b64(obj, "y")?;
            let len = curve.coordinate_len();
            if x.len() != len || y.len() != len {
                return Err(KeyRejection::EcCoordinateLength(len));
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let key = ParsedPublicKey::new(algorithm, &point).map_err(|_| KeyRejection::EcPoint)?;
            let fingerprint = fingerprint(kid.as_deref(), alg, &[b"EC", crv.as_bytes(), &point]);
            (Material::Ec { curve, key }, fingerprint)
        }
        other => return Err(KeyRejection::Kty(shorten(other, 16))),
    };
    let key = Key {
        kid,
        alg,
        material,
        fingerprint,
    };
    if let Some(alg) = key.alg {
        if !key.fits(alg) {
            return Err(KeyRejection::AlgDoesNotFit(alg.name()));
        }
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::{DevAlgorithm, SigningKey};
    use serde_json::json;

    fn rsa_jwk() -> Value {
        SigningKey::generate(DevAlgorithm::Rs256, "r1")
            .unwrap()
            .jwk()
    }

    #[test]
    fn parses_rsa_and_ec_keys() {
        let a = SigningKey::generate(DevAlgorithm::Rs256, "r")
            .unwrap()
            .jwk();
        let b = SigningKey::generate(DevAlgorithm::Es256, "e2")
            .unwrap()
            .jwk();
        let c = SigningKey::generate(DevAlgorithm::Es384, "e3")
            .unwrap()
            .jwk();
        let set = KeySet::from_jwks(&json!({"keys": [a, b, c]})).unwrap();
        assert_eq!(set.len(), 3);
        assert!(!set.is_empty());
        assert_eq!(
            set.kids().collect::<Vec<_>>(),
            [Some("r"), Some("e2"), Some("e3")]
        );
        assert!(set.contains_kid("e3"));
        assert!(format!("{set:?}").contains("e2"));
    }

    #[test]
    fn rejects_documents_without_keys() {
        for doc in [
            json!(null),
            json!([]),
            json!({}),
            json!({"keys": {}}),
            json!({"keys": []}),
            json!({"keys": [1, "x", null]}),
        ] {
            assert!(
                matches!(KeySet::from_jwks(&doc), Err(TokenError::KeySet(_))),
                "{doc}"
            );
        }
    }

    #[test]
    fn skips_unusable_keys() {
        let good = rsa_jwk();
        let mut enc = good.clone();
        enc["use"] = json!("enc");
        let mut oct = json!({"kty": "oct", "k": "c2VjcmV0", "kid": "h"});
        oct["use"] = json!("sig");
        let mut ps = good.clone();
        ps["alg"] = json!("PS256");
        let mut mismatched = good.clone();
        mismatched["alg"] = json!("ES256");
        let mut bad_n = good.clone();
        bad_n["n"] = json!("!!!");
        let small = json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xc5u8; 128]), "e": "AQAB"});
        let off_curve = json!({"kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode([1u8; 32]), "y": URL_SAFE_NO_PAD.encode([2u8; 32])});
        let short = json!({"kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode([1u8; 31]), "y": URL_SAFE_NO_PAD.encode([2u8; 32])});
        let p521 = json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"});
        let okp = json!({"kty": "OKP", "crv": "Ed25519", "x": "AA"});
        let no_kty = json!({"n": "AA", "e": "AQAB"});
        let bad_kid = json!({"kty": "RSA", "kid": 5, "n": "AA", "e": "AQAB"});
        let unusable = vec![
            enc, oct, ps, mismatched, bad_n, small, off_curve, short, p521, okp, no_kty, bad_kid,
        ];
        let err = KeySet::from_jwks(&json!({ "keys": unusable.clone() })).unwrap_err();
        assert!(matches!(err, TokenError::KeySet(_)));
        let mut with_good = unusable;
        with_good.push(good);
        let set = KeySet::from_jwks(&json!({ "keys": with_good })).unwrap();
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn rejections_name_the_key_and_the_rule() {
        let doc = json!({"keys": [{"kty": "oct"}, {"kty": "RSA", "e": "AQAB"}, {"kty": "EC", "crv": "P-256", "x": "!", "y": "AA"}]});
        let err = KeySet::from_jwks(&doc).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the cluster's key set is unusable: no usable key (key 0: kty \"oct\" is not accepted; \
             key 1: no \"n\"; key 2: \"x\" is not base64url)"
        );
        let TokenError::KeySet(KeySetError::NoUsableKey { skipped }) = err else {
            panic!("{err:?}");
        };
        assert!(std::error::Error::source(&skipped[2].1).is_some());
        assert_eq!(
            KeySet::from_jwks(&json!({"keys": []}))
                .unwrap_err()
                .to_string(),
            "the cluster's key set is unusable: no usable key (the key set is empty)"
        );
    }

    #[test]
    fn too_many_keys_is_an_error() {
        let jwk = rsa_jwk();
        let keys: Vec<Value> = (0..=MAX_JWKS_KEYS).map(|_| jwk.clone()).collect();
        assert!(matches!(
            KeySet::from_jwks(&json!({ "keys": keys })),
            Err(TokenError::KeySet(_))
        ));
    }

    #[test]
    fn padded_base64_in_jwk_is_tolerated() {
        let mut jwk = rsa_jwk();
        jwk["e"] = json!("AQAB=");
        assert!(KeySet::from_jwks(&json!({ "keys": [jwk] })).is_ok());
    }

    #[test]
    fn fingerprints_follow_kid_alg_and_material() {
        let a = SigningKey::generate(DevAlgorithm::Rs256, "a").unwrap();
        let e = SigningKey::generate(DevAlgorithm::Es256, "e").unwrap();
        let set = KeySet::from_jwks(&json!({"keys": [a.jwk(), e.jwk()]})).unwrap();
        // The same keys, in another order and padded: the same set.
        let mut padded = a.jwk();
        padded["e"] = json!("AQAB=");
        let reordered = KeySet::from_jwks(&json!({"keys": [e.jwk(), padded]})).unwrap();
        assert!(set.same_keys(&reordered) && reordered.same_keys(&set));
        for key in &set.keys {
            assert!(reordered.contains_fingerprint(key.fingerprint()));
        }
        // Another kid, alg or material is another key.
        let mut renamed = a.jwk();
        renamed["kid"] = json!("b");
        let mut no_alg = a.jwk();
        no_alg.as_object_mut().unwrap().remove("alg");
        let other = SigningKey::generate(DevAlgorithm::Rs256, "a")
            .unwrap()
            .jwk();
        for changed in [renamed, no_alg, other] {
            let one = KeySet::from_jwks(&json!({ "keys": [changed] })).unwrap();
            assert!(!set.contains_fingerprint(one.keys[0].fingerprint()));
            assert!(!one.same_keys(&KeySet::from_jwks(&json!({"keys": [a.jwk()]})).unwrap()));
        }
        // A subset is not the same set, either way round.
        let only_a = KeySet::from_jwks(&json!({"keys": [a.jwk()]})).unwrap();
        assert!(!set.same_keys(&only_a) && !only_a.same_keys(&set));
    }

    #[test]
    fn candidate_selection() {
        let r1 = SigningKey::generate(DevAlgorithm::Rs256, "r1")
            .unwrap()
            .jwk();
        let mut r2 = SigningKey::generate(DevAlgorithm::Rs256, "r2")
            .unwrap()
            .jwk();
        r2.as_object_mut().unwrap().remove("alg");
        let e1 = SigningKey::generate(DevAlgorithm::Es256, "e1")
            .unwrap()
            .jwk();
        let set = KeySet::from_jwks(&json!({"keys": [r1, r2, e1]})).unwrap();
        assert_eq!(set.candidates(Some("r1"), Alg::Rs256).unwrap().len(), 1);
        // r1 says alg RS256: not usable for RS384; r2 has no alg: usable.
        assert!(matches!(
            set.candidates(Some("r1"), Alg::Rs384),
            Err(TokenError::KeyAlgorithmMismatch { .. })
        ));
        assert_eq!(set.candidates(Some("r2"), Alg::Rs512).unwrap().len(), 1);
        assert!(matches!(
            set.candidates(Some("r1"), Alg::Es256),
            Err(TokenError::KeyAlgorithmMismatch { .. })
        ));
        assert!(matches!(
            set.candidates(Some("zz"), Alg::Rs256),
            Err(TokenError::UnknownKey { kid: Some(k) }) if k == "zz"
        ));
        // Without kid: exactly one ES256 key, two RSA keys.
        assert_eq!(set.candidates(None, Alg::Es256).unwrap().len(), 1);
        assert!(matches!(
            set.candidates(None, Alg::Rs256),
            Err(TokenError::UnknownKey { kid: None })
        ));
        assert!(matches!(
            set.candidates(None, Alg::Es384),
            Err(TokenError::UnknownKey { kid: None })
        ));
    }
}
