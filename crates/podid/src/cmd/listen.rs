//! The listener flags of `podid server` and `podid webhook`: connection
//! limits and deadlines (`podid_listen::listen_args!`), and the server's
//! TLS files and metrics address.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Args;
use podid_listen::ListenLimits;
use podid_server::{ListenerConfig, TlsFiles};

podid_listen::listen_args! {
    /// The API listener's limits (`PODID_` variables).
    pub struct ServerLimitArgs {
        prefix: "PODID_",
        defaults: ListenLimits::server(),
    }
}

podid_listen::listen_args! {
    /// The webhook listener's limits (`PODID_WEBHOOK_` variables).
    pub struct WebhookLimitArgs {
        prefix: "PODID_WEBHOOK_",
        defaults: ListenLimits::webhook(),
    }
}

/// `--metrics-listen`: an address, or `none`.
#[derive(Debug, Clone, Copy)]
pub struct MetricsListen(Option<SocketAddr>);

impl FromStr for MetricsListen {
    type Err = std::net::AddrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "none" {
            return Ok(MetricsListen(None));
        }
        s.parse().map(|addr| MetricsListen(Some(addr)))
    }
}

/// How `podid server` accepts connections.
#[derive(Debug, Args)]
pub struct ServerListenerArgs {
    /// PEM certificate chain (leaf first) to serve HTTPS with; reloaded when
    /// the file changes. Without it (and --tls-key) the API is plain HTTP.
    #[arg(long, env = "PODID_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert; reloaded when the file changes.
    #[arg(long, env = "PODID_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// How often the certificate files are checked for changes, in seconds.
    #[arg(long, default_value_t = 2, env = "PODID_TLS_RELOAD_SECONDS",
          value_parser = clap::value_parser!(u64).range(1..))]
    tls_reload_seconds: u64,
    /// Address serving `/metrics` unsigned (`:0` picks a free port; the bound
    /// address is printed); `none` serves it only on --listen, to signed callers.
    #[arg(long, default_value = "127.0.0.1:9090", env = "PODID_METRICS_LISTEN")]
    metrics_listen: MetricsListen,
    /// Limits of the API listener.
    #[command(flatten, next_help_heading = "API listener limits")]
    limits: ServerLimitArgs,
}

impl ServerListenerArgs {
    /// The server's listener configuration.
    ///
    /// # Errors
    /// When a limit cannot be enforced.
    pub fn config(&self) -> anyhow::Result<ListenerConfig> {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                reload_interval: Duration::from_secs(self.tls_reload_seconds),
            }),
            _ => None,
        };
        Ok(ListenerConfig {
            limits: self.limits.limits()?,
            tls,
            metrics_listen: self.metrics_listen.0,
        })
    }

    /// `https` with TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls_cert.is_some() {
            "https"
        } else {
            "http"
        }
    }
}
