//! Prometheus metrics of the server.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// Labels of a request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The operation, or `unknown`.
    pub operation: String,
    /// The HTTP status.
    pub status: u16,
}

/// Labels of the latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// The operation, or `unknown`.
    pub operation: String,
}

type HistogramFamily = Family<OperationLabels, Histogram, fn() -> Histogram>;

/// Labels of a broker decision.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IssuanceLabels {
    /// `issued`, `denied` or `failed`.
    pub outcome: String,
    /// The error answered, empty when issued.
    pub error: String,
}

/// Labels of a credential-cache lookup.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    /// `hit`, `miss` or `joined` (waited for a concurrent issuance).
    pub result: String,
}

/// Labels of a refused request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// The AWS error type answered (`InvalidSignatureException`, …).
    pub reason: String,
}

/// Labels of a keys-file reload.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `loaded` or `failed`.
    pub result: String,
}

/// Labels of a `TokenReview` asked of a cluster's API server.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenReviewLabels {
    /// `authenticated`, `unauthenticated`, `failed` (no answer), or `cached` (not sent).
    pub result: String,
}

/// The credential broker's metrics.
#[derive(Debug)]
pub struct BrokerMetrics {
    /// `podid_broker_issuances_total{outcome,error}`.
    pub issuances: Family<IssuanceLabels, Counter>,
    /// `podid_broker_sts_duration_seconds`: one pod's issuance (one or two AssumeRole calls).
    pub sts_latency: Histogram,
    /// `podid_broker_credential_cache_total{result}`.
    pub cache_lookups: Family<CacheLabels, Counter>,
    /// `podid_broker_sts_rate_limit_waits_total`: calls that waited for a slot.
    pub limiter_waits: Counter,
    /// `podid_broker_sts_rate_limit_wait_seconds`.
    pub limiter_wait_seconds: Histogram,
    /// `podid_broker_sts_rate_limit_refusals_total`: calls refused at their deadline.
    pub limiter_refusals: Counter,
    /// `podid_broker_audit_dropped_total`: audit events dropped because the queue stayed full
    /// or the store failed every retry.
    pub audit_dropped: Counter,
    /// `podid_broker_audit_pruned_total`: audit events deleted past the retention.
    pub audit_pruned: Counter,
}

impl BrokerMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = BrokerMetrics {
            issuances: Family::default(),
            sts_latency: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            cache_lookups: Family::default(),
            limiter_waits: Counter::default(),
            limiter_wait_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            limiter_refusals: Counter::default(),
            audit_dropped: Counter::default(),
            audit_pruned: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("broker");
        r.register(
            "issuances",
            "Credential requests by outcome and error",
            m.issuances.clone(),
        );
        r.register(
            "sts_duration_seconds",
            "Time to issue one pod's credentials at STS",
            m.sts_latency.clone(),
        );
        r.register(
            "credential_cache",
            "Credential cache lookups by result",
            m.cache_lookups.clone(),
        );
        r.register(
            "sts_rate_limit_waits",
            "STS calls that waited for a rate-limit slot",
            m.limiter_waits.clone(),
        );
        r.register(
            "sts_rate_limit_wait_seconds",
            "Time STS calls waited for a rate-limit slot",
            m.limiter_wait_seconds.clone(),
        );
        r.register(
            "sts_rate_limit_refusals",
            "STS calls refused because no slot freed before their deadline",
            m.limiter_refusals.clone(),
        );
        r.register(
            "audit_dropped",
            "Audit events dropped because the queue stayed full or the store failed every retry",
            m.audit_dropped.clone(),
        );
        r.register(
            "audit_pruned",
            "Audit events deleted because they were older than the retention",
            m.audit_pruned.clone(),
        );
        m
    }

    /// Counts one decision.
    pub fn issued(&self, outcome: &str, error: &str) {
        self.issuances
            .get_or_create(&IssuanceLabels {
                outcome: outcome.to_owned(),
                error: error.to_owned(),
            })
            .inc();
    }

    /// Counts one cache lookup.
    pub fn cache(&self, outcome: crate::broker::cache::CacheOutcome) {
        self.cache_lookups
            .get_or_create(&CacheLabels {
                result: outcome.as_str().to_owned(),
            })
            .inc();
    }

    /// A rate-limiter observer reporting into these metrics.
    pub fn limiter_observer(&self) -> LimiterMetrics {
        LimiterMetrics {
            waits: self.limiter_waits.clone(),
            wait_seconds: self.limiter_wait_seconds.clone(),
            refusals: self.limiter_refusals.clone(),
        }
    }
}

/// Reports the STS rate limiter's decisions.
#[derive(Debug, Clone)]
pub struct LimiterMetrics {
    waits: Counter,
    wait_seconds: Histogram,
    refusals: Counter,
}

impl podid_sts::LimiterObserver for LimiterMetrics {
    fn waited(&self, waited: std::time::Duration) {
        self.waits.inc();
        self.wait_seconds.observe(waited.as_secs_f64());
    }

    fn refused(&self) {
        self.refusals.inc();
    }
}

/// Labels of a cluster's JWKS refresh.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JwksRefreshLabels {
    /// `unchanged`, `changed`, `superseded` or `failed`.
    pub result: String,
    /// Why it failed (`fetch`, `not_https`, `keys`, `store`); empty otherwise.
    pub reason: String,
}

/// Labels naming a cluster.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    /// The cluster's name.
    pub cluster: String,
}

/// The periodic JWKS refresh's metrics.
#[derive(Debug, Default)]
pub struct JwksMetrics {
    /// `podid_jwks_refreshes_total{result,reason}`: one per cluster and round.
    pub refreshes: Family<JwksRefreshLabels, Counter>,
    /// `podid_jwks_last_fetch_timestamp_seconds{cluster}`: when the cluster's JWKS was last
    /// fetched successfully (alert when it grows old: the keys are kept, however old).
    pub last_fetch: Family<ClusterLabels, Gauge>,
}

impl JwksMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = JwksMetrics::default();
        let r = registry.sub_registry_with_prefix("jwks");
        r.register(
            "refreshes",
            "Periodic JWKS refreshes of clusters registered by URL or discovery, by result",
            m.refreshes.clone(),
        );
        r.register(
            "last_fetch_timestamp_seconds",
            "When each cluster's JWKS was last fetched successfully (Unix seconds)",
            m.last_fetch.clone(),
        );
        m
    }

    /// Counts one cluster's refresh.
    pub fn refreshed(&self, result: &str, reason: &str) {
        self.refreshes
            .get_or_create(&JwksRefreshLabels {
                result: result.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Records a successful fetch of `cluster`'s JWKS at `unix_seconds`.
    pub fn fetched(&self, cluster: &str, unix_seconds: i64) {
        self.last_fetch
            .get_or_create(&ClusterLabels {
                cluster: cluster.to_owned(),
            })
            .set(unix_seconds);
    }
}

/// The server's metrics and their registry.
pub struct ServerMetrics {
    registry: Registry,
    /// `podid_http_requests_total{operation,status}`.
    pub requests: Family<RequestLabels, Counter>,
    /// `podid_http_request_duration_seconds{operation}`.
    pub latency: HistogramFamily,
    /// The broker's metrics.
    pub broker: BrokerMetrics,
    /// The periodic JWKS refresh's metrics.
    pub jwks: Arc<JwksMetrics>,
    /// `podid_server_refusals_total{reason}`: requests answered with an AWS error, by its type.
    pub refusals: Family<RefusalLabels, Counter>,
    /// `podid_keys_reload_total{result}`: keys-file reloads, `loaded` or `failed`.
    pub keys_reload: Family<ReloadLabels, Counter>,
    /// `podid_token_reviews_total{result}`: pod tokens checked with a cluster's API server.
    pub token_reviews: Family<TokenReviewLabels, Counter>,
}

impl ServerMetrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("podid");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "API requests by operation and HTTP status",
            requests.clone(),
        );
        let latency: HistogramFamily =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 16)));
        registry.register(
            "http_request_duration_seconds",
            "API request latency by operation",
            latency.clone(),
        );
        let broker = BrokerMetrics::register(&mut registry);
        let jwks = Arc::new(JwksMetrics::register(&mut registry));
        let refusals = Family::<RefusalLabels, Counter>::default();
        registry.sub_registry_with_prefix("server").register(
            "refusals",
            "Requests answered with an AWS error, by its type",
            refusals.clone(),
        );
        let keys_reload = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "keys_reload",
            "Keys-file reloads by result (loaded, failed: the previous keys stay in service)",
            keys_reload.clone(),
        );
        let token_reviews = Family::<TokenReviewLabels, Counter>::default();
        registry.register(
            "token_reviews",
            "TokenReviews of pod tokens by result (cached: answered from the cache, not sent)",
            token_reviews.clone(),
        );
        ServerMetrics {
            token_reviews,
            registry,
            requests,
            latency,
            broker,
            jwks,
            refusals,
            keys_reload,
        }
    }

    /// The counter of keys-file reloads with `result` (`loaded` or `failed`).
    pub fn keys_reload_counter(&self, result: &str) -> Counter {
        self.keys_reload
            .get_or_create(&ReloadLabels {
                result: result.to_owned(),
            })
            .clone()
    }

    /// Records one answered request.
    pub fn observe(&self, operation: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                operation: operation.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&OperationLabels {
                operation: operation.to_owned(),
            })
            .observe(seconds);
    }

    /// Counts one request answered with the AWS error type `reason` (one of
    /// the server's own error names, never client text).
    pub fn refused(&self, reason: &str) {
        self.refusals
            .get_or_create(&RefusalLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
