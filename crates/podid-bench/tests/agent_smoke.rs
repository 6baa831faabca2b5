//! Keeps the agent benchmarks from rotting: runs `podid-bench agent-memory
//! --smoke` and `podid-bench agent-hot-path --smoke` (1 s, no verdict)
//! against the workspace's own `podid-agent` build. Skipped, saying why, when that
//! build is missing; the hot-path one also when `wrk` is not installed.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;
use std::process::Command;

fn bench() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_podid-bench"))
}

/// `podid-agent` next to `podid-bench` (target/debug/podid-agent under `cargo test`).
fn agent() -> Option<PathBuf> {
    let path = bench().parent()?.join("podid-agent");
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "skipped: {} is not built (cargo build -p podid-agent-cli)",
            path.display()
        );
        None
    }
}

fn run(args: &[&str]) -> String {
    let output = Command::new(bench())
        .args(args)
        .output()
        .expect("podid-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "podid-bench {args:?} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn agent_memory_smoke() {
    let Some(agent) = agent() else { return };
    let out = run(&[
        "agent-memory",
        "--smoke",
        "--agent",
        agent.to_str().unwrap(),
    ]);
    assert!(out.contains("| 200 pods cached "), "{out}");
    assert!(out.contains("per cached pod:"), "{out}");
}

#[test]
fn agent_hot_path_smoke() {
    let Some(agent) = agent() else { return };
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("skipped: wrk is not installed (apt-get install wrk)");
        return;
    }
    let out = run(&[
        "agent-hot-path",
        "--smoke",
        "--no-pin",
        "--agent",
        agent.to_str().unwrap(),
    ]);
    assert!(out.contains("upstream calls: 1 "), "{out}");
    assert!(out.contains("| req/s "), "{out}");
}
