//! The one error type of this crate.

use std::sync::Arc;

use crate::{MAX_JWKS_KEYS, MAX_TOKEN_BYTES};

/// Why a token (or a key set) was rejected.
///
/// Messages never contain the token itself; the few values taken from a
/// token (an algorithm name, a key id) are shortened and stripped of control
/// characters first.
///
/// Only [`TokenError::Expired`] maps to EKS's `ExpiredTokenException`
/// (see [`TokenError::is_expired`]); every other variant is an
/// `InvalidTokenException`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token is empty (or only whitespace).
    #[error("the token is empty")]
    Empty,
    /// The token is longer than [`MAX_TOKEN_BYTES`]; nothing was decoded.
    #[error("the token is larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    /// The token is not a compact JWS with a JSON object header and payload,
    /// or a claim has the wrong JSON type.
    #[error("the token is malformed: {0}")]
    Malformed(String),
    /// The header's `alg` is not one of RS256, RS384, RS512, ES256, ES384.
    #[error("the token's algorithm {0:?} is not accepted")]
    UnsupportedAlgorithm(String),
    /// The header has a `crit` parameter; no extension is understood.
    #[error("the token has a critical header parameter")]
    CriticalHeader,
    /// No key of the cluster's key set matches the token's `kid` (or, without
    /// a `kid`, not exactly one key fits the algorithm).
    #[error("no key of the cluster matches the token (kid {kid:?})")]
    UnknownKey {
        /// The token's key id, if it had one (shortened).
        kid: Option<String>,
    },
    /// The key named by `kid` does not fit the token's algorithm (key type,
    /// curve, or the key's own `alg`).
    #[error("the key {kid:?} does not fit the token's algorithm {alg}")]
    KeyAlgorithmMismatch {
        /// The token's key id, if it had one (shortened).
        kid: Option<String>,
        /// The token's algorithm.
        alg: String,
    },
    /// The signature does not verify with the selected key.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// `iss` is not the cluster's issuer.
    #[error("the token's issuer is not the cluster's issuer")]
    WrongIssuer,
    /// `aud` does not contain the cluster's audience.
    #[error("the token's audience does not include the cluster's audience")]
    WrongAudience,
    /// `exp` is in the past (beyond the allowed clock skew).
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future (beyond the allowed clock skew).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iat` is in the future (beyond the allowed clock skew).
    #[error("the token was issued in the future")]
    IssuedInFuture,
    /// A required claim is absent, null or empty; names it (dotted path).
    #[error("the token lacks the claim {0}")]
    MissingClaim(&'static str),
    /// `sub` is not `system:serviceaccount:NS:NAME` with the namespace and
    /// service account of the `kubernetes.io` claims.
    #[error("the token's subject does not match its kubernetes.io claims")]
    InconsistentSubject,
    /// The cluster's key set cannot be used (no usable key, not a JWKS, or
    /// fetching it failed).
    #[error("the cluster's key set is unusable: {0}")]
    KeySet(#[source] KeySetError),
    /// A development signing key could not be generated, read or used
    /// (only from [`crate::dev`]).
    #[error(
        "signing key: {what}{}",
        source.map(|e| format!(": {e}")).unwrap_or_default()
    )]
    SigningKey {
        /// What failed.
        what: String,
        /// The crypto library's refusal of the key, if that is the cause.
        #[source]
        source: Option<aws_lc_rs::error::KeyRejected>,
    },
}

/// Why a cluster's key set cannot be used: the cause of [`TokenError::KeySet`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeySetError {
    /// The document is not a JWKS.
    #[error("not a JWKS document (no \"keys\" array)")]
    NotJwks,
    /// The document holds more than [`MAX_JWKS_KEYS`] keys.
    #[error("{count} keys, more than {MAX_JWKS_KEYS}")]
    TooManyKeys {
        /// How many keys it holds.
        count: usize,
    },
    /// The document holds no key at all.
    #[error("no usable key (the key set is empty)")]
    Empty,
    /// Every key of the document was skipped; the first five reasons.
    #[error("no usable key ({})", list_skipped(skipped))]
    NoUsableKey {
        /// (index in the document, why the key was skipped), at most five.
        skipped: Vec<(usize, KeyRejection)>,
    },
    /// No key set has been loaded for the cluster yet (its first fetch failed).
    #[error("not loaded")]
    NotLoaded,
    /// Fetching the cluster's JWKS failed.
    #[error("fetching the JWKS failed: {}", shorten(&.0.to_string(), 200))]
    Fetch(#[source] JwksFetchError),
}

fn list_skipped(skipped: &[(usize, KeyRejection)]) -> String {
    let parts: Vec<String> = skipped
        .iter()
        .map(|(i, why)| format!("key {i}: {why}"))
        .collect();
    parts.join("; ")
}

/// Why one key of a JWKS document is skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyRejection {
    /// The entry is not a JSON object.
    #[error("not a JSON object")]
    NotObject,
    /// A member is present but not a string.
    #[error("\"{0}\" is not a string")]
    NotString(&'static str),
    /// A required member is absent.
    #[error("no \"{0}\"")]
    Missing(&'static str),
    /// A member is not base64url.
    #[error("\"{member}\" is not base64url")]
    NotBase64 {
        /// The member.
        member: &'static str,
        /// The decoder's complaint.
        #[source]
        source: base64::DecodeError,
    },
    /// `use` is not `sig` (shortened).
    #[error("use {0:?} is not \"sig\"")]
    Use(String),
    /// `alg` is not one this crate verifies (shortened).
    #[error("alg {0:?} is not accepted")]
    Alg(String),
    /// `kty` is not `RSA` or `EC` (shortened).
    #[error("kty {0:?} is not accepted")]
    Kty(String),
    /// `crv` is not `P-256` or `P-384` (shortened).
    #[error("curve {0:?} is not accepted")]
    Curve(String),
    /// The RSA modulus is outside 2048 to 8192 bits.
    #[error("RSA modulus of {0} bits (2048 to 8192 accepted)")]
    RsaModulusBits(usize),
    /// The RSA exponent is empty or longer than 8 bytes.
    #[error("RSA exponent out of range")]
    RsaExponent,
    /// The crypto library refused the RSA key.
    #[error("RSA key rejected")]
    RsaKey,
    /// An EC coordinate has the wrong length for the curve.
    #[error("EC coordinates must be {0} bytes")]
    EcCoordinateLength(usize),
    /// The EC point is not on the curve.
    #[error("EC point is not on the curve")]
    EcPoint,
    /// The key's own `alg` does not fit its type.
    #[error("alg {0} does not fit the key type")]
    AlgDoesNotFit(&'static str),
}

/// Why a [`JwksFetcher`](crate::JwksFetcher) could not fetch a JWKS document.
///
/// The fetcher's own error is kept, shared, as the source; two values are
/// equal when they are the same failure.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum JwksFetchError {
    /// The verifier has no fetcher ([`NoJwksFetcher`](crate::NoJwksFetcher)).
    #[error("this verifier fetches no JWKS")]
    NoFetcher,
    /// The fetcher failed.
    #[error(transparent)]
    Failed(Arc<dyn std::error::Error + Send + Sync>),
}

impl JwksFetchError {
    /// Wraps a fetcher's error.
    pub fn failed(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        JwksFetchError::Failed(Arc::new(error))
    }
}

impl PartialEq for JwksFetchError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (JwksFetchError::NoFetcher, JwksFetchError::NoFetcher) => true,
            (JwksFetchError::Failed(a), JwksFetchError::Failed(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for JwksFetchError {}

impl TokenError {
    /// True only for an expired token: EKS answers `ExpiredTokenException`
    /// for it and `InvalidTokenException` for everything else.
    pub fn is_expired(&self) -> bool {
        matches!(self, TokenError::Expired)
    }

    /// A short stable name for logs, audit events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Empty => "empty",
            TokenError::TooLarge => "too_large",
            TokenError::Malformed(_) => "malformed",
            TokenError::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            TokenError::CriticalHeader => "critical_header",
            TokenError::UnknownKey { .. } => "unknown_key",
            TokenError::KeyAlgorithmMismatch { .. } => "key_algorithm_mismatch",
            TokenError::BadSignature => "bad_signature",
            TokenError::WrongIssuer => "wrong_issuer",
            TokenError::WrongAudience => "wrong_audience",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::IssuedInFuture => "issued_in_future",
            TokenError::MissingClaim(_) => "missing_claim",
            TokenError::InconsistentSubject => "inconsistent_subject",
            TokenError::KeySet(_) => "key_set",
            TokenError::SigningKey { .. } => "signing_key",
        }
    }
}

/// Shortens a value taken from a token or a remote answer for an error
/// message: at most `max` characters, control characters replaced.
pub(crate) fn shorten(value: &str, max: usize) -> String {
    let mut out: String = value
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if value.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_expired_is_expired() {
        assert!(TokenError::Expired.is_expired());
        for e in [
            TokenError::Empty,
            TokenError::NotYetValid,
            TokenError::BadSignature,
            TokenError::MissingClaim("exp"),
            TokenError::KeySet(KeySetError::NotJwks),
        ] {
            assert!(!e.is_expired(), "{e}");
        }
    }

    #[test]
    fn shorten_limits_and_cleans() {
        assert_eq!(shorten("abc", 5), "abc");
        assert_eq!(shorten("abcdef", 3), "abc…");
        assert_eq!(shorten("a\nb", 5), "a?b");
    }

    #[test]
    fn reasons_are_distinct_snake_case() {
        let all = [
            TokenError::Empty,
            TokenError::TooLarge,
            TokenError::Malformed(String::new()),
            TokenError::UnsupportedAlgorithm(String::new()),
            TokenError::CriticalHeader,
            TokenError::UnknownKey { kid: None },
            TokenError::KeyAlgorithmMismatch {
                kid: None,
                alg: String::new(),
            },
            TokenError::BadSignature,
            TokenError::WrongIssuer,
            TokenError::WrongAudience,
            TokenError::Expired,
            TokenError::NotYetValid,
            TokenError::IssuedInFuture,
            TokenError::MissingClaim("x"),
            TokenError::InconsistentSubject,
            TokenError::KeySet(KeySetError::Empty),
            TokenError::SigningKey {
                what: String::new(),
                source: None,
            },
        ];
        let mut seen = std::collections::HashSet::new();
        for e in &all {
            let r = e.reason();
            assert!(r.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            assert!(seen.insert(r), "duplicate {r}");
        }
    }
}
