//! podid's central server: the EKS-compatible association API, the cluster
//! registry, the credential broker, health and metrics ([`Config::build`] → [`App::run`]).
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use podid_api::arn::ArnScope;
use podid_store::AssociationStore;

mod associations;
pub mod auth;
pub mod authz;
mod broker;
mod changes;
pub use podid_api::clock;
mod clusters;
mod config;
mod console;
mod http_api;
mod jwks;
pub mod keys;
mod listen;
mod metrics;
mod wire;

pub use config::{
    App, AuditConfig, AuditMode, AuthConfig, Config, DatabaseUrl, StsConfig,
    DEFAULT_AUDIT_RETENTION,
};

pub use config::JwksConfig;
pub use config::TokenReviewConfig;
pub use listen::{ListenerConfig, TlsFiles};
pub use podid_listen::ListenLimits;

use auth::Authentication;
use jwks::DocumentFetcher;
use metrics::ServerMetrics;
use podid_api::clock::Clock;

/// Errors that stop the server from starting or running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The keys file could not be read or parsed.
    #[error("keys file {path}")]
    KeysFile {
        /// The file.
        path: String,
        /// What is wrong, never quoting a secret.
        #[source]
        source: keys::KeysFileError,
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
    /// The listeners' limits or the TLS certificate could not be set up.
    #[error("invalid listener configuration")]
    Listen(#[from] podid_listen::ListenError),
    /// The store failed to open.
    #[error("cannot open the store at {url}")]
    Store {
        /// The database URL, its password replaced by `****`.
        url: String,
        /// The cause.
        #[source]
        source: podid_store::StoreError,
    },
    /// The HTTP client for key documents could not be built.
    #[error("cannot build the HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// The CA file for JWKS fetches (`--jwks-ca-file`) cannot be read or holds no certificate.
    #[error("cannot use the JWKS CA file {path}")]
    JwksCaFile {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Everything a request handler needs.
#[derive(Clone)]
pub(crate) struct AppState {
    /// Durable state.
    pub(crate) store: Arc<dyn AssociationStore>,
    /// Authentication.
    pub(crate) auth: Authentication,
    /// Partition, region and account of podid's ARNs.
    pub(crate) scope: ArnScope,
    /// The clock.
    pub(crate) clock: Arc<dyn Clock>,
    /// Fetches JWKS and discovery documents.
    pub(crate) fetcher: Arc<dyn DocumentFetcher>,
    /// The server's metrics.
    pub(crate) metrics: Arc<ServerMetrics>,
    /// The credential broker; `None` answers the credential call with 503.
    pub(crate) broker: Option<broker::Broker>,
    /// Wakes the change feed's waiting requests after each committed write.
    pub(crate) changes: changes::ChangeNotifier,
}

/// The state as the router shares it: one [`AppState`] behind an `Arc`, so
/// each request's extractors copy a pointer rather than the whole state.
pub(crate) type SharedState = Arc<AppState>;

impl AppState {
    /// Drops the broker's cached cluster and association reads: called after
    /// every write to them through this server.
    pub(crate) fn forget_lookups(&self) {
        if let Some(broker) = &self.broker {
            broker.lookups.invalidate();
        }
    }
}
