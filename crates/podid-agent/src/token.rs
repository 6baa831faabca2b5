//! A pod's token before any broker call: the sanity checks (three base64url
//! segments, a header naming `alg`, an unexpired `exp`; no signature check),
//! its SHA-256 key and the kept [`SecretToken`].

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Tokens longer than this are refused (projected tokens are about 1 KiB).
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// base64url, padding optional.
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The SHA-256 of a token: the cache's key.
pub type TokenDigest = [u8; 32];

/// The SHA-256 of `token`.
pub fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// A pod as the cache and the pod check know it: the first 16 bytes of the
/// SHA-256 of its uid — fixed size, no allocation per entry. A collision
/// would only make a pod fetch again (or pass for another running pod).
pub type PodKey = [u8; 16];

/// The [`PodKey`] of the pod with uid `uid`.
pub fn pod_key(uid: &str) -> PodKey {
    let digest = digest(uid);
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

/// A pod's token, kept for refreshes: a boxed `str` (as small as a
/// `Box<str>`), zeroed when dropped, never printed.
#[derive(Clone)]
pub struct SecretToken(SecretString);

impl SecretToken {
    /// Wraps a token.
    pub fn new(token: &str) -> Self {
        SecretToken(SecretString::from(token))
    }

    /// The token, to send upstream.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("**redacted**")
    }
}

/// What the agent reads from a token's (unverified) claims.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenInfo {
    /// `exp`, when the token has one.
    pub expires: Option<SystemTime>,
    /// `kubernetes.io.pod.uid`, when present.
    pub pod_uid: Option<String>,
}

/// Why a token was refused before any upstream call. Every one answers 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRejection {
    /// No `Authorization` header, or an empty one.
    Missing,
    /// Longer than [`MAX_TOKEN_LEN`].
    TooLong,
    /// Not three dot-separated segments.
    NotThreeSegments,
    /// A segment is not base64url.
    BadBase64(&'static str),
    /// The header or payload is not a JSON object (of the expected shape).
    NotJson(&'static str),
    /// The header names no `alg`.
    NoAlgorithm,
    /// `exp` has passed.
    Expired,
}

impl TokenRejection {
    /// The error code answered to the caller.
    pub fn code(&self) -> &'static str {
        match self {
            TokenRejection::Expired => "ExpiredTokenException",
            _ => "InvalidTokenException",
        }
    }

    /// A human-readable reason (never quoting the token).
    pub fn message(&self) -> String {
        match self {
            TokenRejection::Missing => {
                "the Authorization header must carry the pod's service-account token".to_owned()
            }
            TokenRejection::TooLong => format!("the token is longer than {MAX_TOKEN_LEN} bytes"),
            TokenRejection::NotThreeSegments => {
                "the token is not a JWT: it must have three '.'-separated parts".to_owned()
            }
            TokenRejection::BadBase64(part) => {
                format!("the token is not a JWT: its {part} is not base64url")
            }
            TokenRejection::NotJson(part) => {
                format!("the token is not a JWT: its {part} is not a JSON object")
            }
            TokenRejection::NoAlgorithm => {
                "the token is not a JWT: its header names no 'alg'".to_owned()
            }
            TokenRejection::Expired => "the token has expired".to_owned(),
        }
    }
}

#[derive(Deserialize)]
struct Header {
    alg: Option<String>,
}

#[derive(Deserialize)]
struct Payload {
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default, rename = "kubernetes.io")]
    kubernetes: Option<KubernetesClaims>,
}

#[derive(Deserialize)]
struct KubernetesClaims {
    #[serde(default)]
    pod: Option<PodClaim>,
}

#[derive(Deserialize)]
struct PodClaim {
    #[serde(default)]
    uid: Option<String>,
}

/// Checks `token` at `now` and reads its expiry and pod uid.
pub fn inspect(token: &str, now: SystemTime) -> Result<TokenInfo, TokenRejection> {
    if token.is_empty() {
        return Err(TokenRejection::Missing);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenRejection::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenRejection::NotThreeSegments);
    };
    if header.is_empty() || payload.is_empty() {
        return Err(TokenRejection::NotThreeSegments);
    }
    let header = B64URL
        .decode(header)
        .map_err(|_| TokenRejection::BadBase64("header"))?;
    let payload = B64URL
        .decode(payload)
        .map_err(|_| TokenRejection::BadBase64("payload"))?;
    if !is_base64url(signature) {
        return Err(TokenRejection::BadBase64("signature"));
    }
    let header: Header =
        serde_json::from_slice(&header).map_err(|_| TokenRejection::NotJson("header"))?;
    if header.alg.as_deref().is_none_or(str::is_empty) {
        return Err(TokenRejection::NoAlgorithm);
    }
    let payload: Payload =
        serde_json::from_slice(&payload).map_err(|_| TokenRejection::NotJson("payload"))?;
    let expires = match payload.exp {
        None => None,
        Some(exp) if exp.is_finite() && exp >= 0.0 => {
            // Whole seconds: fractional `exp` values are legal but rare.
            Some(UNIX_EPOCH + Duration::from_secs(exp.min(u64::MAX as f64) as u64))
        }
        Some(_) => return Err(TokenRejection::NotJson("payload")),
    };
    if expires.is_some_and(|exp| now >= exp) {
        return Err(TokenRejection::Expired);
    }
    let pod_uid = payload
        .kubernetes
        .and_then(|k| k.pod)
        .and_then(|p| p.uid)
        .filter(|u| !u.is_empty());
    Ok(TokenInfo { expires, pod_uid })
}

fn is_base64url(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    s.len() - body.len() <= 2
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
pub(crate) mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    /// A syntactically valid (unsigned) token for tests.
    pub(crate) fn make_token(exp: Option<u64>, pod_uid: Option<&str>) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"k"}"#);
        let mut claims = serde_json::json!({
            "iss": "https://issuer.example", "sub": "system:serviceaccount:ns:sa", "aud": ["pods.eks.amazonaws.com"],
        });
        if let Some(exp) = exp {
            claims["exp"] = exp.into();
        }
        if let Some(uid) = pod_uid {
            claims["kubernetes.io"] =
                serde_json::json!({"namespace": "ns", "pod": {"name": "p", "uid": uid}});
        }
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        format!("{header}.{payload}.c2lnbmF0dXJl")
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn a_wellformed_token_is_read() {
        let info = inspect(&make_token(Some(2_000), Some("uid-1")), at(1_000)).unwrap();
        assert_eq!(info.expires, Some(at(2_000)));
        assert_eq!(info.pod_uid.as_deref(), Some("uid-1"));
        let info = inspect(&make_token(None, None), at(1_000)).unwrap();
        assert_eq!(info, TokenInfo::default());
    }

    #[test]
    fn missing_and_garbage_tokens_are_refused() {
        use TokenRejection::{BadBase64, Missing, NoAlgorithm, NotJson, NotThreeSegments, TooLong};
        let now = at(1_000);
        let good = make_token(Some(2_000), None);
        let parts: Vec<&str> = good.split('.').collect();
        let (h, p, s) = (parts[0], parts[1], parts[2]);
        let not_json = URL_SAFE_NO_PAD.encode(b"not json");
        let array = URL_SAFE_NO_PAD.encode(b"[1,2]");
        let no_alg = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT"}"#);
        let bad_exp = URL_SAFE_NO_PAD.encode(br#"{"exp":"tomorrow"}"#);
        let negative_exp = URL_SAFE_NO_PAD.encode(br#"{"exp":-1}"#);
        let cases = [
            (String::new(), Missing),
            ("garbage".to_owned(), NotThreeSegments),
            ("a.b".to_owned(), NotThreeSegments),
            ("a.b.c.d".to_owned(), NotThreeSegments),
            ("..sig".to_owned(), NotThreeSegments),
            (format!(".{p}.{s}"), NotThreeSegments),
            (format!("{h}..{s}"), NotThreeSegments),
            ("a".repeat(MAX_TOKEN_LEN + 1), TooLong),
            ("Bearer x.y.z".to_owned(), BadBase64("header")),
            (format!("{h}.%%%.{s}"), BadBase64("payload")),
            (format!("{h}.{p}.a+b"), BadBase64("signature")),
            (format!("{not_json}.{p}.{s}"), NotJson("header")),
            (format!("{h}.{not_json}.{s}"), NotJson("payload")),
            (format!("{h}.{array}.{s}"), NotJson("payload")),
            (format!("{no_alg}.{p}.{s}"), NoAlgorithm),
            (format!("{h}.{bad_exp}.{s}"), NotJson("payload")),
            // A NumericDate before 1970 is not an expiry (RFC 7519 section 2).
            (format!("{h}.{negative_exp}.{s}"), NotJson("payload")),
        ];
        for (token, rejection) in cases {
            assert_eq!(inspect(&token, now), Err(rejection), "{token:?}");
        }
    }

    /// docs/agent.md: tokens up to 16 KiB are read, longer ones refused unread.
    #[test]
    fn tokens_up_to_16_kib_are_read() {
        let token = make_token(Some(2_000), Some("uid-1"));
        let padded = |len: usize| format!("{token}{}", "A".repeat(len - token.len()));
        assert!(inspect(&padded(16_384), at(1_000)).is_ok());
        assert_eq!(
            inspect(&padded(16_385), at(1_000)),
            Err(TokenRejection::TooLong)
        );
    }

    #[test]
    fn expired_tokens_are_refused_with_their_own_code() {
        let token = make_token(Some(2_000), Some("u"));
        assert!(inspect(&token, at(1_999)).is_ok());
        let rejection = inspect(&token, at(2_000)).unwrap_err();
        assert_eq!(rejection, TokenRejection::Expired);
        assert_eq!(rejection.code(), "ExpiredTokenException");
        assert_eq!(TokenRejection::Missing.code(), "InvalidTokenException");
    }

    #[test]
    fn padded_segments_are_accepted_and_secrets_do_not_print() {
        let header = base64::engine::general_purpose::URL_SAFE.encode(br#"{"alg":"ES256"}"#);
        let payload = base64::engine::general_purpose::URL_SAFE.encode(br#"{"exp":3000}"#);
        assert!(inspect(&format!("{header}.{payload}.c2ln"), at(1)).is_ok());
        // base64url's alphabet has '-' and '_' (RFC 4648 section 5); at most two '='.
        assert!(inspect(&format!("{header}.{payload}.c-2_ln"), at(1)).is_ok());
        assert!(inspect(&format!("{header}.{payload}.c2l=="), at(1)).is_ok());
        assert_eq!(
            inspect(&format!("{header}.{payload}.c2ln==="), at(1)),
            Err(TokenRejection::BadBase64("signature"))
        );
        assert_eq!(
            format!("{:?}", SecretToken::new("eyJ.secret.x")),
            "**redacted**"
        );
        assert_ne!(digest("a"), digest("b"));
    }
}
