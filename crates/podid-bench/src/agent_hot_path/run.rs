//! One measured run of the hot-path benchmark: which server, wrk's result, and
//! the CPU the server, the load generator and everything else used.

use crate::load::WrkResult;
use crate::machine::{children_cpu_seconds, cpu_busy, cpu_jiffies, process_cpu_seconds};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    Agent,
    Baseline,
}

impl Target {
    pub(super) fn name(self) -> &'static str {
        match self {
            Target::Agent => "agent",
            Target::Baseline => "baseline",
        }
    }
}

/// CPU counters at one moment.
pub(super) struct CpuSample {
    server: Option<f64>,
    load: Option<f64>,
    this: Option<f64>,
    jiffies: Vec<(u64, u64)>,
}

/// CPU use during a run, in percent of one CPU.
#[derive(Debug, Clone, Copy)]
pub(super) struct CpuUse {
    /// The server under test.
    pub(super) server: f64,
    /// The load generator.
    pub(super) load: f64,
    /// Everything else on the machine (other builds, tests, …).
    pub(super) foreign: f64,
}

impl CpuSample {
    pub(super) fn take(server_pid: u32) -> CpuSample {
        CpuSample {
            server: process_cpu_seconds(server_pid),
            load: children_cpu_seconds(),
            this: process_cpu_seconds(std::process::id()),
            jiffies: cpu_jiffies(),
        }
    }

    pub(super) fn since(&self, before: &CpuSample, wall: f64) -> CpuUse {
        let percent = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if wall > 0.0 => 100.0 * (b - a) / wall,
            _ => f64::NAN,
        };
        let server = percent(before.server, self.server);
        let load = percent(before.load, self.load);
        let this = percent(before.this, self.this);
        let busy: f64 = cpu_busy(&before.jiffies, &self.jiffies).iter().sum();
        CpuUse {
            server,
            load,
            foreign: (busy - server - load - this).max(0.0),
        }
    }
}

pub(super) struct Run {
    pub(super) round: u32,
    pub(super) target: Target,
    pub(super) result: WrkResult,
    pub(super) cpu: CpuUse,
    pub(super) clean: bool,
}

impl Run {
    /// Requests per millisecond of the server's CPU time.
    pub(super) fn efficiency(&self) -> f64 {
        self.result.rps() / (10.0 * self.cpu.server)
    }
}
