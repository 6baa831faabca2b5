//! The periodic refresh of the keys of clusters registered by URL or discovery: at start-up and
//! then every interval, each such cluster's JWKS is fetched; the verifier uses it at once (a key
//! gone from it takes every token it signed, cached or not), and a changed set is written to the
//! registry, so that other replicas, restarts and later updates of the cluster see it too. A
//! failed fetch keeps the keys there are, however long it lasts.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use podid_api::audit::{AuditEvent, AuditKind, AuditOutcome, AuditState};
use podid_api::clock::Clock;
use podid_api::cluster::Cluster;
use podid_api::EpochMillis;
use podid_store::{AssociationStore, StoreError};
use podid_token::{KeySetError, TokenError, TokenVerifier};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use super::FetchError;
use crate::broker::audit::AuditSink;
use crate::broker::lookups::{trust_of, Lookups};
use crate::metrics::JwksMetrics;

/// How often keys are fetched again unless told otherwise (`--jwks-refresh-interval`).
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(300);

/// Clusters fetched at once: a slow URL holds up only its own cluster.
const CONCURRENT_FETCHES: usize = 4;

/// Attempts at writing a changed set when the cluster changes in between.
const WRITE_ATTEMPTS: usize = 3;

/// Who the audit trail says changed a cluster's keys: the server itself, no API key.
pub const REFRESH_CALLER: &str = "podid-server:jwks-refresh";

/// What one cluster's refresh came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The URL serves the keys the registry holds.
    Unchanged,
    /// The URL serves other keys: in use, and written to the registry.
    Changed,
    /// The cluster changed its key source meanwhile: nothing written.
    Superseded,
    /// The fetch failed, the document had no usable key, or the registry could not be
    /// written: the label says which (`fetch`, `not_https`, `keys`, `store`).
    Failed(&'static str),
}

impl Outcome {
    fn labels(self) -> (&'static str, &'static str) {
        match self {
            Outcome::Unchanged => ("unchanged", ""),
            Outcome::Changed => ("changed", ""),
            Outcome::Superseded => ("superseded", ""),
            Outcome::Failed(reason) => ("failed", reason),
        }
    }
}

/// Refreshes the keys of every cluster with a `jwks_uri`; cheap to clone.
#[derive(Clone)]
pub struct JwksRefresher {
    /// The registry.
    pub store: Arc<dyn AssociationStore>,
    /// The broker's verifier, whose keys are replaced.
    pub verifier: Arc<TokenVerifier>,
    /// The broker's cached registry reads, dropped after a write.
    pub lookups: Arc<Lookups>,
    /// The clock of `modified_at`.
    pub clock: Arc<dyn Clock>,
    /// Counters.
    pub metrics: Arc<JwksMetrics>,
    /// Where a written key set is recorded as a change of the cluster.
    pub audit: AuditSink,
    /// Time between two rounds.
    pub interval: Duration,
}

/// The key ids of a JWKS document, for the log.
fn kids(doc: &serde_json::Value) -> BTreeSet<String> {
    doc.get("keys")
        .and_then(|k| k.as_array())
        .map(|keys| {
            keys.iter()
                .map(|k| {
                    podid_api::arn::printable(k.get("kid").and_then(|v| v.as_str()).unwrap_or("-"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The metric label of a failed fetch.
fn failure_reason(e: &TokenError) -> &'static str {
    match e {
        TokenError::KeySet(KeySetError::Fetch(podid_token::JwksFetchError::Failed(why))) => {
            match why.downcast_ref::<FetchError>() {
                Some(FetchError::NotHttps { .. }) => "not_https",
                _ => "fetch",
            }
        }
        TokenError::KeySet(KeySetError::Fetch(_)) => "fetch",
        _ => "keys",
    }
}

impl JwksRefresher {
    /// Runs a round now and then one every interval, until the task is aborted.
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(self.interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                self.round().await;
            }
        })
    }

    /// Refreshes every cluster with a `jwks_uri`, a few at a time; what each came to.
    pub async fn round(&self) -> Vec<(String, Outcome)> {
        let clusters = match self.store.list_clusters().await {
            Ok(clusters) => clusters,
            Err(e) => {
                tracing::warn!(error = %e, "JWKS refresh: cannot list the clusters; keys kept");
                self.metrics.refreshed("failed", "store");
                return Vec::new();
            }
        };
        let slots = Arc::new(Semaphore::new(CONCURRENT_FETCHES));
        let mut running = JoinSet::new();
        for cluster in clusters.into_iter().filter(|c| c.jwks_uri.is_some()) {
            let this = self.clone();
            let slots = slots.clone();
            running.spawn(async move {
                let _slot = slots.acquire_owned().await;
                let outcome = this.refresh(&cluster).await;
                (cluster.name, outcome)
            });
        }
        let mut outcomes = Vec::new();
        while let Some(done) = running.join_next().await {
            match done {
                Ok((name, outcome)) => {
                    let (result, reason) = outcome.labels();
                    self.metrics.refreshed(result, reason);
                    outcomes.push((name, outcome));
                }
                Err(e) => tracing::error!(error = %e, "JWKS refresh task failed"),
            }
        }
        outcomes
    }

    /// Fetches one cluster's keys, hands them to the verifier and writes a changed set.
    async fn refresh(&self, cluster: &Cluster) -> Outcome {
        let trust = trust_of(cluster);
        let doc = match self.verifier.refresh_keys(&trust).await {
            Ok(Some(doc)) => doc,
            Ok(None) => return Outcome::Superseded,
            Err(e) => {
                tracing::warn!(
                    cluster = %cluster.name,
                    jwks_uri = trust.jwks_uri.as_deref().unwrap_or("-"),
                    error = %e,
                    "JWKS refresh failed; the cluster's keys stay as they were"
                );
                return Outcome::Failed(failure_reason(&e));
            }
        };
        self.metrics
            .fetched(&cluster.name, self.clock.now_millis().0 / 1000);
        self.write(cluster.clone(), doc).await
    }

    /// Writes `doc` as the cluster's key set if it differs from the registry's; when the
    /// cluster changed in between, reads it again (a few times) unless its key source changed.
    async fn write(&self, mut current: Cluster, doc: serde_json::Value) -> Outcome {
        let uri = current.jwks_uri.clone();
        for _ in 0..WRITE_ATTEMPTS {
            if current.jwks_uri != uri {
                return Outcome::Superseded;
            }
            if current.jwks == doc {
                return Outcome::Unchanged;
            }
            let mut updated = current.clone();
            updated.jwks = doc.clone();
            updated.modified_at =
                EpochMillis(self.clock.now_millis().0.max(current.modified_at.0 + 1));
            let written = self
                .store
                .update_cluster(&updated, current.modified_at)
                .await;
            self.lookups.invalidate();
            match written {
                Ok(()) => {
                    let (before, after) = (kids(&current.jwks), kids(&doc));
                    tracing::info!(
                        cluster = %current.name,
                        added = ?after.difference(&before).collect::<Vec<_>>(),
                        removed = ?before.difference(&after).collect::<Vec<_>>(),
                        "cluster keys changed at their URL; the registry now holds the new set"
                    );
                    self.audit(&current.name, before, after, updated.modified_at)
                        .await;
                    return Outcome::Changed;
                }
                Err(StoreError::Conflict) => match self.store.get_cluster(&current.name).await {
                    Ok(Some(again)) => current = again,
                    Ok(None) => return Outcome::Superseded,
                    Err(e) => return self.store_failed(&current.name, &e),
                },
                Err(StoreError::ClusterNotFound(_)) => return Outcome::Superseded,
                Err(e) => return self.store_failed(&current.name, &e),
            }
        }
        tracing::info!(cluster = %current.name, "cluster kept changing; its keys are written next round");
        Outcome::Superseded
    }

    /// Records the new key set as an `UpdateCluster` change by [`REFRESH_CALLER`].
    async fn audit(
        &self,
        cluster: &str,
        before: BTreeSet<String>,
        after: BTreeSet<String>,
        at: EpochMillis,
    ) {
        let request_id = format!("jwks-refresh-{}", uuid::Uuid::new_v4());
        let mut event = AuditEvent::new(
            AuditKind::Change,
            at,
            &request_id,
            REFRESH_CALLER,
            podid_api::arn::printable(cluster),
            AuditOutcome::Succeeded,
        );
        event.action = Some(crate::authz::Operation::UpdateCluster.name().to_owned());
        let keys = |ids: BTreeSet<String>| AuditState {
            key_ids: Some(ids.into_iter().collect()),
            ..AuditState::default()
        };
        event.before = Some(keys(before));
        event.after = Some(keys(after));
        self.audit.record(event).await;
    }

    fn store_failed(&self, cluster: &str, e: &StoreError) -> Outcome {
        tracing::warn!(
            cluster,
            error = %e,
            "JWKS refresh: cannot write the new keys to the registry (in use here all the same)"
        );
        Outcome::Failed("store")
    }
}

#[cfg(test)]
mod tests;
