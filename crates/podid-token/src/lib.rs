//! Verification of Kubernetes projected service-account tokens for the podid
//! broker.
//!
//! A pod presents its projected token (a JWT signed by its cluster's API
//! server); the broker checks it against the registered cluster
//! ([`ClusterTrust`]) and learns who the pod is ([`PodIdentity`]):
//!
//! - [`verify_token`] is the pure check of one token against one parsed
//!   [`KeySet`] at a given time: size and shape, the header's `alg` (RS256,
//!   RS384, RS512, ES256, ES384; anything else, `none` and HMAC included, is
//!   refused) and `crit`, the key chosen by `kid`, the signature, then the
//!   claims (`iss`, `aud`, `exp`/`nbf`/`iat` with [`CLOCK_SKEW_SECS`] of
//!   leeway, `sub` and the `kubernetes.io` claims).
//! - [`TokenVerifier`] adds the caches the server needs: parsed key sets per
//!   cluster, refreshed through a caller-supplied [`JwksFetcher`] when a
//!   token names an unknown key, and verified tokens until they expire.
//! - [`dev`] makes signing keys and tokens shaped like Kubernetes', for tests
//!   and `podid dev`.
//!
//! The crate has no HTTP server and does no network IO.
//!
//! ```
//! use podid_token::dev::{DevAlgorithm, ProjectedToken, SigningKey};
//! use podid_token::{verify_token, ClusterTrust, KeySet};
//!
//! let key = SigningKey::generate(DevAlgorithm::Es256, "key-1")?;
//! let trust = ClusterTrust {
//!     name: "dev".into(),
//!     issuer: "https://kubernetes.default.svc".into(),
//!     audience: "pods.eks.amazonaws.com".into(),
//!     jwks: key.jwks(),
//!     jwks_uri: None,
//!     version: 1,
//! };
//! let now = 1_700_000_000;
//! let token = ProjectedToken::new(&*trust.issuer, "default", "boto3", now).sign(&key);
//! let keys = KeySet::from_jwks(&trust.jwks)?;
//! let pod = verify_token(&token, &trust, &keys, now)?;
//! assert_eq!((pod.namespace.as_str(), pod.service_account.as_str()), ("default", "boto3"));
//! # Ok::<(), podid_token::TokenError>(())
//! ```
//!
//! Performance is not measured here (no benchmarks): a cache miss costs one
//! signature verification plus JSON parsing of a token of at most 16 KiB; a
//! cache hit costs one SHA-256 of the token and a map lookup.
#![forbid(unsafe_code)]

mod cache;
pub mod dev;
mod error;
mod jwks;
mod verifier;
mod verify;

use serde::{Deserialize, Serialize};

pub use error::{JwksFetchError, KeyRejection, KeySetError, TokenError};
pub use jwks::{KeySet, MAX_JWKS_KEYS};
pub use verifier::{
    system_clock, JwksFetcher, NoJwksFetcher, SecondsClock, TokenVerifier, VerifierStats,
};
pub use verify::{verify_token, SUBJECT_PREFIX};

/// The largest token accepted, in bytes (16 KiB); checked before decoding.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
pub const CLOCK_SKEW_SECS: i64 = 60;

/// The shortest time between two JWKS fetches for one cluster, in seconds.
pub const JWKS_REFRESH_INTERVAL_SECS: i64 = 60;

/// The token-cache bound [`TokenVerifier::with_fetcher`] uses.
pub const DEFAULT_MAX_CACHED_TOKENS: usize = 10_000;

/// What the broker knows about a registered cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterTrust {
    /// The cluster's name in the registry.
    pub name: String,
    /// The exact `iss` of the cluster's tokens.
    pub issuer: String,
    /// The audience a token must include.
    pub audience: String,
    /// The stored key set (a JWKS document); may be unusable (e.g. `null`)
    /// when `jwks_uri` is set.
    pub jwks: serde_json::Value,
    /// Where a fresh JWKS is fetched when a token names an unknown key; none
    /// means the stored set is final.
    pub jwks_uri: Option<String>,
    /// The cluster's version (its `modified_at` in milliseconds); a change
    /// invalidates the cached keys and tokens of the cluster.
    pub version: i64,
}

/// The facts of a verified token.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodIdentity {
    /// `kubernetes.io.namespace`.
    pub namespace: String,
    /// `kubernetes.io.serviceaccount.name`.
    pub service_account: String,
    /// `kubernetes.io.serviceaccount.uid`, if present.
    pub service_account_uid: Option<String>,
    /// `kubernetes.io.pod.name`.
    pub pod_name: String,
    /// `kubernetes.io.pod.uid`.
    pub pod_uid: String,
    /// `kubernetes.io.node.name`, if present.
    pub node_name: Option<String>,
    /// `iss`.
    pub issuer: String,
    /// `exp`, seconds since the Unix epoch.
    pub expires_at: i64,
    /// `iat`, seconds since the Unix epoch, if present.
    pub issued_at: Option<i64>,
    /// `jti`, if present.
    pub jti: Option<String>,
}
