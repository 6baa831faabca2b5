//! The audit trail's retention: events older than it are deleted by a
//! background task, at start and then periodically, in bounded batches.

use std::sync::Arc;
use std::time::Duration;

use podid_api::clock::Clock;
use podid_api::EpochMillis;
use podid_store::{AssociationStore, StoreError};
use prometheus_client::metrics::counter::Counter;
use tokio::task::JoinHandle;

use crate::wire::error_chain;

/// Events deleted per transaction at most: a short hold of the write lock.
pub(crate) const PRUNE_BATCH: u32 = 1000;

/// The longest pause between two prunings.
const MAX_INTERVAL: Duration = Duration::from_secs(3600);

/// The shortest pause between two prunings.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// How often events older than `retention` are pruned: hourly, or every
/// tenth of a shorter retention (at most every second), so that no event
/// outlives its retention by more than a tenth of it (or an hour).
pub(crate) fn prune_interval(retention: Duration) -> Duration {
    (retention / 10).clamp(MIN_INTERVAL, MAX_INTERVAL)
}

/// Deletes every event older than `retention`, [`PRUNE_BATCH`] per
/// transaction, yielding between batches; counts them in `pruned`.
pub(crate) async fn prune_once(
    store: &dyn AssociationStore,
    clock: &dyn Clock,
    retention: Duration,
    pruned: &Counter,
) -> Result<u64, StoreError> {
    let now = clock.now_millis().0;
    let keep = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let cut = EpochMillis(now.saturating_sub(keep));
    let mut total = 0;
    loop {
        let deleted = store.prune_audit(cut, PRUNE_BATCH).await?;
        pruned.inc_by(deleted);
        total += deleted;
        if deleted < u64::from(PRUNE_BATCH) {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

/// Starts pruning events older than `retention`, now and every
/// [`prune_interval`]; abort the handle at shutdown.
pub(crate) fn start_pruner(
    store: Arc<dyn AssociationStore>,
    clock: Arc<dyn Clock>,
    retention: Duration,
    pruned: Counter,
) -> JoinHandle<()> {
    let every = prune_interval(retention);
    tracing::info!(
        retention_s = retention.as_secs(),
        prune_every_s = every.as_secs(),
        "audit retention"
    );
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match prune_once(store.as_ref(), clock.as_ref(), retention, &pruned).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(events = n, "audit events past the retention deleted"),
                Err(e) => tracing::warn!(
                    error = %error_chain(&e),
                    retry_in_s = every.as_secs(),
                    "pruning the audit trail failed"
                ),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn prunes_hourly_or_every_tenth_of_a_short_retention() {
        let day = Duration::from_secs(86_400);
        assert_eq!(prune_interval(30 * day), Duration::from_secs(3600));
        assert_eq!(
            prune_interval(Duration::from_secs(7200)),
            Duration::from_secs(720)
        );
        assert_eq!(
            prune_interval(Duration::from_secs(3)),
            Duration::from_secs(1)
        );
    }

    #[tokio::test]
    async fn a_backlog_is_deleted_in_batches_and_counted() {
        use podid_api::audit::{AuditEvent, AuditKind, AuditOutcome};
        use podid_api::clock::SystemClock;
        let store = podid_store::open("sqlite::memory:").await.unwrap();
        let now = SystemClock.now_millis().0;
        let event = |i: i64, age_ms: i64| {
            AuditEvent::new(
                AuditKind::Credential,
                EpochMillis(now - age_ms),
                &format!("req-{i}"),
                "PODIDNODE",
                "blue".into(),
                AuditOutcome::Issued,
            )
        };
        // 2,500 events two days old, 10 from a minute ago.
        let old: Vec<_> = (0..2500).map(|i| event(i, 2 * 86_400_000)).collect();
        let new: Vec<_> = (0..10).map(|i| event(10_000 + i, 60_000)).collect();
        store.record_audit(&old).await.unwrap();
        store.record_audit(&new).await.unwrap();
        let pruned = Counter::default();
        let deleted = prune_once(
            store.as_ref(),
            &SystemClock,
            Duration::from_secs(86_400),
            &pruned,
        )
        .await
        .unwrap();
        assert_eq!(deleted, 2500);
        assert_eq!(pruned.get(), 2500);
        let left = store
            .list_audit(&podid_store::AuditQuery {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(left.events.len(), 10);
        assert!(left
            .events
            .iter()
            .all(|e| e.request_id.starts_with("req-100")));
    }
}
