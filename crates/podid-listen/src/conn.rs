//! One connection's phase and its deadline: what the socket wrapper, the
//! service wrapper and the connection's watchdog share.
//!
//! Phases: *head* (a request's head is being read: deadline = its start +
//! the header read timeout), *busy* (requests in flight: no connection
//! deadline; the body has its own), *idle* (between requests: deadline = the
//! last answer + the idle timeout). A phase's start is written once, when it
//! begins, so no byte received later moves its deadline.

use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::limits::ListenLimits;

const IDLE: u64 = 0;
const HEAD: u64 = 1;
const BUSY: u64 = 2;
const PHASE_SHIFT: u32 = 62;
const TIME_MASK: u64 = (1 << PHASE_SHIFT) - 1;

/// Why a connection was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    /// A request's head was not complete by its deadline.
    Head,
    /// No request came within the idle timeout.
    Idle,
}

/// A connection's phase and when it began, packed in one word.
#[derive(Debug)]
pub(crate) struct ConnState {
    origin: Instant,
    /// Phase in the top two bits; the phase's start in nanoseconds since `origin`.
    word: AtomicU64,
    in_flight: AtomicU32,
    /// HTTP/1.1: the first byte after an answer starts the next head. (HTTP/2
    /// frames between requests — pings, window updates — start nothing.)
    reads_start_heads: bool,
}

impl ConnState {
    /// A connection whose first request's head is awaited from now.
    pub(crate) fn new(reads_start_heads: bool) -> ConnState {
        ConnState {
            origin: Instant::now(),
            word: AtomicU64::new(HEAD << PHASE_SHIFT),
            in_flight: AtomicU32::new(0),
            reads_start_heads,
        }
    }

    fn now(&self) -> u64 {
        let nanos = Instant::now()
            .saturating_duration_since(self.origin)
            .as_nanos();
        u64::try_from(nanos).unwrap_or(TIME_MASK) & TIME_MASK
    }

    fn set(&self, phase: u64) {
        self.word
            .store((phase << PHASE_SHIFT) | self.now(), Ordering::Release);
    }

    /// Bytes arrived.
    pub(crate) fn on_read(&self) {
        if self.reads_start_heads && self.word.load(Ordering::Relaxed) >> PHASE_SHIFT == IDLE {
            self.set(HEAD);
        }
    }

    /// A request's head is complete and its handler called.
    pub(crate) fn request_started(&self) {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) == 0 {
            self.word.store(BUSY << PHASE_SHIFT, Ordering::Release);
        }
    }

    /// A handler answered (or its future was dropped).
    pub(crate) fn request_finished(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.set(IDLE);
        }
    }

    /// The deadline of the current phase and what passing it means; `None`
    /// while requests are in flight.
    pub(crate) fn deadline(&self, limits: &ListenLimits) -> Option<(Instant, Cut)> {
        let word = self.word.load(Ordering::Acquire);
        let since = self.origin + Duration::from_nanos(word & TIME_MASK);
        match word >> PHASE_SHIFT {
            HEAD => Some((since + limits.header_read_timeout, Cut::Head)),
            IDLE if self.in_flight.load(Ordering::Acquire) == 0 => {
                Some((since + limits.idle_timeout, Cut::Idle))
            }
            _ => None,
        }
    }
}

/// How long the watchdog may sleep without missing a deadline set meanwhile:
/// a phase that begins later than now ends no sooner than now + this.
pub(crate) fn watchdog_step(limits: &ListenLimits) -> Duration {
    limits.header_read_timeout.min(limits.idle_timeout)
}

/// A socket that tells its connection's state when bytes arrive.
pub(crate) struct Watched<T> {
    inner: T,
    state: std::sync::Arc<ConnState>,
}

impl<T> Watched<T> {
    pub(crate) fn new(inner: T, state: std::sync::Arc<ConnState>) -> Self {
        Watched { inner, state }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.state.on_read();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ListenLimits {
        let mut l = ListenLimits::agent();
        l.header_read_timeout = Duration::from_secs(5);
        l.idle_timeout = Duration::from_secs(60);
        l
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_deadline_is_fixed_when_the_head_starts() {
        let state = ConnState::new(true);
        let start = Instant::now();
        let l = limits();
        assert_eq!(
            state.deadline(&l),
            Some((start + Duration::from_secs(5), Cut::Head))
        );
        tokio::time::advance(Duration::from_secs(3)).await;
        state.on_read();
        state.on_read();
        assert_eq!(
            state.deadline(&l),
            Some((start + Duration::from_secs(5), Cut::Head)),
            "bytes of a head in progress do not move its deadline"
        );
        state.request_started();
        assert_eq!(state.deadline(&l), None);
        state.on_read();
        assert_eq!(state.deadline(&l), None, "body bytes start no head");
        tokio::time::advance(Duration::from_secs(100)).await;
        state.request_finished();
        let answered = Instant::now();
        assert_eq!(
            state.deadline(&l),
            Some((answered + Duration::from_secs(60), Cut::Idle))
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        state.on_read();
        let next = Instant::now();
        assert_eq!(
            state.deadline(&l),
            Some((next + Duration::from_secs(5), Cut::Head))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn http2_frames_between_requests_start_no_head() {
        let state = ConnState::new(false);
        let l = limits();
        state.request_started();
        state.request_started();
        state.request_finished();
        assert_eq!(state.deadline(&l), None, "one stream still in flight");
        state.request_finished();
        let answered = Instant::now();
        tokio::time::advance(Duration::from_secs(1)).await;
        state.on_read();
        assert_eq!(
            state.deadline(&l),
            Some((answered + Duration::from_secs(60), Cut::Idle))
        );
    }
}
