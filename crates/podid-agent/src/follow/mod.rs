//! Following the cluster's change feed (`GET /podid/v1/clusters/{name}/changes`,
//! long polls): a deleted or updated association's entries dropped at once,
//! refused tokens forgotten on a create, everything held revalidated on a
//! cluster change or a `reset`. Errors back off (bounded, jittered) and the
//! follower reconnects from its position. It starts with the agent's first
//! broker call (`gate`).

mod gate;
mod request;

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use podid_api::changes::{Change, ChangeKind, ChangesResponse};
use tokio::sync::Notify;

pub use self::gate::{OpensOnFirstCall, StartGate};
pub use self::request::FeedAuth;
use self::request::{call, feed_url};
use crate::cache::PodCredentialCache;
use crate::error::AgentError;
use crate::http::HttpClient;
use crate::metrics::AgentMetrics;

/// Where and how the follower asks.
#[derive(Debug, Clone)]
pub struct FeedSettings {
    /// podid server's URL (the agent's `--endpoint`).
    pub endpoint: String,
    /// The cluster followed.
    pub cluster: String,
    /// How long one long poll may wait on the server (at most 30).
    pub wait_seconds: u64,
    /// The first back-off after an error (doubled per error in a row).
    pub min_backoff: Duration,
    /// The longest back-off.
    pub max_backoff: Duration,
}

impl FeedSettings {
    /// Long polls of 20 s; back-off from 250 ms to 5 s.
    pub fn new(endpoint: impl Into<String>, cluster: impl Into<String>) -> Self {
        FeedSettings {
            endpoint: endpoint.into(),
            cluster: cluster.into(),
            wait_seconds: 20,
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
        }
    }

    /// The back-off before attempt `errors` in a row (1 = first error):
    /// doubling from `min_backoff` up to `max_backoff`, each between half of
    /// it and all of it (`jitter` is any number; its spread picks where).
    pub fn backoff(&self, errors: u32, jitter: u64) -> Duration {
        let doubled = self
            .min_backoff
            .saturating_mul(1u32 << errors.saturating_sub(1).min(16));
        let full = doubled.min(self.max_backoff);
        let half = full / 2;
        let spread = u64::try_from(half.as_millis()).unwrap_or(u64::MAX).max(1);
        half + Duration::from_millis(jitter % spread)
    }

    /// How long one call may take: the server's wait and 10 s more.
    fn call_timeout(&self) -> Duration {
        Duration::from_secs(self.wait_seconds + 10)
    }
}

/// What `/readyz` and the metrics say of the feed.
#[derive(Debug, Default)]
pub struct FeedStatus {
    /// Whether the follower started (with the agent's first broker call).
    started: AtomicBool,
    connected: AtomicBool,
    /// The position followed from (-1 before the first answer).
    position: AtomicI64,
    errors_in_a_row: AtomicU32,
    last_error: Mutex<Option<String>>,
}

impl FeedStatus {
    /// Whether the last call was answered.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// The position followed from, once known.
    pub fn position(&self) -> Option<i64> {
        let p = self.position.load(Ordering::Relaxed);
        (p >= 0).then_some(p)
    }

    /// Why the last call failed, while it is down.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The `changeFeed` object of `/readyz`.
    pub fn detail(&self) -> serde_json::Value {
        let mut detail = serde_json::json!({
            "started": self.started.load(Ordering::Relaxed),
            "connected": self.connected(),
            "position": self.position(),
        });
        if let Some(error) = self.last_error().filter(|_| !self.connected()) {
            detail["error"] = serde_json::Value::String(error);
        }
        detail
    }
}

/// The follower of one cluster's feed.
#[derive(Debug)]
pub struct ChangeFollower {
    client: HttpClient,
    auth: FeedAuth,
    settings: FeedSettings,
    status: Arc<FeedStatus>,
    /// Opened by the first broker call; `None`: starts at once.
    gate: Option<Arc<StartGate>>,
}

impl ChangeFollower {
    /// A follower asking `settings.endpoint` through `client` as `auth`.
    pub fn new(client: HttpClient, auth: FeedAuth, settings: FeedSettings) -> Self {
        let status = FeedStatus {
            position: AtomicI64::new(-1),
            ..FeedStatus::default()
        };
        ChangeFollower {
            client,
            auth,
            settings,
            status: Arc::new(status),
            gate: None,
        }
    }

    /// Starts following only once `gate` is opened (by the first broker
    /// call: [`OpensOnFirstCall`]) instead of at once.
    pub fn start_on(mut self, gate: Arc<StartGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Its status (shared).
    pub fn status(&self) -> Arc<FeedStatus> {
        self.status.clone()
    }

    /// Follows the feed forever, applying each change to `cache` (drop the
    /// future to stop). Revalidations run beside the feed, one at a time
    /// (requests meanwhile make one more), so deletes keep flowing.
    pub async fn run(self, cache: Arc<PodCredentialCache>, metrics: Arc<AgentMetrics>) {
        if let Some(gate) = &self.gate {
            gate.wait().await;
        }
        self.status.started.store(true, Ordering::Relaxed);
        let revalidate = Notify::new();
        let follow = self.follow(&cache, &metrics, &revalidate);
        let revalidations = async {
            loop {
                revalidate.notified().await;
                let done = cache.revalidate().await;
                metrics.feed_revalidations.inc();
                tracing::info!(
                    refreshed = done.refreshed,
                    dropped = done.dropped,
                    unchecked = done.unchecked,
                    "revalidated the cached credentials"
                );
            }
        };
        tokio::join!(follow, revalidations);
    }

    async fn follow(
        &self,
        cache: &PodCredentialCache,
        metrics: &AgentMetrics,
        revalidate: &Notify,
    ) {
        let mut position: Option<i64> = None;
        let jitter = std::collections::hash_map::RandomState::new();
        loop {
            let url = feed_url(
                &self.settings.endpoint,
                &self.settings.cluster,
                position,
                self.settings.wait_seconds,
            );
            match call(&self.client, &self.auth, &url, self.settings.call_timeout()).await {
                Ok(page) => {
                    self.connected(metrics);
                    let first = position.is_none();
                    // Changes before the first position are unknown: recheck what is
                    // held (broker calls wait for the first position: only a wait that
                    // ran out leaves something held) and forget refusals.
                    if first {
                        cache.forget_refused();
                        if let Some(gate) = &self.gate {
                            gate.positioned();
                        }
                    }
                    if (first && !cache.is_empty()) || page.reset {
                        if page.reset {
                            tracing::warn!(
                                after = position,
                                now = page.position,
                                "the change feed cannot be followed from this position: revalidating"
                            );
                        }
                        revalidate.notify_one();
                    }
                    if !first {
                        apply_page(&page, cache, metrics, revalidate);
                    }
                    position = Some(page.position);
                    self.status.position.store(page.position, Ordering::Relaxed);
                }
                Err(e) => {
                    let errors = self.failed(&e, metrics);
                    let pause = self.settings.backoff(errors, jitter.hash_one(errors));
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    fn connected(&self, metrics: &AgentMetrics) {
        if !self.status.connected.swap(true, Ordering::Relaxed) {
            tracing::info!(cluster = %self.settings.cluster, "following the change feed");
        }
        self.status.errors_in_a_row.store(0, Ordering::Relaxed);
        metrics.feed_connected.set(1);
    }

    /// Notes a failed call; returns how many failed in a row.
    fn failed(&self, error: &AgentError, metrics: &AgentMetrics) -> u32 {
        let errors = self
            .status
            .errors_in_a_row
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let text = error.to_string();
        if self.status.connected.swap(false, Ordering::Relaxed) || errors == 1 {
            tracing::warn!(error = %text, "the change feed cannot be followed; reconnecting");
        } else {
            tracing::debug!(error = %text, errors, "the change feed is still down");
        }
        *self
            .status
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(text);
        metrics.feed_connected.set(0);
        metrics.feed_reconnects.inc();
        errors
    }
}

/// Applies a page's changes, oldest first.
fn apply_page(
    page: &ChangesResponse,
    cache: &PodCredentialCache,
    metrics: &AgentMetrics,
    revalidate: &Notify,
) {
    for change in &page.changes {
        apply(change, cache, revalidate);
        metrics.feed_change(change.kind.as_str());
    }
}

/// What one change does to the cache.
fn apply(change: &Change, cache: &PodCredentialCache, revalidate: &Notify) {
    match (change.kind, change.association_id.as_deref()) {
        (ChangeKind::Create, _) => cache.forget_refused(),
        (ChangeKind::Update | ChangeKind::Delete, Some(id)) => {
            let dropped = cache.drop_association(id);
            tracing::info!(
                kind = change.kind.as_str(),
                association = id,
                dropped,
                "association changed: its cached credentials dropped"
            );
        }
        // A change the agent cannot place, or the cluster's: recheck everything.
        (ChangeKind::Update | ChangeKind::Delete, None)
        | (ChangeKind::ClusterUpdate | ChangeKind::ClusterDelete, _) => {
            cache.forget_refused();
            revalidate.notify_one();
        }
    }
}

#[cfg(test)]
mod tests;
