//! The server's listeners: the API (plain HTTP, or HTTPS with a certificate
//! reloaded from disk) and `/metrics` on an address of its own, both under
//! `podid_listen`'s limits.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use podid_listen::{CertStore, ListenLimits, TlsAcceptor};
use tokio::net::TcpListener;

use crate::http_api::{self, TlsReady};
use crate::{AppState, ServerError};

/// How the server accepts connections.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// The API listener's connection cap, header size limit and deadlines.
    pub limits: ListenLimits,
    /// HTTPS with this certificate and key; `None`: plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Where `/metrics` is served to anyone; `None`: nowhere but the API
    /// listener, where it needs a signed request as every other route.
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for ListenerConfig {
    /// Plain HTTP, [`ListenLimits::server`], no metrics listener.
    fn default() -> Self {
        ListenerConfig {
            limits: ListenLimits::server(),
            tls: None,
            metrics_listen: None,
        }
    }
}

/// The API's certificate files (PEM), polled for changes.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// How often both files are checked for changes.
    pub reload_interval: Duration,
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ServerError> {
    podid_listen::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Binds the API on `listen` and the metrics listener, reports their bound
/// addresses (API first) and serves until `shutdown` resolves; then each
/// drains its requests in flight.
pub(crate) async fn serve(
    state: AppState,
    listen: SocketAddr,
    config: ListenerConfig,
    on_bound: impl FnOnce(SocketAddr),
    on_metrics_bound: Option<Box<dyn FnOnce(SocketAddr) + Send>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    config.limits.validate()?;
    let (tls, ready, _watching) = match &config.tls {
        None => {
            tracing::warn!(
                "no --tls-cert/--tls-key: the API is plain HTTP, so pod tokens, signed \
                 requests and the credentials issued cross the network in clear"
            );
            (None, TlsReady(None), None)
        }
        Some(files) => {
            let certs = Arc::new(CertStore::new(&files.cert, &files.key));
            certs.initial_load(&|_: bool| {});
            let acceptor = TlsAcceptor::from(certs.server_config()?);
            let watch = certs
                .clone()
                .watch(files.reload_interval, Arc::new(|_: bool| {}));
            let watching = AbortOnDrop(tokio::spawn(watch));
            (Some(acceptor), TlsReady(Some(certs)), Some(watching))
        }
    };
    let (api, bound) = bind(listen).await?;
    let metrics = match config.metrics_listen {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    on_bound(bound);
    if let (Some((_, addr)), Some(announce)) = (&metrics, on_metrics_bound) {
        tracing::info!(addr = %addr, "metrics listening");
        announce(*addr);
    }
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let metrics_service = podid_listen::tower_service(http_api::metrics_router(state.clone()));
    let metrics_served = async {
        let Some((listener, _)) = metrics else {
            return Ok(());
        };
        let service = metrics_service;
        let stop = async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        };
        podid_listen::serve(listener, ListenLimits::local(), None, service, stop).await
    };
    let router = http_api::router(state).layer(axum::Extension(ready));
    let stop = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    let api_served = podid_listen::serve(
        api,
        config.limits,
        tls,
        // Each connection's requests carry its peer address (the console's
        // per-source sign-in limit).
        move |peer| {
            let router = tower::ServiceExt::map_request(
                router.clone(),
                move |mut request: http::Request<podid_listen::RequestBody>| {
                    request
                        .extensions_mut()
                        .insert(crate::console::ClientAddr(peer));
                    request
                },
            );
            podid_listen::tower_service(router)(peer)
        },
        stop,
    );
    let (api, metrics) = tokio::join!(api_served, metrics_served);
    api?;
    metrics?;
    Ok(())
}
