//! Assembles the whole server from one [`Config`] (keys, store, metrics, the
//! broker with its verifier, issuer, cache and audit) into an [`App`] to run.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use podid_api::arn::ArnScope;
use podid_api::clock::SystemClock;
use podid_store::AssociationStore;
use podid_sts::{AwsStsIssuer, Issuer, RateLimitedIssuer};
use podid_token::TokenVerifier;
use tokio::task::JoinHandle;

use crate::auth::reload::{KeysFileWatch, ReloadCounters, DEFAULT_RELOAD_INTERVAL};
use crate::auth::Authentication;
pub use crate::broker::audit::AuditMode;
use crate::broker::audit::AuditSink;
use crate::broker::cache::IssuedCredentialCache;
use crate::broker::{Broker, BrokerSettings};
use crate::jwks::{DocumentFetcher, HttpFetcher, VerifierFetcher};
use crate::metrics::ServerMetrics;
use crate::{AppState, ServerError};

/// How long the audit writer may take to write what is queued at shutdown.
const AUDIT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How callers are authenticated.
#[derive(Debug, Clone)]
pub enum AuthConfig {
    /// SigV4 with the keys of this keys file.
    KeysFile(PathBuf),
    /// No authentication: every caller is an admin (local trials only).
    Disabled,
}

/// How the broker reaches STS.
#[derive(Debug, Clone)]
pub struct StsConfig {
    /// STS endpoint; `None` is AWS's regional endpoint.
    pub endpoint: Option<String>,
    /// Timeout of one STS call.
    pub timeout: Duration,
    /// Most STS calls per second.
    pub max_rps: u32,
    /// How long a call waits for an STS slot before it is throttled.
    pub max_wait: Duration,
}

/// A database URL, `sqlite://…` or `postgres://…`; its `Debug` shows it
/// with the password replaced by `****`.
#[derive(Clone)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL as it is, password and all.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL without its password, for logs and errors.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl From<String> for DatabaseUrl {
    fn from(url: String) -> Self {
        DatabaseUrl(url)
    }
}

impl From<&str> for DatabaseUrl {
    fn from(url: &str) -> Self {
        DatabaseUrl(url.to_owned())
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.redacted(), f)
    }
}

/// Everything the server is configured with. Its `Debug` hides the database
/// password.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Where the store is.
    pub database_url: DatabaseUrl,
    /// Authentication of API calls.
    pub auth: AuthConfig,
    /// Partition, region and account of podid's ARNs; the region is STS's too.
    pub scope: ArnScope,
    /// STS.
    pub sts: StsConfig,
    /// Lifetime of the pods' sessions.
    pub session_duration: Duration,
    /// Cached credentials are served again while more than this remains.
    pub credential_min_remaining: Duration,
    /// Most pods whose credentials are cached.
    pub credential_cache_size: usize,
    /// How clusters' keys are fetched and refreshed.
    pub jwks: JwksConfig,
    /// The audit trail.
    pub audit: AuditConfig,
    /// How connections are accepted: limits, TLS, the metrics address.
    pub listener: crate::listen::ListenerConfig,
    /// `TokenReview` of pod tokens at clusters that registered their API server.
    pub token_review: TokenReviewConfig,
}

/// How the broker asks clusters' API servers with `TokenReview`.
#[derive(Debug, Clone)]
pub struct TokenReviewConfig {
    /// How long an answer is kept per token (`Duration::ZERO`: asked every time).
    pub cache_ttl: Duration,
}

impl Default for TokenReviewConfig {
    /// Answers kept 10 s.
    fn default() -> Self {
        TokenReviewConfig {
            cache_ttl: crate::broker::token_review::DEFAULT_CACHE_TTL,
        }
    }
}

/// How the keys of clusters registered by URL or discovery are fetched.
#[derive(Debug, Clone)]
pub struct JwksConfig {
    /// Time between two fetches of each such cluster's JWKS (also fetched at start-up).
    pub refresh_interval: Duration,
    /// Fetch `http://` JWKS and discovery URLs too (local trials); https only otherwise.
    pub allow_http: bool,
    /// A PEM file of CA certificates trusted for those fetches besides the system roots.
    pub ca_file: Option<PathBuf>,
}

impl Default for JwksConfig {
    /// Every 5 minutes, https only, the system roots.
    fn default() -> Self {
        JwksConfig {
            refresh_interval: crate::jwks::refresh::DEFAULT_REFRESH_INTERVAL,
            allow_http: false,
            ca_file: None,
        }
    }
}

impl JwksConfig {
    /// The fetch policy: the scheme rule and the CA file's certificates (read now).
    fn policy(&self) -> Result<crate::jwks::FetchPolicy, ServerError> {
        let extra_roots_pem = match &self.ca_file {
            None => None,
            Some(path) => {
                let failed = |source| ServerError::JwksCaFile {
                    path: path.display().to_string(),
                    source,
                };
                let pem = std::fs::read(path).map_err(failed)?;
                if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                    return Err(failed(std::io::Error::other(
                        "no PEM certificate ('-----BEGIN CERTIFICATE-----') in the file",
                    )));
                }
                Some(pem)
            }
        };
        Ok(crate::jwks::FetchPolicy {
            allow_http: self.allow_http,
            extra_roots_pem,
        })
    }
}

/// The audit trail's settings.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// What happens to credentials whose `issued` event cannot be recorded.
    pub mode: AuditMode,
    /// Events older than this are deleted in the background; `None` keeps them.
    pub retention: Option<Duration>,
}

impl Default for AuditConfig {
    /// Best-effort, 30 days.
    fn default() -> Self {
        AuditConfig {
            mode: AuditMode::BestEffort,
            retention: Some(DEFAULT_AUDIT_RETENTION),
        }
    }
}

/// How long audit events are kept unless told otherwise.
pub const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(30 * 86_400);

/// Where the broker's issuer comes from.
enum IssuerSource {
    /// AWS STS with the default credential chain, behind the rate limiter.
    Aws,
    /// This one, as it is.
    Given(Arc<dyn Issuer>),
}

impl Config {
    /// Loads the keys, opens the store and assembles the server; the broker
    /// calls STS with the default AWS credential chain (environment, profile,
    /// web identity, container or instance metadata), rate-limited.
    pub async fn build(self) -> Result<App, ServerError> {
        self.assemble(IssuerSource::Aws).await
    }

    /// The same with `issuer` issuing credentials as it is (no rate limiter):
    /// for tests that record or fake STS.
    pub async fn build_with_issuer(self, issuer: Arc<dyn Issuer>) -> Result<App, ServerError> {
        self.assemble(IssuerSource::Given(issuer)).await
    }

    async fn assemble(self, source: IssuerSource) -> Result<App, ServerError> {
        let metrics = Arc::new(ServerMetrics::new());
        let mut keys_watch = None;
        let auth = match &self.auth {
            AuthConfig::Disabled => {
                tracing::warn!(
                    "--insecure-no-auth: requests are NOT authenticated and every caller \
                     is an admin; use this for local trials only"
                );
                Authentication::Disabled
            }
            AuthConfig::KeysFile(path) => {
                let counters = ReloadCounters {
                    loaded: metrics.keys_reload_counter("loaded"),
                    failed: metrics.keys_reload_counter("failed"),
                };
                let watch =
                    KeysFileWatch::load(path, &self.scope.region, counters).map_err(|source| {
                        ServerError::KeysFile {
                            path: path.display().to_string(),
                            source,
                        }
                    })?;
                let verifier = watch.verifier().clone();
                tracing::info!(keys = verifier.keys().len(), "loaded API keys");
                keys_watch = Some(Arc::new(watch));
                Authentication::SigV4(verifier)
            }
        };
        let database = self.database_url.redacted();
        let store = podid_store::open(self.database_url.as_str())
            .await
            .map_err(|source| ServerError::Store {
                url: database.clone(),
                source,
            })?;
        tracing::info!(%database, "store open");
        let fetcher: Arc<dyn DocumentFetcher> =
            Arc::new(HttpFetcher::new(&self.jwks.policy()?).map_err(ServerError::HttpClient)?);
        let issuer = match source {
            IssuerSource::Given(issuer) => issuer,
            IssuerSource::Aws => {
                let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .region(aws_config::Region::new(self.scope.region.clone()))
                    .load()
                    .await;
                let sts = AwsStsIssuer::new(&sdk, self.sts.endpoint.as_deref(), self.sts.timeout);
                Arc::new(
                    RateLimitedIssuer::new(sts, self.sts.max_rps, self.sts.max_wait)
                        .with_observer(metrics.broker.limiter_observer()),
                )
            }
        };
        let (audit, audit_writer) = AuditSink::start(
            store.clone(),
            metrics.broker.audit_dropped.clone(),
            self.audit.mode,
        );
        tracing::info!(mode = self.audit.mode.as_str(), "audit trail");
        let audit_pruner = self.audit.retention.map(|retention| {
            crate::broker::audit::retention::start_pruner(
                store.clone(),
                Arc::new(SystemClock),
                retention,
                metrics.broker.audit_pruned.clone(),
            )
        });
        let broker = Broker {
            verifier: Arc::new(TokenVerifier::new(
                Arc::new(VerifierFetcher(fetcher.clone())),
                podid_token::system_clock(),
                podid_token::DEFAULT_MAX_CACHED_TOKENS,
            )),
            // Agents' tokens: the same fetch settings, caches of their own.
            agent_verifier: Arc::new(TokenVerifier::new(
                Arc::new(VerifierFetcher(fetcher.clone())),
                podid_token::system_clock(),
                podid_token::DEFAULT_MAX_CACHED_TOKENS,
            )),
            token_review: Arc::new(crate::broker::token_review::TokenReviewer::new(
                self.token_review.cache_ttl,
                metrics.token_reviews.clone(),
            )),
            issuer,
            cache: Arc::new(IssuedCredentialCache::new(
                self.credential_min_remaining,
                self.credential_cache_size,
            )),
            lookups: Default::default(),
            audit,
            settings: BrokerSettings {
                session_duration: self.session_duration,
            },
        };
        let jwks_refresher = crate::jwks::refresh::JwksRefresher {
            store: store.clone(),
            verifier: broker.verifier.clone(),
            lookups: broker.lookups.clone(),
            clock: Arc::new(SystemClock),
            metrics: metrics.jwks.clone(),
            audit: broker.audit.clone(),
            interval: self.jwks.refresh_interval,
        };
        tracing::info!(
            sts_endpoint = self.sts.endpoint.as_deref().unwrap_or("AWS"),
            sts_max_rps = self.sts.max_rps,
            session_duration = self.session_duration.as_secs(),
            "credential broker ready"
        );
        let state = AppState {
            store,
            auth,
            scope: self.scope,
            clock: Arc::new(SystemClock),
            fetcher,
            metrics,
            broker: Some(broker),
            changes: Default::default(),
        };
        Ok(App {
            listen: self.listen,
            listener: self.listener,
            on_metrics_bound: None,
            state,
            audit_writer,
            jwks_refresher,
            audit_pruner,
            keys_watch,
            keys_reload_interval: Some(DEFAULT_RELOAD_INTERVAL),
            change_retention: Some(crate::changes::retention::DEFAULT_CHANGE_RETENTION),
        })
    }
}

/// The assembled server, not yet listening.
pub struct App {
    listen: SocketAddr,
    /// Limits, TLS and the metrics address.
    listener: crate::listen::ListenerConfig,
    /// Told the metrics listener's bound address.
    on_metrics_bound: Option<Box<dyn FnOnce(SocketAddr) + Send>>,
    state: AppState,
    audit_writer: JoinHandle<()>,
    /// Fetches the keys of clusters registered by URL or discovery, at start-up and periodically.
    jwks_refresher: crate::jwks::refresh::JwksRefresher,
    /// Deletes audit events past the retention; `None`: kept forever.
    audit_pruner: Option<JoinHandle<()>>,
    /// The keys file, re-read when it changes and on SIGHUP while running.
    keys_watch: Option<Arc<KeysFileWatch>>,
    /// How often the keys file is polled; `None`: only on SIGHUP.
    keys_reload_interval: Option<Duration>,
    /// How long the change feed keeps changes; `None`: kept forever.
    change_retention: Option<Duration>,
}

impl App {
    /// Tells `announce` the metrics listener's bound address, right after
    /// the API's (when `--metrics-listen` is set).
    pub fn on_metrics_bound(mut self, announce: impl FnOnce(SocketAddr) + Send + 'static) -> App {
        self.on_metrics_bound = Some(Box::new(announce));
        self
    }

    /// Polls the keys file every `interval` (default 1 s) instead; `None`
    /// re-reads it only on SIGHUP.
    pub fn keys_reload_interval(mut self, interval: Option<Duration>) -> App {
        self.keys_reload_interval = interval;
        self
    }

    /// Keeps the change feed's changes for `retention` (default 24 h) instead;
    /// `None` keeps them forever.
    pub fn change_retention(mut self, retention: Option<Duration>) -> App {
        self.change_retention = retention;
        self
    }

    /// Waiting change-feed requests look at the store every `interval`
    /// (default 1 s) besides being woken by this server's own writes: how
    /// soon writes of other server processes on the same database are seen.
    pub fn change_recheck_interval(mut self, interval: Duration) -> App {
        self.state.changes = crate::changes::ChangeNotifier::with_recheck(interval);
        self
    }

    /// The server's HTTP service, for in-process tests.
    pub fn router(&self) -> axum::Router {
        crate::http_api::router(self.state.clone())
    }

    /// The server's store.
    pub fn store(&self) -> &Arc<dyn AssociationStore> {
        &self.state.store
    }

    /// Binds the configured address, reports the bound address through
    /// `on_bound` (so port 0 works) and serves until `shutdown` resolves; then
    /// drains in-flight requests and writes the audit events still queued.
    pub async fn run(
        self,
        on_bound: impl FnOnce(SocketAddr),
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let App {
            listen,
            listener,
            on_metrics_bound,
            state,
            audit_writer,
            jwks_refresher,
            audit_pruner,
            keys_watch,
            keys_reload_interval,
            change_retention,
        } = self;
        // Caught before the address is announced: a SIGHUP from then on reloads.
        let keys_watcher = keys_watch.map(|w| w.spawn(keys_reload_interval));
        let jwks_refresh = jwks_refresher.spawn();
        let change_pruner = change_retention
            .map(|r| crate::changes::retention::start_pruner(state.store.clone(), r));
        // Requests waiting on the change feed answer at once when the server stops.
        let notifier = state.changes.clone();
        let shutdown = async move {
            shutdown.await;
            notifier.close();
        };
        let served = crate::listen::serve(
            state,
            listen,
            listener,
            on_bound,
            on_metrics_bound,
            shutdown,
        )
        .await;
        jwks_refresh.abort();
        if let Some(watcher) = keys_watcher {
            watcher.abort();
        }
        if let Some(pruner) = audit_pruner {
            pruner.abort();
        }
        if let Some(pruner) = change_pruner {
            pruner.abort();
        }
        served?;
        // The router and its state are gone: the audit writer drains what is queued.
        if tokio::time::timeout(AUDIT_DRAIN_TIMEOUT, audit_writer)
            .await
            .is_err()
        {
            tracing::error!("audit events still queued at shutdown were not all written");
        }
        Ok(())
    }
}

/// A database URL without its password.
fn redact_url(url: &str) -> String {
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

    #[test]
    fn debug_hides_the_database_password() {
        let config = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: "postgres://podid:hunter2@db/podid".into(),
            auth: AuthConfig::Disabled,
            scope: ArnScope {
                partition: "aws".into(),
                region: "us-east-1".into(),
                account_id: "123456789012".into(),
            },
            sts: StsConfig {
                endpoint: None,
                timeout: Duration::from_secs(3),
                max_rps: 50,
                max_wait: Duration::from_millis(600),
            },
            session_duration: Duration::from_secs(3600),
            credential_min_remaining: Duration::from_secs(900),
            credential_cache_size: 10,
            jwks: Default::default(),
            audit: AuditConfig::default(),
            listener: Default::default(),
            token_review: Default::default(),
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("postgres://podid:****@db/podid"), "{shown}");
    }
}
