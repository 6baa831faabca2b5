//! The wall-clock time behind a trait, so tests can move it.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::EpochMillis;

/// A source of the current wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> SystemTime;

    /// Now, in epoch milliseconds.
    fn now_millis(&self) -> EpochMillis {
        EpochMillis(
            self.now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
        )
    }
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}
