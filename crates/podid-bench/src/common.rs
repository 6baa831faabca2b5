//! What every benchmark shares: the machine's description, the `podid agent`
//! process, a small HTTP/1.1 client, `/proc` readings, statistics and tables.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

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

/// The machine, as `docs/benchmarks.md` reports it.
#[derive(Debug, Clone)]
pub struct Machine {
    /// CPUs this process may run on.
    pub nproc: usize,
    /// `model name` of /proc/cpuinfo.
    pub cpu_model: String,
    /// MemTotal in MiB.
    pub mem_total_mib: u64,
    /// /proc/sys/kernel/osrelease.
    pub kernel: String,
}

impl Machine {
    /// Reads /proc.
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|r| r.split_once(':'))
                    .map(|(_, v)| v.trim())
            })
            .unwrap_or("unknown")
            .to_owned();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_total_mib = status_kib(&meminfo, "MemTotal").unwrap_or(0) / 1024;
        Machine {
            nproc: std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(1),
            cpu_model,
            mem_total_mib,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
        }
    }

    /// One line per fact.
    pub fn describe(&self) -> String {
        format!(
            "machine: nproc {}, CPU {}, memory {} MiB, kernel {}, load average {}",
            self.nproc,
            self.cpu_model,
            self.mem_total_mib,
            self.kernel,
            load_average()
        )
    }
}

/// /proc/loadavg's first three fields.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// A `Key:   123 kB` line of /proc/PID/status or /proc/meminfo, in KiB.
pub fn status_kib(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// A process's memory, from /proc/PID/status (KiB).
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// VmRSS.
    pub rss: u64,
    /// VmHWM (peak RSS).
    pub hwm: u64,
    /// RssAnon (heap, stacks).
    pub anon: u64,
    /// RssFile (mapped binary and libraries).
    pub file: u64,
    /// Threads.
    pub threads: u64,
}

impl Memory {
    /// Reads /proc/PID/status.
    pub fn of(pid: u32) -> anyhow::Result<Memory> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .context("reading /proc/PID/status")?;
        let get = |k| status_kib(&text, k).unwrap_or(0);
        Ok(Memory {
            rss: get("VmRSS"),
            hwm: get("VmHWM"),
            anon: get("RssAnon"),
            file: get("RssFile"),
            threads: get("Threads"),
        })
    }
}

/// Resident memory by mapping (/proc/PID/smaps): `(KiB, "path perms")`,
/// largest first; anonymous mappings other than the heap and stack are
/// summed as `[anonymous]`.
pub fn resident_by_mapping(pid: u32) -> anyhow::Result<Vec<(u64, String)>> {
    let text =
        std::fs::read_to_string(format!("/proc/{pid}/smaps")).context("reading /proc/PID/smaps")?;
    let mut sums: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    let mut current = String::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if first.contains('-') && first.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            let perms = words.next().unwrap_or("");
            let path = words.nth(3).unwrap_or("[anonymous]");
            current = format!("{path} {perms}");
        } else if first == "Rss:" {
            let kib: u64 = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            *sums.entry(current.clone()).or_default() += kib;
        }
    }
    let mut out: Vec<(u64, String)> = sums
        .into_iter()
        .map(|(k, v)| (v, k))
        .filter(|(v, _)| *v > 0)
        .collect();
    out.sort_by_key(|(kib, _)| std::cmp::Reverse(*kib));
    Ok(out)
}

/// KiB as MiB with two decimals.
pub fn mib(kib: u64) -> String {
    format!("{:.2}", kib as f64 / 1024.0)
}

/// CPU time (user + system) a process has used, in seconds.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may contain spaces) start after ") ".
    let rest = stat.rsplit_once(") ")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the command.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / clock_ticks())
}

/// CPU time (user + system) of this process's waited-for children (the
/// load generator once it has exited), in seconds.
pub fn children_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(") ")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // cutime and cstime are fields 16 and 17 of the whole line: 14 and 15 after the command.
    let ticks: f64 = fields.get(13)?.parse::<f64>().ok()? + fields.get(14)?.parse::<f64>().ok()?;
    Some(ticks / clock_ticks())
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Busy and total jiffies of every CPU (/proc/stat `cpuN` lines).
pub fn cpu_jiffies() -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            let total: u64 = v.iter().take(8).sum();
            // idle + iowait
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            (total - idle, total)
        })
        .collect()
}

/// Busy percentage of each CPU between two [`cpu_jiffies`] readings.
pub fn cpu_busy(before: &[(u64, u64)], after: &[(u64, u64)]) -> Vec<f64> {
    before
        .iter()
        .zip(after)
        .map(|((b0, t0), (b1, t1))| {
            let total = t1.saturating_sub(*t0);
            if total == 0 {
                0.0
            } else {
                100.0 * b1.saturating_sub(*b0) as f64 / total as f64
            }
        })
        .collect()
}

/// The command line prefix that pins a process to `cpus` (taskset), or nothing.
fn pinned(cpus: Option<&str>, program: &Path) -> Command {
    wrapped(cpus, &[], program)
}

/// The niceness processes started from now on get (see [`set_niceness`]); 0 = unchanged.
static NICENESS: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Starts every later server and load generator under `nice -n N`: with a
/// negative N (root only) they win the CPU over builds and tests sharing the
/// machine (at -19 the kernel gives them ~98% of a CPU against one
/// competitor of the default niceness). Without root `nice` warns and runs
/// them unchanged.
pub fn set_niceness(n: i32) {
    NICENESS.store(n, std::sync::atomic::Ordering::Relaxed);
}

/// Restores this process's autogroup niceness when dropped.
pub struct AutogroupBoost {
    previous: i32,
}

impl AutogroupBoost {
    /// With the kernel's autogroups (`/proc/sys/kernel/sched_autogroup_enabled`),
    /// CPU time is shared between sessions first and niceness only counts
    /// within one: a build in another session still takes half of each CPU
    /// from a `nice -n -19` benchmark. This sets the niceness of this
    /// process's session (its autogroup, which the servers and load
    /// generators it starts belong to) to `n` until dropped. Needs root for a
    /// negative `n`; says why and does nothing when it cannot.
    pub fn set(n: i32) -> Option<AutogroupBoost> {
        let path = "/proc/self/autogroup";
        let current = std::fs::read_to_string(path).ok()?;
        let previous = current.split_whitespace().last()?.parse().ok()?;
        match std::fs::write(path, n.to_string()) {
            Ok(()) => Some(AutogroupBoost { previous }),
            Err(e) => {
                eprintln!(
                    "note: cannot set this session's CPU priority ({path}: {e}); other sessions' work competes at par"
                );
                None
            }
        }
    }
}

impl Drop for AutogroupBoost {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/self/autogroup", self.previous.to_string());
    }
}

/// The `nice -n N` prefix, if one is set.
pub fn niceness_prefix() -> Vec<String> {
    match NICENESS.load(std::sync::atomic::Ordering::Relaxed) {
        0 => Vec::new(),
        n => vec!["nice".into(), "-n".into(), n.to_string()],
    }
}

/// `program` run through `wrapper` (e.g. `valgrind --tool=massif`), pinned to
/// `cpus`, at the niceness set by [`set_niceness`].
fn wrapped(cpus: Option<&str>, wrapper: &[String], program: &Path) -> Command {
    let mut words: Vec<std::ffi::OsString> =
        niceness_prefix().into_iter().map(Into::into).collect();
    if let Some(cpus) = cpus {
        words.extend(["taskset".into(), "-c".into(), cpus.into()]);
    }
    words.extend(wrapper.iter().map(Into::into));
    words.push(program.into());
    let mut c = Command::new(&words[0]);
    c.args(&words[1..]);
    c
}

/// A `podid-agent` (or `podid agent`) process on 127.0.0.1 (port 0 for all three listeners),
/// asking `endpoint`, signing with a fixed fake key. Killed on drop.
pub struct AgentProcess {
    child: Child,
    pid: u32,
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
            .args([
                "--cluster-name",
                "bench",
                "--endpoint",
                endpoint,
                "--region",
                "us-east-1",
            ])
            .args([
                "--bind-hosts",
                "127.0.0.1",
                "--port",
                "0",
                "--probe-port",
                "0",
            ])
            .args(["--metrics-address", "127.0.0.1", "--metrics-port", "0"])
            .env("AWS_ACCESS_KEY_ID", "AKIDPODIDBENCH000000")
            .env(
                "AWS_SECRET_ACCESS_KEY",
                "podid-bench-secret-key-not-a-real-one00",
            )
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("PODID_LOG", "warn")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", agent.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("the agent exited at once"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let (mut credentials, mut metrics) = (None, None);
        let deadline =
            Instant::now() + Duration::from_secs(if wrapper.is_empty() { 30 } else { 300 });
        while credentials.is_none() || metrics.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = tokio::time::timeout(left, lines.next_line())
                .await
                .context("the agent did not print its addresses within 30 s")??
                .ok_or_else(|| anyhow!("the agent exited before printing its addresses"))?;
            if let Some(a) = line.strip_prefix("podid agent listening on ") {
                credentials = Some(a.trim().parse()?);
            } else if let Some(a) = line.strip_prefix("podid agent metrics on ") {
                metrics = Some(a.trim().parse()?);
            }
        }
        // Keep draining stdout so the agent never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(AgentProcess {
            child,
            pid,
            credentials: credentials.ok_or_else(|| anyhow!("no address"))?,
            metrics: metrics.ok_or_else(|| anyhow!("no address"))?,
        })
    }

    /// Its process id (taskset execs the agent: the same process).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// A metric's value from `/metrics` (the first sample whose line starts with `name`).
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let (status, _, body) = get(self.metrics, "/metrics", &[]).await?;
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
    pub async fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
        if tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }
}

/// A server started from this binary (`podid-bench baseline …`), killed on drop.
pub struct ChildServer {
    child: Child,
    pid: u32,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl ChildServer {
    /// Runs `podid-bench ARGS` pinned to `cpus`, waiting for a line
    /// `… listening on ADDR`.
    pub async fn start(args: &[&str], cpus: Option<&str>) -> anyhow::Result<ChildServer> {
        let mut cmd = pinned(cpus, &self_binary()?);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd.spawn().context("cannot start a podid-bench server")?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("the server exited at once"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .context("the server did not start within 10 s")??
            .ok_or_else(|| anyhow!("the server exited before listening"))?;
        let addr = line
            .rsplit_once(" listening on ")
            .ok_or_else(|| anyhow!("unexpected first line {line:?}"))?
            .1
            .trim()
            .parse()?;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(ChildServer { child, pid, addr })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Stops it.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// A status, the response headers and the body.
pub type Answer = (u16, http::HeaderMap, Bytes);

/// A keep-alive HTTP/1.1 connection for sequential requests.
pub struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    host: String,
}

impl Connection {
    /// Connects to `addr`.
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Connection> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Connection {
            sender,
            host: addr.to_string(),
        })
    }

    /// `GET path` with `headers` (and `Host: ADDR`).
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Answer> {
        let mut request = http::Request::get(path).header(http::header::HOST, &self.host);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        self.sender.ready().await?;
        let response = self
            .sender
            .send_request(request.body(Empty::new())?)
            .await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, headers, body))
    }
}

/// One `GET` on a new connection.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Answer> {
    Connection::open(addr).await?.get(path, headers).await
}

/// The median (of a copy).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// PASS or FAIL.
pub fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "FAIL"
    }
}

/// A plain-text table with right-aligned columns (Markdown-compatible).
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names.
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|s| (*s).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as Markdown.
    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut width = vec![3; columns];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate().take(columns) {
                width[i] = width[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: &[String]| {
            out.push('|');
            for (i, w) in width.iter().enumerate() {
                let cell = cells.get(i).map(String::as_str).unwrap_or("");
                if i == 0 {
                    let _ = write!(out, " {cell:<w$} |");
                } else {
                    let _ = write!(out, " {cell:>w$} |");
                }
            }
            out.push('\n');
        };
        line(&mut out, &self.header);
        out.push('|');
        for (i, w) in width.iter().enumerate() {
            let dashes = "-".repeat(*w);
            if i == 0 {
                let _ = write!(out, " {dashes} |");
            } else {
                let _ = write!(out, " {}: |", &dashes[1..]);
            }
        }
        out.push('\n');
        for row in &self.rows {
            line(&mut out, row);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_parse() {
        let text = "Name:\tpodid\nVmHWM:\t   9000 kB\nVmRSS:\t    8000 kB\nThreads:\t4\n";
        assert_eq!(status_kib(text, "VmRSS"), Some(8000));
        assert_eq!(status_kib(text, "VmHWM"), Some(9000));
        assert_eq!(status_kib(text, "Threads"), Some(4));
        assert_eq!(status_kib(text, "Vm"), None);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["what", "n"]);
        t.row(vec!["agent".into(), "12345".into()]);
        let s = t.render();
        assert!(s.contains("| agent | 12345 |"), "{s}");
        assert!(s.contains("| ----- | ----: |"), "{s}");
    }
}
