//! Prometheus metrics of the agent (`podid_agent_*`).
//!
//! Counters on the hot path are resolved once at start, so counting a request
//! is one atomic increment, not a label lookup.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Metric, Registry};

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    /// The HTTP status answered.
    pub status: u16,
}

/// Labels of a counter split by a fixed word.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FetchLabels {
    /// The word.
    pub result: &'static str,
}

/// Labels of the upstream error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    /// The error code (the broker's, or `ServiceUnavailableException` when unreachable).
    pub code: String,
}

/// Labels of the change feed's counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The change's kind (`create`, `update`, `delete`, `cluster-update`, `cluster-delete`).
    pub kind: &'static str,
}

/// Statuses counted without a label lookup.
const FAST_STATUSES: [u16; 9] = [200, 400, 403, 404, 405, 429, 500, 503, 0];

/// Registers `metric` in `registry` under `name` and hands it back.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// Every metric of the agent and their registry.
pub struct AgentMetrics {
    registry: Registry,
    requests: Family<StatusLabels, Counter>,
    fast_requests: [Counter; FAST_STATUSES.len()],
    /// `podid_agent_cache_lookups_total{result="hit"}`: served fresh from memory.
    pub cache_hit: Counter,
    /// `…{result="stale"}`: served from memory past the refresh time (refresh under way or failing).
    pub cache_stale: Counter,
    /// `…{result="miss"}`: this request asked the broker.
    pub cache_miss: Counter,
    /// `…{result="joined"}`: waited for a call another request had started.
    pub cache_joined: Counter,
    /// `podid_agent_cache_refreshes_total{result}`: `ok`, `failed` (served on), `dropped`.
    pub refreshes: Family<FetchLabels, Counter>,
    /// `podid_agent_cache_evictions_total{result}`: `lru`, `expired`, `dropped`,
    /// `replaced`; `refused`: a remembered refusal forgotten to make room.
    pub evictions: Family<FetchLabels, Counter>,
    /// `podid_agent_cached_entries`.
    pub cached_entries: Gauge,
    /// `podid_agent_upstream_duration_seconds`: one broker call, retries included.
    pub upstream_latency: Histogram,
    /// `podid_agent_upstream_errors_total{code}`.
    pub upstream_errors: Family<CodeLabels, Counter>,
    /// `podid_agent_upstream_up`: 0 after `unhealthy_after` consecutive outages, else 1.
    pub upstream_up: Gauge,
    /// `podid_agent_rate_limited_total`: requests refused by the listener rate limit.
    pub rate_limited: Counter,
    /// `podid_agent_cache_lookups_total{result="refused"}`: a token the broker
    /// refused, answered from memory (the negative cache) without a broker call.
    pub cache_refused: Counter,
    /// `podid_agent_refused_tokens`: refusals remembered.
    pub refused_tokens: Gauge,
    /// `podid_agent_client_rate_limited_total`: requests refused by the per-client limit.
    pub client_rate_limited: Counter,
    /// `podid_agent_rate_limit_clients`: source addresses the per-client limit tracks.
    pub rate_limit_clients: Gauge,
    /// `podid_agent_feed_connected`: 1 while the change feed answers (0 when
    /// not followed or down).
    pub feed_connected: Gauge,
    /// `podid_agent_feed_changes_total{kind}`: changes applied.
    pub feed_changes: Family<KindLabels, Counter>,
    /// `podid_agent_feed_reconnects_total`: failed feed calls, each followed by a reconnect.
    pub feed_reconnects: Counter,
    /// `podid_agent_feed_revalidations_total`: revalidations of everything held.
    pub feed_revalidations: Counter,
    /// `podid_agent_pod_check_total{result}`: verdicts of the pod check —
    /// `running`, `gone`, `no_pod`, `unverified_open` (kubelet not asked, served),
    /// `unverified_closed` (refused 503).
    pub pod_checks: Family<FetchLabels, Counter>,
    /// `…{result="running"}`, resolved once (the hit path's).
    pub pod_check_running: Counter,
    /// `podid_agent_kubelet_up`: 1 while the kubelet's last `/pods` answered, 0 after a failure.
    pub kubelet_up: Gauge,
    /// `podid_agent_kubelet_lists_total{result}`: `GET /pods` calls — `ok`,
    /// `unreachable`, `unauthorized`, `status`, `invalid`, `token_file`.
    pub kubelet_lists: Family<FetchLabels, Counter>,
}

impl std::fmt::Debug for AgentMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentMetrics").finish_non_exhaustive()
    }
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentMetrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("podid_agent");
        let requests = registered(
            &mut registry,
            "requests",
            "Credential requests by HTTP status answered",
            Family::<StatusLabels, Counter>::default(),
        );
        let fast_requests =
            FAST_STATUSES.map(|status| requests.get_or_create(&StatusLabels { status }).clone());
        let lookups = registered(
            &mut registry,
            "cache_lookups",
            "Credential cache lookups by result",
            Family::<FetchLabels, Counter>::default(),
        );
        let lookup = |result| lookups.get_or_create(&FetchLabels { result }).clone();
        let refreshes = registered(
            &mut registry,
            "cache_refreshes",
            "Background refreshes by result",
            Family::<FetchLabels, Counter>::default(),
        );
        let evictions = registered(
            &mut registry,
            "cache_evictions",
            "Entries removed from the cache by reason",
            Family::<FetchLabels, Counter>::default(),
        );
        let cached_entries = registered(
            &mut registry,
            "cached_entries",
            "Pods' credentials held in memory",
            Gauge::default(),
        );
        let upstream_latency = registered(
            &mut registry,
            "upstream_duration_seconds",
            "Duration of broker calls",
            Histogram::new(exponential_buckets(0.001, 2.0, 12)),
        );
        let upstream_errors = registered(
            &mut registry,
            "upstream_errors",
            "Failed broker calls by error code",
            Family::<CodeLabels, Counter>::default(),
        );
        let upstream_up = Gauge::default();
        upstream_up.set(1);
        registry.register(
            "upstream_up",
            "1 while the broker answers; 0 after consecutive unreachable/5xx answers",
            upstream_up.clone(),
        );
        let rate_limited = registered(
            &mut registry,
            "rate_limited",
            "Requests refused by the listener rate limit",
            Counter::default(),
        );
        let refused_tokens = registered(
            &mut registry,
            "refused_tokens",
            "Tokens the broker refused, remembered to answer their retries",
            Gauge::default(),
        );
        let client_rate_limited = registered(
            &mut registry,
            "client_rate_limited",
            "Requests refused by the per-client (source address) rate limit",
            Counter::default(),
        );
        let rate_limit_clients = registered(
            &mut registry,
            "rate_limit_clients",
            "Source addresses tracked by the per-client rate limit",
            Gauge::default(),
        );
        let feed_connected = registered(
            &mut registry,
            "feed_connected",
            "1 while the cluster's change feed answers",
            Gauge::default(),
        );
        let feed_changes = registered(
            &mut registry,
            "feed_changes",
            "Changes of the cluster's associations applied to the cache, by kind",
            Family::<KindLabels, Counter>::default(),
        );
        let feed_reconnects = registered(
            &mut registry,
            "feed_reconnects",
            "Failed change feed calls (each followed by a reconnect)",
            Counter::default(),
        );
        let feed_revalidations = registered(
            &mut registry,
            "feed_revalidations",
            "Revalidations of every cached entry (cluster changes, feed resets)",
            Counter::default(),
        );
        let pod_checks = registered(
            &mut registry,
            "pod_check",
            "Pod check verdicts: does the pod a token names run on this node",
            Family::<FetchLabels, Counter>::default(),
        );
        let pod_check_running = pod_checks
            .get_or_create(&FetchLabels { result: "running" })
            .clone();
        let kubelet_up = registered(
            &mut registry,
            "kubelet_up",
            "1 while the kubelet's last /pods answered (pod check on), 0 after a failure",
            Gauge::default(),
        );
        let kubelet_lists = registered(
            &mut registry,
            "kubelet_lists",
            "Calls of the kubelet's /pods by result",
            Family::<FetchLabels, Counter>::default(),
        );
        AgentMetrics {
            pod_checks,
            pod_check_running,
            kubelet_up,
            kubelet_lists,
            feed_connected,
            feed_changes,
            feed_reconnects,
            feed_revalidations,
            cache_refused: lookup("refused"),
            refused_tokens,
            client_rate_limited,
            rate_limit_clients,
            cache_hit: lookup("hit"),
            cache_stale: lookup("stale"),
            cache_miss: lookup("miss"),
            cache_joined: lookup("joined"),
            registry,
            requests,
            fast_requests,
            refreshes,
            evictions,
            cached_entries,
            upstream_latency,
            upstream_errors,
            upstream_up,
            rate_limited,
        }
    }

    /// Counts one answered request.
    pub fn request(&self, status: u16) {
        match FAST_STATUSES.iter().position(|s| *s == status) {
            Some(i) => {
                self.fast_requests[i].inc();
            }
            None => {
                self.requests.get_or_create(&StatusLabels { status }).inc();
            }
        }
    }

    /// Requests answered with `status` so far.
    pub fn requests_with(&self, status: u16) -> u64 {
        self.requests.get_or_create(&StatusLabels { status }).get()
    }

    /// Counts one refresh.
    pub fn refresh(&self, result: &'static str) {
        self.refreshes.get_or_create(&FetchLabels { result }).inc();
    }

    /// Counts evicted entries.
    pub fn evicted(&self, result: &'static str, n: u64) {
        if n > 0 {
            self.evictions
                .get_or_create(&FetchLabels { result })
                .inc_by(n);
        }
    }

    /// Counts one pod check verdict (`running` has its own counter).
    pub fn pod_check(&self, result: &'static str) {
        self.pod_checks.get_or_create(&FetchLabels { result }).inc();
    }

    /// Counts one call of the kubelet's `/pods`.
    pub fn kubelet_list(&self, result: &'static str) {
        self.kubelet_lists
            .get_or_create(&FetchLabels { result })
            .inc();
    }

    /// Counts one applied change of the feed.
    pub fn feed_change(&self, kind: &'static str) {
        self.feed_changes.get_or_create(&KindLabels { kind }).inc();
    }

    /// Counts one failed broker call.
    pub fn upstream_error(&self, code: &str) {
        // Codes are few, but they come from outside: bound them.
        let code: String = code
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(64)
            .collect();
        self.upstream_errors
            .get_or_create(&CodeLabels { code })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names() {
        let m = AgentMetrics::new();
        m.request(200);
        m.request(418);
        m.cache_hit.inc();
        m.refresh("ok");
        m.evicted("lru", 2);
        m.upstream_error("ResourceNotFoundException");
        m.upstream_latency.observe(0.01);
        m.cache_refused.inc();
        m.client_rate_limited.inc();
        m.refused_tokens.set(3);
        m.rate_limit_clients.set(2);
        m.feed_change("delete");
        m.feed_reconnects.inc();
        m.pod_check_running.inc();
        m.pod_check("gone");
        m.kubelet_list("ok");
        let text = m.encode();
        for needle in [
            "podid_agent_requests_total{status=\"200\"} 1",
            "podid_agent_requests_total{status=\"418\"} 1",
            "podid_agent_cache_lookups_total{result=\"hit\"} 1",
            "podid_agent_cache_refreshes_total{result=\"ok\"} 1",
            "podid_agent_cache_evictions_total{result=\"lru\"} 2",
            "podid_agent_upstream_errors_total{code=\"ResourceNotFoundException\"} 1",
            "podid_agent_upstream_duration_seconds_count 1",
            "podid_agent_cached_entries 0",
            "podid_agent_upstream_up 1",
            "podid_agent_cache_lookups_total{result=\"refused\"} 1",
            "podid_agent_client_rate_limited_total 1",
            "podid_agent_refused_tokens 3",
            "podid_agent_rate_limit_clients 2",
            "podid_agent_feed_connected 0",
            "podid_agent_feed_changes_total{kind=\"delete\"} 1",
            "podid_agent_feed_reconnects_total 1",
            "podid_agent_feed_revalidations_total 0",
            "podid_agent_pod_check_total{result=\"running\"} 1",
            "podid_agent_pod_check_total{result=\"gone\"} 1",
            "podid_agent_kubelet_lists_total{result=\"ok\"} 1",
            "podid_agent_kubelet_up 0",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        assert_eq!(m.requests_with(200), 1);
    }
}
