//! podid's central server: the EKS-compatible pod-identity-association API,
//! podid's cluster registry, SigV4 authentication, health and metrics.
//!
//! [`router`] builds the HTTP service from an [`AppState`]; [`serve`] binds it
//! and runs until shutdown. Everything that touches the outside world — the
//! store, the clock, document fetching — comes in through the state, so tests
//! run the real router against their own pieces.
#![forbid(unsafe_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use podid_api::arn::ArnScope;
use podid_store::AssociationStore;

mod associations;
pub mod auth;
pub mod broker;
pub use podid_api::clock;
mod clusters;
mod http_api;
pub mod jwks;
pub mod keys;
pub mod metrics;

pub use http_api::router;

use podid_api::clock::Clock;
use jwks::DocumentFetcher;
use keys::KeyRing;
use metrics::ServerMetrics;

/// Errors that stop the server from starting or running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The keys file could not be read or parsed.
    #[error("keys file {path}: {reason}")]
    KeysFile {
        /// The file.
        path: String,
        /// What is wrong, never quoting a secret.
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
    /// Serving failed.
    #[error("server failed")]
    Serve(#[source] std::io::Error),
    /// The store failed to open.
    #[error("cannot open the store")]
    Store(#[source] podid_store::StoreError),
    /// The HTTP client for key documents could not be built.
    #[error("cannot build the HTTP client")]
    HttpClient(#[source] reqwest::Error),
}

/// How requests are authenticated.
#[derive(Debug, Clone)]
pub enum Authentication {
    /// Every request must be SigV4-signed by one of these keys.
    SigV4(Arc<KeyRing>),
    /// Nothing is checked (`--insecure-no-auth`); every caller is an admin.
    Disabled,
}

/// Everything a request handler needs.
#[derive(Clone)]
pub struct AppState {
    /// Durable state.
    pub store: Arc<dyn AssociationStore>,
    /// Authentication.
    pub auth: Authentication,
    /// Partition, region and account of podid's ARNs.
    pub scope: ArnScope,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Fetches JWKS and discovery documents.
    pub fetcher: Arc<dyn DocumentFetcher>,
    /// ServerMetrics.
    pub metrics: Arc<ServerMetrics>,
    /// The credential broker; `None` answers the credential call with 503.
    pub broker: Option<broker::Broker>,
}

/// The state as the router shares it: one [`AppState`] behind an `Arc`, so
/// each request's extractors copy a pointer rather than the whole state.
pub type SharedState = Arc<AppState>;

impl AppState {
    /// Drops the broker's cached cluster and association reads: called after
    /// every write to them through this server.
    pub(crate) fn forget_lookups(&self) {
        if let Some(broker) = &self.broker {
            broker.lookups.invalidate();
        }
    }
}

/// Binds `addr`, reports the bound address through `on_bound` (so `:0` works in
/// tests) and serves until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    state: AppState,
    addr: SocketAddr,
    on_bound: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })?;
    on_bound(bound);
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(ServerError::Serve)
}
