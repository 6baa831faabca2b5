//! Issuing credentials for pods: one `AssumeRole` seam ([`Issuer`]), its AWS STS and
//! rate-limited implementations, and [`issue_for_pod`] (session tags, role chaining).
#![forbid(unsafe_code)]

mod aws;
mod limiter;
mod pod;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;

pub use aws::AwsStsIssuer;
pub use limiter::{LimiterObserver, RateLimitPermit, RateLimitedIssuer, StsWindowLimiter};
pub use pod::{issue_for_pod, session_name, session_tags, PodCredentialRequest, SESSION_TAG_KEYS};
pub use podid_api::Secret;

/// One STS session tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionTag {
    /// Tag key.
    pub key: String,
    /// Tag value.
    pub value: String,
}

/// One `AssumeRole` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssumeRoleSpec {
    /// The role to assume.
    pub role_arn: String,
    /// `RoleSessionName`, at most 64 characters of `[\w+=,.@-]`.
    pub session_name: String,
    /// `DurationSeconds`.
    pub duration: Duration,
    /// Session tags.
    pub tags: Vec<SessionTag>,
    /// Keys of `tags` that pass on to chained sessions.
    pub transitive_tag_keys: Vec<String>,
    /// Inline session policy.
    pub policy: Option<String>,
    /// `ExternalId` (role chaining).
    pub external_id: Option<String>,
}

/// Credentials STS issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCredentials {
    /// Access key id (not secret).
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: Secret,
    /// Session token.
    pub session_token: Secret,
    /// When the credentials expire.
    pub expiration: SystemTime,
    /// `arn:…:sts::ACCOUNT:assumed-role/ROLE/SESSION`.
    pub assumed_role_arn: String,
    /// `AROA…:SESSION`.
    pub assumed_role_id: String,
}

impl IssuedCredentials {
    /// Seconds since the epoch at which the credentials expire.
    pub fn expiration_epoch_secs(&self) -> i64 {
        self.expiration
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }

    /// The 12-digit account of the assumed role, from its ARN.
    pub fn account_id(&self) -> Option<&str> {
        self.assumed_role_arn
            .split(':')
            .nth(4)
            .filter(|a| !a.is_empty())
    }
}

/// Why credentials could not be issued. Messages are for operators and
/// callers alike: they never carry credentials or SDK dumps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// STS refused: the role does not trust the broker, a wrong external id, …
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// STS throttled the call, or the local rate limit's deadline passed.
    #[error("throttled: {0}")]
    Throttled(String),
    /// STS could not be reached or did not answer in time.
    #[error("STS unavailable: {0}")]
    Unavailable(String),
    /// STS rejected the request itself (policy too large, bad duration, …).
    #[error("STS rejected the request: {0}")]
    InvalidRequest(String),
    /// The broker's own credentials or configuration are wrong.
    #[error("STS call failed: {0}")]
    Internal(String),
}

/// Issues credentials with one `AssumeRole` call.
#[async_trait]
pub trait Issuer: Send + Sync + 'static {
    /// Assumes `spec.role_arn`, signing with `using` when given (role
    /// chaining) and with the broker's own credentials otherwise.
    async fn assume_role(
        &self,
        spec: &AssumeRoleSpec,
        using: Option<&IssuedCredentials>,
    ) -> Result<IssuedCredentials, IssueError>;
}

#[async_trait]
impl<T: Issuer + ?Sized> Issuer for Arc<T> {
    async fn assume_role(
        &self,
        spec: &AssumeRoleSpec,
        using: Option<&IssuedCredentials>,
    ) -> Result<IssuedCredentials, IssueError> {
        (**self).assume_role(spec, using).await
    }
}

/// One recorded call of a [`RecordingIssuer`].
#[derive(Debug, Clone)]
pub struct RecordedCall {
    /// What was asked.
    pub spec: AssumeRoleSpec,
    /// The access key id the call was signed with when chained.
    pub chained_from: Option<String>,
    /// When the call was made.
    pub at: Instant,
    /// What came back (access key id or error).
    pub outcome: Result<String, IssueError>,
}

/// Wraps an issuer and records every call it passes on: tests assert on what
/// the real client was asked to send.
#[derive(Debug)]
pub struct RecordingIssuer<I> {
    inner: I,
    calls: Mutex<Vec<RecordedCall>>,
}

impl<I> RecordingIssuer<I> {
    /// Records calls to `inner`.
    pub fn new(inner: I) -> Self {
        RecordingIssuer {
            inner,
            calls: Mutex::new(Vec::new()),
        }
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl<I: Issuer> Issuer for RecordingIssuer<I> {
    async fn assume_role(
        &self,
        spec: &AssumeRoleSpec,
        using: Option<&IssuedCredentials>,
    ) -> Result<IssuedCredentials, IssueError> {
        let at = Instant::now();
        let result = self.inner.assume_role(spec, using).await;
        let call = RecordedCall {
            spec: spec.clone(),
            chained_from: using.map(|c| c.access_key_id.clone()),
            at,
            outcome: result
                .as_ref()
                .map(|c| c.access_key_id.clone())
                .map_err(Clone::clone),
        };
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(call);
        }
        result
    }
}
