//! Rounds of the hot-path benchmark: run agent and baseline alternately until
//! enough rounds are quiet, then judge the ratios against the targets.

use super::run::{Run, Target};
use crate::report::{median, verdict, ReportTable};

/// Requests/s must be at least this share of the baseline's.
pub const MIN_RPS_RATIO: f64 = 0.8;
/// p99 may be at most this multiple of the baseline's.
pub const MAX_P99_RATIO: f64 = 1.25;

/// How a figure is read from a run.
type Reading = fn(&Run) -> f64;

/// How many rounds to run and what counts as quiet.
#[derive(Debug, Clone, Copy)]
pub(super) struct Plan {
    pub(super) rounds: u32,
    pub(super) max_rounds: u32,
    pub(super) max_foreign_cpu: f64,
}

/// The runs of one phase.
pub(super) struct Phase {
    runs: Vec<Run>,
    rounds: u32,
    quiet_rounds: u32,
    wanted: u32,
    max_foreign_cpu: f64,
}

/// A target on the ratio of a figure: its name, how to read it, and
/// whether the ratio must be at least (`true`) or at most the bound.
#[derive(Debug, Clone, Copy)]
pub(super) struct RatioTarget {
    figure: &'static str,
    at_least: bool,
    bound: f64,
}

pub(super) const MIN_RPS_RATIO_TARGET: RatioTarget = RatioTarget {
    figure: "req/s",
    at_least: true,
    bound: MIN_RPS_RATIO,
};
pub(super) const MAX_P99_RATIO_TARGET: RatioTarget = RatioTarget {
    figure: "p99 µs",
    at_least: false,
    bound: MAX_P99_RATIO,
};

impl Plan {
    /// Runs rounds (agent and baseline, alternating which goes first) until
    /// `rounds` are quiet or `max_rounds` have run.
    pub(super) async fn measure<F, Fut>(&self, mut run: F) -> anyhow::Result<Phase>
    where
        F: FnMut(u32, Target) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Run>>,
    {
        let mut runs = Vec::new();
        let (mut round, mut quiet_rounds) = (0, 0);
        while quiet_rounds < self.rounds && round < self.max_rounds {
            round += 1;
            let order = if round % 2 == 1 {
                [Target::Agent, Target::Baseline]
            } else {
                [Target::Baseline, Target::Agent]
            };
            let mut pair = Vec::new();
            for target in order {
                pair.push(run(round, target).await?);
            }
            let quiet = pair.iter().all(|r| r.cpu.foreign <= self.max_foreign_cpu);
            quiet_rounds += u32::from(quiet);
            for mut r in pair {
                r.clean = quiet;
                runs.push(r);
            }
        }
        Ok(Phase {
            runs,
            rounds: round,
            quiet_rounds,
            wanted: self.rounds,
            max_foreign_cpu: self.max_foreign_cpu,
        })
    }
}

impl Phase {
    /// Prints the runs and the summary; whether every target holds, and the
    /// ratios the closing summary shows.
    pub(super) fn report(&self, smoke: bool, targets: &[RatioTarget]) -> Judged {
        let mut table = ReportTable::new(&[
            "round",
            "server",
            "quiet",
            "req/s",
            "p50 µs",
            "p90 µs",
            "p99 µs",
            "max µs",
            "server CPU %",
            "wrk CPU %",
            "other CPU %",
            "req per server CPU-ms",
        ]);
        for r in &self.runs {
            table.row(vec![
                r.round.to_string(),
                r.target.name().to_owned(),
                if r.clean { "yes" } else { "no" }.to_owned(),
                format!("{:.0}", r.result.rps()),
                format!("{:.0}", r.result.p50_us),
                format!("{:.0}", r.result.p90_us),
                format!("{:.0}", r.result.p99_us),
                format!("{:.0}", r.result.max_us),
                format!("{:.0}", r.cpu.server),
                format!("{:.0}", r.cpu.load),
                format!("{:.0}", r.cpu.foreign),
                format!("{:.1}", r.efficiency()),
            ]);
        }
        println!();
        print!("{}", table.render());
        // The verdict uses the quiet rounds when there are enough of them.
        let noisy = self.quiet_rounds < self.wanted;
        let judged: Vec<&Run> = self.runs.iter().filter(|r| noisy || r.clean).collect();
        println!(
            "{} rounds, {} quiet (other CPU ≤ {:.0}% of a CPU during both runs); judged on {}",
            self.rounds,
            self.quiet_rounds,
            self.max_foreign_cpu,
            if noisy {
                "all rounds: the machine was busy, figures are NOISY"
            } else {
                "the quiet rounds"
            }
        );
        let of = |t: Target, f: Reading| -> Vec<f64> {
            judged
                .iter()
                .filter(|r| r.target == t)
                .map(|r| f(r))
                .collect()
        };
        let paired = |f: Reading| -> Vec<f64> {
            judged
                .iter()
                .filter(|r| r.target == Target::Agent)
                .filter_map(|a| {
                    judged
                        .iter()
                        .find(|b| b.target == Target::Baseline && b.round == a.round)
                        .map(|b| f(a) / f(b))
                })
                .collect()
        };
        let figures: [(&str, Reading); 6] = [
            ("req/s", |r| r.result.rps()),
            ("p50 µs", |r| r.result.p50_us),
            ("p99 µs", |r| r.result.p99_us),
            ("p99.9 µs", |r| r.result.p999_us),
            ("max µs", |r| r.result.max_us),
            ("req per server CPU-ms", Run::efficiency),
        ];
        let mut summary = ReportTable::new(&[
            "figure (median of rounds)",
            "agent",
            "baseline",
            "ratio per round",
            "ratio",
            "target",
            "verdict",
        ]);
        let mut all_pass = true;
        for (name, f) in figures {
            let ratios = paired(f);
            let ratio = median(&ratios);
            let (target_text, verdict_text) = match targets.iter().find(|t| t.figure == name) {
                Some(t) => {
                    let pass = if t.at_least {
                        ratio >= t.bound
                    } else {
                        ratio <= t.bound
                    };
                    all_pass &= pass;
                    let verdict = if smoke {
                        "smoke".to_owned()
                    } else if noisy {
                        format!("{} (noisy)", verdict(pass))
                    } else {
                        verdict(pass).to_owned()
                    };
                    (
                        format!("{} {:.2}", if t.at_least { "≥" } else { "≤" }, t.bound),
                        verdict,
                    )
                }
                None => ("—".to_owned(), "—".to_owned()),
            };
            summary.row(vec![
                name.to_owned(),
                format!("{:.1}", median(&of(Target::Agent, f))),
                format!("{:.1}", median(&of(Target::Baseline, f))),
                ratios
                    .iter()
                    .map(|r| format!("{r:.3}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                format!("{ratio:.3}"),
                target_text,
                verdict_text,
            ]);
        }
        println!();
        print!("{}", summary.render());
        Judged {
            pass: all_pass,
            noisy,
            rps_ratio: median(&paired(|r| r.result.rps())),
            p50_ratio: median(&paired(|r| r.result.p50_us)),
            p99_ratio: median(&paired(|r| r.result.p99_us)),
        }
    }
}

/// A phase's verdict and its median agent/baseline ratios.
pub(super) struct Judged {
    pub(super) pass: bool,
    /// Judged on every round: too few were quiet.
    pub(super) noisy: bool,
    pub(super) rps_ratio: f64,
    pub(super) p50_ratio: f64,
    pub(super) p99_ratio: f64,
}
