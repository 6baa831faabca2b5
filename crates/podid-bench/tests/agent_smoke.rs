//! Keeps the agent benchmarks from rotting: runs `podid-bench agent-memory
//! --smoke` and `podid-bench agent-hot-path --smoke` (1 s, no verdict)
//! against the workspace's own `podid-agent` build. Skipped, saying why, when that
//! build is missing; the hot-path one also when `wrk` is not installed; under
//! `CI` both fail instead (`skip_or_fail`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use podid_test_support::{run_to_success, skip_or_fail};

fn bench() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_podid-bench"))
}

/// `podid-agent` next to `podid-bench` (target/debug/podid-agent under `cargo test`).
fn agent() -> Option<PathBuf> {
    let path = bench().parent()?.join("podid-agent");
    if path.is_file() {
        Some(path)
    } else {
        skip_or_fail(&format!(
            "{} is not built (cargo build -p podid-agent-cli)",
            path.display()
        ));
        None
    }
}

/// `podid-bench ARGS --agent AGENT` (at most 10 minutes); its stdout.
fn run(args: &[&str], agent: &Path) -> String {
    let mut cmd = Command::new(bench());
    cmd.args(args).arg("--agent").arg(agent);
    let output = run_to_success("podid-bench", cmd, Duration::from_secs(600))
        .unwrap_or_else(|e| panic!("podid-bench {args:?}: {e}"));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn agent_memory_smoke() {
    let Some(agent) = agent() else { return };
    let out = run(&["agent-memory", "--smoke"], &agent);
    assert!(out.contains("| 200 pods cached "), "{out}");
    assert!(out.contains("per cached pod:"), "{out}");
}

#[test]
fn agent_hot_path_smoke() {
    let Some(agent) = agent() else { return };
    if Command::new("wrk").arg("--version").output().is_err() {
        skip_or_fail("wrk is not installed (scripts/setup.sh installs it)");
        return;
    }
    let out = run(&["agent-hot-path", "--smoke", "--no-pin"], &agent);
    assert!(out.contains("upstream calls: 1 "), "{out}");
    assert!(out.contains("| req/s "), "{out}");
}
