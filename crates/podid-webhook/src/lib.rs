//! podid's admission webhook.
//!
//! On pod CREATE, when the pod's service account has a pod identity
//! association in the cluster, the webhook answers with a JSONPatch that
//! injects what EKS Pod Identity's webhook injects: the two container
//! credential env vars, the projected service-account token volume, its
//! read-only mount in every container and init container, and the
//! `eks.amazonaws.com/pod-identity: enabled` label.
//!
//! The crate is split so that the decision is testable without sockets:
//! - [`mutate`]: the mutation itself, a pure function of a Pod, whether its
//!   service account has an association, and [`MutationSettings`].
//! - [`review`]: AdmissionReview v1 parsing and the response shape (pure).
//! - [`lookup`]: asking podid's association API ([`HttpLookup`]) and the short
//!   positive-answer cache ([`AssociationCache`]).
//! - [`tls`]: the certificate store, reloaded from disk without a restart.
//! - [`server`]: the HTTPS server (`/mutate`, `/healthz`, `/readyz`, `/metrics`).
//! - [`metrics`]: Prometheus metrics.
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
    /// The request body is not an AdmissionReview v1 this webhook can answer.
    #[error("invalid AdmissionReview: {0}")]
    InvalidReview(String),
    /// podid's server could not be reached (connection refused, timeout,
    /// broken connection).
    #[error("podid server {endpoint} unreachable: {reason}")]
    Unreachable {
        /// The endpoint called.
        endpoint: String,
        /// What failed.
        reason: String,
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
    /// A configuration value is wrong (endpoint URL, HTTP client).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A TLS certificate or key could not be loaded.
    #[error("TLS certificate {cert} / key {key}: {reason}")]
    Certificate {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What is wrong.
        reason: String,
    },
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
