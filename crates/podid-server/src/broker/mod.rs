//! The credential broker, EKS Auth `AssumeRoleForPodIdentity`: token → pod identity →
//! association → credentials (cache, or STS through the limiter) → audit event → answer.

pub mod audit;
pub mod cache;
pub mod lookups;
pub(crate) mod node_binding;
pub mod token_review;

use std::sync::Arc;
use std::time::{Duration, Instant};

use podid_api::audit::{AuditEvent, AuditKind, AuditOutcome};
use podid_api::eks_auth::{
    AssumeRoleForPodIdentityResponse, AssumedRoleUser, PodCredentials, PodIdentityAssociationRef,
    Subject,
};
use podid_api::{validate, ApiError, ErrorKind};
use podid_sts::{issue_for_pod, IssueError, Issuer, PodCredentialRequest};
use podid_token::{PodIdentity, TokenError, TokenVerifier};

use self::audit::AuditSink;
use self::cache::{CacheKey, IssuedCredentialCache};
use crate::authz::{Operation, Principal};
use crate::metrics::ServerMetrics;
use crate::wire::{answer, error_chain, parse_json, path_error, store_error, RequestId};
use crate::AppState;

/// Settings of the broker.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// `DurationSeconds` of the pods' sessions.
    pub session_duration: Duration,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            session_duration: Duration::from_secs(3600),
        }
    }
}

/// The broker's parts.
#[derive(Clone)]
pub struct Broker {
    /// Verifies projected tokens.
    pub verifier: Arc<TokenVerifier>,
    /// Verifies agents' own tokens (`Authorization: Bearer`): a verifier of
    /// its own, whose caches never meet the pod tokens'.
    pub agent_verifier: Arc<TokenVerifier>,
    /// Asks clusters' API servers with `TokenReview` (those that registered one).
    pub token_review: Arc<token_review::TokenReviewer>,
    /// Issues credentials (rate-limited STS in production).
    pub issuer: Arc<dyn Issuer>,
    /// Per-pod credentials.
    pub cache: Arc<IssuedCredentialCache>,
    /// The cluster and association reads, kept briefly ([`lookups::Lookups`]).
    pub lookups: Arc<lookups::Lookups>,
    /// Where decisions are recorded.
    pub audit: AuditSink,
    /// Settings.
    pub settings: BrokerSettings,
}

/// Who asked, for the audit trail.
pub struct CallContext<'a> {
    /// The request id.
    pub request_id: &'a str,
    /// The caller's access key id.
    pub caller: &'a str,
    /// The node the caller's agent token proved; `None` for a SigV4 key.
    pub caller_node: Option<&'a str>,
}

fn token_error(cluster: &str, e: &TokenError) -> ApiError {
    if e.is_expired() {
        ApiError::new(
            ErrorKind::ExpiredToken,
            "The service account token has expired.",
        )
    } else {
        ApiError::new(
            ErrorKind::InvalidToken,
            format!(
                "The token is not valid for cluster {cluster}: {}",
                e.reason()
            ),
        )
    }
}

fn issue_error(e: &IssueError) -> ApiError {
    match e {
        IssueError::AccessDenied(m) => ApiError::new(
            ErrorKind::CredentialsDenied,
            format!(
                "STS refused to assume the role \
                 (check that its trust policy allows podid's broker): {m}"
            ),
        ),
        IssueError::Throttled(m) => {
            ApiError::new(ErrorKind::Throttling, format!("Rate exceeded: {m}"))
        }
        IssueError::Unavailable(m) => ApiError::new(
            ErrorKind::ServiceUnavailable,
            format!("Credentials could not be issued now: {m}"),
        ),
        IssueError::InvalidRequest(m) => {
            ApiError::invalid_request(format!("STS rejected the association's settings: {m}"))
        }
        _ => ApiError::new(
            ErrorKind::InternalServer,
            "Credentials could not be issued; the cause is logged on the server.",
        ),
    }
}

/// Answers one `AssumeRoleForPodIdentity` call and records the decision.
pub async fn assume_role_for_pod_identity(
    state: &AppState,
    broker: &Broker,
    ctx: CallContext<'_>,
    cluster_name: &str,
    token: Option<&str>,
) -> Result<AssumeRoleForPodIdentityResponse, ApiError> {
    let mut event = AuditEvent::new(
        AuditKind::Credential,
        state.clock.now_millis(),
        ctx.request_id,
        ctx.caller,
        podid_api::arn::printable(cluster_name),
        AuditOutcome::Denied,
    );
    event.caller_node = ctx.caller_node.map(str::to_owned);
    let e = match decide(
        state,
        broker,
        cluster_name,
        token,
        ctx.caller_node,
        &mut event,
    )
    .await
    {
        Ok(answer) => {
            event.outcome = AuditOutcome::Issued;
            // Fail-closed: answered only once its event is written.
            return match broker.audit.record_issued(event).await {
                Ok(()) => {
                    state.metrics.broker.issued("issued", "");
                    Ok(answer)
                }
                Err(e) => {
                    state.metrics.broker.issued("failed", e.kind.name());
                    Err(e)
                }
            };
        }
        Err(e) => e,
    };
    event.outcome = audit::outcome_of(&e);
    event.error_code = Some(e.kind.name().to_owned());
    state
        .metrics
        .broker
        .issued(event.outcome.as_str(), e.kind.name());
    tracing::info!(
        request_id = ctx.request_id,
        cluster = %event.cluster,
        namespace = event.namespace.as_deref().unwrap_or("-"),
        service_account = event.service_account.as_deref().unwrap_or("-"),
        pod = event.pod_name.as_deref().unwrap_or("-"),
        node = event.node_name.as_deref().unwrap_or("-"),
        caller_node = event.caller_node.as_deref().unwrap_or("-"),
        error = e.kind.name(),
        reason = %e.message,
        "credentials refused"
    );
    broker.audit.record(event).await;
    Err(e)
}

async fn decide(
    state: &AppState,
    broker: &Broker,
    cluster_name: &str,
    token: Option<&str>,
    caller_node: Option<&str>,
    event: &mut AuditEvent,
) -> Result<AssumeRoleForPodIdentityResponse, ApiError> {
    validate::cluster_name(cluster_name)?;
    let token = token.ok_or_else(|| ApiError::invalid_parameter("token is required"))?;
    let entry = broker
        .lookups
        .cluster(state.store.as_ref(), cluster_name)
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            ApiError::not_found(format!("No cluster found for name: {cluster_name}."))
        })?;
    let cluster = &entry.cluster;
    node_binding::check_caller(cluster, caller_node)?;
    let pod: Arc<PodIdentity> = broker
        .verifier
        .verify(&entry.trust, token)
        .await
        .map_err(|e| token_error(cluster_name, &e))?;
    event.namespace = Some(pod.namespace.clone());
    event.service_account = Some(pod.service_account.clone());
    event.pod_name = Some(pod.pod_name.clone());
    event.pod_uid = Some(pod.pod_uid.clone());
    event.node_name = pod.node_name.clone();
    node_binding::check_pod(cluster, &pod, caller_node)?;
    // Still authenticated by the cluster's API server (when it registered one)?
    let username = format!(
        "{}{}:{}",
        podid_token::SUBJECT_PREFIX,
        pod.namespace,
        pod.service_account
    );
    broker.token_review.check(cluster, token, &username).await?;

    let association = broker
        .lookups
        .association(
            state.store.as_ref(),
            cluster_name,
            &pod.namespace,
            &pod.service_account,
        )
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "No pod identity association for service account {}/{} in cluster {cluster_name}.",
                pod.namespace, pod.service_account
            ))
        })?;
    event.association_id = Some(association.id.clone());
    event.role_arn = Some(
        association
            .target_role_arn
            .clone()
            .unwrap_or_else(|| association.role_arn.clone()),
    );

    let key = CacheKey {
        association_id: association.id.clone(),
        association_version: association.modified_at.0,
        pod_uid: pod.pod_uid.clone(),
    };
    let (issued, outcome) = broker
        .cache
        .get_or_issue(&key, state.clock.now(), || {
            // Only on a miss: a cache hit builds no request.
            let request = PodCredentialRequest {
                cluster_name: cluster.name.clone(),
                cluster_arn: cluster.cluster_arn.clone(),
                namespace: pod.namespace.clone(),
                service_account: pod.service_account.clone(),
                pod_name: pod.pod_name.clone(),
                pod_uid: pod.pod_uid.clone(),
                role_arn: association.role_arn.clone(),
                target_role_arn: association.target_role_arn.clone(),
                external_id: association.external_id.clone(),
                disable_session_tags: association.disable_session_tags,
                policy: association.policy.clone(),
                duration: broker.settings.session_duration,
            };
            let metrics: Arc<ServerMetrics> = state.metrics.clone();
            let issuer = broker.issuer.clone();
            async move {
                let started = Instant::now();
                let result = issue_for_pod(issuer.as_ref(), &request).await;
                metrics
                    .broker
                    .sts_latency
                    .observe(started.elapsed().as_secs_f64());
                if let Err(e) = &result {
                    tracing::warn!(
                        error = %e,
                        role = %request.role_arn,
                        target_role = ?request.target_role_arn,
                        "STS call failed"
                    );
                }
                result
            }
        })
        .await;
    let metrics: &ServerMetrics = &state.metrics;
    metrics.broker.cache(outcome);
    let credentials = issued.map_err(|e| {
        if matches!(e, IssueError::Internal(_)) {
            tracing::error!(error = %error_chain(&e), "issuing credentials failed");
        }
        issue_error(&e)
    })?;
    Ok(AssumeRoleForPodIdentityResponse {
        subject: Subject {
            namespace: pod.namespace.clone(),
            service_account: pod.service_account.clone(),
        },
        audience: cluster.audience.clone(),
        pod_identity_association: PodIdentityAssociationRef {
            association_arn: state
                .scope
                .association_arn(&association.cluster, &association.id),
            association_id: association.id.clone(),
        },
        assumed_role_user: AssumedRoleUser {
            arn: credentials.assumed_role_arn.clone(),
            assume_role_id: credentials.assumed_role_id.clone(),
        },
        credentials: PodCredentials {
            session_token: credentials.session_token.expose().to_owned(),
            secret_access_key: credentials.secret_access_key.expose().to_owned(),
            access_key_id: credentials.access_key_id.clone(),
            expiration: credentials.expiration_epoch_secs(),
        },
    })
}

/// `POST /clusters/{clusterName}/assume-role-for-pod-identity`.
pub async fn handler(
    axum::extract::State(state): axum::extract::State<crate::SharedState>,
    axum::Extension(principal): axum::Extension<Principal>,
    axum::Extension(request_id): axum::Extension<RequestId>,
    cluster: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    answer(Operation::AssumeRoleForPodIdentity, &principal, async {
        let axum::extract::Path(cluster) = cluster.map_err(path_error)?;
        let Some(broker) = &state.broker else {
            return Err(ApiError::new(
                ErrorKind::ServiceUnavailable,
                "this server does not issue credentials",
            ));
        };
        let req: podid_api::eks_auth::AssumeRoleForPodIdentityRequest =
            parse_json(&headers, &body)?;
        let ctx = CallContext {
            request_id: &request_id.0,
            caller: &principal.access_key_id,
            caller_node: principal.node.as_deref(),
        };
        assume_role_for_pod_identity(&state, broker, ctx, &cluster, req.token.as_deref()).await
    })
    .await
}
