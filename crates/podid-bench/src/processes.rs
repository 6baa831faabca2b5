//! The processes a benchmark starts and finds: the `podid` and agent
//! binaries, a `podid-agent` process, and the baseline server
//! (`podid-bench baseline`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use podid_test_support::agent::{loopback_agent_args, AGENT_LISTENING, AGENT_METRICS};
use podid_test_support::{ChildProcess, NODE};

use crate::http_client;
use crate::priority::wrapped;

/// The `podid` binary to benchmark: `--podid`, else `podid` next to this
/// executable (`target/release/podid` when run from `target/release/`).
pub fn podid_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    sibling_binary(explicit, "podid", "podid", "--podid")
}

/// The agent executable to benchmark: `--agent`, else `podid-agent` next to
/// this executable (the agent-only binary a node runs; `podid agent` takes the
/// same flags and may be passed instead).
pub fn agent_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    sibling_binary(explicit, "podid-agent", "podid-agent-cli", "--agent")
}

/// `explicit`, else the executable `name` (of cargo package `package`) next
/// to this one; it must exist.
fn sibling_binary(
    explicit: Option<&Path>,
    name: &str,
    package: &str,
    flag: &str,
) -> anyhow::Result<PathBuf> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .context("cannot find this executable")?
            .parent()
            .map(|dir| dir.join(name))
            .ok_or_else(|| anyhow!("this executable has no directory"))?,
    };
    if !path.is_file() {
        bail!(
            "{} does not exist: build it first (cargo build --release -p {package}) or pass {flag}",
            path.display()
        );
    }
    Ok(path)
}

/// The arguments before the agent's flags: `agent` for the multi-call `podid`.
fn agent_subcommand(program: &Path) -> &'static [&'static str] {
    if program.file_name().is_some_and(|n| n == "podid") {
        &["agent"]
    } else {
        &[]
    }
}

/// This executable (to start the baseline server as its own process).
pub fn self_binary() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("cannot find this executable")
}

/// Whether `program` can be run (found on PATH or a path).
pub fn have_program(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// The agents' per-client limit (requests a second, and burst): far above
/// any load here, so the check costs what it does in production and refuses nothing.
const BENCH_CLIENT_RATE: &str = "10000000";

/// Every load comes from 127.0.0.1, one client to the agent's per-client
/// limit: [`BENCH_CLIENT_RATE`] unless this process's environment sets
/// `PODID_AGENT_CLIENT_RATE_LIMIT` (0 measures the agent without the check).
fn client_limit_env() -> Vec<(&'static str, &'static str)> {
    if std::env::var_os("PODID_AGENT_CLIENT_RATE_LIMIT").is_some() {
        return Vec::new();
    }
    vec![
        ("PODID_AGENT_CLIENT_RATE_LIMIT", BENCH_CLIENT_RATE),
        ("PODID_AGENT_CLIENT_BURST", BENCH_CLIENT_RATE),
    ]
}

/// A `podid-agent` (or `podid agent`) process on 127.0.0.1 (port 0 for all three listeners),
/// asking `endpoint`, signing with the test node key. Killed on drop.
pub struct AgentProcess {
    process: ChildProcess,
    /// The credential listener.
    pub credentials: SocketAddr,
    /// The metrics listener.
    pub metrics: SocketAddr,
}

impl AgentProcess {
    /// Starts the agent executable `agent`, pinned to `cpus` when given, with `env` added,
    /// and waits until it prints its addresses.
    pub async fn start(
        agent: &Path,
        endpoint: &str,
        cpus: Option<&str>,
        env: &[(String, String)],
    ) -> anyhow::Result<AgentProcess> {
        Self::start_wrapped(agent, endpoint, cpus, &[], env).await
    }

    /// [`AgentProcess::start`] through a wrapper command (a profiler).
    pub async fn start_wrapped(
        agent: &Path,
        endpoint: &str,
        cpus: Option<&str>,
        wrapper: &[String],
        env: &[(String, String)],
    ) -> anyhow::Result<AgentProcess> {
        let mut cmd = wrapped(cpus, wrapper, agent);
        cmd.args(agent_subcommand(agent))
            .args(loopback_agent_args(crate::names::CLUSTER, endpoint))
            .env("AWS_ACCESS_KEY_ID", NODE.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", NODE.secret_access_key)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("PODID_LOG", "warn")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .envs(client_limit_env())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stderr(Stdio::inherit());
        let name = agent.display().to_string();
        let timeout = Duration::from_secs(if wrapper.is_empty() { 30 } else { 300 });
        let (process, lines) = tokio::task::spawn_blocking(move || {
            let mut process = ChildProcess::spawn(&name, cmd, false)?;
            let lines = process.wait_for_lines(&[AGENT_LISTENING, AGENT_METRICS], timeout)?;
            Ok::<_, podid_test_support::HarnessError>((process, lines))
        })
        .await??;
        let [credentials, metrics] = [&lines[0], &lines[1]].map(|a| a.parse::<SocketAddr>());
        Ok(AgentProcess {
            process,
            credentials: credentials.context("the agent's credential address")?,
            metrics: metrics.context("the agent's metrics address")?,
        })
    }

    /// Its process id (taskset execs the agent: the same process).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// A metric's value from `/metrics` (the first sample whose line starts with `name`).
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let (status, _, body) = http_client::get(self.metrics, "/metrics", &[]).await?;
        if status != 200 {
            bail!("/metrics answered {status}");
        }
        let text = String::from_utf8_lossy(&body);
        text.lines()
            .filter(|l| {
                l.starts_with(name)
                    && l.as_bytes()
                        .get(name.len())
                        .is_some_and(|b| *b == b' ' || *b == b'{')
            })
            .find_map(|l| l.rsplit(' ').next()?.parse().ok())
            .ok_or_else(|| anyhow!("no metric {name}"))
    }

    /// Stops it: SIGTERM (so a profiler it runs under writes its report),
    /// SIGKILL after a minute.
    pub async fn stop(self) {
        let process = self.process;
        let _ =
            tokio::task::spawn_blocking(move || process.terminate(Duration::from_secs(60))).await;
    }
}

/// The baseline server (`podid-bench baseline`, this binary), killed on drop.
pub struct BaselineServer {
    process: ChildProcess,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl BaselineServer {
    /// Runs `podid-bench baseline --body-file BODY` pinned to `cpus`,
    /// waiting for its line `baseline listening on ADDR`.
    pub async fn start(body_file: &Path, cpus: Option<&str>) -> anyhow::Result<BaselineServer> {
        let mut cmd = wrapped(cpus, &[], &self_binary()?);
        cmd.arg("baseline")
            .arg("--body-file")
            .arg(body_file)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit());
        let (process, line) = tokio::task::spawn_blocking(move || {
            let mut process = ChildProcess::spawn("podid-bench baseline", cmd, false)?;
            let line = process.wait_for_line("baseline listening on ", Duration::from_secs(10))?;
            Ok::<_, podid_test_support::HarnessError>((process, line))
        })
        .await??;
        let addr = line.parse().context("the baseline's address")?;
        Ok(BaselineServer { process, addr })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Stops it.
    pub async fn stop(self) {
        let process = self.process;
        let _ = tokio::task::spawn_blocking(move || process.kill()).await;
    }
}
