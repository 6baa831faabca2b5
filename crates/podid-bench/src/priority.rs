//! Where and how urgently the benchmark's processes run: CPU pinning
//! (taskset), niceness and the session's autogroup, and the command line
//! that starts a program that way.

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;

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

/// The words before a program that run it pinned to `cpus` (if any), at
/// the niceness set by [`set_niceness`], through `wrapper` (e.g. `valgrind
/// --tool=massif`).
pub fn prefix_words(cpus: Option<&str>, wrapper: &[String]) -> Vec<OsString> {
    let mut words: Vec<OsString> = niceness_prefix().into_iter().map(Into::into).collect();
    if let Some(cpus) = cpus {
        words.extend(["taskset".into(), "-c".into(), cpus.into()]);
    }
    words.extend(wrapper.iter().map(Into::into));
    words
}

/// `program` run as [`prefix_words`] says, as a std command.
pub fn wrapped(cpus: Option<&str>, wrapper: &[String], program: &Path) -> std::process::Command {
    let mut words = prefix_words(cpus, wrapper);
    words.push(program.into());
    let mut c = std::process::Command::new(&words[0]);
    c.args(&words[1..]);
    c
}

/// `program` pinned to `cpus` (if any) at the set niceness, as a tokio command.
pub fn command(cpus: Option<&str>, program: &Path) -> tokio::process::Command {
    wrapped(cpus, &[], program).into()
}

/// Pins every thread of this process (and so the threads it starts later)
/// to `cpus` (taskset syntax, e.g. `0` or `0-1`); warns if taskset fails.
pub fn pin_self(cpus: &str) {
    let pid = std::process::id().to_string();
    let ok = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("warning: cannot pin podid-bench to CPUs {cpus} (taskset failed); figures are less reliable");
    }
}

/// Runs the benchmark at niceness `n` (root only for a negative `n`):
/// every thread of this process (threads started later inherit it), the
/// processes it starts from now on ([`set_niceness`]), and this
/// session's autogroup ([`AutogroupBoost`], restored when the returned
/// guard drops) — the same rules as the agent benchmarks (docs/benchmarks.md).
pub fn raise_priority(n: i32) -> Option<AutogroupBoost> {
    if n == 0 {
        return None;
    }
    set_niceness(n);
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.filter_map(Result::ok) {
            let _ = std::process::Command::new("renice")
                .args(["-n", &n.to_string(), "-p"])
                .arg(task.file_name())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
    AutogroupBoost::set(n)
}

/// Where a benchmark's processes run (taskset CPU lists).
#[derive(Debug, Clone, clap::Args)]
pub struct Placement {
    /// CPUs of the server (and of what is measured against it), taskset syntax.
    #[arg(long, default_value = "0")]
    pub server_cpus: String,
    /// CPUs of this process (the load generator).
    #[arg(long, default_value = "1")]
    pub load_cpus: String,
    /// Do not pin anything (for machines without taskset).
    #[arg(long)]
    pub no_pin: bool,
}

impl Placement {
    /// The server's CPUs, unless nothing is pinned.
    pub fn server(&self) -> Option<&str> {
        (!self.no_pin).then_some(self.server_cpus.as_str())
    }

    /// The load generator's CPUs, unless nothing is pinned.
    pub fn load(&self) -> Option<&str> {
        (!self.no_pin).then_some(self.load_cpus.as_str())
    }

    /// Pins this process to the server's CPUs (for a baseline measured in it).
    pub fn pin_self_to_server(&self) {
        if let Some(cpus) = self.server() {
            pin_self(cpus);
        }
    }

    /// Pins this process to the load generator's CPUs.
    pub fn pin_self_to_load(&self) {
        if let Some(cpus) = self.load() {
            pin_self(cpus);
        }
    }
}
