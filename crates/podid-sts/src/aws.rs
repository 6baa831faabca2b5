//! The production issuer: aws-sdk-sts.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_sts::config::interceptors::InterceptorContext;
use aws_sdk_sts::config::retry::{ClassifyRetry, RetryAction};
use aws_sdk_sts::config::timeout::TimeoutConfig;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sts::types::Tag;

use crate::{AssumeRoleSpec, IssueError, IssuedCredentials, Issuer, Secret};

#[cfg(test)]
mod tests;

/// Issues credentials with aws-sdk-sts, against AWS or another STS endpoint
/// (tested with moto). The broker's own credentials come from
/// the `SdkConfig` it is built with (the default credential chain).
#[derive(Debug, Clone)]
pub struct AwsStsIssuer {
    config: aws_sdk_sts::Config,
    client: aws_sdk_sts::Client,
}

impl AwsStsIssuer {
    /// An issuer from a loaded `SdkConfig`, optionally at another endpoint.
    /// Calls time out after `timeout` (connect: at most 2 s). A call is tried
    /// again once only when STS cannot have issued for it (see
    /// [`NoRetryOnceSent`]); throttling is handled by the broker's own limiter.
    pub fn new(sdk: &aws_types::SdkConfig, endpoint: Option<&str>, timeout: Duration) -> Self {
        Self::from_config(Self::config(sdk, endpoint, timeout).build())
    }

    fn config(
        sdk: &aws_types::SdkConfig,
        endpoint: Option<&str>,
        timeout: Duration,
    ) -> aws_sdk_sts::config::Builder {
        let mut builder = aws_sdk_sts::config::Builder::from(sdk)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(timeout.min(Duration::from_secs(2)))
                    .operation_attempt_timeout(timeout)
                    .operation_timeout(timeout * 2)
                    .build(),
            )
            .retry_config(aws_sdk_sts::config::retry::RetryConfig::standard().with_max_attempts(2))
            .retry_classifier(NoRetryOnceSent);
        if let Some(endpoint) = endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        builder
    }

    fn from_config(config: aws_sdk_sts::Config) -> Self {
        AwsStsIssuer {
            client: aws_sdk_sts::Client::from_conf(config.clone()),
            config,
        }
    }

    fn client_for(&self, using: Option<&IssuedCredentials>) -> aws_sdk_sts::Client {
        match using {
            None => self.client.clone(),
            Some(c) => {
                let credentials = aws_credential_types::Credentials::new(
                    c.access_key_id.clone(),
                    c.secret_access_key.expose().to_owned(),
                    Some(c.session_token.expose().to_owned()),
                    Some(c.expiration),
                    "podid-chained-session",
                );
                let config = self
                    .config
                    .to_builder()
                    .credentials_provider(credentials)
                    .build();
                aws_sdk_sts::Client::from_conf(config)
            }
        }
    }
}

/// Forbids the SDK's retry of an `AssumeRole` that may have reached STS: the
/// attempt timed out, the connection broke after the request was written, or
/// the answer was cut off. STS may have issued credentials for it, so sending
/// it again would be a second issuance (and a second STS call under one permit
/// of the broker's rate limit). Errors STS answered (5xx, throttling: nothing
/// issued) and refused connections (nothing sent) keep the SDK's one retry.
#[derive(Debug)]
struct NoRetryOnceSent;

impl ClassifyRetry for NoRetryOnceSent {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let Some(Err(error)) = ctx.output_or_error() else {
            return RetryAction::NoActionIndicated;
        };
        let may_have_been_sent = match error.as_connector_error() {
            Some(connector) => !connection_refused(connector),
            None => error.is_timeout_error() || error.is_response_error(),
        };
        if may_have_been_sent {
            RetryAction::RetryForbidden
        } else {
            RetryAction::NoActionIndicated
        }
    }

    fn name(&self) -> &'static str {
        "podid: no AssumeRole retry once the request may have reached STS"
    }
}

/// Whether `error`'s chain holds a refused TCP connection (nothing was sent).
fn connection_refused(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        next = e.source();
    }
    false
}

fn map_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    err: SdkError<E>,
) -> IssueError {
    match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or("Unknown");
            let message = e.message().unwrap_or("").to_owned();
            match code {
                "AccessDenied" | "AccessDeniedException" => IssueError::AccessDenied(message),
                "Throttling"
                | "ThrottlingException"
                | "RequestLimitExceeded"
                | "TooManyRequestsException" => IssueError::Throttled(message),
                "MalformedPolicyDocument"
                | "PackedPolicyTooLarge"
                | "ValidationError"
                | "InvalidParameterValue" => {
                    IssueError::InvalidRequest(format!("{code}: {message}"))
                }
                "RegionDisabledException" | "ServiceUnavailable" | "InternalFailure" => {
                    IssueError::Unavailable(format!("{code}: {message}"))
                }
                // Codes the SDK could not read (STS-compatible services answer
                // other XML shapes): the HTTP status decides.
                _ => {
                    let status = service.raw().status().as_u16();
                    let detail = if code == "Unknown" && message.is_empty() {
                        format!("STS answered HTTP {status}")
                    } else {
                        format!("STS answered HTTP {status}: {code}: {message}")
                    };
                    match status {
                        401 | 403 => IssueError::AccessDenied(detail),
                        429 => IssueError::Throttled(detail),
                        400 => IssueError::InvalidRequest(detail),
                        s if s >= 500 => IssueError::Unavailable(detail),
                        // A success the SDK could not read: STS (or what is
                        // in front of it) answered junk.
                        s if (200..300).contains(&s) => IssueError::Unavailable(format!(
                            "STS answered HTTP {status} with a body that is not an AssumeRole answer"
                        )),
                        _ => IssueError::Internal(detail),
                    }
                }
            }
        }
        SdkError::TimeoutError(_) => {
            IssueError::Unavailable("STS did not answer in time".to_owned())
        }
        SdkError::DispatchFailure(d) => {
            let what = if d.is_timeout() {
                "timed out"
            } else if d.is_io() {
                "connection failed"
            } else {
                "request failed"
            };
            IssueError::Unavailable(format!("STS {what}"))
        }
        SdkError::ResponseError(_) => {
            IssueError::Unavailable("STS answered something unreadable".to_owned())
        }
        _ => IssueError::Internal("the STS request could not be built".to_owned()),
    }
}

#[async_trait]
impl Issuer for AwsStsIssuer {
    async fn assume_role(
        &self,
        spec: &AssumeRoleSpec,
        using: Option<&IssuedCredentials>,
    ) -> Result<IssuedCredentials, IssueError> {
        let mut tags = Vec::with_capacity(spec.tags.len());
        for t in &spec.tags {
            let tag = Tag::builder()
                .key(&t.key)
                .value(&t.value)
                .build()
                .map_err(|_| IssueError::Internal("invalid session tag".to_owned()))?;
            tags.push(tag);
        }
        let request = self
            .client_for(using)
            .assume_role()
            .role_arn(&spec.role_arn)
            .role_session_name(&spec.session_name)
            .duration_seconds(i32::try_from(spec.duration.as_secs()).unwrap_or(i32::MAX))
            .set_tags((!tags.is_empty()).then_some(tags))
            .set_transitive_tag_keys(
                (!spec.transitive_tag_keys.is_empty()).then(|| spec.transitive_tag_keys.clone()),
            )
            .set_policy(spec.policy.clone())
            .set_external_id(spec.external_id.clone());
        let output = request.send().await.map_err(map_error)?;
        let credentials = output.credentials().ok_or_else(|| {
            IssueError::Unavailable("STS answered without credentials".to_owned())
        })?;
        let user = output.assumed_role_user();
        let expiration = SystemTime::try_from(*credentials.expiration()).map_err(|_| {
            IssueError::Unavailable("STS answered an unreadable expiration".to_owned())
        })?;
        // The SDK fills fields missing from a cut-off answer with defaults
        // (empty strings, an expiration in 1970): never hand those to a pod.
        if credentials.access_key_id().is_empty()
            || credentials.secret_access_key().is_empty()
            || credentials.session_token().is_empty()
            || expiration <= SystemTime::now()
        {
            return Err(IssueError::Unavailable(
                "STS answered incomplete or already expired credentials".to_owned(),
            ));
        }
        Ok(IssuedCredentials {
            access_key_id: credentials.access_key_id().to_owned(),
            secret_access_key: Secret::new(credentials.secret_access_key()),
            session_token: Secret::new(credentials.session_token()),
            expiration,
            assumed_role_arn: user.map(|u| u.arn().to_owned()).unwrap_or_default(),
            assumed_role_id: user
                .map(|u| u.assumed_role_id().to_owned())
                .unwrap_or_default(),
        })
    }
}
