//! `podid server`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use podid_api::arn::ArnScope;
use podid_server::broker::audit::AuditSink;
use podid_server::broker::cache::IssuedCredentialCache;
use podid_server::broker::{Broker, BrokerSettings};
use podid_api::clock::SystemClock;
use podid_server::jwks::HttpFetcher;
use podid_server::jwks::VerifierFetcher;
use podid_server::keys::KeyRing;
use podid_server::metrics::ServerMetrics;
use podid_server::{AppState, Authentication};
use podid_sts::{AwsStsIssuer, RateLimitedIssuer};
use podid_token::TokenVerifier;

/// Flags of `podid server`; each has an environment variable too.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to listen on (`:0` picks a free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:8080", env = "PODID_LISTEN")]
    listen: SocketAddr,
    /// `sqlite:///path/podid.db` (embedded, default) or `postgres://user:pass@host/db`.
    #[arg(long, default_value = "sqlite://podid.db", env = "PODID_DATABASE_URL")]
    database_url: String,
    /// TOML file of API keys: `[[key]] access_key_id, secret_access_key, role`.
    #[arg(
        long,
        env = "PODID_KEYS_FILE",
        required_unless_present = "insecure_no_auth"
    )]
    keys_file: Option<PathBuf>,
    /// Accept unsigned requests and treat every caller as admin. Local trials only.
    #[arg(long, conflicts_with = "keys_file")]
    insecure_no_auth: bool,
    /// Region of podid's ARNs.
    #[arg(long, default_value = "us-east-1", env = "PODID_REGION")]
    region: String,
    /// 12-digit account id of podid's ARNs.
    #[arg(long, env = "PODID_ACCOUNT_ID")]
    account_id: String,
    /// Partition of podid's ARNs.
    #[arg(long, default_value = "aws", env = "PODID_PARTITION")]
    partition: String,
    /// STS endpoint for issuing credentials (default: AWS's regional endpoint);
    /// any STS-compatible service works (moto, MinIO, Ceph RGW).
    #[arg(long, env = "PODID_STS_ENDPOINT")]
    sts_endpoint: Option<String>,
    /// Lifetime of the pods' sessions, in seconds (chained sessions: at most 3600).
    #[arg(long, default_value_t = 3600, env = "PODID_SESSION_DURATION", value_parser = clap::value_parser!(u64).range(900..=43200))]
    session_duration: u64,
    /// Cached credentials are served again while more than this many seconds remain.
    #[arg(long, default_value_t = 900, env = "PODID_CREDENTIAL_MIN_REMAINING")]
    credential_min_remaining: u64,
    /// Most pods whose credentials are cached.
    #[arg(long, default_value_t = 100_000, env = "PODID_CREDENTIAL_CACHE_SIZE")]
    credential_cache_size: usize,
    /// Most STS calls per second; further calls wait for a slot.
    #[arg(long, default_value_t = 50, env = "PODID_STS_MAX_RPS", value_parser = clap::value_parser!(u32).range(1..))]
    sts_max_rps: u32,
    /// How long a call waits for an STS slot before ThrottlingException, in
    /// milliseconds. The default keeps the wait plus an STS call inside the
    /// agents' 1 s per attempt, so that in a storm they pass the throttling on
    /// (429) instead of timing out (503, and counting the broker as down).
    #[arg(long, default_value_t = 600, env = "PODID_STS_MAX_WAIT_MS")]
    sts_max_wait_ms: u64,
    /// Timeout of one STS call, in milliseconds.
    #[arg(long, default_value_t = 3000, env = "PODID_STS_TIMEOUT_MS")]
    sts_timeout_ms: u64,
}

/// Runs the server until SIGTERM or Ctrl-C.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    if args.account_id.len() != 12 || !args.account_id.bytes().all(|c| c.is_ascii_digit()) {
        bail!("--account-id must be 12 digits, got '{}'", args.account_id);
    }
    let lower = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    };
    if !lower(&args.region) || !lower(&args.partition) {
        bail!("--region and --partition take lowercase letters, digits and '-'");
    }
    let auth = match (&args.keys_file, args.insecure_no_auth) {
        (_, true) => {
            tracing::warn!("--insecure-no-auth: requests are NOT authenticated and every caller is an admin; use this for local trials only");
            Authentication::Disabled
        }
        (Some(path), false) => {
            let keys = KeyRing::load(path)?;
            tracing::info!(keys = keys.len(), "loaded API keys");
            Authentication::SigV4(Arc::new(keys))
        }
        (None, false) => bail!("--keys-file is required (or --insecure-no-auth for local trials)"),
    };
    let store = podid_store::open(&args.database_url)
        .await
        .with_context(|| {
            format!(
                "cannot open the store at {}",
                redact_url(&args.database_url)
            )
        })?;
    tracing::info!(database = %redact_url(&args.database_url), "store open");
    let fetcher: Arc<dyn podid_server::jwks::DocumentFetcher> =
        Arc::new(HttpFetcher::new().context("cannot build the HTTP client")?);
    let metrics = Arc::new(ServerMetrics::new());

    // The broker's own AWS credentials: the default chain (environment,
    // profile, web identity, container or instance metadata).
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(args.region.clone()))
        .load()
        .await;
    let sts = AwsStsIssuer::new(
        &sdk,
        args.sts_endpoint.as_deref(),
        Duration::from_millis(args.sts_timeout_ms),
    );
    let issuer = RateLimitedIssuer::new(
        sts,
        args.sts_max_rps,
        Duration::from_millis(args.sts_max_wait_ms),
    )
    .with_observer(metrics.broker.limiter_observer());
    let (audit, audit_writer) =
        AuditSink::start(store.clone(), metrics.broker.audit_dropped.clone());
    let broker = Broker {
        verifier: Arc::new(TokenVerifier::new(
            Arc::new(VerifierFetcher(fetcher.clone())),
            podid_token::system_clock(),
            podid_token::DEFAULT_MAX_CACHED_TOKENS,
        )),
        issuer: Arc::new(issuer),
        cache: Arc::new(IssuedCredentialCache::new(
            Duration::from_secs(args.credential_min_remaining),
            args.credential_cache_size,
        )),
        lookups: Default::default(),
        audit,
        settings: BrokerSettings {
            session_duration: Duration::from_secs(args.session_duration),
        },
    };
    tracing::info!(
        sts_endpoint = args.sts_endpoint.as_deref().unwrap_or("AWS"),
        sts_max_rps = args.sts_max_rps,
        session_duration = args.session_duration,
        "credential broker ready"
    );
    let state = AppState {
        store,
        auth,
        scope: ArnScope {
            partition: args.partition,
            region: args.region,
            account_id: args.account_id,
        },
        clock: Arc::new(SystemClock),
        fetcher,
        metrics,
        broker: Some(broker),
    };
    podid_server::serve(
        state,
        args.listen,
        |addr| {
            tracing::info!(%addr, "listening");
            // One machine-readable line on stdout, for scripts and tests that
            // start the server on port 0.
            println!("podid server listening on http://{addr}");
        },
        podid_runtime::shutdown_signal(),
    )
    .await?;
    // The router and its state are gone: the audit writer drains what is queued.
    if tokio::time::timeout(Duration::from_secs(10), audit_writer)
        .await
        .is_err()
    {
        tracing::error!("audit events still queued at shutdown were not all written");
    }
    Ok(())
}

/// A database URL without its password, for logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("****"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://podid:hunter2@db:5432/podid"),
            "postgres://podid:****@db:5432/podid"
        );
        assert_eq!(redact_url("sqlite://podid.db"), "sqlite://podid.db");
    }
}
