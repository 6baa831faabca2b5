//! A wall clock that follows tokio's (paused) time, for tests of the cache policy.

use std::fmt;
use std::time::SystemTime;

use podid_api::clock::Clock;

/// Wall-clock time that advances with tokio's clock: the system time at
/// creation plus the tokio time elapsed since. Under `tokio::time::pause()`
/// and `advance()` it moves exactly as tests move tokio's timers, so timers and
/// expirations stay in step.
#[derive(Clone, Copy)]
pub struct TokioClock {
    base: SystemTime,
    started: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading the system time now. Create it inside the runtime whose
    /// time it follows.
    pub fn new() -> Self {
        TokioClock {
            base: SystemTime::now(),
            started: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for TokioClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokioClock")
            .field("now", &self.now())
            .finish()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> SystemTime {
        self.base + self.started.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let clock = TokioClock::new();
        let t0 = clock.now();
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(
            clock.now().duration_since(t0).unwrap(),
            Duration::from_secs(3600)
        );
    }
}
