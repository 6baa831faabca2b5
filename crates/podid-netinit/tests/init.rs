//! `ensure_agent_addresses` in a fresh network namespace: the addresses
//! appear, a second run changes nothing, and without CAP_NET_ADMIN it fails
//! with a message naming the capability.
//!
//! The test re-runs its own binary inside `ip netns exec`, so it needs root
//! (CI runs as root); elsewhere it is skipped, except under `CI`: then it fails.
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;
use std::time::Duration;

use podid_test_support::{run_to_success, skip_or_fail};

use podid_netinit::{ensure_agent_addresses, AddressOutcome, InitError, IPV4, IPV6};

const INSIDE: &str = "PODID_NETINIT_INSIDE";

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false)
}

/// Runs test `name` of this binary inside a new network namespace, `prefix`
/// (e.g. setpriv) in front, and asserts that it ran and passed.
fn run_inside(name: &str, prefix: &[&str]) {
    let ns = format!("podid-netinit-{}-{name}", std::process::id());
    assert!(Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .unwrap()
        .success());
    let exe = std::env::current_exe().unwrap();
    let mut inner = Command::new("ip");
    inner
        .args(["netns", "exec", &ns])
        .args(prefix)
        .arg(&exe)
        .args(["--exact", name, "--nocapture", "--test-threads", "1"])
        .env(INSIDE, "1");
    let out = run_to_success(
        &format!("{name} inside {ns}"),
        inner,
        Duration::from_secs(120),
    );
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    let out = out.unwrap_or_else(|e| panic!("inside: {e}"));
    // The inner run must have run exactly this test, not filtered everything out.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("1 passed"),
        "inner run did not run {name}: {stdout}"
    );
}

fn outside_or_skip() -> bool {
    if std::env::var_os(INSIDE).is_some() {
        return false;
    }
    if !is_root() {
        skip_or_fail("network namespace tests need root");
    }
    true
}

#[tokio::test]
async fn creates_the_addresses_once_and_then_changes_nothing() {
    if outside_or_skip() {
        if is_root() {
            run_inside("creates_the_addresses_once_and_then_changes_nothing", &[]);
        }
        return;
    }
    let first = ensure_agent_addresses().await.unwrap();
    println!("first run: {first:?}");
    assert!(first.changed());
    assert!(
        first.link == "pod-id-link0" || (first.link == "lo" && first.fell_back_to_loopback),
        "{first:?}"
    );
    assert_eq!(first.addresses[0], (IPV4, AddressOutcome::Added));
    assert_eq!(first.addresses[1], (IPV6, AddressOutcome::Added));

    let shown = |family: &str| {
        let out = Command::new("ip")
            .args([family, "-o", "addr", "show", "dev", &first.link])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let (v4, v6) = (shown("-4"), shown("-6"));
    assert!(v4.contains("169.254.170.23/32"), "{v4}");
    assert!(v6.contains("fd00:ec2::23/128"), "{v6}");
    let link = String::from_utf8(
        Command::new("ip")
            .args(["-o", "link", "show", "dev", &first.link])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(link.contains("UP") || link.contains("UNKNOWN"), "{link}");

    let second = ensure_agent_addresses().await.unwrap();
    assert!(!second.changed(), "{second:?}");
    assert_eq!(second.link, first.link);
    assert!(second
        .addresses
        .iter()
        .all(|(_, o)| *o == AddressOutcome::Present));
    assert_eq!((shown("-4"), shown("-6")), (v4, v6));
}

#[tokio::test]
async fn without_net_admin_it_says_what_is_missing() {
    if outside_or_skip() {
        if is_root() {
            // As nobody, with no capabilities.
            run_inside(
                "without_net_admin_it_says_what_is_missing",
                &[
                    "setpriv",
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                    "--inh-caps=-all",
                    "--bounding-set=-all",
                ],
            );
        }
        return;
    }
    match ensure_agent_addresses().await {
        Err(e @ InitError::PermissionDenied) => assert!(e.to_string().contains("CAP_NET_ADMIN")),
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
}
