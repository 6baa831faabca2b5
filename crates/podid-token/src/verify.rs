//! The pure check of one token against one key set.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use std::borrow::Cow;

use crate::error::shorten;
use crate::jwks::{Alg, KeyFingerprint, KeySet};
use crate::{ClusterTrust, PodIdentity, TokenError, CLOCK_SKEW_SECS, MAX_TOKEN_BYTES};

/// The prefix of a service account token's `sub`.
pub const SUBJECT_PREFIX: &str = "system:serviceaccount:";

/// A token split and its header checked; the payload is decoded but not yet
/// parsed ([`Decoded::parse`]), so that its claims can borrow from it.
pub(crate) struct Decoded<'t> {
    alg: Alg,
    kid: Option<String>,
    /// `header.payload`, the bytes the signature covers.
    signing_input: &'t str,
    /// The payload's JSON.
    payload: Vec<u8>,
    /// The third segment, still base64url.
    signature: &'t str,
}

/// A decoded token's claims (borrowing from the payload) and signature.
pub(crate) struct Parsed<'d> {
    claims: Object<'d>,
    signature: Vec<u8>,
}

impl Decoded<'_> {
    /// Parses the payload (a JSON object) and decodes the signature.
    pub(crate) fn parse(&self) -> Result<Parsed<'_>, TokenError> {
        let claims = parse_object(&self.payload, "payload")?;
        if self.signature.is_empty() {
            return Err(TokenError::Malformed("the signature is empty".into()));
        }
        let signature = decode_segment(self.signature, "signature")?;
        Ok(Parsed { claims, signature })
    }

    /// Verifies the signature with the keys of `keys` that fit the token; the fingerprint of
    /// the key that verified it.
    pub(crate) fn check_signature(
        &self,
        parsed: &Parsed<'_>,
        keys: &KeySet,
    ) -> Result<KeyFingerprint, TokenError> {
        let candidates = keys.candidates(self.kid.as_deref(), self.alg)?;
        let message = self.signing_input.as_bytes();
        candidates
            .iter()
            .find(|key| key.verify(self.alg, message, &parsed.signature))
            .map(|key| *key.fingerprint())
            .ok_or(TokenError::BadSignature)
    }
}

fn decode_segment(segment: &str, what: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Malformed(format!("the {what} is not base64url")))
}

/// A JSON value whose strings borrow from the parsed text where they can
/// (they are copied only when they hold escapes), and whose objects are
/// lists of members: parsing a token's claims allocates one list per object
/// rather than a map node and a string per member. Parsing validates
/// exactly as `serde_json::Value` does; a name that appears twice in an
/// object means its last value, as in `serde_json::Map`.
#[derive(Debug)]
enum Json<'a> {
    Null,
    Bool,
    /// A non-negative integer, as serde_json keeps it.
    PosInt(u64),
    /// A negative integer.
    NegInt(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Object<'a>),
}

/// A JSON object's members, in order.
type Object<'a> = Vec<(Cow<'a, str>, Json<'a>)>;

/// The value of `key` in `obj` (the last one, when the name repeats).
fn member<'o, 'a>(obj: &'o Object<'a>, key: &str) -> Option<&'o Json<'a>> {
    obj.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
}

struct JsonVisitor;

impl<'de> serde::de::Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool)
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json<'de>, E> {
        Ok(if v < 0 {
            Json::NegInt(v)
        } else {
            Json::PosInt(v.unsigned_abs())
        })
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json<'de>, E> {
        Ok(Json::PosInt(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Json<'de>, E> {
        Ok(Json::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Json<'de>, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(JsonSeed)? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut members = Vec::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            members.push((key, map.next_value_seed(JsonSeed)?));
        }
        Ok(Json::Object(members))
    }
}

struct JsonSeed;

impl<'de> serde::de::DeserializeSeed<'de> for JsonSeed {
    type Value = Json<'de>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Json<'de>, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

/// An object member's name, borrowed when it has no escapes.
struct KeySeed;

impl<'de> serde::de::DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        match d.deserialize_str(JsonVisitor)? {
            Json::Str(s) => Ok(s),
            _ => Err(serde::de::Error::custom(
                "an object member's name is not a string",
            )),
        }
    }
}

fn parse_object<'a>(bytes: &'a [u8], what: &str) -> Result<Object<'a>, TokenError> {
    // The JSON parser's message may quote the input: it is not passed on.
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde::de::DeserializeSeed::deserialize(JsonSeed, &mut de)
        .and_then(|v| de.end().map(|()| v))
    {
        Ok(Json::Object(members)) => Ok(members),
        Ok(_) => Err(TokenError::Malformed(format!(
            "the {what} is not a JSON object"
        ))),
        Err(_) => Err(TokenError::Malformed(format!("the {what} is not JSON"))),
    }
}

/// Splits and decodes a compact JWS; checks size, shape, `alg` and `crit`.
pub(crate) fn decode(token: &str) -> Result<Decoded<'_>, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge);
    }
    let token = token.trim_matches(|c: char| c.is_ascii_whitespace());
    if token.is_empty() {
        return Err(TokenError::Empty);
    }
    let mut segments = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(TokenError::Malformed(
            "not three dot-separated segments".into(),
        ));
    };

    let header_bytes = decode_segment(header, "header")?;
    let header_map = parse_object(&header_bytes, "header")?;
    let alg = match member(&header_map, "alg") {
        Some(Json::Str(name)) => {
            Alg::parse(name).ok_or_else(|| TokenError::UnsupportedAlgorithm(shorten(name, 16)))?
        }
        Some(_) => {
            return Err(TokenError::Malformed(
                "the header's alg is not a string".into(),
            ))
        }
        None => return Err(TokenError::Malformed("the header has no alg".into())),
    };
    if member(&header_map, "crit").is_some() {
        return Err(TokenError::CriticalHeader);
    }
    let kid = match member(&header_map, "kid") {
        None | Some(Json::Null) => None,
        Some(Json::Str(kid)) => Some(kid.to_string()),
        Some(_) => {
            return Err(TokenError::Malformed(
                "the header's kid is not a string".into(),
            ))
        }
    };

    let signing_input = &token[..header.len() + 1 + payload.len()];
    let payload = decode_segment(payload, "payload")?;
    Ok(Decoded {
        alg,
        kid,
        signing_input,
        payload,
        signature,
    })
}

/// A string claim: `Ok(None)` when absent or null, `Malformed` when of
/// another JSON type.
fn opt_str<'o>(
    obj: &'o Object<'_>,
    key: &str,
    path: &'static str,
) -> Result<Option<&'o str>, TokenError> {
    match member(obj, key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Str(s)) => Ok(Some(s)),
        Some(_) => Err(TokenError::Malformed(format!(
            "the claim {path} is not a string"
        ))),
    }
}

/// A required, non-empty string claim.
fn req_str<'o>(obj: &'o Object<'_>, key: &str, path: &'static str) -> Result<&'o str, TokenError> {
    match opt_str(obj, key, path)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(TokenError::MissingClaim(path)),
    }
}

/// An object claim: `Ok(None)` when absent or null.
fn opt_obj<'o, 'a>(
    obj: &'o Object<'a>,
    key: &str,
    path: &'static str,
) -> Result<Option<&'o Object<'a>>, TokenError> {
    match member(obj, key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Object(o)) => Ok(Some(o)),
        Some(_) => Err(TokenError::Malformed(format!(
            "the claim {path} is not an object"
        ))),
    }
}

/// A NumericDate claim (seconds; fractions are cut off).
fn opt_time(obj: &Object<'_>, key: &'static str) -> Result<Option<i64>, TokenError> {
    let not_a_number = || TokenError::Malformed(format!("the claim {key} is not a number"));
    match member(obj, key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::NegInt(i)) => Ok(Some(*i)),
        // `as` saturates at the i64 bounds.
        Some(Json::PosInt(u)) => Ok(Some(
            i64::try_from(*u).unwrap_or_else(|_| (*u as f64).floor() as i64),
        )),
        Some(Json::Float(f)) if f.is_finite() => Ok(Some(f.floor() as i64)),
        Some(_) => Err(not_a_number()),
    }
}

/// Checks the claims of a token whose signature was verified.
fn check_claims(
    claims: &Object<'_>,
    trust: &ClusterTrust,
    now: i64,
) -> Result<PodIdentity, TokenError> {
    // Issuer: exact string.
    let iss = opt_str(claims, "iss", "iss")?.ok_or(TokenError::MissingClaim("iss"))?;
    if iss != trust.issuer {
        return Err(TokenError::WrongIssuer);
    }

    // Audience: a string or an array of strings.
    let audience_ok = match member(claims, "aud") {
        None | Some(Json::Null) => return Err(TokenError::MissingClaim("aud")),
        Some(Json::Str(aud)) => *aud == trust.audience,
        Some(Json::Array(items)) => {
            let mut found = false;
            for item in items {
                match item {
                    Json::Str(aud) => found |= *aud == trust.audience,
                    _ => {
                        return Err(TokenError::Malformed(
                            "the claim aud holds a non-string".into(),
                        ))
                    }
                }
            }
            found
        }
        Some(_) => {
            return Err(TokenError::Malformed(
                "the claim aud is not a string or an array".into(),
            ))
        }
    };
    if !audience_ok {
        return Err(TokenError::WrongAudience);
    }

    // Times, each with the clock-skew leeway.
    let exp = opt_time(claims, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
    if now > exp.saturating_add(CLOCK_SKEW_SECS) {
        return Err(TokenError::Expired);
    }
    if let Some(nbf) = opt_time(claims, "nbf")? {
        if now.saturating_add(CLOCK_SKEW_SECS) < nbf {
            return Err(TokenError::NotYetValid);
        }
    }
    let iat = opt_time(claims, "iat")?;
    if let Some(iat) = iat {
        if iat > now.saturating_add(CLOCK_SKEW_SECS) {
            return Err(TokenError::IssuedInFuture);
        }
    }

    // Kubernetes claims.
    let k8s = opt_obj(claims, "kubernetes.io", "kubernetes.io")?
        .ok_or(TokenError::MissingClaim("kubernetes.io"))?;
    let namespace = req_str(k8s, "namespace", "kubernetes.io.namespace")?;
    let sa = opt_obj(k8s, "serviceaccount", "kubernetes.io.serviceaccount")?.ok_or(
        TokenError::MissingClaim("kubernetes.io.serviceaccount.name"),
    )?;
    let sa_name = req_str(sa, "name", "kubernetes.io.serviceaccount.name")?;
    let sa_uid = opt_str(sa, "uid", "kubernetes.io.serviceaccount.uid")?;
    let pod = opt_obj(k8s, "pod", "kubernetes.io.pod")?
        .ok_or(TokenError::MissingClaim("kubernetes.io.pod.name"))?;
    let pod_name = req_str(pod, "name", "kubernetes.io.pod.name")?;
    let pod_uid = req_str(pod, "uid", "kubernetes.io.pod.uid")?;
    let node_name = match opt_obj(k8s, "node", "kubernetes.io.node")? {
        Some(node) => opt_str(node, "name", "kubernetes.io.node.name")?,
        None => None,
    };

    // Subject: system:serviceaccount:NS:NAME, agreeing with the claims.
    let sub = req_str(claims, "sub", "sub")?;
    let consistent = sub
        .strip_prefix(SUBJECT_PREFIX)
        .and_then(|rest| rest.split_once(':'))
        .is_some_and(|(ns, name)| ns == namespace && name == sa_name);
    if !consistent {
        return Err(TokenError::InconsistentSubject);
    }

    let jti = opt_str(claims, "jti", "jti")?;

    Ok(PodIdentity {
        namespace: namespace.to_string(),
        service_account: sa_name.to_string(),
        service_account_uid: sa_uid.filter(|s| !s.is_empty()).map(str::to_string),
        pod_name: pod_name.to_string(),
        pod_uid: pod_uid.to_string(),
        node_name: node_name.filter(|s| !s.is_empty()).map(str::to_string),
        issuer: iss.to_string(),
        expires_at: exp,
        issued_at: iat,
        jti: jti.filter(|s| !s.is_empty()).map(str::to_string),
    })
}

/// Verifies one token against one key set at `now_epoch_secs`: size and shape, the header's
/// `alg` (RS256, RS384, RS512, ES256, ES384; anything else, `none` and HMAC included, is
/// refused) and `crit`, the key chosen by `kid`, the signature, then the claims (`iss`, `aud`,
/// `exp`/`nbf`/`iat` with [`CLOCK_SKEW_SECS`](crate::CLOCK_SKEW_SECS) of leeway, `sub` and the
/// `kubernetes.io` claims). No caching and no IO.
///
/// ```
/// use podid_token::dev::{DevAlgorithm, ProjectedToken, SigningKey};
/// use podid_token::{verify_token, ClusterTrust, KeySet};
///
/// let key = SigningKey::generate(DevAlgorithm::Es256, "key-1")?;
/// let trust = ClusterTrust {
///     name: "dev".into(),
///     issuer: "https://kubernetes.default.svc".into(),
///     audience: "pods.eks.amazonaws.com".into(),
///     jwks: key.jwks(),
///     jwks_uri: None,
///     version: 1,
/// };
/// let now = 1_700_000_000;
/// let token = ProjectedToken::new(&*trust.issuer, "default", "boto3", now).sign(&key);
/// let keys = KeySet::from_jwks(&trust.jwks)?;
/// let pod = verify_token(&token, &trust, &keys, now)?;
/// assert_eq!((pod.namespace.as_str(), pod.service_account.as_str()), ("default", "boto3"));
/// # Ok::<(), podid_token::TokenError>(())
/// ```
///
/// # Errors
/// The first rule the token breaks, as a [`TokenError`].
pub fn verify_token(
    token: &str,
    trust: &ClusterTrust,
    keys: &KeySet,
    now_epoch_secs: i64,
) -> Result<PodIdentity, TokenError> {
    let decoded = decode(token)?;
    let parsed = decoded.parse()?;
    decoded.check_signature(&parsed, keys)?;
    check_claims(&parsed.claims, trust, now_epoch_secs)
}

/// Checks a decoded token: signature with `keys`, then claims; the identity and the
/// fingerprint of the key that signed it.
pub(crate) fn verify_decoded(
    decoded: &Decoded<'_>,
    parsed: &Parsed<'_>,
    trust: &ClusterTrust,
    keys: &KeySet,
    now: i64,
) -> Result<(PodIdentity, KeyFingerprint), TokenError> {
    let key = decoded.check_signature(parsed, keys)?;
    Ok((check_claims(&parsed.claims, trust, now)?, key))
}

#[cfg(test)]
mod tests;
