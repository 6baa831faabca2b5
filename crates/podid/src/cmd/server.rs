//! `podid server`: maps the flags to a [`podid_server::Config`] and runs it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use podid_api::arn::ArnScope;
use podid_server::{AuditConfig, AuditMode, AuthConfig, Config, StsConfig};

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
    /// Seconds between two checks of the keys file for changes (0: re-read
    /// only on SIGHUP, which always re-reads it at once).
    #[arg(long, default_value_t = 1, env = "PODID_KEYS_RELOAD_INTERVAL")]
    keys_reload_interval: u64,
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
    /// another STS-compatible service may be named (tested with moto).
    #[arg(long, env = "PODID_STS_ENDPOINT")]
    sts_endpoint: Option<String>,
    /// Lifetime of the pods' sessions, in seconds (chained sessions: at most 3600).
    #[arg(
        long,
        default_value_t = 3600,
        env = "PODID_SESSION_DURATION",
        value_parser = clap::value_parser!(u64).range(900..=43200)
    )]
    session_duration: u64,
    /// Cached credentials are served again while more than this many seconds remain.
    #[arg(long, default_value_t = 900, env = "PODID_CREDENTIAL_MIN_REMAINING")]
    credential_min_remaining: u64,
    /// Most pods whose credentials are cached.
    #[arg(long, default_value_t = 100_000, env = "PODID_CREDENTIAL_CACHE_SIZE")]
    credential_cache_size: usize,
    /// Most STS calls per second; further calls wait for a slot.
    #[arg(
        long,
        default_value_t = 50,
        env = "PODID_STS_MAX_RPS",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
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
    /// Seconds between two fetches of the JWKS of each cluster registered by URL or discovery
    /// (also fetched at start-up, and on a token naming an unknown key, at most once a minute).
    #[arg(
        long,
        default_value_t = 300,
        env = "PODID_JWKS_REFRESH_INTERVAL",
        value_parser = clap::value_parser!(u64).range(1..=86_400)
    )]
    jwks_refresh_interval: u64,
    /// Fetch http:// JWKS and discovery URLs too (local trials only; https otherwise).
    #[arg(long, env = "PODID_ALLOW_HTTP_JWKS")]
    allow_http_jwks: bool,
    /// PEM file of CA certificates trusted for JWKS and discovery fetches, besides the system roots.
    #[arg(long, env = "PODID_JWKS_CA_FILE")]
    jwks_ca_file: Option<PathBuf>,
    /// `best-effort`: an audit event that cannot be queued or written is
    /// dropped, counted and logged; `fail-closed`: credentials are answered
    /// only once their `issued` event is written, else ServiceUnavailableException.
    #[arg(long, default_value = "best-effort", env = "PODID_AUDIT_MODE", value_parser = parse_audit_mode)]
    audit_mode: AuditMode,
    /// How long audit events are kept (`30d`, `12h`, `90m`, `45s`); `0` or
    /// `forever` keeps them.
    #[arg(long, default_value = "30d", env = "PODID_AUDIT_RETENTION", value_parser = parse_retention)]
    audit_retention: Retention,
    /// How long the change feed keeps its changes (`24h`, `90m`, `45s`); a
    /// follower further behind is told to revalidate everything (`reset`).
    /// `0` or `forever` keeps them.
    #[arg(long, default_value = "24h", env = "PODID_CHANGE_RETENTION", value_parser = parse_retention)]
    change_retention: Retention,
    /// Milliseconds between two looks at the database of a change-feed
    /// request that is waiting: how soon it sees writes made by other server
    /// processes on the same database (its own server's writes wake it at once).
    #[arg(long, default_value_t = 1000, env = "PODID_CHANGE_RECHECK_MS",
          value_parser = clap::value_parser!(u64).range(10..=60_000))]
    change_recheck_ms: u64,
    /// How long the answer of a cluster's API server to a TokenReview is kept
    /// per token, in seconds (0: asked on every request); for clusters that
    /// registered a tokenReview API server.
    #[arg(long, default_value_t = 10, env = "PODID_TOKEN_REVIEW_CACHE_SECS",
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    token_review_cache_secs: u64,
    /// TLS, the metrics address and the API listener's limits.
    #[command(flatten)]
    listener: super::listen::ServerListenerArgs,
}

/// `--audit-mode`.
fn parse_audit_mode(value: &str) -> Result<AuditMode, String> {
    AuditMode::parse(value).ok_or_else(|| format!("'{value}': use best-effort or fail-closed"))
}

/// `--audit-retention`: a duration, or none (keep forever).
#[derive(Debug, Clone, Copy)]
struct Retention(Option<Duration>);

/// `--audit-retention`: `30d`, `12h`, `90m`, `45s`; `0` or `forever` keeps events.
fn parse_retention(value: &str) -> Result<Retention, String> {
    if value == "0" || value == "forever" {
        return Ok(Retention(None));
    }
    let bad = || format!("'{value}': use a number and s, m, h or d (30d), or 0 / forever");
    let unit = value.chars().last().ok_or_else(bad)?;
    let n: u64 = value[..value.len() - unit.len_utf8()]
        .parse()
        .map_err(|_| bad())?;
    let seconds = match unit {
        's' => Some(n),
        'm' => n.checked_mul(60),
        'h' => n.checked_mul(3600),
        'd' => n.checked_mul(86_400),
        _ => return Err(bad()),
    }
    .ok_or_else(bad)?;
    if seconds == 0 {
        return Ok(Retention(None));
    }
    Ok(Retention(Some(Duration::from_secs(seconds))))
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
    let keys_reload_interval =
        (args.keys_reload_interval > 0).then(|| Duration::from_secs(args.keys_reload_interval));
    let auth = match (args.keys_file, args.insecure_no_auth) {
        (_, true) => AuthConfig::Disabled,
        (Some(path), false) => AuthConfig::KeysFile(path),
        (None, false) => bail!("--keys-file is required (or --insecure-no-auth for local trials)"),
    };
    let config = Config {
        listen: args.listen,
        database_url: args.database_url.into(),
        auth,
        scope: ArnScope {
            partition: args.partition,
            region: args.region,
            account_id: args.account_id,
        },
        sts: StsConfig {
            endpoint: args.sts_endpoint,
            timeout: Duration::from_millis(args.sts_timeout_ms),
            max_rps: args.sts_max_rps,
            max_wait: Duration::from_millis(args.sts_max_wait_ms),
        },
        session_duration: Duration::from_secs(args.session_duration),
        credential_min_remaining: Duration::from_secs(args.credential_min_remaining),
        credential_cache_size: args.credential_cache_size,
        jwks: podid_server::JwksConfig {
            refresh_interval: Duration::from_secs(args.jwks_refresh_interval),
            allow_http: args.allow_http_jwks,
            ca_file: args.jwks_ca_file,
        },
        audit: AuditConfig {
            mode: args.audit_mode,
            retention: args.audit_retention.0,
        },
        listener: args.listener.config()?,
        token_review: podid_server::TokenReviewConfig {
            cache_ttl: Duration::from_secs(args.token_review_cache_secs),
        },
    };
    let app = config
        .build()
        .await?
        .keys_reload_interval(keys_reload_interval)
        .change_retention(args.change_retention.0)
        .change_recheck_interval(Duration::from_millis(args.change_recheck_ms));
    app.on_metrics_bound(super::announce_listening("server metrics", "http"))
        .run(
            super::announce_listening("server", args.listener.scheme()),
            podid_runtime::shutdown_signal(),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_takes_durations_or_forever() {
        let secs = |v: &str| parse_retention(v).map(|r| r.0.map(|d| d.as_secs()));
        assert_eq!(secs("30d"), Ok(Some(30 * 86_400)));
        assert_eq!(secs("12h"), Ok(Some(43_200)));
        assert_eq!(secs("90m"), Ok(Some(5400)));
        assert_eq!(secs("3s"), Ok(Some(3)));
        assert_eq!(secs("0"), Ok(None));
        assert_eq!(secs("0d"), Ok(None));
        assert_eq!(secs("forever"), Ok(None));
        for bad in ["", "d", "30", "30w", "-1d", "1.5h", "99999999999999999d"] {
            assert!(parse_retention(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_audit_mode("fail-closed"), Ok(AuditMode::FailClosed));
        assert!(parse_audit_mode("closed").is_err());
    }
}
