//! The load generator: Debian's `wrk` (4.1.0), driven with a Lua `done`
//! hook that prints its figures in one machine-readable line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

/// The hook: wrk's own counters, latencies in microseconds.
const SCRIPT: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "PODID_BENCH requests=%d duration_us=%d bytes=%d p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d mean_us=%.1f connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
"#;

/// How to load a server.
#[derive(Debug, Clone)]
pub struct Wrk {
    /// The wrk executable.
    pub program: String,
    /// CPUs wrk runs on (taskset), if pinned.
    pub cpus: Option<String>,
    /// Open connections.
    pub connections: u32,
    /// wrk threads.
    pub threads: u32,
    script: PathBuf,
}

/// What one run measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct WrkResult {
    /// Completed requests.
    pub requests: u64,
    /// Seconds measured.
    pub seconds: f64,
    /// Median latency (µs).
    pub p50_us: f64,
    /// 90th percentile (µs).
    pub p90_us: f64,
    /// 99th percentile (µs).
    pub p99_us: f64,
    /// 99.9th percentile (µs).
    pub p999_us: f64,
    /// Slowest (µs).
    pub max_us: f64,
    /// Mean latency (µs).
    pub mean_us: f64,
    /// Bytes read.
    pub bytes: u64,
    /// Socket errors (connect, read, write, timeout) and non-2xx/3xx answers.
    pub errors: u64,
    /// Non-2xx/3xx answers alone.
    pub status_errors: u64,
}

impl WrkResult {
    /// Requests per second.
    pub fn rps(&self) -> f64 {
        crate::report::per_second(self.requests as usize, self.seconds)
    }
}

impl Wrk {
    /// A runner; writes its Lua hook into `dir`.
    pub fn new(
        program: &str,
        cpus: Option<String>,
        connections: u32,
        threads: u32,
        dir: &Path,
    ) -> anyhow::Result<Wrk> {
        let script = dir.join("podid-bench.lua");
        std::fs::write(&script, SCRIPT)?;
        Ok(Wrk {
            program: program.to_owned(),
            cpus,
            connections,
            threads,
            script,
        })
    }

    /// The same runner pacing each connection: it waits `ms` milliseconds
    /// (wrk's `delay` hook) before each request, so the offered load is at
    /// most connections × 1000 / ms requests per second, the same for every
    /// server, instead of as much as the server takes.
    pub fn paced(&self, ms: u32, dir: &Path) -> anyhow::Result<Wrk> {
        let script = dir.join(format!("podid-bench-paced-{ms}.lua"));
        std::fs::write(
            &script,
            format!("{SCRIPT}\ndelay = function() return {ms} end\n"),
        )?;
        Ok(Wrk {
            script,
            ..self.clone()
        })
    }

    /// Loads `GET http://ADDR/path` with these headers for `duration`.
    pub async fn run(
        &self,
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
        duration: Duration,
    ) -> anyhow::Result<WrkResult> {
        let mut words = crate::priority::niceness_prefix();
        if let Some(cpus) = &self.cpus {
            words.extend(["taskset".to_owned(), "-c".to_owned(), cpus.clone()]);
        }
        words.push(self.program.clone());
        let mut cmd = tokio::process::Command::new(&words[0]);
        cmd.args(&words[1..]);
        cmd.arg(format!("-t{}", self.threads))
            .arg(format!("-c{}", self.connections))
            .arg(format!("-d{}s", duration.as_secs().max(1)))
            .arg("--timeout")
            .arg("5s")
            .arg("-s")
            .arg(&self.script);
        for (k, v) in headers {
            cmd.arg("-H").arg(format!("{k}: {v}"));
        }
        cmd.arg(format!("http://{addr}{path}"));
        let output = cmd
            .output()
            .await
            .with_context(|| format!("cannot run {}", self.program))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "wrk failed ({}): {}{}",
                output.status,
                stdout,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("PODID_BENCH "))
            .ok_or_else(|| anyhow!("wrk printed no figures: {stdout}"))?;
        parse(line)
    }
}

fn parse(line: &str) -> anyhow::Result<WrkResult> {
    let mut r = WrkResult::default();
    for field in line.split_whitespace() {
        let (key, value) = field
            .split_once('=')
            .ok_or_else(|| anyhow!("bad field {field}"))?;
        let v: f64 = value
            .parse()
            .with_context(|| format!("bad value in {field}"))?;
        match key {
            "requests" => r.requests = v as u64,
            "duration_us" => r.seconds = v / 1e6,
            "bytes" => r.bytes = v as u64,
            "p50_us" => r.p50_us = v,
            "p90_us" => r.p90_us = v,
            "p99_us" => r.p99_us = v,
            "p999_us" => r.p999_us = v,
            "max_us" => r.max_us = v,
            "mean_us" => r.mean_us = v,
            "status" => {
                r.status_errors = v as u64;
                r.errors += v as u64;
            }
            "connect" | "read" | "write" | "timeout" => r.errors += v as u64,
            _ => {}
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hook_line_parses() {
        let r = parse("requests=1000 duration_us=2000000 bytes=5 p50_us=100 p90_us=150 p99_us=300 p999_us=900 max_us=2000 mean_us=110.5 connect=0 read=1 write=0 status=2 timeout=0").unwrap();
        assert_eq!(r.requests, 1000);
        assert_eq!(r.rps(), 500.0);
        assert_eq!((r.p50_us, r.p99_us, r.max_us), (100.0, 300.0, 2000.0));
        assert_eq!((r.errors, r.status_errors), (3, 2));
    }
}
