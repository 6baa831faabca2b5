//! Log lines gathered in memory and written to stderr in blocks, not one `write(2)` per line.
//! Hand-written; the broker benchmark justifies it (docs/benchmarks.md, "Broker throughput").

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError, Weak};
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// The buffer is written out once it holds this many bytes.
pub const FLUSH_AT: usize = 32 * 1024;

/// The longest a line waits in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

#[derive(Default)]
struct PendingLog {
    pending: Mutex<Vec<u8>>,
}

impl PendingLog {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `pending` to stderr and empties it (write errors are ignored:
    /// there is nowhere else to report them).
    fn write_out(pending: &mut Vec<u8>) {
        if !pending.is_empty() {
            let _ = std::io::stderr().lock().write_all(pending);
            pending.clear();
        }
    }

    fn flush(&self) {
        Self::write_out(&mut self.lock());
    }
}

/// The tracing writer: log lines gathered in memory and written to stderr in blocks.
///
/// A line is appended to a shared buffer; the buffer goes to
/// stderr when it holds [`FLUSH_AT`] bytes, at once for a `WARN` or `ERROR`
/// line, every [`FLUSH_EVERY`] from a background thread, before a panic's
/// message, and when the [`LogGuard`] is dropped (the end of `main`): nothing
/// is lost on a normal exit, and no line waits more than [`FLUSH_EVERY`].
/// Lines are written whole and in order.
#[derive(Clone)]
pub struct BufferedStderr {
    shared: Arc<PendingLog>,
}

/// Writes what is pending when dropped; keep it until the end of `main`.
#[must_use = "dropping the guard at once loses nothing but flushes only then"]
pub struct LogGuard {
    shared: Arc<PendingLog>,
}

impl LogGuard {
    /// Writes what is pending now.
    pub fn flush(&self) {
        self.shared.flush();
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.flush();
    }
}

impl BufferedStderr {
    /// A writer, its guard, the background flusher thread, and a panic hook
    /// that writes pending lines before the panic's message.
    pub fn start() -> (BufferedStderr, LogGuard) {
        let shared = Arc::new(PendingLog::default());
        let weak: Weak<PendingLog> = Arc::downgrade(&shared);
        let flusher = weak.clone();
        // Without the thread lines would still be written, only later: a
        // failure to start it is not fatal.
        let _ = std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(move || loop {
                std::thread::sleep(FLUSH_EVERY);
                match flusher.upgrade() {
                    Some(shared) => shared.flush(),
                    None => break,
                }
            });
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // try_lock: a panic while the buffer is held must not deadlock.
            if let Some(shared) = weak.upgrade() {
                match shared.pending.try_lock() {
                    Ok(mut pending) => PendingLog::write_out(&mut pending),
                    Err(TryLockError::Poisoned(p)) => PendingLog::write_out(&mut p.into_inner()),
                    Err(TryLockError::WouldBlock) => {}
                }
            }
            previous(info);
        }));
        (
            BufferedStderr {
                shared: shared.clone(),
            },
            LogGuard { shared },
        )
    }
}

/// One event's writer.
pub struct Line<'a> {
    shared: &'a PendingLog,
    urgent: bool,
}

impl Write for Line<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut pending = self.shared.lock();
        pending.extend_from_slice(data);
        if self.urgent || pending.len() >= FLUSH_AT {
            PendingLog::write_out(&mut pending);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferedStderr {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line {
            shared: &self.shared,
            urgent: false,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line<'a> {
        Line {
            shared: &self.shared,
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_wait_until_the_buffer_fills_or_a_warning_comes() {
        let shared = PendingLog::default();
        let mut info = Line {
            shared: &shared,
            urgent: false,
        };
        info.write_all(b"one\n").unwrap();
        assert_eq!(shared.lock().as_slice(), b"one\n");
        let mut warn = Line {
            shared: &shared,
            urgent: true,
        };
        warn.write_all(b"two\n").unwrap();
        assert!(shared.lock().is_empty());
        let big = vec![b'x'; FLUSH_AT];
        info.write_all(&big).unwrap();
        assert!(shared.lock().is_empty());
        info.write_all(b"three\n").unwrap();
        shared.flush();
        assert!(shared.lock().is_empty());
    }

    #[test]
    fn warnings_and_errors_are_urgent() {
        use tracing_subscriber::fmt::MakeWriter as _;
        let (writer, guard) = BufferedStderr::start();
        assert!(!writer.make_writer().urgent);
        assert!(!writer.make_writer_for(&META_INFO).urgent);
        assert!(writer.make_writer_for(&META_WARN).urgent);
        guard.flush();
    }

    struct Callsite;
    impl tracing::callsite::Callsite for Callsite {
        fn set_interest(&self, _: tracing::subscriber::Interest) {}
        fn metadata(&self) -> &Metadata<'_> {
            &META_INFO
        }
    }
    static CALLSITE: Callsite = Callsite;
    static META_INFO: Metadata<'static> = tracing::metadata! {
        name: "info", target: "t", level: Level::INFO, fields: &[], callsite: &CALLSITE, kind: tracing::metadata::Kind::EVENT
    };
    static META_WARN: Metadata<'static> = tracing::metadata! {
        name: "warn", target: "t", level: Level::WARN, fields: &[], callsite: &CALLSITE, kind: tracing::metadata::Kind::EVENT
    };
}
