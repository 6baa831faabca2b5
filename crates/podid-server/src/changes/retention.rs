//! The change feed's retention: changes older than it are deleted by a
//! background task, now and then periodically; followers behind them are told
//! to start over (`reset`).

use std::sync::Arc;
use std::time::Duration;

use podid_api::clock::{Clock, SystemClock};
use podid_api::EpochMillis;
use podid_store::AssociationStore;
use tokio::task::JoinHandle;

use crate::broker::audit::retention::prune_interval;
use crate::wire::error_chain;

/// How long changes are kept unless told otherwise.
pub const DEFAULT_CHANGE_RETENTION: Duration = Duration::from_secs(86_400);

/// Starts deleting changes older than `retention`, now and every
/// [`prune_interval`] (a tenth of it, between 1 s and an hour); abort the
/// handle at shutdown.
pub(crate) fn start_pruner(
    store: Arc<dyn AssociationStore>,
    retention: Duration,
) -> JoinHandle<()> {
    let every = prune_interval(retention);
    tracing::info!(
        retention_s = retention.as_secs(),
        prune_every_s = every.as_secs(),
        "change feed retention"
    );
    let keep = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let cut = EpochMillis(SystemClock.now_millis().0.saturating_sub(keep));
            match store.prune_changes(cut).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(changes = n, "feed changes past the retention deleted"),
                Err(e) => tracing::warn!(
                    error = %error_chain(&e),
                    retry_in_s = every.as_secs(),
                    "pruning the change feed failed"
                ),
            }
        }
    })
}
