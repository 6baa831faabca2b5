//! The HTTP surface: routing, and the per-request front (request id, body
//! limit and read deadline, authentication, metrics, access log).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use http_body_util::BodyExt;
use podid_api::{ApiError, ErrorKind};

use crate::auth::{admit, agent_token};
use crate::authz::{Operation, Principal};
use crate::wire::{error_chain, error_response, store_error, RequestId};
use crate::{associations, broker, clusters, AppState, SharedState};

/// The largest request body accepted. Association requests are a few KiB at
/// most (a 2 KiB policy, 50 tags); JWKS documents a few KiB more.
const MAX_BODY_BYTES: usize = 256 * 1024;

/// Builds the server's router.
pub(crate) fn router(state: AppState) -> Router {
    let state: SharedState = std::sync::Arc::new(state);
    let api = Router::new()
        .route(
            "/clusters/{cluster}/pod-identity-associations",
            post(associations::create).get(associations::list),
        )
        .route(
            "/clusters/{cluster}/pod-identity-associations/{id}",
            get(associations::describe)
                .post(associations::update)
                .delete(associations::delete),
        )
        .route(
            "/clusters/{cluster}/assume-role-for-pod-identity",
            post(broker::handler),
        )
        .route(
            "/tags/{arn}",
            get(associations::list_tags)
                .post(associations::tag)
                .delete(associations::untag),
        )
        .route(
            "/podid/v1/clusters",
            post(clusters::register).get(clusters::list),
        )
        .route("/podid/v1/audit", get(broker::audit::list))
        .route(
            "/podid/v1/clusters/{name}",
            get(clusters::describe)
                .patch(clusters::update)
                .delete(clusters::deregister),
        )
        .route(
            "/podid/v1/clusters/{name}/changes",
            get(crate::changes::list),
        )
        // Signed like every API call; unsigned only on the metrics listener.
        .route("/metrics", get(metrics))
        // The web console: its own sessions instead of SigV4 (see `front`).
        .nest_service("/console", crate::console::router(state.clone()))
        .fallback(unknown_operation)
        .method_not_allowed_fallback(unknown_operation)
        .layer(middleware::from_fn_with_state(state.clone(), front))
        .with_state(state.clone());
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
        .fallback_service(api)
}

/// The metrics listener's router: `/metrics`, unsigned.
pub(crate) fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(Arc::new(state))
}

/// Whether the API has a certificate to present (always true without TLS):
/// `/readyz` answers 503 until it does.
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsReady(pub(crate) Option<Arc<podid_listen::CertStore>>);

impl TlsReady {
    fn is_ready(&self) -> bool {
        self.0.as_ref().is_none_or(|certs| certs.is_loaded())
    }
}

async fn unknown_operation(request: Request) -> Response {
    error_response(&ApiError::new(
        ErrorKind::UnknownOperation,
        format!(
            "no operation at {} {}",
            request.method(),
            request.uri().path()
        ),
    ))
}

async fn readyz(State(state): State<SharedState>, tls: Option<Extension<TlsReady>>) -> Response {
    if tls.is_some_and(|Extension(tls)| !tls.is_ready()) {
        return (StatusCode::SERVICE_UNAVAILABLE, "no TLS certificate loaded").into_response();
    }
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ok").into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %error_chain(&e), "readiness: store unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response()
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "store timed out").into_response(),
    }
}

async fn metrics(State(state): State<SharedState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

/// Runs before every API request: assigns the request id, buffers the body
/// (refusing oversized ones), authenticates, and after the handler records
/// metrics and one access-log line. Neither the body nor the Authorization
/// header is ever logged.
async fn front(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    // From the thread's CSPRNG rather than a getrandom(2) call per request.
    let request_id = RequestId(
        uuid::Builder::from_random_bytes(rand::random())
            .into_uuid()
            .to_string(),
    );
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let (mut parts, body) = request.into_parts();
    host_from_authority(&mut parts);

    let mut caller = None;
    let console = is_console(&path);
    let mut response = match buffer_body(&parts.headers, body).await {
        Err(e) => error_response(&e),
        // The console checks its own session cookie.
        Ok(bytes) if console => {
            let mut request = Request::from_parts(parts, Body::from(bytes));
            request.extensions_mut().insert(request_id.clone());
            next.run(request).await
        }
        Ok(bytes) => match authenticate(&state, &parts, &bytes).await {
            Err(e) => error_response(&e),
            Ok(principal) => {
                caller = Some(principal.access_key_id.clone());
                let mut request = Request::from_parts(parts, Body::from(bytes));
                request.extensions_mut().insert(principal);
                request.extensions_mut().insert(request_id.clone());
                next.run(request).await
            }
        },
    };

    let operation = response
        .extensions()
        .get::<Operation>()
        .map(|o| o.name())
        .unwrap_or(if console { "Console" } else { "unknown" });
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    state
        .metrics
        .observe(operation, status, elapsed.as_secs_f64());
    let error = response
        .headers()
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !error.is_empty() {
        state.metrics.refused(error);
    }
    tracing::info!(
        request_id = %request_id.0,
        %method,
        path = %podid_api::arn::printable(&path),
        operation,
        status,
        error,
        caller = caller.as_deref().unwrap_or("-"),
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    if let Ok(v) = HeaderValue::from_str(&request_id.0) {
        response.headers_mut().insert("x-amzn-requestid", v);
    }
    response
}

/// Whether `path` is the web console's (`/console` and below).
fn is_console(path: &str) -> bool {
    path.strip_prefix("/console")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Who sent the request: an agent token (`Authorization: Bearer`, on the two
/// routes that take one, verified with the named cluster's keys), else a
/// SigV4 key (or nobody, without authentication).
async fn authenticate(
    state: &AppState,
    parts: &http::request::Parts,
    body: &[u8],
) -> Result<Principal, ApiError> {
    let Some(token) = agent_token::bearer(&parts.headers) else {
        return state.auth.authenticate(state.clock.now(), parts, body);
    };
    let token = token?;
    let cluster = agent_token::agent_route(&parts.method, parts.uri.path())
        .ok_or_else(agent_token::not_here)?;
    let Some(broker) = &state.broker else {
        return Err(ApiError::new(
            ErrorKind::ServiceUnavailable,
            "this server does not verify agent tokens",
        ));
    };
    let name = podid_api::arn::printable(&cluster);
    let entry = broker
        .lookups
        .cluster(state.store.as_ref(), &cluster)
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::AccessDenied,
                format!("no cluster {name} is registered to verify the agent token"),
            )
        })?;
    let principal =
        agent_token::verify(&broker.agent_verifier, &entry.trust, &entry.cluster, token)
            .await
            .inspect_err(|e| {
                tracing::info!(cluster = %name, reason = %e.message, "agent token refused");
            })?;
    admit(principal, parts, body)
}

/// HTTP/2 carries the host as `:authority` (in the URI), not as a `Host`
/// header; SigV4 signs it as `host` (AWS: "'Host' or ':authority'"), so it is
/// given to the verifier as one.
fn host_from_authority(parts: &mut http::request::Parts) {
    if parts.headers.contains_key(header::HOST) {
        return;
    }
    if let Some(value) = parts
        .uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        parts.headers.insert(header::HOST, value);
    }
}

async fn buffer_body(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorKind::RequestEntityTooLarge,
            format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    match http_body_util::Limited::new(body, MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) if podid_listen::is_body_timeout(&*e) => Err(ApiError::new(
            ErrorKind::RequestTimeout,
            "the request body was not received within the body read timeout",
        )),
        Err(_) => Err(ApiError::invalid_request(
            "the request body could not be read",
        )),
    }
}
