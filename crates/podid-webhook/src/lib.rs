//! podid's admission webhook: on pod CREATE, when the service account has an association,
//! a JSONPatch injecting what EKS Pod Identity's webhook injects.
#![forbid(unsafe_code)]

use std::net::SocketAddr;

pub mod follow;
pub mod lookup;
pub mod metrics;
pub mod mutate;
pub mod review;
pub mod server;

pub use follow::{FollowSettings, FollowedAssociations};
pub use lookup::{Answer, AssociationCache, AssociationLookup, HttpLookup, ServerAccess};
pub use metrics::WebhookMetrics;
pub use mutate::{mutate, Mutation, MutationSettings};
pub use podid_listen::{CertStore, ListenLimits};
pub use review::{parse_review, Admission, AdmissionReviewResponse, PodAdmission};
pub use server::{router, serve, Webhook, WebhookSettings};

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
    /// The certificate or the listener could not be set up.
    #[error(transparent)]
    Listen(#[from] podid_listen::ListenError),
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
