//! The command-line flags of a listener's limits, written once for every
//! executable: [`listen_args!`](crate::listen_args) makes a clap `Args`
//! struct whose environment variables carry the executable's prefix.

/// Defines a clap `Args` struct named `$name` with the flags of a listener's
/// limits (`--max-connections`, `--header-read-timeout-ms`,
/// `--body-read-timeout-ms`, `--idle-timeout-ms`, `--max-header-bytes`),
/// each with an environment variable `$prefix` + its name in capitals, and
/// `$defaults` (a [`ListenLimits`](crate::ListenLimits)) as its defaults.
/// The caller's crate depends on clap with the `derive` and `env` features.
#[macro_export]
macro_rules! listen_args {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { prefix: $prefix:literal, defaults: $defaults:expr $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, clap::Args)]
        $vis struct $name {
            /// Most connections open at once on this listener; at the cap,
            /// new connections wait in the kernel's accept queue.
            #[arg(long, env = concat!($prefix, "MAX_CONNECTIONS"),
                  default_value_t = $defaults.max_connections)]
            pub max_connections: usize,
            /// A request's head (request line and headers) must be complete
            /// this many milliseconds after its first byte (on a new
            /// connection: after it was accepted); else the connection is cut.
            #[arg(long, env = concat!($prefix, "HEADER_READ_TIMEOUT_MS"),
                  default_value_t = $crate::millis($defaults.header_read_timeout))]
            pub header_read_timeout_ms: u64,
            /// A request's body must be complete this many milliseconds after
            /// the server started reading it; else it is answered 408.
            #[arg(long, env = concat!($prefix, "BODY_READ_TIMEOUT_MS"),
                  default_value_t = $crate::millis($defaults.body_read_timeout))]
            pub body_read_timeout_ms: u64,
            /// A kept-alive connection is closed this many milliseconds after
            /// its last answer unless a new request has started.
            #[arg(long, env = concat!($prefix, "IDLE_TIMEOUT_MS"),
                  default_value_t = $crate::millis($defaults.idle_timeout))]
            pub idle_timeout_ms: u64,
            /// Largest request head in bytes (request line and headers);
            /// a larger one is answered 431.
            #[arg(long, env = concat!($prefix, "MAX_HEADER_BYTES"),
                  default_value_t = $defaults.max_header_bytes)]
            pub max_header_bytes: usize,
        }

        impl $name {
            /// The limits these flags give, checked.
            ///
            /// # Errors
            /// When a limit cannot be enforced.
            pub fn limits(&self) -> Result<$crate::ListenLimits, $crate::ListenError> {
                let limits = $crate::ListenLimits {
                    max_connections: self.max_connections,
                    header_read_timeout: std::time::Duration::from_millis(self.header_read_timeout_ms),
                    body_read_timeout: std::time::Duration::from_millis(self.body_read_timeout_ms),
                    idle_timeout: std::time::Duration::from_millis(self.idle_timeout_ms),
                    max_header_bytes: self.max_header_bytes,
                    ..$defaults
                };
                limits.validate()?;
                Ok(limits)
            }
        }
    };
}

/// `duration` in whole milliseconds (saturating), for flag defaults.
pub fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
