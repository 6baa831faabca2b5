//! Prometheus metrics of the webhook (prefix `podid_webhook_`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A `result` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    /// The result.
    pub result: String,
}

/// How one admission ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmissionResult {
    /// A patch was returned.
    Mutated,
    /// Allowed unchanged: not a pod CREATE, no association, nothing missing.
    Skipped,
    /// Allowed unchanged because something failed (server unreachable or
    /// erroring, undecodable pod), or answered 4xx (malformed review).
    Error,
}

impl AdmissionResult {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            AdmissionResult::Mutated => "mutated",
            AdmissionResult::Skipped => "skipped",
            AdmissionResult::Error => "error",
        }
    }
}

/// How one association lookup ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupResult {
    /// The server says there is an association.
    Found,
    /// The followed set has it: no request to the server.
    Followed,
    /// A fresh positive answer was in the cache.
    Cached,
    /// The server says there is none.
    NotFound,
    /// The server could not be reached or did not answer in time.
    Unreachable,
    /// The server answered with an error.
    Error,
}

impl LookupResult {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            LookupResult::Found => "found",
            LookupResult::Followed => "followed",
            LookupResult::Cached => "cached",
            LookupResult::NotFound => "not_found",
            LookupResult::Unreachable => "unreachable",
            LookupResult::Error => "error",
        }
    }
}

/// Who read the change feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedRead {
    /// The follower's long poll.
    Follower,
    /// An admission catching up before it answers "no association".
    Admission,
}

/// A `reader` and `result` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeedReadLabels {
    /// follower, admission.
    pub reader: String,
    /// ok, error.
    pub result: String,
}

/// A `kind` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The change's kind.
    pub kind: String,
}

/// The webhook's metrics and their registry.
#[derive(Debug)]
pub struct WebhookMetrics {
    registry: Registry,
    /// `podid_webhook_admissions_total{result}`: mutated, skipped, error.
    pub admissions: Family<ReviewLabels, Counter>,
    /// `podid_webhook_admission_duration_seconds`: time to answer one review.
    pub admission_latency: Histogram,
    /// `podid_webhook_association_lookups_total{result}`: found, cached, not_found, unreachable, error.
    pub lookups: Family<ReviewLabels, Counter>,
    /// `podid_webhook_association_lookup_duration_seconds`: calls to the server.
    pub lookup_latency: Histogram,
    /// `podid_webhook_server_unreachable_total`: admissions that could not reach podid's server.
    pub server_unreachable: Counter,
    /// `podid_webhook_certificate_reloads_total{result}`: loaded, failed.
    pub certificate_reloads: Family<ReviewLabels, Counter>,
    /// `podid_webhook_associations_known`: service accounts with an association in the followed set.
    pub associations_known: Gauge,
    /// `podid_webhook_feed_connected`: 1 while the follower reads the change feed, else 0.
    pub feed_connected: Gauge,
    /// `podid_webhook_feed_position`: the feed position the followed set reflects.
    pub feed_position: Gauge,
    /// `podid_webhook_feed_loads_total`: times the set was listed from the server.
    pub feed_loads: Counter,
    /// `podid_webhook_feed_reads_total{reader,result}`: change-feed reads.
    pub feed_reads: Family<FeedReadLabels, Counter>,
    /// `podid_webhook_feed_changes_total{kind}`: changes applied to the set.
    pub feed_changes: Family<KindLabels, Counter>,
}

impl Default for WebhookMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl WebhookMetrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("podid_webhook");
        let m = WebhookMetrics {
            admissions: Family::default(),
            admission_latency: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            lookups: Family::default(),
            lookup_latency: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            server_unreachable: Counter::default(),
            certificate_reloads: Family::default(),
            associations_known: Gauge::default(),
            feed_connected: Gauge::default(),
            feed_position: Gauge::default(),
            feed_loads: Counter::default(),
            feed_reads: Family::default(),
            feed_changes: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "admissions",
            "Admission reviews answered, by result",
            m.admissions.clone(),
        );
        registry.register(
            "admission_duration_seconds",
            "Time to answer one admission review",
            m.admission_latency.clone(),
        );
        registry.register(
            "association_lookups",
            "Association lookups, by result",
            m.lookups.clone(),
        );
        registry.register(
            "association_lookup_duration_seconds",
            "Time of one association lookup at podid's server",
            m.lookup_latency.clone(),
        );
        registry.register(
            "server_unreachable",
            "Admissions whose association lookup could not reach podid's server",
            m.server_unreachable.clone(),
        );
        registry.register(
            "certificate_reloads",
            "TLS certificate loads from disk, by result",
            m.certificate_reloads.clone(),
        );
        registry.register(
            "associations_known",
            "Service accounts with an association in the set followed on the change feed",
            m.associations_known.clone(),
        );
        registry.register(
            "feed_connected",
            "1 while the change feed is followed, 0 while it cannot be read",
            m.feed_connected.clone(),
        );
        registry.register(
            "feed_position",
            "The change-feed position the followed set reflects",
            m.feed_position.clone(),
        );
        registry.register(
            "feed_loads",
            "Times the followed set was listed from the server",
            m.feed_loads.clone(),
        );
        registry.register(
            "feed_reads",
            "Change-feed reads, by reader (follower, admission) and result",
            m.feed_reads.clone(),
        );
        registry.register(
            "feed_changes",
            "Changes applied to the followed set, by kind",
            m.feed_changes.clone(),
        );
        WebhookMetrics { registry, ..m }
    }

    /// Records whether the follower reads the feed.
    pub fn feed_connected(&self, connected: bool) {
        self.feed_connected.set(i64::from(connected));
    }

    /// Records a load of the set.
    pub fn feed_loaded(&self, accounts: usize, position: i64) {
        self.feed_loads.inc();
        self.associations_known
            .set(i64::try_from(accounts).unwrap_or(i64::MAX));
        self.feed_position.set(position);
    }

    /// Counts one feed read.
    pub fn feed_read(&self, reader: FeedRead, ok: bool) {
        let reader = match reader {
            FeedRead::Follower => "follower",
            FeedRead::Admission => "admission",
        };
        self.feed_reads
            .get_or_create(&FeedReadLabels {
                reader: reader.to_owned(),
                result: if ok { "ok" } else { "error" }.to_owned(),
            })
            .inc();
    }

    /// Records an applied feed answer.
    pub fn feed_applied(
        &self,
        changes: &[podid_api::changes::Change],
        accounts: usize,
        position: Option<i64>,
    ) {
        for change in changes {
            self.feed_changes
                .get_or_create(&KindLabels {
                    kind: change.kind.as_str().to_owned(),
                })
                .inc();
        }
        self.associations_known
            .set(i64::try_from(accounts).unwrap_or(i64::MAX));
        if let Some(position) = position {
            self.feed_position.set(position);
        }
    }

    /// Counts one admission.
    pub fn admission(&self, result: AdmissionResult, seconds: f64) {
        self.admissions
            .get_or_create(&ReviewLabels {
                result: result.as_str().to_owned(),
            })
            .inc();
        self.admission_latency.observe(seconds);
    }

    /// Counts one lookup.
    pub fn lookup(&self, result: LookupResult) {
        self.lookups
            .get_or_create(&ReviewLabels {
                result: result.as_str().to_owned(),
            })
            .inc();
        if result == LookupResult::Unreachable {
            self.server_unreachable.inc();
        }
    }

    /// Counts one certificate load.
    pub fn certificate_reload(&self, ok: bool) {
        let result = if ok { "loaded" } else { "failed" };
        self.certificate_reloads
            .get_or_create(&ReviewLabels {
                result: result.to_owned(),
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

/// Certificate reloads are counted in `podid_webhook_certificate_reloads_total`.
impl podid_listen::ReloadObserver for WebhookMetrics {
    fn reloaded(&self, loaded: bool) {
        self.certificate_reload(loaded);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prefixed() {
        let m = WebhookMetrics::new();
        m.admission(AdmissionResult::Mutated, 0.01);
        m.lookup(LookupResult::Unreachable);
        m.certificate_reload(true);
        let text = m.encode();
        for needle in [
            r#"podid_webhook_admissions_total{result="mutated"} 1"#,
            r#"podid_webhook_association_lookups_total{result="unreachable"} 1"#,
            "podid_webhook_server_unreachable_total 1",
            r#"podid_webhook_certificate_reloads_total{result="loaded"} 1"#,
            "podid_webhook_admission_duration_seconds_count 1",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
    }
}
