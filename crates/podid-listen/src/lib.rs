//! How podid accepts connections, for the server, the agent and the webhook
//! alike: one accept loop ([`serve`]) holding every connection to the
//! [`ListenLimits`] of its listener — a cap on open connections, deadlines
//! for a request's head, its body, the time between requests and the TLS
//! handshake (deadlines fixed when a phase starts, so a client trickling a
//! byte at a time cannot extend them), a header size limit — and the TLS
//! certificate reloaded from disk without a restart ([`CertStore`]).
#![forbid(unsafe_code)]

use std::path::PathBuf;

mod args;
mod body;
mod conn;
mod limits;
mod serve;
mod tls;

pub use args::millis;
pub use body::{is_body_timeout, BodyError, RequestBody};
pub use limits::{ListenLimits, MIN_HEADER_BYTES};
pub use serve::{bind, serve, tower_service, AnswerBody, BoxError, Handler, ACCEPT_BACKLOG};
pub use tls::{CertStore, Reload, ReloadObserver};
pub use tokio_rustls::TlsAcceptor;

/// What can go wrong setting up a listener or its certificate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// The limits cannot be enforced.
    #[error("listener limits: {0}")]
    Limits(String),
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
}
