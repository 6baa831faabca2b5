//! The wire shapes every handler shares: JSON answers and bodies, the AWS
//! error shape, store errors as clients see them, the request id.

use std::future::Future;

use axum::extract::rejection::PathRejection;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use podid_api::{validate, ApiError, ErrorKind};
use podid_store::StoreError;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::authz::{Operation, Principal};

/// How often an update is tried when concurrent writers keep changing the
/// record (an association or a cluster).
pub(crate) const MAX_UPDATE_ATTEMPTS: usize = 10;

/// The id of one request, returned as `x-amzn-requestid` and logged.
#[derive(Debug, Clone)]
pub(crate) struct RequestId(pub(crate) String);

/// A path parameter that did not parse.
pub(crate) fn path_error(e: PathRejection) -> ApiError {
    ApiError::invalid_parameter(format!("invalid path parameter: {}", e.body_text()))
}

/// The AWS `rest-json` error answer: status, `x-amzn-errortype`, and
/// `{"__type","message"}`.
pub(crate) fn error_response(error: &ApiError) -> Response {
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
pub(crate) async fn answer<T: Serialize>(
    operation: Operation,
    principal: &Principal,
    work: impl Future<Output = Result<T, ApiError>>,
) -> Response {
    let result = match principal.authorise(operation) {
        Ok(()) => work.await,
        Err(denied) => Err(denied),
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
pub(crate) fn parse_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, ApiError> {
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

/// The pairs of a raw query string, decoded.
pub(crate) fn query_pairs(raw: &Option<String>) -> Vec<(String, String)> {
    raw.as_deref()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

/// The `namespace` and `serviceAccount` filters lists share.
#[derive(Default)]
pub(crate) struct SubjectFilter {
    pub(crate) namespace: Option<String>,
    pub(crate) service_account: Option<String>,
}

impl SubjectFilter {
    /// Takes `value`, validated, if `key` is one of the two filters; any
    /// other key is left alone.
    pub(crate) fn take(&mut self, key: &str, value: String) -> Result<(), ApiError> {
        match key {
            "namespace" => {
                validate::namespace(&value)?;
                self.namespace = Some(value);
            }
            "serviceAccount" => {
                validate::service_account(&value)?;
                self.service_account = Some(value);
            }
            _ => {}
        }
        Ok(())
    }
}

/// Maps a store error to what the client sees; database failures are logged
/// with their cause and answered without it.
pub(crate) fn store_error(e: StoreError) -> ApiError {
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
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}
