//! Asking the broker: [`CredentialSource`], the seam the cache calls, and
//! [`EksAuthUpstream`], EKS Auth `AssumeRoleForPodIdentity` through aws-sdk-eksauth.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_eksauth::config::http::HttpResponse;
use aws_sdk_eksauth::config::retry::RetryConfig;
use aws_sdk_eksauth::config::timeout::TimeoutConfig;
use aws_sdk_eksauth::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_eksauth::operation::assume_role_for_pod_identity::AssumeRoleForPodIdentityError;
use http::header::AUTHORIZATION;

use crate::identity::IdentityToken;
pub use podid_api::Secret;

/// Credentials the broker issued for a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedCredentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: Secret,
    /// Session token.
    pub session_token: Secret,
    /// When they expire.
    pub expiration: SystemTime,
    /// `arn:…:sts::ACCOUNT:assumed-role/ROLE/SESSION` (may be empty).
    pub assumed_role_arn: String,
    /// The association that granted them (`podIdentityAssociation.associationId`),
    /// by which the change feed revokes them.
    pub association_id: Option<String>,
}

/// Error codes after which a cached entry is dropped rather than served on:
/// the association is gone, the role refuses, or the token is no longer good.
pub const DROPPING_CODES: [&str; 4] = [
    "ResourceNotFoundException",
    "AccessDeniedException",
    "InvalidTokenException",
    "ExpiredTokenException",
];

/// The broker's refusal, or the agent's failure to reach it: the HTTP status
/// and `{"code","message"}` the pod gets. Never carries SDK dumps, tokens or
/// credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} ({status}): {message}")]
pub struct UpstreamError {
    /// HTTP status answered to the pod (the broker's own status when it answered).
    pub status: u16,
    /// Error code, e.g. `ResourceNotFoundException`.
    pub code: String,
    /// Human-readable message.
    pub message: String,
}

impl UpstreamError {
    /// An error with this status, code and message.
    pub fn new(status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        UpstreamError {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    /// 503: the broker could not be reached or did not answer in time.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailableException", message)
    }

    /// 500: something else went wrong.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalServerException", message)
    }

    /// Whether a cached entry must be dropped after this answer
    /// (ResourceNotFound, AccessDenied, InvalidToken, ExpiredToken).
    pub fn drops_entry(&self) -> bool {
        DROPPING_CODES.contains(&self.code.as_str())
    }

    /// Whether this says the broker is down (counts against readiness):
    /// unreachable, timed out, or a 5xx.
    pub fn is_outage(&self) -> bool {
        self.status >= 500
    }
}

/// Where pods' credentials come from.
#[async_trait]
pub trait CredentialSource: Send + Sync + 'static {
    /// Exchanges a pod's token for credentials.
    async fn fetch(&self, token: &str) -> Result<FetchedCredentials, UpstreamError>;
}

/// Timeouts and retries of upstream calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSettings {
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// One attempt's timeout.
    pub attempt_timeout: Duration,
    /// The whole call's timeout, retries included.
    pub operation_timeout: Duration,
    /// Attempts per call (1 = no retry).
    pub max_attempts: u32,
    /// Backoff before a retry.
    pub initial_backoff: Duration,
}

impl Default for UpstreamSettings {
    /// 500 ms connect, 1 s per attempt, 1.5 s in all, 2 attempts, 50 ms backoff.
    fn default() -> Self {
        UpstreamSettings {
            connect_timeout: Duration::from_millis(500),
            attempt_timeout: Duration::from_millis(1000),
            operation_timeout: Duration::from_millis(1500),
            max_attempts: 2,
            initial_backoff: Duration::from_millis(50),
        }
    }
}

/// EKS Auth `AssumeRoleForPodIdentity` through aws-sdk-eksauth.
#[derive(Debug, Clone)]
pub struct EksAuthUpstream {
    client: aws_sdk_eksauth::Client,
    cluster_name: String,
    deadline: Duration,
    /// Sent as `Authorization: Bearer` instead of signing, when set.
    identity: Option<Arc<IdentityToken>>,
}

impl EksAuthUpstream {
    /// A client from a loaded `SdkConfig` (region, the node's credentials and
    /// its HTTP client: `podid_ca::CaBundle::sdk_http_client` for a private CA),
    /// at `endpoint` when given (podid's server) or AWS's EKS Auth otherwise.
    pub fn new(
        sdk: &aws_types::SdkConfig,
        endpoint: Option<&str>,
        cluster_name: impl Into<String>,
        settings: &UpstreamSettings,
    ) -> Self {
        let mut builder = aws_sdk_eksauth::config::Builder::from(sdk)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(settings.connect_timeout)
                    .operation_attempt_timeout(settings.attempt_timeout)
                    .operation_timeout(settings.operation_timeout)
                    .build(),
            )
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(settings.max_attempts.max(1))
                    .with_initial_backoff(settings.initial_backoff)
                    .with_max_backoff(settings.initial_backoff * 4),
            );
        if let Some(endpoint) = endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        EksAuthUpstream {
            client: aws_sdk_eksauth::Client::from_conf(builder.build()),
            cluster_name: cluster_name.into(),
            // A backstop above the SDK's own operation timeout.
            deadline: settings.operation_timeout + Duration::from_millis(250),
            identity: None,
        }
    }

    /// As [`EksAuthUpstream::new`], but calls carry `identity` as
    /// `Authorization: Bearer <token>` and are not signed (no AWS
    /// credentials are used, whatever `sdk` holds). podid's server only.
    pub fn with_identity_token(
        sdk: &aws_types::SdkConfig,
        endpoint: Option<&str>,
        cluster_name: impl Into<String>,
        settings: &UpstreamSettings,
        identity: Arc<IdentityToken>,
    ) -> Self {
        let mut unsigned = sdk.to_builder();
        unsigned.set_credentials_provider(None);
        unsigned.set_token_provider(None);
        let mut upstream = Self::new(&unsigned.build(), endpoint, cluster_name, settings);
        let config = upstream.client.config().to_builder().allow_no_auth();
        upstream.client = aws_sdk_eksauth::Client::from_conf(config.build());
        upstream.identity = Some(identity);
        upstream
    }
}

fn map_error(err: SdkError<AssumeRoleForPodIdentityError, HttpResponse>) -> UpstreamError {
    match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or("UnknownError");
            let mut message: String = e.message().unwrap_or("").chars().take(512).collect();
            if message.is_empty() {
                message = format!("the credential broker answered {code}");
            }
            let status = match code {
                // Status codes of EKS Auth's model; used when the raw status is unreadable.
                "ResourceNotFoundException" => 404,
                "ThrottlingException" => 429,
                "ServiceUnavailableException" => 503,
                "InternalServerException" => 500,
                _ => 400,
            };
            let raw = service.raw().status().as_u16();
            UpstreamError::new(if raw >= 400 { raw } else { status }, code, message)
        }
        SdkError::TimeoutError(_) => {
            UpstreamError::unavailable("the credential broker did not answer in time")
        }
        SdkError::DispatchFailure(d) => {
            // rustls' refusal of the broker's certificate: an operator's mistake, said loudly.
            let detail = DisplayErrorContext(&err).to_string();
            if detail.contains("invalid peer certificate") {
                tracing::warn!(error = %detail, "the credential broker's TLS certificate is not trusted (a private CA needs --ca-file)");
                return UpstreamError::unavailable(
                    "cannot connect to the credential broker: its TLS certificate is not trusted",
                );
            }
            let what = if d.is_timeout() {
                "timed out connecting to the credential broker"
            } else if d.is_io() {
                "cannot connect to the credential broker"
            } else {
                "the request to the credential broker failed"
            };
            tracing::debug!(error = %DisplayErrorContext(&err), "upstream dispatch failure");
            UpstreamError::unavailable(what)
        }
        SdkError::ResponseError(r) => {
            tracing::warn!(error = %DisplayErrorContext(&err), "unreadable answer from the credential broker");
            if r.raw().status().as_u16() >= 500 {
                UpstreamError::unavailable("the credential broker answered an error page")
            } else {
                UpstreamError::internal("the credential broker answered something unreadable")
            }
        }
        _ => {
            tracing::warn!(error = %DisplayErrorContext(&err), "cannot call the credential broker");
            UpstreamError::internal("the request to the credential broker could not be made")
        }
    }
}

#[async_trait]
impl CredentialSource for EksAuthUpstream {
    async fn fetch(&self, token: &str) -> Result<FetchedCredentials, UpstreamError> {
        let request = self
            .client
            .assume_role_for_pod_identity()
            .cluster_name(&self.cluster_name)
            .token(token);
        let bearer = self
            .identity
            .as_ref()
            .map(|identity| identity.authorization())
            .transpose()
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot read the agent's identity token");
                UpstreamError::unavailable("the agent cannot read its identity token")
            })?;
        let call = async move {
            match bearer {
                None => request.send().await,
                Some(bearer) => {
                    request
                        .customize()
                        .mutate_request(move |http| {
                            http.headers_mut().insert(AUTHORIZATION, bearer.clone());
                        })
                        .send()
                        .await
                }
            }
        };
        let output = match tokio::time::timeout(self.deadline, call).await {
            Ok(result) => result.map_err(map_error)?,
            Err(_) => {
                return Err(UpstreamError::unavailable(
                    "the credential broker did not answer in time",
                ))
            }
        };
        let credentials = output.credentials().ok_or_else(|| {
            UpstreamError::internal("the credential broker answered without credentials")
        })?;
        let expiration = SystemTime::try_from(*credentials.expiration()).map_err(|_| {
            UpstreamError::internal("the credential broker answered an unreadable expiration")
        })?;
        Ok(FetchedCredentials {
            access_key_id: credentials.access_key_id().to_owned(),
            secret_access_key: Secret::new(credentials.secret_access_key()),
            session_token: Secret::new(credentials.session_token()),
            expiration,
            assumed_role_arn: output
                .assumed_role_user()
                .map(|u| u.arn().to_owned())
                .unwrap_or_default(),
            association_id: output
                .pod_identity_association()
                .map(|a| a.association_id().to_owned())
                .filter(|id| !id.is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        for code in DROPPING_CODES {
            assert!(UpstreamError::new(400, code, "m").drops_entry(), "{code}");
        }
        assert!(!UpstreamError::new(400, "InvalidParameterException", "m").drops_entry());
        assert!(!UpstreamError::new(429, "ThrottlingException", "m").drops_entry());
        assert!(UpstreamError::unavailable("m").is_outage());
        assert!(UpstreamError::internal("m").is_outage());
        assert!(!UpstreamError::new(404, "ResourceNotFoundException", "m").is_outage());
        assert!(!format!("{:?}", Secret::new("SECRET")).contains("SECRET"));
    }
}
