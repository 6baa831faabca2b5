//! Bounding STS calls per second.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::{AssumeRoleSpec, IssueError, IssuedCredentials, Issuer};

/// At most `max` calls in any window of one second, as STS sees them, first
/// come first served.
///
/// A call holds one of `max` permits from before it starts until one window
/// after it has *finished*; so call `i + max` cannot start before call `i`'s
/// request has arrived and a whole second has passed since — however late
/// requests leave the process (new connections, a busy machine). Callers wait
/// in order for a permit until their deadline, then are refused.
#[derive(Debug)]
pub struct StsWindowLimiter {
    permits: Arc<Semaphore>,
    window: Duration,
}

/// A granted call; dropping it (when the call has finished) frees its permit
/// one window later.
#[derive(Debug)]
pub struct RateLimitPermit {
    permit: Option<OwnedSemaphorePermit>,
    window: Duration,
}

impl Drop for RateLimitPermit {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            let window = self.window;
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    handle.spawn(async move {
                        tokio::time::sleep(window).await;
                        drop(permit);
                    });
                }
                // No runtime (shutting down): the permit goes back at once.
                Err(_) => drop(permit),
            }
        }
    }
}

impl StsWindowLimiter {
    /// A limiter of `max_per_second` (at least 1).
    pub fn new(max_per_second: u32) -> Self {
        StsWindowLimiter {
            permits: Arc::new(Semaphore::new(max_per_second.max(1) as usize)),
            window: Duration::from_secs(1),
        }
    }

    /// Waits for a permit until `deadline`; `Err` when none freed in time.
    /// Returns the permit and how long the caller waited.
    pub async fn acquire(
        &self,
        deadline: Instant,
    ) -> Result<(RateLimitPermit, Duration), Duration> {
        let started = Instant::now();
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => match tokio::time::timeout_at(deadline, self.permits.clone().acquire_owned())
                .await
            {
                Ok(Ok(p)) => p,
                // Closed (never happens) or deadline passed.
                _ => return Err(started.elapsed()),
            },
        };
        Ok((
            RateLimitPermit {
                permit: Some(permit),
                window: self.window,
            },
            started.elapsed(),
        ))
    }
}

/// Observes the limiter's decisions (for metrics).
pub trait LimiterObserver: Send + Sync + 'static {
    /// A caller waited `waited` for its slot.
    fn waited(&self, waited: Duration);
    /// A caller was refused because its slot came after its deadline.
    fn refused(&self);
}

impl LimiterObserver for () {
    fn waited(&self, _: Duration) {}
    fn refused(&self) {}
}

/// An issuer whose calls pass through a [`StsWindowLimiter`]; callers wait at most
/// `max_wait`, then get [`IssueError::Throttled`].
pub struct RateLimitedIssuer<I, O = ()> {
    inner: I,
    limiter: StsWindowLimiter,
    max_wait: Duration,
    observer: O,
}

impl<I: Issuer> RateLimitedIssuer<I> {
    /// Limits `inner` to `max_per_second`, callers waiting up to `max_wait`.
    pub fn new(inner: I, max_per_second: u32, max_wait: Duration) -> Self {
        RateLimitedIssuer {
            inner,
            limiter: StsWindowLimiter::new(max_per_second),
            max_wait,
            observer: (),
        }
    }
}

impl<I: Issuer, O: LimiterObserver> RateLimitedIssuer<I, O> {
    /// The same limiter reporting to `observer`.
    pub fn with_observer<O2: LimiterObserver>(self, observer: O2) -> RateLimitedIssuer<I, O2> {
        RateLimitedIssuer {
            inner: self.inner,
            limiter: self.limiter,
            max_wait: self.max_wait,
            observer,
        }
    }
}

#[async_trait]
impl<I: Issuer, O: LimiterObserver> Issuer for RateLimitedIssuer<I, O> {
    async fn assume_role(
        &self,
        spec: &AssumeRoleSpec,
        using: Option<&IssuedCredentials>,
    ) -> Result<IssuedCredentials, IssueError> {
        match self.limiter.acquire(Instant::now() + self.max_wait).await {
            Ok((permit, waited)) => {
                if !waited.is_zero() {
                    self.observer.waited(waited);
                }
                let result = self.inner.assume_role(spec, using).await;
                // The permit is held until the call has finished, and for a window after.
                drop(permit);
                result
            }
            Err(_) => {
                self.observer.refused();
                Err(IssueError::Throttled(format!(
                    "the broker's STS rate limit is reached and no slot freed within {} ms",
                    self.max_wait.as_millis()
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn never_more_than_max_in_any_window_and_refuses_at_the_deadline() {
        let limiter = std::sync::Arc::new(StsWindowLimiter::new(5));
        let start = Instant::now();
        let mut handles = Vec::new();
        for _ in 0..20 {
            let l = limiter.clone();
            handles.push(tokio::spawn(async move {
                let (permit, _) = l
                    .acquire(Instant::now() + Duration::from_millis(2500))
                    .await?;
                let at = Instant::now();
                // The call takes 100 ms; the permit frees one second after it ends.
                tokio::time::sleep(Duration::from_millis(100)).await;
                drop(permit);
                Ok::<_, Duration>(at)
            }));
        }
        let mut granted = Vec::new();
        let mut refused = Vec::new();
        for h in handles {
            match h.await.unwrap() {
                Ok(t) => granted.push(t),
                Err(waited) => refused.push(waited),
            }
        }
        granted.sort();
        // 5 at 0 s, 5 at 1.1 s, 5 at 2.2 s; the rest waited until their deadline.
        assert_eq!(granted.len(), 15);
        assert_eq!(refused.len(), 5);
        assert!(refused.iter().all(|w| *w >= Duration::from_millis(2500)));
        for (i, t) in granted.iter().enumerate() {
            let in_window = granted[i..]
                .iter()
                .take_while(|u| **u - *t < Duration::from_secs(1))
                .count();
            assert!(in_window <= 5, "{in_window} grants within one second");
        }
        assert!(granted[14] - start >= Duration::from_millis(2200));
    }

    #[tokio::test(start_paused = true)]
    async fn a_free_limiter_does_not_wait() {
        let limiter = StsWindowLimiter::new(50);
        let mut held = Vec::new();
        for _ in 0..50 {
            let (permit, waited) = limiter.acquire(Instant::now()).await.unwrap();
            assert_eq!(waited, Duration::ZERO);
            held.push(permit);
        }
        assert!(limiter.acquire(Instant::now()).await.is_err());
    }
}
