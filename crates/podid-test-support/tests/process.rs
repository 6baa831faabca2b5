//! ChildProcess and run_to_success with `sh`: lines waited for, exits seen, bounds kept.
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;
use std::time::Duration;

use podid_test_support::{run_to_success, ChildProcess, HarnessError};

fn sh(script: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script]);
    cmd
}

#[test]
fn lines_are_found_by_prefix_in_any_order() {
    let script = "echo noise; echo 'b: 2'; echo 'a: 1'; echo >&2 oops; exec sleep 30";
    let mut p = ChildProcess::spawn("sh", sh(script), true).unwrap();
    let found = p
        .wait_for_lines(&["a: ", "b: "], Duration::from_secs(10))
        .unwrap();
    assert_eq!(found, ["1", "2"]);
    let status = p.terminate(Duration::from_secs(10)).unwrap();
    assert!(!status.success(), "killed by SIGTERM: {status:?}");
}

#[test]
fn a_process_that_exits_first_is_an_error_with_its_stderr() {
    let mut p = ChildProcess::spawn("sh", sh("echo >&2 'no luck'; exit 3"), true).unwrap();
    match p.wait_for_line("ready", Duration::from_secs(10)) {
        Err(HarnessError::Exited { stderr, .. }) => assert!(stderr.contains("no luck"), "{stderr}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_silent_process_times_out() {
    let mut p = ChildProcess::spawn("sh", sh("exec sleep 30"), false).unwrap();
    let err = p
        .wait_for_line("ready", Duration::from_millis(200))
        .unwrap_err();
    assert!(matches!(err, HarnessError::NoLine { .. }), "{err}");
}

#[test]
fn run_to_success_returns_the_output_or_says_why_not() {
    let out = run_to_success("sh", sh("echo hi"), Duration::from_secs(10)).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    let err =
        run_to_success("sh", sh("echo >&2 bad; exit 1"), Duration::from_secs(10)).unwrap_err();
    assert!(
        matches!(&err, HarnessError::Failed { stderr, .. } if stderr.contains("bad")),
        "{err}"
    );
    let err = run_to_success("sh", sh("exec sleep 30"), Duration::from_millis(200)).unwrap_err();
    assert!(matches!(err, HarnessError::Timeout { .. }), "{err}");
}

#[tokio::test]
async fn yield_until_returns_once_true_and_gives_up_naming_what() {
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let setter = {
        let flag = flag.clone();
        tokio::spawn(async move { flag.store(true, std::sync::atomic::Ordering::SeqCst) })
    };
    podid_test_support::yield_until("the flag", || {
        flag.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    setter.await.unwrap();
    let never = tokio::spawn(podid_test_support::yield_until(
        "a thing that never happens",
        || false,
    ));
    let panic = never.await.unwrap_err().into_panic();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(
        message.contains("waiting for a thing that never happens"),
        "{message}"
    );
}
