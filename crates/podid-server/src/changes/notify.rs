//! The in-process wake-up of waiting feed requests: a counter bumped after each
//! committed association or cluster write of this server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// How often a waiting feed request looks at the store without a wake-up,
/// unless the server says otherwise.
pub const DEFAULT_RECHECK: Duration = Duration::from_secs(1);

/// Wakes the feed requests waiting for a change. Cheap to clone (one `Arc`).
#[derive(Debug, Clone)]
pub(crate) struct ChangeNotifier(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// Bumped after every committed write; waiters watch it.
    version: watch::Sender<u64>,
    /// Set at shutdown: waiting requests answer at once.
    closing: AtomicBool,
    /// How often a waiting request looks at the store without a wake-up
    /// (writes by other server processes on the same database).
    recheck: Duration,
}

impl Default for ChangeNotifier {
    fn default() -> Self {
        ChangeNotifier::with_recheck(DEFAULT_RECHECK)
    }
}

impl ChangeNotifier {
    /// A notifier whose waiters also look at the store every `recheck`.
    pub(crate) fn with_recheck(recheck: Duration) -> Self {
        ChangeNotifier(Arc::new(Inner {
            version: watch::channel(0).0,
            closing: AtomicBool::new(false),
            recheck: recheck.max(Duration::from_millis(10)),
        }))
    }

    /// How often a waiting request looks at the store without a wake-up.
    pub(crate) fn recheck(&self) -> Duration {
        self.0.recheck
    }

    /// Called after a write committed (and after the lookup caches were
    /// forgotten): every waiting request looks at the feed again.
    pub(crate) fn published(&self) {
        self.0.version.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A receiver that sees every bump made after this call.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.version.subscribe()
    }

    /// The server is stopping: waiting requests answer what they have now.
    pub(crate) fn close(&self) {
        self.0.closing.store(true, Ordering::Release);
        self.published();
    }

    /// Whether [`ChangeNotifier::close`] was called.
    pub(crate) fn is_closing(&self) -> bool {
        self.0.closing.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn a_bump_after_subscribing_wakes_even_if_made_before_the_wait() {
        let n = ChangeNotifier::default();
        let mut rx = n.subscribe();
        n.clone().published();
        tokio::time::timeout(std::time::Duration::from_secs(5), rx.changed())
            .await
            .unwrap()
            .unwrap();
        assert!(!n.is_closing());
        n.close();
        assert!(n.is_closing());
        assert!(rx.has_changed().unwrap());
    }
}
