//! The agent-only executable `podid-agent`: its flags, its refusals, and that
//! it serves (probes answer, a credential request without a token is refused
//! in the container-credentials error shape).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use podid_test_support::agent::{loopback_agent_args, AGENT_LISTENING, AGENT_PROBES};
use podid_test_support::{run_to_success, skip_or_fail, ChildProcess, HarnessError};

/// `podid-agent`, and `podid agent` (the same command line in the multi-call
/// binary) when the workspace's `podid` is built next to it.
fn agents() -> Vec<Command> {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_podid-agent"));
    let mut all = vec![agent(Command::new(exe))];
    let podid = exe.with_file_name("podid");
    if podid.is_file() {
        let mut cmd = Command::new(podid);
        cmd.arg("agent");
        all.push(agent(cmd));
    } else {
        skip_or_fail(&format!(
            "`podid agent` not checked: {} is not built (cargo build -p podid)",
            podid.display()
        ));
    }
    all
}

fn agent(mut cmd: Command) -> Command {
    cmd.env("AWS_ACCESS_KEY_ID", "AKIDPODIDAGENTTEST00")
        .env(
            "AWS_SECRET_ACCESS_KEY",
            "podid-agent-test-secret-not-a-real-one0",
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env_remove("AWS_PROFILE");
    cmd
}

/// The bound of every wait here: a child's exit, its first lines, an answer.
const WAIT: Duration = Duration::from_secs(60);

fn http_get(addr: &str, path: &str, headers: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn help_lists_the_agent_flags_and_init() {
    for mut agent in agents() {
        agent.arg("--help");
        let what = format!("{agent:?}");
        let out = run_to_success(&what, agent, WAIT).unwrap_or_else(|e| panic!("{e}"));
        let text = String::from_utf8_lossy(&out.stdout);
        for flag in [
            "--cluster-name",
            "--endpoint",
            "--bind-hosts",
            "--max-cache-size",
            "--max-refresh-ahead",
            "init",
        ] {
            assert!(text.contains(flag), "{what}: --help lacks {flag}:\n{text}");
        }
    }
}

#[test]
fn bad_flags_are_refused_with_a_message() {
    for (args, says) in [
        (
            &["--cluster-name", " ", "--endpoint", "http://127.0.0.1:9"][..],
            "--cluster-name must not be empty",
        ),
        (
            &["--cluster-name", "c", "--endpoint", "ftp://x"][..],
            "--endpoint must be an http:// or https:// URL",
        ),
        (
            &["--cluster-name", "c", "--bind-hosts", "localhost"][..],
            "'localhost' is not an IP address",
        ),
        (
            &["--cluster-name", "c", "--max-refresh-ahead=lots"][..],
            "--max-refresh-ahead",
        ),
    ] {
        for mut agent in agents() {
            agent.args(args);
            let what = format!("{agent:?}");
            // An accepted command line serves until killed: a timeout, not a hang.
            match run_to_success(&what, agent, WAIT) {
                Err(HarnessError::Failed { stderr, .. }) => {
                    assert!(stderr.contains(says), "{what}: {stderr}");
                }
                Ok(_) => panic!("{what} exited 0: accepted"),
                Err(e) => panic!("{what}: accepted? {e}"),
            }
        }
    }
}

#[test]
fn it_serves_probes_and_refuses_a_request_without_a_token() {
    for agent in agents() {
        serves_probes_and_refuses_a_request_without_a_token(agent);
    }
}

fn serves_probes_and_refuses_a_request_without_a_token(mut agent: Command) {
    agent
        .args(loopback_agent_args("c", "http://127.0.0.1:9"))
        .args(["--max-refresh-ahead", "16"])
        .stderr(Stdio::null());
    let mut process = ChildProcess::spawn("podid-agent", agent, false).unwrap();
    let addresses = process
        .wait_for_lines(&[AGENT_LISTENING, AGENT_PROBES], WAIT)
        .expect("the agent printed its addresses");
    let (listening, probes) = (&addresses[0], &addresses[1]);
    let health = http_get(probes, "/healthz", "");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let refused = http_get(listening, "/v1/credentials", "");
    assert!(refused.starts_with("HTTP/1.1 400"), "{refused}");
    assert!(
        refused.contains("\"code\""),
        "the container-credentials error shape: {refused}"
    );
    process.kill();
}
