//! The crate's one error type.

use std::time::Duration;

/// Why a harness could not start or read a process or a server.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A process could not be started.
    #[error("cannot start {what}")]
    Spawn {
        /// The process.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file or socket operation failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A process did not print an expected line in time.
    #[error("{what} printed no line starting {prefix:?} within {timeout:?}; stderr: {stderr}")]
    NoLine {
        /// The process.
        what: String,
        /// The line looked for.
        prefix: String,
        /// How long it was given.
        timeout: Duration,
        /// What it wrote to stderr so far (when captured).
        stderr: String,
    },
    /// A process closed its stdout (exited) before printing an expected line.
    #[error("{what} exited before printing a line starting {prefix:?}; stderr: {stderr}")]
    Exited {
        /// The process.
        what: String,
        /// The line looked for.
        prefix: String,
        /// What it wrote to stderr (when captured).
        stderr: String,
    },
    /// A printed address does not parse.
    #[error("{what} printed an address that does not parse: {line:?}")]
    Address {
        /// The process.
        what: String,
        /// The text after the prefix.
        line: String,
        /// The cause.
        #[source]
        source: std::net::AddrParseError,
    },
    /// A process exited with a failure status.
    #[error("{what} failed ({status}): {stderr}")]
    Failed {
        /// The process.
        what: String,
        /// How it exited.
        status: std::process::ExitStatus,
        /// What it wrote to stderr.
        stderr: String,
    },
    /// A process did not finish in time (it was killed).
    #[error("{what} did not finish within {timeout:?}")]
    Timeout {
        /// The process.
        what: String,
        /// How long it was given.
        timeout: Duration,
    },
    /// A test certificate or TLS configuration could not be made.
    #[error("TLS: {what}")]
    Tls {
        /// What was being made.
        what: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
