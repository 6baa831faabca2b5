//! The machine and its processes as /proc reports them: CPU model, memory,
//! load, a process's memory and CPU time, each CPU's busy time.

use std::path::Path;

use anyhow::Context;

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

/// CPU time this thread has run, in seconds (/proc/thread-self/schedstat, ns).
pub fn thread_cpu_seconds() -> f64 {
    schedstat_ns(Path::new("/proc/thread-self/schedstat")).unwrap_or(0) as f64 / 1e9
}

/// CPU time every thread of process `pid` has run, in seconds (schedstat, ns).
pub fn process_cpu_seconds_precise(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let ns: u64 = tasks
        .filter_map(Result::ok)
        .filter_map(|t| schedstat_ns(&t.path().join("schedstat")))
        .sum();
    ns as f64 / 1e9
}

fn schedstat_ns(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
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
}
