//! The manifests against what is built: the flags the binaries have, and the Dockerfile.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use podid_test_support::skip_or_fail;

use crate::render::*;

/// The built `podid` to cross-check against: an explicit PODID_BIN, or the
/// default build when it is newer than every source file (a stale binary
/// would miss new flags); `None` (after `skip_or_fail`) otherwise.
fn fresh_binary() -> Option<PathBuf> {
    let explicit = std::env::var_os("PODID_BIN").map(PathBuf::from);
    let bin = explicit.clone().unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace().join("target"))
            .join("debug/podid")
    });
    let Ok(built) = std::fs::metadata(&bin).and_then(|m| m.modified()) else {
        skip_or_fail(&format!(
            "{} not built; flags not cross-checked (cargo build -p podid)",
            bin.display()
        ));
        return None;
    };
    if explicit.is_none() && newest_source(&workspace().join("crates")) > built {
        skip_or_fail(&format!(
            "{} is older than the sources; flags not cross-checked (cargo build -p podid)",
            bin.display()
        ));
        return None;
    }
    Some(bin)
}

/// The `--help` text of `program path…` next to `bin`; `None` (after
/// `skip_or_fail`) when it fails.
fn help_of(bin: &Path, program: &str, path: &[String]) -> Option<String> {
    let output = Command::new(bin.with_file_name(program))
        .args(path)
        .arg("--help")
        .output()
        .expect("run it");
    if !output.status.success() {
        skip_or_fail(&format!(
            "`{program} {} --help` fails: this binary has no such subcommand; flags unchecked\n{}",
            path.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ));
        return None;
    }
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn args_use_flags_the_binary_has() {
    let Some(all) = rendered() else { return };
    let Some(bin) = fresh_binary() else { return };
    // (executable, subcommand path) → flags used.
    let mut checked = BTreeMap::<(String, Vec<String>), BTreeSet<String>>::new();
    for objects in all.values() {
        for (label, c) in all_containers(objects) {
            let args = c.args.clone().unwrap_or_default();
            let path: Vec<String> = args
                .iter()
                .take_while(|a| !a.starts_with('-'))
                .cloned()
                .collect();
            let flags: BTreeSet<String> = args
                .iter()
                .filter(|a| a.starts_with("--"))
                .map(|a| a.split('=').next().unwrap_or(a).to_owned())
                .collect();
            // The image's /podid (a subcommand first) or its /podid-agent.
            let program = match c.command.as_deref() {
                Some([command]) => command.trim_start_matches('/').to_owned(),
                _ => "podid".to_owned(),
            };
            assert!(
                program != "podid" || !path.is_empty(),
                "{label}: args start with a subcommand"
            );
            checked.entry((program, path)).or_default().extend(flags);
        }
    }
    for ((program, path), flags) in checked {
        let Some(help) = help_of(&bin, &program, &path) else {
            continue;
        };
        let known: BTreeSet<String> = help
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .map(str::to_owned)
            .collect();
        for f in flags {
            assert!(
                known.contains(&f),
                "`{program} {}` has no flag {f}; it has {known:?}",
                path.join(" ")
            );
        }
    }
}

#[test]
fn the_agents_env_names_variables_the_agent_reads() {
    let Some(all) = rendered() else { return };
    let Some(bin) = fresh_binary() else { return };
    let Some(help) = help_of(&bin, "podid-agent", &[]) else {
        return;
    };
    for (overlay, objects) in all {
        let pod = pod_spec_of(objects, "DaemonSet", "podid-agent");
        let agent = container(&pod.containers, "agent");
        for e in agent.env.iter().flatten() {
            // Its flags' variables (clap shows `[env: NAME=…]`); NODE_IP,
            // AWS_* and PODID_LOG_* are read elsewhere or only expanded.
            if e.name.starts_with("PODID_AGENT_") {
                assert!(
                    help.contains(&format!("[env: {}", e.name)),
                    "{overlay}: `podid-agent --help` names no variable {}",
                    e.name
                );
            }
        }
    }
}

#[test]
fn readme_registers_the_cluster_with_flags_the_cli_has() {
    let readme = std::fs::read_to_string(deploy().join("README.md")).expect("deploy/README.md");
    let Some(bin) = fresh_binary() else { return };
    let path = ["cluster".to_owned(), "register".to_owned()];
    let Some(help) = help_of(&bin, "podid", &path) else {
        return;
    };
    let lines: Vec<&str> = readme
        .lines()
        .filter(|l| l.trim_start().starts_with("podid cluster register "))
        .collect();
    assert!(
        !lines.is_empty(),
        "no `podid cluster register` in the README"
    );
    for line in lines {
        for flag in line.split_whitespace().filter(|w| w.starts_with("--")) {
            assert!(
                help.contains(flag),
                "`podid cluster register` has no {flag}: {line}"
            );
        }
    }
    assert!(
        help.contains("<key|token>"),
        "--agent-identity token is a value the CLI takes"
    );
}

/// The newest modification time of a `.rs` file below `dir`.
fn newest_source(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return newest;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                newest = newest.max(newest_source(&path));
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            if let Ok(m) = entry.metadata().and_then(|m| m.modified()) {
                newest = newest.max(m);
            }
        }
    }
    newest
}

#[test]
fn dockerfile_builds_podid_and_podid_agent_into_a_non_root_distroless_image() {
    let text = std::fs::read_to_string(workspace().join("Dockerfile")).expect("Dockerfile");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let froms: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(
        froms.len(),
        2,
        "a build stage and a runtime stage: {froms:?}"
    );
    assert!(
        froms[0].contains("rust:") && froms[0].ends_with(" AS build"),
        "build stage: {}",
        froms[0]
    );
    assert!(
        froms[1].contains("gcr.io/distroless/cc-debian12:nonroot"),
        "runtime stage: {}",
        froms[1]
    );
    assert!(
        text.contains("cargo build --profile dist --locked -p podid"),
        "a locked build of podid's shipped profile"
    );
    let runtime = &lines[lines
        .iter()
        .position(|l| *l == froms[1])
        .expect("runtime stage")..];
    let copies: Vec<&&str> = runtime.iter().filter(|l| l.starts_with("COPY")).collect();
    assert_eq!(
        copies.len(),
        2,
        "the runtime stage copies the two executables only: {copies:?}"
    );
    for (copy, target) in copies.iter().zip([" /podid", " /podid-agent"]) {
        assert!(
            copy.starts_with("COPY --from=build ") && copy.ends_with(target),
            "{copy}"
        );
    }
    assert!(
        text.contains("-p podid-agent-cli"),
        "the agent-only executable is built"
    );
    let user = runtime
        .iter()
        .rev()
        .find(|l| l.starts_with("USER "))
        .expect("USER in the runtime stage");
    assert!(
        !user.contains(" 0") && !user.contains("root"),
        "non-root: {user}"
    );
    assert_eq!(runtime.last().copied(), Some(r#"ENTRYPOINT ["/podid"]"#));

    let ignore = std::fs::read_to_string(workspace().join(".dockerignore")).expect(".dockerignore");
    let entries: BTreeSet<&str> = ignore.lines().map(str::trim).collect();
    for must in ["target/", ".venv/", "node_modules/"] {
        assert!(entries.contains(must), ".dockerignore lacks {must}");
    }
}
