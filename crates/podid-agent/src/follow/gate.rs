//! Starts the change-feed follower with the agent's first broker call: an
//! agent that has asked nothing holds nothing to revoke, so an idle agent
//! opens no connection and touches no client code. Broker calls wait (once,
//! bounded) for the follower's first position, so no change made after a
//! broker answer can fall before the position the follower starts from.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::upstream::{CredentialSource, FetchedCredentials, UpstreamError};

/// How long broker calls wait for the follower's first position; after one
/// such wait runs out they no longer wait (the follower then revalidates what
/// is held when it gets its first position).
pub const FIRST_POSITION_WAIT: Duration = Duration::from_secs(2);

/// Opened once, by the first broker call; the follower waits for it.
#[derive(Debug, Default)]
pub struct StartGate {
    open: AtomicBool,
    opened: Notify,
    /// The follower has its first position, or waiting for it gave up.
    positioned: AtomicBool,
    on_position: Notify,
}

impl StartGate {
    /// Opens the gate (only the first call does anything).
    pub fn open(&self) {
        if !self.open.load(Ordering::Relaxed) && !self.open.swap(true, Ordering::AcqRel) {
            // A stored permit: a waiter that comes later passes at once.
            self.opened.notify_one();
        }
    }

    /// Whether it was opened.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Waits until the gate is opened.
    pub async fn wait(&self) {
        if !self.is_open() {
            self.opened.notified().await;
        }
    }

    /// Said by the follower when it has its first position.
    pub fn positioned(&self) {
        self.positioned.store(true, Ordering::Release);
        self.on_position.notify_waiters();
    }

    /// Waits (at most `limit`) for the follower's first position; once a wait
    /// runs out, no later call waits.
    async fn until_positioned(&self, limit: Duration) {
        if self.positioned.load(Ordering::Acquire) {
            return;
        }
        let notified = self.on_position.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.positioned.load(Ordering::Acquire) {
            return;
        }
        if tokio::time::timeout(limit, notified).await.is_err() {
            tracing::warn!(
                "the change feed gave no position in time: asking the broker without it"
            );
            self.positioned.store(true, Ordering::Release);
        }
    }
}

/// A credential source that opens `gate` before its first call.
pub struct OpensOnFirstCall {
    inner: Arc<dyn CredentialSource>,
    gate: Arc<StartGate>,
}

impl OpensOnFirstCall {
    /// `inner`, opening `gate` on its first call.
    pub fn new(inner: Arc<dyn CredentialSource>, gate: Arc<StartGate>) -> Self {
        OpensOnFirstCall { inner, gate }
    }
}

#[async_trait]
impl CredentialSource for OpensOnFirstCall {
    async fn fetch(&self, token: &str) -> Result<FetchedCredentials, UpstreamError> {
        self.gate.open();
        self.gate.until_positioned(FIRST_POSITION_WAIT).await;
        self.inner.fetch(token).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;

    struct Refuses;

    #[async_trait]
    impl CredentialSource for Refuses {
        async fn fetch(&self, _token: &str) -> Result<FetchedCredentials, UpstreamError> {
            Err(UpstreamError::unavailable("no broker here"))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn calls_wait_for_the_first_position_once_and_bounded() {
        let gate = Arc::new(StartGate::default());
        let source = Arc::new(OpensOnFirstCall::new(Arc::new(Refuses), gate.clone()));
        let call = tokio::spawn({
            let source = source.clone();
            async move { source.fetch("t").await }
        });
        tokio::task::yield_now().await;
        assert!(
            gate.is_open() && !call.is_finished(),
            "waits for the position"
        );
        gate.positioned();
        assert!(call.await.unwrap().is_err());
        // Never positioned: one wait runs out at the bound, later calls go at once.
        let gate = Arc::new(StartGate::default());
        let source = OpensOnFirstCall::new(Arc::new(Refuses), gate.clone());
        let started = tokio::time::Instant::now();
        assert!(source.fetch("t").await.is_err());
        assert_eq!(started.elapsed(), FIRST_POSITION_WAIT);
        let again = tokio::time::Instant::now();
        assert!(source.fetch("t").await.is_err());
        assert_eq!(again.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_call_opens_the_gate_for_a_waiter_before_or_after_it() {
        let gate = Arc::new(StartGate::default());
        let source = OpensOnFirstCall::new(Arc::new(Refuses), gate.clone());
        let early = tokio::spawn({
            let gate = gate.clone();
            async move { gate.wait().await }
        });
        tokio::task::yield_now().await;
        assert!(!early.is_finished() && !gate.is_open());
        gate.positioned();
        assert!(source.fetch("t").await.is_err());
        assert!(gate.is_open());
        tokio::time::timeout(Duration::from_secs(1), early)
            .await
            .unwrap()
            .unwrap();
        assert!(source.fetch("t").await.is_err());
        tokio::time::timeout(Duration::from_secs(1), gate.wait())
            .await
            .unwrap();
    }
}
