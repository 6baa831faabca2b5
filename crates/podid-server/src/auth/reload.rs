//! The keys file reloaded without a restart: polled (its contents' SHA-256)
//! and re-read at once on SIGHUP. A file that does not load leaves the keys
//! in service; the failure is logged (never quoting a secret) and counted.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use sha2::{Digest, Sha256};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::task::JoinHandle;

use super::SigV4Verifier;
use crate::keys::{KeyRing, KeysFileError};

/// How often the keys file is polled by default.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// `podid_keys_reload_total{result="loaded"}` and `{result="failed"}`.
#[derive(Debug, Clone, Default)]
pub struct ReloadCounters {
    /// Reloads that put a new ring in service.
    pub loaded: Counter,
    /// Reloads that found a file that does not load.
    pub failed: Counter,
}

/// What the last attempt found on disk.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// The file's contents.
    Contents([u8; 32]),
    /// The file could not be read.
    ReadError(String),
}

/// What one [`KeysFileWatch::reload`] did.
#[derive(Debug)]
pub enum Reload {
    /// The file is as it was at the last attempt.
    Unchanged,
    /// A new ring is in service.
    Loaded {
        /// Its number of keys.
        keys: usize,
        /// Access key ids it added.
        added: Vec<String>,
        /// Access key ids it removed.
        removed: Vec<String>,
    },
    /// The file does not load; the previous keys stay in service.
    Failed(KeysFileError),
}

/// The keys file and the verifier whose keys come from it.
#[derive(Debug)]
pub struct KeysFileWatch {
    path: PathBuf,
    verifier: Arc<SigV4Verifier>,
    last_seen: Mutex<Seen>,
    counters: ReloadCounters,
}

/// The file's bytes and their digest, or why it cannot be read.
fn read(path: &Path) -> (Seen, Result<String, KeysFileError>) {
    match std::fs::read(path) {
        Ok(bytes) => {
            let seen = Seen::Contents(Sha256::digest(&bytes).into());
            let text = String::from_utf8(bytes).map_err(|_| {
                KeysFileError::Read(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the keys file is not UTF-8",
                ))
            });
            (seen, text)
        }
        Err(e) => (Seen::ReadError(e.to_string()), Err(KeysFileError::Read(e))),
    }
}

/// The ids of `a` that are not in `b`.
fn missing_from(a: &KeyRing, b: &KeyRing) -> Vec<String> {
    a.ids()
        .into_iter()
        .filter(|id| b.get(id).is_none())
        .map(str::to_owned)
        .collect()
}

impl KeysFileWatch {
    /// Loads `path` into a verifier of requests signed for `region` (an
    /// error if it does not load: the server does not start without keys).
    pub fn load(
        path: impl Into<PathBuf>,
        region: &str,
        counters: ReloadCounters,
    ) -> Result<KeysFileWatch, KeysFileError> {
        let path = path.into();
        let (seen, text) = read(&path);
        let ring = KeyRing::parse(&text?)?;
        Ok(KeysFileWatch {
            path,
            verifier: Arc::new(SigV4Verifier::for_region(ring, region)),
            last_seen: Mutex::new(seen),
            counters,
        })
    }

    /// The verifier whose keys this watch replaces.
    pub fn verifier(&self) -> &Arc<SigV4Verifier> {
        &self.verifier
    }

    /// Reads the file; puts its keys in service when its contents changed
    /// since the last attempt, or whatever they are when `force`d (SIGHUP).
    pub fn reload(&self, force: bool) -> Reload {
        let (seen, text) = read(&self.path);
        {
            // Each distinct state of the file is tried (and reported) once.
            let mut last = self
                .last_seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if *last == seen && !force {
                return Reload::Unchanged;
            }
            *last = seen;
        }
        match text.and_then(|t| KeyRing::parse(&t)) {
            Ok(ring) => {
                let keys = ring.len();
                let old = self.verifier.replace_keys(ring.clone());
                Reload::Loaded {
                    keys,
                    added: missing_from(&ring, &old),
                    removed: missing_from(&old, &ring),
                }
            }
            Err(e) => Reload::Failed(e),
        }
    }

    /// Logs and counts one attempt's outcome; `why` says what started it.
    fn report(&self, outcome: Reload, why: &str) {
        let path = self.path.display();
        match outcome {
            Reload::Unchanged => {}
            Reload::Loaded {
                keys,
                added,
                removed,
            } => {
                self.counters.loaded.inc();
                tracing::info!(
                    %path,
                    keys,
                    added = %added.join(","),
                    removed = %removed.join(","),
                    "keys file reloaded ({why}); the new keys answer from the next request"
                );
            }
            Reload::Failed(e) => {
                self.counters.failed.inc();
                tracing::error!(
                    %path,
                    reason = %crate::wire::error_chain(&e),
                    "keys file not reloaded ({why}); the previous keys stay in service"
                );
            }
        }
    }

    /// Polls the file every `interval` (never with `None`) and re-reads it
    /// on SIGHUP, until the task is aborted. SIGHUP is caught from this call
    /// on, so it no longer ends the process.
    pub fn spawn(self: Arc<Self>, interval: Option<Duration>) -> JoinHandle<()> {
        let hangup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "SIGHUP cannot be caught; the keys file is only polled");
                None
            }
        };
        tokio::spawn(self.run(interval, hangup))
    }

    async fn run(self: Arc<Self>, interval: Option<Duration>, mut hangup: Option<Signal>) {
        let mut ticker = interval.map(|every| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            let force = tokio::select! {
                () = tick(&mut ticker) => false,
                () = hung_up(&mut hangup) => true,
            };
            let watch = self.clone();
            let outcome = match tokio::task::spawn_blocking(move || watch.reload(force)).await {
                Ok(outcome) => outcome,
                Err(e) => Reload::Failed(KeysFileError::Read(std::io::Error::other(e))),
            };
            self.report(outcome, if force { "SIGHUP" } else { "file changed" });
        }
    }
}

/// The ticker's next tick; never without one.
async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The next SIGHUP; never when it cannot be caught.
async fn hung_up(hangup: &mut Option<Signal>) {
    if let Some(s) = hangup {
        if s.recv().await.is_some() {
            return;
        }
        *hangup = None;
    }
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "[[key]]\naccess_key_id = \"KEYA\"\nsecret_access_key = \"secret-a-0123456789abcdef\"\nrole = \"admin\"\n";
    const B: &str = "[[key]]\naccess_key_id = \"KEYB\"\nsecret_access_key = \"secret-b-0123456789abcdef\"\nrole = \"node\"\nclusters = [\"blue\"]\n";

    fn ids(verifier: &SigV4Verifier) -> Vec<String> {
        verifier
            .keys()
            .ids()
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// A change is loaded once, a broken or missing file keeps the keys in
    /// service (and is counted once per state), SIGHUP re-reads the same file.
    #[test]
    fn reloads_changes_and_keeps_keys_when_the_file_breaks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        std::fs::write(&path, A).unwrap();
        let counters = ReloadCounters::default();
        let watch = KeysFileWatch::load(&path, "us-east-1", counters.clone()).unwrap();
        assert!(matches!(watch.reload(false), Reload::Unchanged));
        assert_eq!(ids(watch.verifier()), ["KEYA"]);

        std::fs::write(&path, format!("{A}{B}")).unwrap();
        let Reload::Loaded {
            keys,
            added,
            removed,
        } = watch.reload(false)
        else {
            panic!("a changed file was not loaded");
        };
        assert_eq!((keys, added, removed), (2, vec!["KEYB".to_owned()], vec![]));
        watch.report(Reload::Unchanged, "test");

        std::fs::write(&path, B).unwrap();
        let Reload::Loaded { removed, .. } = watch.reload(false) else {
            panic!("a changed file was not loaded");
        };
        assert_eq!(removed, ["KEYA"]);
        assert_eq!(ids(watch.verifier()), ["KEYB"]);

        for broken in ["[[key]]\naccess_key_id = ", "", "\u{0}"] {
            std::fs::write(&path, broken).unwrap();
            let outcome = watch.reload(false);
            assert!(
                matches!(outcome, Reload::Failed(_)),
                "{broken:?}: {outcome:?}"
            );
            watch.report(outcome, "test");
            assert!(matches!(watch.reload(false), Reload::Unchanged));
            assert_eq!(ids(watch.verifier()), ["KEYB"], "{broken:?}");
        }
        std::fs::remove_file(&path).unwrap();
        let outcome = watch.reload(false);
        assert!(
            matches!(outcome, Reload::Failed(KeysFileError::Read(_))),
            "{outcome:?}"
        );
        watch.report(outcome, "test");
        assert_eq!(ids(watch.verifier()), ["KEYB"]);
        assert_eq!(counters.failed.get(), 4);

        std::fs::write(&path, B).unwrap();
        let outcome = watch.reload(false);
        assert!(matches!(outcome, Reload::Loaded { .. }), "{outcome:?}");
        watch.report(outcome, "test");
        assert!(matches!(watch.reload(false), Reload::Unchanged));
        assert!(matches!(watch.reload(true), Reload::Loaded { keys: 1, .. }));
        assert_eq!(counters.loaded.get(), 1);
    }

    /// The counters are the server's `podid_keys_reload_total{result}`.
    #[test]
    fn reloads_are_counted_in_the_servers_metrics() {
        let metrics = crate::metrics::ServerMetrics::new();
        let counters = ReloadCounters {
            loaded: metrics.keys_reload_counter("loaded"),
            failed: metrics.keys_reload_counter("failed"),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        std::fs::write(&path, A).unwrap();
        let watch = KeysFileWatch::load(&path, "us-east-1", counters).unwrap();
        std::fs::write(&path, "garbage").unwrap();
        watch.report(watch.reload(false), "test");
        watch.report(watch.reload(true), "SIGHUP");
        std::fs::write(&path, B).unwrap();
        watch.report(watch.reload(false), "test");
        let text = metrics.encode();
        assert!(
            text.contains("podid_keys_reload_total{result=\"failed\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("podid_keys_reload_total{result=\"loaded\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn a_server_does_not_start_without_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        let missing = KeysFileWatch::load(&path, "us-east-1", ReloadCounters::default());
        assert!(matches!(missing, Err(KeysFileError::Read(_))));
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        let not_utf8 = KeysFileWatch::load(&path, "us-east-1", ReloadCounters::default());
        assert_eq!(
            not_utf8.unwrap_err().to_string(),
            "the keys file is not UTF-8"
        );
    }
}
