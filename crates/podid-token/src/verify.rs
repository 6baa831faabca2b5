//! The pure check of one token against one key set.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use std::borrow::Cow;

use crate::error::shorten;
use crate::jwks::{Alg, KeySet};
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

    /// Verifies the signature with the keys of `keys` that fit the token.
    pub(crate) fn check_signature(
        &self,
        parsed: &Parsed<'_>,
        keys: &KeySet,
    ) -> Result<(), TokenError> {
        let candidates = keys.candidates(self.kid.as_deref(), self.alg)?;
        let message = self.signing_input.as_bytes();
        if candidates
            .iter()
            .any(|key| key.verify(self.alg, message, &parsed.signature))
        {
            Ok(())
        } else {
            Err(TokenError::BadSignature)
        }
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

/// Verifies one token against one key set at `now_epoch_secs`: shape,
/// algorithm, signature, then claims. No caching and no IO.
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

/// Checks a decoded token: signature with `keys`, then claims.
pub(crate) fn verify_decoded(
    decoded: &Decoded<'_>,
    parsed: &Parsed<'_>,
    trust: &ClusterTrust,
    keys: &KeySet,
    now: i64,
) -> Result<PodIdentity, TokenError> {
    decoded.check_signature(parsed, keys)?;
    check_claims(&parsed.claims, trust, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn seg(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    fn trust() -> ClusterTrust {
        ClusterTrust {
            name: "c".into(),
            issuer: "https://issuer.example".into(),
            audience: "pods.eks.amazonaws.com".into(),
            jwks: json!({"keys": []}),
            jwks_uri: None,
            version: 1,
        }
    }

    fn good_claims(now: i64) -> Value {
        json!({
            "iss": "https://issuer.example",
            "sub": "system:serviceaccount:default:boto3",
            "aud": ["pods.eks.amazonaws.com"],
            "exp": now + 3600, "iat": now, "nbf": now, "jti": "j",
            "kubernetes.io": {
                "namespace": "default",
                "serviceaccount": {"name": "boto3", "uid": "sa-uid"},
                "pod": {"name": "p", "uid": "pod-uid"},
                "node": {"name": "n1", "uid": "node-uid"}
            }
        })
    }

    fn check(claims: &Value, now: i64) -> Result<PodIdentity, TokenError> {
        let bytes = serde_json::to_vec(claims).unwrap();
        check_claims(&parse_object(&bytes, "payload").unwrap(), &trust(), now)
    }

    #[test]
    fn decode_shape_errors() {
        let h = seg(&json!({"alg": "RS256"}));
        let p = seg(&json!({}));
        assert_eq!(decode("").err(), Some(TokenError::Empty));
        assert_eq!(decode(" \n").err(), Some(TokenError::Empty));
        for bad in [
            "abc".to_string(),
            format!("{h}.{p}"),
            format!("{h}.{p}.c2ln.x"),
            format!("{h}!.{p}.c2ln"),
            format!("{h}.{p}!.c2ln"),
            format!("{h}.{p}.c2ln!"),
            format!("{h}.{p}."),
            format!("{h}=.{p}.c2ln"),
        ] {
            assert!(
                matches!(decode_and_parse(&bad), Err(TokenError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(decode_and_parse(&format!("{h}.{p}.c2ln")).is_ok());
        assert!(decode_and_parse(&format!(" {h}.{p}.c2ln\n")).is_ok());
        // Member names may repeat: the last value counts, as in serde_json's map.
        let twice = URL_SAFE_NO_PAD.encode(br#"{"iss":"a","iss":"b","x":["\u00e9",{"y":null}]}"#);
        let token = format!("{h}.{twice}.c2ln");
        let decoded = decode(&token).unwrap();
        let parsed = decoded.parse().unwrap();
        assert_eq!(opt_str(&parsed.claims, "iss", "iss"), Ok(Some("b")));
        // Invalid JSON anywhere in the payload, even in claims nobody reads.
        for bad in [
            &br#"{"x":"\ud800"}"#[..],
            br#"{"x":1}x"#,
            b"[1]",
            b"{\"x\":\"\xff\"}",
        ] {
            let payload = URL_SAFE_NO_PAD.encode(bad);
            let err = decode_and_parse(&format!("{h}.{payload}.c2ln")).unwrap_err();
            assert!(matches!(err, TokenError::Malformed(_)), "{err}");
        }
    }

    fn decode_and_parse(token: &str) -> Result<(), TokenError> {
        decode(token)?.parse().map(|_| ())
    }

    #[test]
    fn decode_header_rules() {
        let p = seg(&json!({}));
        let with = |header: Value| format!("{}.{p}.c2ln", seg(&header));
        assert!(
            matches!(decode(&with(json!({"alg": "none"}))), Err(TokenError::UnsupportedAlgorithm(a)) if a == "none")
        );
        for alg in [
            "HS256", "HS384", "HS512", "PS256", "PS512", "EdDSA", "ES512", "rs256",
        ] {
            assert!(matches!(
                decode(&with(json!({ "alg": alg }))),
                Err(TokenError::UnsupportedAlgorithm(_))
            ));
        }
        assert!(matches!(
            decode(&with(json!({"alg": 1}))),
            Err(TokenError::Malformed(_))
        ));
        assert!(matches!(
            decode(&with(json!({}))),
            Err(TokenError::Malformed(_))
        ));
        assert!(matches!(
            decode(&with(json!({"alg": "RS256", "crit": ["exp"]}))),
            Err(TokenError::CriticalHeader)
        ));
        assert!(matches!(
            decode(&with(json!({"alg": "RS256", "kid": 7}))),
            Err(TokenError::Malformed(_))
        ));
        let token = with(json!({"alg": "ES384", "kid": "k"}));
        let d = decode(&token).unwrap();
        assert_eq!(d.alg, Alg::Es384);
        assert_eq!(d.kid.as_deref(), Some("k"));
    }

    #[test]
    fn long_alg_is_shortened() {
        let alg = "X".repeat(1000);
        let token = format!("{}.{}.c2ln", seg(&json!({ "alg": alg })), seg(&json!({})));
        let Err(TokenError::UnsupportedAlgorithm(shown)) = decode(&token) else {
            panic!("expected UnsupportedAlgorithm");
        };
        assert!(shown.chars().count() <= 17);
    }

    #[test]
    fn valid_claims_give_identity() {
        let id = check(&good_claims(1000), 1000).unwrap();
        assert_eq!(id.namespace, "default");
        assert_eq!(id.service_account, "boto3");
        assert_eq!(id.service_account_uid.as_deref(), Some("sa-uid"));
        assert_eq!(id.pod_name, "p");
        assert_eq!(id.pod_uid, "pod-uid");
        assert_eq!(id.node_name.as_deref(), Some("n1"));
        assert_eq!(id.issuer, "https://issuer.example");
        assert_eq!(id.expires_at, 4600);
        assert_eq!(id.issued_at, Some(1000));
        assert_eq!(id.jti.as_deref(), Some("j"));
    }

    #[test]
    fn optional_claims_may_be_absent() {
        let mut c = good_claims(1000);
        let k = c["kubernetes.io"].as_object_mut().unwrap();
        k.remove("node");
        k["serviceaccount"].as_object_mut().unwrap().remove("uid");
        let o = c.as_object_mut().unwrap();
        o.remove("jti");
        o.remove("iat");
        o.remove("nbf");
        let id = check(&c, 1000).unwrap();
        assert_eq!(id.node_name, None);
        assert_eq!(id.service_account_uid, None);
        assert_eq!(id.jti, None);
        assert_eq!(id.issued_at, None);
    }

    #[test]
    fn issuer_and_audience() {
        let mut c = good_claims(0);
        c["iss"] = json!("https://issuer.example/");
        assert_eq!(check(&c, 0).err(), Some(TokenError::WrongIssuer));
        c["iss"] = json!(5);
        assert!(matches!(check(&c, 0), Err(TokenError::Malformed(_))));
        c.as_object_mut().unwrap().remove("iss");
        assert_eq!(check(&c, 0).err(), Some(TokenError::MissingClaim("iss")));

        let mut c = good_claims(0);
        c["aud"] = json!("pods.eks.amazonaws.com");
        assert!(check(&c, 0).is_ok());
        c["aud"] = json!("sts.amazonaws.com");
        assert_eq!(check(&c, 0).err(), Some(TokenError::WrongAudience));
        c["aud"] = json!(["a", "b"]);
        assert_eq!(check(&c, 0).err(), Some(TokenError::WrongAudience));
        c["aud"] = json!(["a", "pods.eks.amazonaws.com"]);
        assert!(check(&c, 0).is_ok());
        c["aud"] = json!([]);
        assert_eq!(check(&c, 0).err(), Some(TokenError::WrongAudience));
        c["aud"] = json!([1]);
        assert!(matches!(check(&c, 0), Err(TokenError::Malformed(_))));
        c["aud"] = json!({"a": 1});
        assert!(matches!(check(&c, 0), Err(TokenError::Malformed(_))));
        c["aud"] = Value::Null;
        assert_eq!(check(&c, 0).err(), Some(TokenError::MissingClaim("aud")));
    }

    #[test]
    fn times_with_leeway() {
        let c = good_claims(1000); // exp 4600, nbf = iat = 1000
        assert!(check(&c, 4600).is_ok());
        assert!(check(&c, 4660).is_ok());
        assert_eq!(check(&c, 4661).err(), Some(TokenError::Expired));
        assert!(check(&c, 940).is_ok());
        assert_eq!(check(&c, 939).err(), Some(TokenError::NotYetValid));

        let mut c = good_claims(1000);
        c.as_object_mut().unwrap().remove("nbf");
        assert!(check(&c, 940).is_ok());
        assert_eq!(check(&c, 939).err(), Some(TokenError::IssuedInFuture));

        let mut c = good_claims(1000);
        c.as_object_mut().unwrap().remove("exp");
        assert_eq!(check(&c, 1000).err(), Some(TokenError::MissingClaim("exp")));
        c["exp"] = json!("4600");
        assert!(matches!(check(&c, 1000), Err(TokenError::Malformed(_))));
        c["exp"] = json!(4600.9);
        assert_eq!(check(&c, 1000).unwrap().expires_at, 4600);
        c["exp"] = json!(1e300);
        assert_eq!(check(&c, 1000).unwrap().expires_at, i64::MAX);
        c["exp"] = json!(u64::MAX);
        assert_eq!(check(&c, 1000).unwrap().expires_at, i64::MAX);
        c["exp"] = json!(i64::MIN);
        assert_eq!(check(&c, 1000).err(), Some(TokenError::Expired));
        c["exp"] = json!(i64::MAX);
        c["nbf"] = json!(i64::MAX);
        assert_eq!(check(&c, i64::MAX).unwrap().expires_at, i64::MAX);
        assert_eq!(check(&c, 0).err(), Some(TokenError::NotYetValid));
    }

    #[test]
    fn each_kubernetes_claim_is_required() {
        let cases: [(&[&str], &str); 7] = [
            (&["kubernetes.io"], "kubernetes.io"),
            (&["kubernetes.io", "namespace"], "kubernetes.io.namespace"),
            (
                &["kubernetes.io", "serviceaccount"],
                "kubernetes.io.serviceaccount.name",
            ),
            (
                &["kubernetes.io", "serviceaccount", "name"],
                "kubernetes.io.serviceaccount.name",
            ),
            (&["kubernetes.io", "pod"], "kubernetes.io.pod.name"),
            (&["kubernetes.io", "pod", "name"], "kubernetes.io.pod.name"),
            (&["kubernetes.io", "pod", "uid"], "kubernetes.io.pod.uid"),
        ];
        for (path, want) in cases {
            let mut c = good_claims(0);
            let (last, parents) = path.split_last().unwrap();
            let mut obj = &mut c;
            for p in parents {
                obj = &mut obj[*p];
            }
            obj.as_object_mut().unwrap().remove(*last);
            assert_eq!(
                check(&c, 0).err(),
                Some(TokenError::MissingClaim(want)),
                "{path:?}"
            );
            // An empty string counts as missing, null too.
            if !parents.is_empty() {
                obj_set(&mut c, path, json!(""));
                if parents.len() == 1 && (*last == "pod" || *last == "serviceaccount") {
                    assert!(matches!(check(&c, 0), Err(TokenError::Malformed(_))));
                } else {
                    assert_eq!(check(&c, 0).err(), Some(TokenError::MissingClaim(want)));
                }
                obj_set(&mut c, path, Value::Null);
                assert_eq!(check(&c, 0).err(), Some(TokenError::MissingClaim(want)));
                obj_set(&mut c, path, json!(42));
                assert!(matches!(check(&c, 0), Err(TokenError::Malformed(_))));
            }
        }
    }

    fn obj_set(c: &mut Value, path: &[&str], v: Value) {
        let mut obj = c;
        for p in path {
            obj = &mut obj[*p];
        }
        *obj = v;
    }

    #[test]
    fn subject_must_agree() {
        for sub in [
            "system:serviceaccount:default:other",
            "system:serviceaccount:other:boto3",
            "system:serviceaccount:default:boto3:x",
            "system:serviceaccount:defaultboto3",
            "system:node:default:boto3",
            "default:boto3",
        ] {
            let mut c = good_claims(0);
            c["sub"] = json!(sub);
            assert_eq!(
                check(&c, 0).err(),
                Some(TokenError::InconsistentSubject),
                "{sub}"
            );
        }
        let mut c = good_claims(0);
        c.as_object_mut().unwrap().remove("sub");
        assert_eq!(check(&c, 0).err(), Some(TokenError::MissingClaim("sub")));
        c["sub"] = json!(["x"]);
        assert!(matches!(check(&c, 0), Err(TokenError::Malformed(_))));
    }

    #[test]
    fn optional_claims_with_wrong_types_are_malformed() {
        for (path, v) in [
            (&["jti"][..], json!(1)),
            (&["kubernetes.io", "node"][..], json!("n")),
            (&["kubernetes.io", "node", "name"][..], json!(1)),
            (&["kubernetes.io", "serviceaccount", "uid"][..], json!(true)),
            (&["iat"][..], json!("now")),
            (&["nbf"][..], json!([1])),
            (&["kubernetes.io"][..], json!([])),
        ] {
            let mut c = good_claims(0);
            obj_set(&mut c, path, v);
            assert!(
                matches!(check(&c, 0), Err(TokenError::Malformed(_))),
                "{path:?}"
            );
        }
    }
}
