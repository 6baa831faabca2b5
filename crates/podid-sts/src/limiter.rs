//! Bounding STS calls per second.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::{AssumeRoleSpec, IssueError, IssuedCredentials, Issuer};

/// At most `max` grants in any window of one second, first come first served.
///
/// Each caller reserves the earliest slot that keeps every one-second window
/// at or under `max` and waits for it; a caller whose slot would come after
/// its deadline reserves nothing and is refused at once, so nobody waits in
/// vain.
#[derive(Debug)]
pub struct RateLimiter {
    max: usize,
    window: Duration,
    // The last `max` reserved slots, in order.
    slots: Mutex<VecDeque<Instant>>,
}

impl RateLimiter {
    /// A limiter of `max_per_second` (at least 1).
    pub fn new(max_per_second: u32) -> Self {
        // A little over a second, so scheduling jitter between the grant and
        // the request leaving cannot push two calls into one second at STS.
        RateLimiter {
            max: max_per_second.max(1) as usize,
            window: Duration::from_millis(1010),
            slots: Mutex::new(VecDeque::new()),
        }
    }

    /// Waits for a slot; `Err(wait)` when the slot would come after `deadline`,
    /// with how long the caller would have had to wait.
    pub async fn acquire(&self, deadline: Instant) -> Result<Duration, Duration> {
        let now = Instant::now();
        let slot = {
            let Ok(mut slots) = self.slots.lock() else {
                return Err(Duration::ZERO);
            };
            let mut slot = now;
            if let Some(&last) = slots.back() {
                slot = slot.max(last);
            }
            if slots.len() >= self.max {
                slot = slot.max(slots[slots.len() - self.max] + self.window);
            }
            if slot > deadline {
                return Err(slot - now);
            }
            slots.push_back(slot);
            while slots.len() > self.max {
                slots.pop_front();
            }
            slot
        };
        if slot > now {
            tokio::time::sleep_until(slot).await;
        }
        Ok(slot - now)
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

/// An issuer whose calls pass through a [`RateLimiter`]; callers wait at most
/// `max_wait`, then get [`IssueError::Throttled`].
pub struct RateLimitedIssuer<I, O = ()> {
    inner: I,
    limiter: RateLimiter,
    max_wait: Duration,
    observer: O,
}

impl<I: Issuer> RateLimitedIssuer<I> {
    /// Limits `inner` to `max_per_second`, callers waiting up to `max_wait`.
    pub fn new(inner: I, max_per_second: u32, max_wait: Duration) -> Self {
        RateLimitedIssuer { inner, limiter: RateLimiter::new(max_per_second), max_wait, observer: () }
    }
}

impl<I: Issuer, O: LimiterObserver> RateLimitedIssuer<I, O> {
    /// The same limiter reporting to `observer`.
    pub fn with_observer<O2: LimiterObserver>(self, observer: O2) -> RateLimitedIssuer<I, O2> {
        RateLimitedIssuer { inner: self.inner, limiter: self.limiter, max_wait: self.max_wait, observer }
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
            Ok(waited) => {
                if !waited.is_zero() {
                    self.observer.waited(waited);
                }
                self.inner.assume_role(spec, using).await
            }
            Err(_) => {
                self.observer.refused();
                Err(IssueError::Throttled(format!(
                    "the broker's STS rate limit is reached and no slot frees within {} ms",
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
    async fn never_more_than_max_in_any_window_and_refuses_past_the_deadline() {
        let limiter = std::sync::Arc::new(RateLimiter::new(5));
        let start = Instant::now();
        let mut handles = Vec::new();
        for _ in 0..20 {
            let l = limiter.clone();
            handles.push(tokio::spawn(async move {
                let ok = l.acquire(Instant::now() + Duration::from_millis(2500)).await;
                ok.map(|_| Instant::now())
            }));
        }
        let mut granted = Vec::new();
        let mut refused = 0;
        for h in handles {
            match h.await.unwrap() {
                Ok(t) => granted.push(t),
                Err(_) => refused += 1,
            }
        }
        granted.sort();
        // 5 now, 5 after 1.01 s, 5 after 2.02 s; the rest would wait past 2.5 s.
        assert_eq!(granted.len(), 15);
        assert_eq!(refused, 5);
        for (i, t) in granted.iter().enumerate() {
            let in_window = granted[i..].iter().take_while(|u| **u - *t < Duration::from_secs(1)).count();
            assert!(in_window <= 5, "{in_window} grants within one second");
        }
        assert!(granted[14] - start >= Duration::from_millis(2020));
    }

    #[tokio::test(start_paused = true)]
    async fn a_free_limiter_does_not_wait() {
        let limiter = RateLimiter::new(50);
        for _ in 0..50 {
            assert_eq!(limiter.acquire(Instant::now()).await, Ok(Duration::ZERO));
        }
        assert!(limiter.acquire(Instant::now()).await.is_err());
    }
}
