//! The request body every handler gets: hyper's, failing once its read
//! deadline has passed.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

/// A request body read under a deadline: the clock starts the first time the
/// handler has to wait for bytes (a body already complete starts no timer)
/// and is never moved by bytes arriving.
#[derive(Debug)]
pub struct RequestBody {
    inner: Incoming,
    timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    timed_out: bool,
}

impl RequestBody {
    pub(crate) fn new(inner: Incoming, timeout: Duration) -> Self {
        RequestBody {
            inner,
            timeout,
            sleep: None,
            timed_out: false,
        }
    }
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The connection failed or the client sent a malformed body.
    #[error("cannot read the request body")]
    Read(#[source] hyper::Error),
    /// The body was not complete by its deadline.
    #[error("the request body was not complete within {} ms", .0.as_millis())]
    Timeout(Duration),
}

/// Whether `error`, or an error it wraps, is a body read deadline passing.
pub fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if matches!(e.downcast_ref::<BodyError>(), Some(BodyError::Timeout(_))) {
            return true;
        }
        next = e.source();
    }
    false
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if this.timed_out {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(BodyError::Read))),
            Poll::Pending => {
                let timeout = this.timeout;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if sleep.as_mut().poll(cx).is_ready() {
                    this.timed_out = true;
                    return Poll::Ready(Some(Err(BodyError::Timeout(timeout))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.timed_out || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_is_found_through_wrapping_errors() {
        #[derive(Debug, thiserror::Error)]
        #[error("wrapper")]
        struct Wrapper(#[source] BodyError);
        let wrapped = Wrapper(BodyError::Timeout(Duration::from_millis(1500)));
        assert!(is_body_timeout(&wrapped));
        assert_eq!(
            wrapped.0.to_string(),
            "the request body was not complete within 1500 ms"
        );
        let other = std::io::Error::other("no");
        assert!(!is_body_timeout(&other));
    }
}
