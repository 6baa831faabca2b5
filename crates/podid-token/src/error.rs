//! The one error type of this crate.

use crate::MAX_TOKEN_BYTES;

/// Why a token (or a key set) was rejected.
///
/// Messages never contain the token itself; the few values taken from a
/// token (an algorithm name, a key id) are shortened and stripped of control
/// characters first.
///
/// Only [`TokenError::Expired`] maps to EKS's `ExpiredTokenException`
/// (see [`TokenError::is_expired`]); every other variant is an
/// `InvalidTokenException`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    KeySet(String),
    /// A development signing key could not be generated, read or used
    /// (only from [`crate::dev`]).
    #[error("signing key: {0}")]
    SigningKey(String),
}

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
            TokenError::SigningKey(_) => "signing_key",
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
            TokenError::KeySet("x".into()),
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
            TokenError::KeySet(String::new()),
            TokenError::SigningKey(String::new()),
        ];
        let mut seen = std::collections::HashSet::new();
        for e in &all {
            let r = e.reason();
            assert!(r.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            assert!(seen.insert(r), "duplicate {r}");
        }
    }
}
