//! Helpers shared by the binary's integration tests: a real `podid server`
//! process (from `podid-test-support`) started from this crate's binary.
#![allow(dead_code, clippy::unwrap_used, missing_docs)]

use std::path::Path;

pub use podid_test_support::{PodidServerProcess, TEST_JWKS as JWKS};

/// Starts `podid server` with `args` and waits for its "listening" line.
pub fn start_server(args: &[&str]) -> PodidServerProcess {
    podid_test_support::PodidServerLaunch::new(env!("CARGO_BIN_EXE_podid"))
        .args(args)
        .start()
        .unwrap_or_else(|e| panic!("podid server did not start: {e}"))
}

/// Writes a keys file with the test keys (admin, reader, node).
pub fn write_keys(dir: &Path) -> std::path::PathBuf {
    podid_test_support::write_keys_file(dir).unwrap()
}

/// The server's database URL for a test: SQLite in `dir`.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("podid.db").display())
}
