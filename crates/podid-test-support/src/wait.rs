//! Bounded waits for a condition other tasks make true, on any tokio clock
//! (a paused clock never advances while a task keeps yielding, so a timeout
//! alone cannot bound such a loop).

/// How many times [`yield_until`] yields before it gives up.
pub const MAX_YIELDS: usize = 1_000_000;

/// Yields to other tasks until `done()` holds; panics naming `what` after
/// [`MAX_YIELDS`] yields.
///
/// # Panics
/// When `done()` is still false after [`MAX_YIELDS`] yields.
pub async fn yield_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..MAX_YIELDS {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
    assert!(
        done(),
        "gave up after {MAX_YIELDS} yields waiting for {what}"
    );
}

/// Polls `check` every 50 ms on the real clock (for conditions another
/// process makes true) until it holds, returning how long it took; panics
/// naming `what` after `limit`.
///
/// # Panics
/// When `check` still fails after `limit`.
pub async fn eventually<F, Fut>(
    limit: std::time::Duration,
    what: &str,
    mut check: F,
) -> std::time::Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = std::time::Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
