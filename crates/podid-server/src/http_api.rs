//! The HTTP surface: routing, the per-request front (request id, body limit,
//! authentication, metrics, access log) and the AWS error shape.

use std::future::Future;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use podid_api::{ApiError, ErrorKind};
use podid_store::StoreError;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::auth::{verify_request, Principal};
use crate::keys::{Operation, Role};
use crate::{associations, clusters, AppState, Authentication, SharedState};

/// The largest request body accepted. Association requests are a few KiB at
/// most (a 2 KiB policy, 50 tags); JWKS documents a few KiB more.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The id of one request, returned as `x-amzn-requestid` and logged.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Builds the server's router.
pub fn router(state: AppState) -> Router {
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
            post(crate::broker::handler),
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
        .route("/podid/v1/audit", get(crate::broker::audit::list))
        .route(
            "/podid/v1/clusters/{name}",
            get(clusters::describe)
                .patch(clusters::update)
                .delete(clusters::deregister),
        )
        .fallback(unknown_operation)
        .method_not_allowed_fallback(unknown_operation)
        .layer(middleware::from_fn_with_state(state.clone(), front))
        .with_state(state.clone());
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
        .fallback_service(api)
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

async fn readyz(State(state): State<SharedState>) -> Response {
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
    let (parts, body) = request.into_parts();

    let mut caller = None;
    let mut response = match buffer_body(&parts.headers, body).await {
        Err(e) => error_response(&e),
        Ok(bytes) => match authenticate(&state, &parts, &bytes) {
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
        .unwrap_or("unknown");
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
        Err(_) => Err(ApiError::invalid_request(
            "the request body could not be read",
        )),
    }
}

fn authenticate(
    state: &AppState,
    parts: &axum::http::request::Parts,
    body: &[u8],
) -> Result<Principal, ApiError> {
    match &state.auth {
        Authentication::Disabled => Ok(Principal {
            access_key_id: "anonymous".to_owned(),
            role: Role::Admin,
        }),
        Authentication::SigV4(keys) => verify_request(
            keys,
            state.clock.now(),
            parts.method.as_str(),
            &parts.uri,
            &parts.headers,
            body,
        ),
    }
}

/// The AWS `rest-json` error answer: status, `x-amzn-errortype`, and
/// `{"__type","message"}`.
pub fn error_response(error: &ApiError) -> Response {
    let status =
        StatusCode::from_u16(error.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(&error.body()).unwrap_or_default();
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::HeaderName::from_static("x-amzn-errortype"),
                HeaderValue::from_static(error.kind.name()),
            ),
        ],
        body,
    )
        .into_response()
}

/// Runs one operation for `principal`: checks the role, runs `work`, and
/// answers JSON or the AWS error shape, tagging the response with the
/// operation for metrics.
pub async fn answer<T: Serialize>(
    operation: Operation,
    principal: &Principal,
    work: impl Future<Output = Result<T, ApiError>>,
) -> Response {
    let result = if principal.role.allows(operation) {
        work.await
    } else {
        Err(ApiError::new(
            ErrorKind::AccessDenied,
            format!(
                "key {} (role {}) is not allowed to call {}",
                principal.access_key_id,
                principal.role.as_str(),
                operation.name()
            ),
        ))
    };
    let mut response = match result {
        Ok(value) => match serde_json::to_vec(&value) {
            Ok(body) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response(),
            Err(_) => error_response(&ApiError::new(
                ErrorKind::Server,
                "the response could not be encoded",
            )),
        },
        Err(e) => error_response(&e),
    };
    response.extensions_mut().insert(operation);
    response
}

/// Parses a JSON request body. An empty body reads as `{}` so missing fields get
/// their own precise errors; a non-JSON content type is refused.
pub fn parse_json<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, ApiError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let json = ct == "application/json"
            || ct.starts_with("application/x-amz-json")
            || ct.ends_with("+json");
        if !json && !body.is_empty() {
            return Err(ApiError::new(
                ErrorKind::UnsupportedMediaType,
                format!(
                    "content type '{}' is not supported: send application/json",
                    podid_api::arn::printable(&ct)
                ),
            ));
        }
    }
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        // serde's message names the field and the position; the classification
        // keeps syntax errors apart from wrong types.
        let what = match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                "malformed JSON"
            }
            _ => "invalid request",
        };
        ApiError::invalid_request(format!("{what}: {e}"))
    })
}

/// Maps a store error to what the client sees; database failures are logged
/// with their cause and answered without it.
pub fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::ClusterNotFound(name) => {
            ApiError::not_found(format!("No cluster found for name: {name}."))
        }
        StoreError::ClusterExists(name) => ApiError::new(
            ErrorKind::ResourceInUse,
            format!("Cluster already registered: {name}."),
        ),
        e @ StoreError::ClusterInUse { .. } => ApiError::new(
            ErrorKind::ResourceInUse,
            format!("{e}; delete them first or deregister with force"),
        ),
        StoreError::AssociationNotFound { cluster, id } => ApiError::not_found(format!(
            "Pod identity association {id} not found in cluster {cluster}."
        )),
        StoreError::DuplicateAssociation { existing_id, .. } => ApiError::new(
            ErrorKind::ResourceInUse,
            format!("Association already exists: {existing_id}"),
        ),
        StoreError::IdempotencyMismatch => ApiError::invalid_request(
            "clientRequestToken was already used with a different request; use a new token",
        ),
        e @ StoreError::TooManyTags(_) => ApiError::invalid_parameter(e.to_string()),
        StoreError::Conflict => ApiError::new(
            ErrorKind::ResourceInUse,
            "the resource is being changed by other requests right now; try again",
        ),
        other => {
            tracing::error!(error = %error_chain(&other), "store failure");
            ApiError::new(
                ErrorKind::Server,
                "the server could not complete the request; try again",
            )
        }
    }
}

/// `error: cause: cause` for logs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}
