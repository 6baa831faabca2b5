//! A lock-free token bucket (GCRA) for the per-listener request limit.
//! Hand-written, one compare-exchange per request: criterion `cache`, `rate_limit_acquire`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Allows `rate` requests per second on average with bursts of up to `rate`.
/// Uses tokio's clock, so `tokio::time::pause` drives it in tests.
#[derive(Debug)]
pub struct GcraLimiter {
    origin: Instant,
    /// Nanoseconds between two requests at the sustained rate.
    interval: u64,
    /// How far ahead of now the theoretical arrival time may run (the burst).
    tolerance: u64,
    /// Theoretical arrival time, nanoseconds since `origin`.
    tat: AtomicU64,
}

impl GcraLimiter {
    /// A limiter of `rate` requests per second; `None` when `rate` is 0 (off).
    pub fn per_second(rate: u32) -> Option<Self> {
        if rate == 0 {
            return None;
        }
        let interval = (1_000_000_000 / u64::from(rate)).max(1);
        Some(GcraLimiter {
            origin: Instant::now(),
            interval,
            tolerance: interval.saturating_mul(u64::from(rate)),
            tat: AtomicU64::new(0),
        })
    }

    /// Takes one token now; `false` means over the limit.
    pub fn try_acquire(&self) -> bool {
        self.try_acquire_at(Instant::now())
    }

    /// Takes one token at `now`.
    pub fn try_acquire_at(&self, now: Instant) -> bool {
        let now = u64::try_from(now.saturating_duration_since(self.origin).as_nanos())
            .unwrap_or(u64::MAX);
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now).saturating_add(self.interval);
            if next - now > self.tolerance {
                return false;
            }
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(current) => tat = current,
            }
        }
    }

    /// The sustained interval between requests.
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bursts_up_to_the_rate_then_refills() {
        assert!(GcraLimiter::per_second(0).is_none());
        let limiter = GcraLimiter::per_second(10).unwrap();
        for i in 0..10 {
            assert!(limiter.try_acquire(), "request {i} of the burst");
        }
        assert!(
            !limiter.try_acquire(),
            "the 11th within the same instant is refused"
        );
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(limiter.try_acquire(), "one token refilled after 1/rate");
        assert!(!limiter.try_acquire());
        tokio::time::advance(Duration::from_secs(5)).await;
        let allowed = (0..100).filter(|_| limiter.try_acquire()).count();
        assert_eq!(allowed, 10, "an idle bucket holds at most one burst");
    }

    #[tokio::test(start_paused = true)]
    async fn sustained_rate_is_held() {
        let limiter = GcraLimiter::per_second(100).unwrap();
        let mut allowed = 0;
        // 1,000 attempts per second for 3 seconds.
        for _ in 0..3_000 {
            if limiter.try_acquire() {
                allowed += 1;
            }
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        assert!((300..=401).contains(&allowed), "{allowed}");
    }
}
