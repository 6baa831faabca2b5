//! What the `podid dev` stand-ins share: the caller's bearer token checked
//! against a file read on every request, and serving plain or TLS (podid-listen's
//! `CertStore`, reloaded when the files change) until SIGTERM or Ctrl-C.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use podid_listen::{CertStore, ListenLimits, RequestBody};

/// The flags every stand-in takes: where to listen, the callers' token, TLS.
#[derive(Debug, clap::Args)]
pub struct StandInArgs {
    /// Address to listen on (`:0` picks a free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// File holding the bearer token callers must send (read again on every request).
    #[arg(long)]
    pub token_file: PathBuf,
    /// PEM certificate chain to serve HTTPS with (reloaded when it changes).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl StandInArgs {
    /// The certificate and key, when both are given.
    pub fn tls(&self) -> Option<(&PathBuf, &PathBuf)> {
        self.tls_cert.as_ref().zip(self.tls_key.as_ref())
    }
}

/// Whether `request` carries `Authorization: Bearer <the contents of token_file>`
/// (compared in constant time); an error when the file cannot be read.
pub fn bearer_matches<B>(token_file: &Path, request: &Request<B>) -> Result<bool, String> {
    let expected = std::fs::read_to_string(token_file)
        .map_err(|e| format!("cannot read the token file: {e}"))?;
    let expected = expected.trim();
    let given = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    Ok(given.is_some_and(|given| {
        !expected.is_empty()
            && given.len() == expected.len()
            && given
                .bytes()
                .zip(expected.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }))
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves `answer` on `listen` — HTTPS with `tls` (certificate, key), else
/// HTTP — announcing `podid {what} listening on SCHEME://ADDR`, until SIGTERM
/// or Ctrl-C.
pub async fn serve<F, Fut>(
    what: &'static str,
    listen: SocketAddr,
    tls: Option<(&PathBuf, &PathBuf)>,
    answer: F,
) -> anyhow::Result<()>
where
    F: Fn(Request<RequestBody>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let (acceptor, scheme, _watch) = match tls {
        Some((cert, key)) => {
            let certs = Arc::new(CertStore::new(cert, key));
            let ignore = |_: bool| {};
            anyhow::ensure!(
                certs.initial_load(&ignore),
                "cannot load the TLS certificate {} and key {}",
                cert.display(),
                key.display()
            );
            let acceptor = podid_listen::TlsAcceptor::from(certs.server_config()?);
            let watch = tokio::spawn(certs.watch(Duration::from_secs(1), Arc::new(ignore)));
            (Some(acceptor), "https", Some(AbortOnDrop(watch)))
        }
        None => (None, "http", None),
    };
    let (listener, bound) = podid_listen::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    super::super::announce_listening(what, scheme)(bound);
    let make_service = move |_peer: SocketAddr| {
        let answer = answer.clone();
        hyper::service::service_fn(move |request: Request<RequestBody>| {
            let answer = answer.clone();
            async move { Ok::<_, Infallible>(answer(request).await) }
        })
    };
    let limits = ListenLimits::local().with_max_connections(256);
    podid_listen::serve(
        listener,
        limits,
        acceptor,
        make_service,
        podid_runtime::shutdown_signal(),
    )
    .await?;
    Ok(())
}
