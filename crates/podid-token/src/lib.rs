//! Verification of Kubernetes projected service-account tokens for the podid broker: the pure
//! check ([`verify_token`]), the caching [`TokenVerifier`], and [`dev`] keys and tokens for tests.
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
    /// Where a fresh JWKS is fetched when a token names an unknown key, and
    /// by [`TokenVerifier::refresh_keys`]; none means the stored set is final.
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
