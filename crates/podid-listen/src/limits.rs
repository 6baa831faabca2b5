//! What one listener allows each connection: sizes, counts and deadlines.

use std::time::Duration;

use crate::ListenError;

/// The smallest header limit accepted: one request line and a few headers.
pub const MIN_HEADER_BYTES: usize = 1024;

/// The limits of one listener.
///
/// Every time limit is a deadline fixed when its phase starts: bytes trickled
/// one at a time never move it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenLimits {
    /// A request's head (request line and headers) must be complete this long
    /// after its first byte arrived (on a new connection: after it was
    /// accepted, or after its TLS handshake).
    pub header_read_timeout: Duration,
    /// A request's body must be read completely this long after the handler
    /// first waited for it; past it the handler's read fails
    /// ([`is_body_timeout`](crate::is_body_timeout)).
    pub body_read_timeout: Duration,
    /// Largest request head (HTTP/1.1: request line and headers; HTTP/2: the
    /// header list). HTTP/1.1 answers a larger one with 431 and closes.
    pub max_header_bytes: usize,
    /// Most connections open at once. At the cap the listener stops
    /// accepting: further connections wait in the kernel's accept queue.
    pub max_connections: usize,
    /// A kept-alive connection with no request in progress is closed this long
    /// after its last answer.
    pub idle_timeout: Duration,
    /// A TLS handshake must be complete this long after the connection was accepted.
    pub handshake_timeout: Duration,
    /// HTTP/2 (TLS only): most requests in flight on one connection.
    pub max_concurrent_streams: u32,
    /// At shutdown, how long requests in flight may take before their
    /// connections are cut.
    pub drain_timeout: Duration,
}

impl ListenLimits {
    /// The defaults every listener shares; the constructors below set the
    /// header size and connection cap.
    const fn base(max_header_bytes: usize, max_connections: usize) -> ListenLimits {
        ListenLimits {
            header_read_timeout: Duration::from_secs(5),
            body_read_timeout: Duration::from_secs(10),
            max_header_bytes,
            max_connections,
            idle_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            max_concurrent_streams: 64,
            drain_timeout: Duration::from_secs(10),
        }
    }

    /// `podid server`'s API listener: 64 KiB of headers, 2,048 connections.
    pub const fn server() -> ListenLimits {
        ListenLimits::base(64 * 1024, 2048)
    }

    /// The agent's credential listeners: 24 KiB of headers (a request is one
    /// line and a token of at most 16 KiB), 512 connections each.
    pub const fn agent() -> ListenLimits {
        ListenLimits::base(24 * 1024, 512)
    }

    /// `podid webhook`: 64 KiB of headers, 256 connections (the apiserver
    /// keeps a few alive).
    pub const fn webhook() -> ListenLimits {
        ListenLimits::base(64 * 1024, 256)
    }

    /// Probe and metrics listeners (one scraper, one kubelet): 16 KiB of
    /// headers, 64 connections.
    pub const fn local() -> ListenLimits {
        ListenLimits::base(16 * 1024, 64)
    }

    /// These limits with `max_connections` set.
    pub const fn with_max_connections(mut self, max_connections: usize) -> ListenLimits {
        self.max_connections = max_connections;
        self
    }

    /// Checks that every limit can be enforced.
    ///
    /// # Errors
    /// [`ListenError::Limits`] naming the first limit that cannot.
    pub fn validate(&self) -> Result<(), ListenError> {
        let refuse = |what: String| Err(ListenError::Limits(what));
        let times = [
            ("header read timeout", self.header_read_timeout),
            ("body read timeout", self.body_read_timeout),
            ("idle timeout", self.idle_timeout),
            ("TLS handshake timeout", self.handshake_timeout),
        ];
        if let Some((name, _)) = times.iter().find(|(_, d)| d.is_zero()) {
            return refuse(format!("the {name} must be more than 0"));
        }
        if let Some((name, _)) = times.iter().find(|(_, d)| *d > Duration::from_secs(86_400)) {
            return refuse(format!("the {name} must be at most one day"));
        }
        if self.max_header_bytes < MIN_HEADER_BYTES || self.max_header_bytes > 1024 * 1024 {
            return refuse(format!(
                "the header size limit must be {MIN_HEADER_BYTES}..=1048576 bytes, not {}",
                self.max_header_bytes
            ));
        }
        if self.max_connections == 0 {
            return refuse("the connection cap must be at least 1".to_owned());
        }
        if self.max_concurrent_streams == 0 {
            return refuse("HTTP/2 must allow at least 1 concurrent stream".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_defaults_hold_and_validate() {
        for limits in [
            ListenLimits::server(),
            ListenLimits::agent(),
            ListenLimits::webhook(),
            ListenLimits::local(),
        ] {
            limits.validate().unwrap();
            assert_eq!(limits.header_read_timeout, Duration::from_secs(5));
            assert_eq!(limits.body_read_timeout, Duration::from_secs(10));
            assert_eq!(limits.handshake_timeout, Duration::from_secs(10));
        }
        assert_eq!(ListenLimits::server().max_header_bytes, 65_536);
        assert_eq!(ListenLimits::agent().max_header_bytes, 24_576);
        assert_eq!(ListenLimits::webhook().max_header_bytes, 65_536);
    }

    #[test]
    fn limits_that_cannot_be_enforced_are_refused_by_name() {
        let mut l = ListenLimits::agent();
        l.idle_timeout = Duration::ZERO;
        assert_eq!(
            l.validate().unwrap_err().to_string(),
            "listener limits: the idle timeout must be more than 0"
        );
        let l = ListenLimits::agent().with_max_connections(0);
        assert_eq!(
            l.validate().unwrap_err().to_string(),
            "listener limits: the connection cap must be at least 1"
        );
        let mut l = ListenLimits::agent();
        l.max_header_bytes = 100;
        assert!(l.validate().unwrap_err().to_string().contains("not 100"));
    }
}
