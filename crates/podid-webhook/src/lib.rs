//! podid's admission webhook: on pod CREATE, when the service account has an association,
//! a JSONPatch injecting what EKS Pod Identity's webhook injects.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

pub mod lookup;
pub mod metrics;
pub mod mutate;
pub mod review;
pub mod server;
pub mod tls;

pub use lookup::{AssociationCache, AssociationLookup, HttpLookup};
pub use metrics::WebhookMetrics;
pub use mutate::{mutate, Mutation, MutationSettings};
pub use review::{parse_review, Admission, AdmissionReviewResponse, PodAdmission};
pub use server::{router, serve, Webhook, WebhookSettings};
pub use tls::CertStore;

/// Everything that can go wrong in the webhook.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The request body is not JSON.
    #[error("invalid AdmissionReview: body is not JSON: {0}")]
    ReviewNotJson(#[source] serde_json::Error),
    /// The body is an AdmissionReview of another apiVersion or kind.
    #[error(
        "invalid AdmissionReview: expected apiVersion {} kind {}, got apiVersion {api_version:?} \
         kind {kind:?} (set admissionReviewVersions: [\"v1\"])",
        review::API_VERSION,
        review::KIND
    )]
    ReviewVersion {
        /// The body's `apiVersion`.
        api_version: String,
        /// The body's `kind`.
        kind: String,
    },
    /// The review has no `request`.
    #[error("invalid AdmissionReview: no request")]
    ReviewNoRequest,
    /// The review's `request` is not an AdmissionRequest.
    #[error("invalid AdmissionReview: malformed request: {0}")]
    ReviewMalformed(#[source] serde_json::Error),
    /// The review's `request.uid` is empty.
    #[error("invalid AdmissionReview: request.uid is empty")]
    ReviewNoUid,
    /// A response's patch is not base64.
    #[error("invalid AdmissionReview: patch is not base64: {0}")]
    PatchNotBase64(#[source] base64::DecodeError),
    /// A response's patch is not a JSONPatch.
    #[error("invalid AdmissionReview: patch is not a JSONPatch: {0}")]
    PatchNotJsonPatch(#[source] serde_json::Error),
    /// podid's server could not be reached (connection refused, timeout,
    /// broken connection).
    #[error("podid server {endpoint} unreachable: {reason}")]
    Unreachable {
        /// The endpoint called.
        endpoint: String,
        /// What failed, in short.
        reason: String,
        /// The client's error; none when the lookup timed out.
        #[source]
        source: Option<Box<podid_client::ClientError>>,
    },
    /// podid's server answered with an error or an unexpected body.
    #[error("podid server answered {status} {code}: {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// The error name (`x-amzn-errortype`, else `__type`, else `HTTP{status}`;
        /// `UnexpectedAnswer` for a 2xx body that is not a list answer).
        code: String,
        /// The server's message.
        message: String,
    },
    /// The webhook's cluster name is empty.
    #[error("invalid configuration: the cluster name is empty")]
    EmptyCluster,
    /// The HTTP client for podid's server could not be made or could not sign.
    #[error("invalid configuration: {0}")]
    Client(#[source] Box<podid_client::ClientError>),
    /// The TLS configuration could not be built.
    #[error("invalid configuration: TLS: {0}")]
    Tls(#[source] rustls::Error),
    /// A TLS certificate or key could not be loaded.
    #[error("TLS certificate {} / key {}: {what}{}", cert.display(), key.display(), source.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    Certificate {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What is wrong.
        what: &'static str,
        /// The parser's or the crypto library's complaint, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A certificate or key file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    CertificateRead {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The certificate reload task failed.
    #[error("reload task failed: {0}")]
    ReloadTask(#[source] tokio::task::JoinError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}
