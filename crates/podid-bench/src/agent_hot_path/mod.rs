//! Target 1, the agent's hot path: the real agent answering a cached pod vs a
//! minimal hyper server with its exact bytes, both loaded by wrk (method:
//! docs/benchmarks.md, "Agent hot path").

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::agent_memory::ask_all;
use crate::http_client::get;
use crate::load::Wrk;
use crate::machine::Machine;
use crate::priority::AutogroupBoost;
use crate::processes::{agent_binary, have_program, AgentProcess, BaselineServer};
use crate::report::{verdict, ReportTable};
use crate::tokens::projected_token;
use podid_test_support::fake_eks_auth::DEFAULT_SESSION_TOKEN_BYTES;

/// `podid-bench agent-hot-path`.
#[derive(Debug, clap::Args)]
pub struct AgentHotPathArgs {
    /// The agent executable (default: `podid-agent` next to this executable;
    /// `target/release/podid` runs `podid agent` instead).
    #[arg(long)]
    agent: Option<PathBuf>,
    /// The wrk executable.
    #[arg(long, default_value = "wrk")]
    wrk: String,
    /// Open connections.
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// Seconds per run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Rounds (each runs the agent and the baseline once).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 1)]
    threads: u32,
    /// CPUs of the server under test (taskset list).
    #[arg(long, default_value = "0")]
    server_cpus: String,
    /// CPUs of the load generator (taskset list).
    #[arg(long, default_value = "1")]
    load_cpus: String,
    /// Run rounds until this many are quiet, or `--max-rounds` have run.
    #[arg(long, default_value_t = 9)]
    max_rounds: u32,
    /// A round is quiet when other processes (and kernel work charged to no
    /// process: loopback softirqs take ~10% here) used at most this much CPU
    /// (percent of one CPU) during both its runs.
    #[arg(long, default_value_t = 15.0)]
    max_foreign_cpu: f64,
    /// Niceness of the servers and wrk (negative needs root; 0 leaves it):
    /// so that builds and tests sharing the machine take little CPU from them.
    #[arg(long, default_value_t = -19, allow_hyphen_values = true)]
    nice: i32,
    /// After the saturated rounds, rounds where each connection waits this
    /// many milliseconds before each request (wrk's `delay`), so both servers
    /// get the same offered load and their latencies compare at equal
    /// throughput; 0 skips them.
    #[arg(long, default_value_t = 1)]
    pace_ms: u32,
    /// Pin nothing.
    #[arg(long)]
    no_pin: bool,
    /// Pods cached while measuring, comma-separated, e.g. `1,10000`: for each
    /// count (ascending) the agent is filled to that many pods, then measured
    /// with the last one's token against a baseline answering its bytes.
    /// Past 256 pods (the agent's `--max-refresh-ahead`) that entry is
    /// compact: its token is not kept and its answer is stored compact.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    cached_pods: Vec<usize>,
    /// A quick check that everything runs: one round of 1 s, no warm-up, no verdict.
    #[arg(long)]
    smoke: bool,
}

/// Connections filling the cache before a measurement.
const FILL_CONNECTIONS: usize = 8;

/// The agent's `--max-refresh-ahead` (its default): entries beyond it are compact.
const KEPT_TOKENS: usize = 256;

/// What one cached-pods count measured, for the closing summary.
struct CountSummary {
    pods: usize,
    saturated: Judged,
    paced: Option<Judged>,
}

/// Runs the benchmark; `Ok(true)` when every target holds (or in smoke mode).
pub async fn run(args: AgentHotPathArgs) -> anyhow::Result<bool> {
    let agent_bin = agent_binary(args.agent.as_deref())?;
    if !have_program(&args.wrk) {
        bail!(
            "{} not found: install wrk (Debian: apt-get install wrk) or pass --wrk",
            args.wrk
        );
    }
    let mut counts: Vec<usize> = args
        .cached_pods
        .iter()
        .copied()
        .filter(|&n| n > 0)
        .collect();
    counts.sort_unstable();
    counts.dedup();
    if counts.is_empty() {
        bail!("--cached-pods lists no count above 0");
    }
    let (duration, rounds) = if args.smoke {
        (1, 1)
    } else {
        (args.duration, args.rounds.max(1))
    };
    let duration = Duration::from_secs(duration);
    let server_cpus = (!args.no_pin).then(|| args.server_cpus.clone());
    let load_cpus = (!args.no_pin).then(|| args.load_cpus.clone());
    // A smoke run (e.g. under `cargo test`) leaves priorities alone.
    let nice = if args.smoke { 0 } else { args.nice };
    crate::priority::set_niceness(nice);
    let boost = (nice != 0).then(|| AutogroupBoost::set(nice)).flatten();
    let machine = Machine::read();
    println!("== agent hot path (issue 7, target 1) ==");
    println!("{}", machine.describe());

    let upstream =
        crate::fake_eks_auth::start("127.0.0.1:0".parse()?, DEFAULT_SESSION_TOKEN_BYTES)?;
    // Pinned, so that "compact" below holds whatever the environment says.
    let kept = [(
        "PODID_AGENT_MAX_REFRESH_AHEAD".to_owned(),
        KEPT_TOKENS.to_string(),
    )];
    let agent =
        AgentProcess::start(&agent_bin, &upstream.url, server_cpus.as_deref(), &kept).await?;
    println!("podid: {} (agent pid {})", agent_bin.display(), agent.pid());
    println!(
        "load: {} -t{} -c{} -d{}s, server on CPU {}, wrk on CPU {}, both at niceness {}{}",
        args.wrk,
        args.threads,
        args.connections,
        duration.as_secs(),
        server_cpus.as_deref().unwrap_or("any"),
        load_cpus.as_deref().unwrap_or("any"),
        nice,
        if boost.is_some() {
            " (this session's autogroup too)"
        } else {
            ""
        }
    );
    let dir = tempfile::tempdir()?;
    let wrk = Wrk::new(
        &args.wrk,
        load_cpus,
        args.connections,
        args.threads,
        dir.path(),
    )?;
    let max_rounds = if args.smoke {
        1
    } else {
        args.max_rounds.max(rounds)
    };
    let plan = Plan {
        rounds,
        max_rounds,
        max_foreign_cpu: args.max_foreign_cpu,
    };

    let mut filled = 0;
    let mut all_pass = true;
    let mut summaries = Vec::new();
    for &pods in &counts {
        // Pods filled+1..=pods are asked for once each; the last is measured
        // with the very token it was cached under (a token made again later
        // would carry another `iat`/`exp`).
        let tokens: Arc<Vec<String>> = Arc::new(
            (filled as u64 + 1..=pods as u64)
                .map(projected_token)
                .collect(),
        );
        ask_all(agent.credentials, tokens.clone(), FILL_CONNECTIONS).await?;
        let Some(token) = tokens.last().cloned() else {
            bail!("--cached-pods {pods}: no pod to measure");
        };
        filled = pods;
        let cached = agent.metric("podid_agent_cached_entries").await?;
        if cached as usize != pods || upstream.calls() as usize != pods {
            bail!(
                "expected {pods} cached pods and upstream calls; the agent holds {cached}, upstream saw {}",
                upstream.calls()
            );
        }
        let auth = [("authorization", token.as_str())];
        let (status, agent_headers, body) =
            get(agent.credentials, "/v1/credentials", &auth).await?;
        let (again_status, _, again) = get(agent.credentials, "/v1/credentials", &auth).await?;
        if status != 200
            || again_status != 200
            || again != body
            || upstream.calls() as usize != pods
        {
            bail!(
                "pod {pods} was not answered from the cache ({status}/{again_status}, {} upstream calls): {}",
                upstream.calls(),
                String::from_utf8_lossy(&body)
            );
        }

        let body_file = dir.path().join(format!("body-{pods}.json"));
        std::fs::write(&body_file, &body)?;
        let baseline = BaselineServer::start(&body_file, server_cpus.as_deref()).await?;
        let (status, baseline_headers, baseline_body) =
            get(baseline.addr, "/v1/credentials", &auth).await?;
        if status != 200 || baseline_body != body {
            bail!("the baseline does not answer the agent's bytes");
        }
        let names = |h: &http::HeaderMap| {
            let mut v: Vec<String> = h.keys().map(|k| k.as_str().to_owned()).collect();
            v.sort();
            v.join(", ")
        };
        if names(&agent_headers) != names(&baseline_headers) {
            bail!(
                "headers differ: agent {} / baseline {}",
                names(&agent_headers),
                names(&baseline_headers)
            );
        }
        println!();
        println!(
            "==== {pods} cached pod{}: measured with pod {pods}'s token ({}) ====",
            if pods == 1 { "" } else { "s" },
            if pods > KEPT_TOKENS {
                "a compact entry: beyond the first 256 (--max-refresh-ahead), its token is not kept and its answer is stored compact"
            } else {
                "an entry that keeps its token"
            }
        );
        println!(
            "answer: 200, {} bytes, headers {} (agent and baseline alike); token {} bytes",
            body.len(),
            names(&agent_headers),
            token.len()
        );

        let servers = |t: Target| match t {
            Target::Agent => (agent.credentials, agent.pid()),
            Target::Baseline => (baseline.addr, baseline.pid()),
        };
        if !args.smoke {
            for t in [Target::Agent, Target::Baseline] {
                let (addr, _) = servers(t);
                wrk.run(addr, "/v1/credentials", &auth, Duration::from_secs(2))
                    .await
                    .context("warm-up")?;
            }
        }
        let load_before = crate::machine::load_average();
        let measure = |wrk: Wrk| {
            let auth = &auth;
            async move {
                plan.measure(|round, target| {
                    let (addr, pid) = servers(target);
                    let wrk = wrk.clone();
                    async move {
                        let before = CpuSample::take(pid);
                        let started = std::time::Instant::now();
                        let result = wrk.run(addr, "/v1/credentials", auth, duration).await?;
                        let cpu =
                            CpuSample::take(pid).since(&before, started.elapsed().as_secs_f64());
                        if result.requests == 0 || result.errors > 0 {
                            bail!(
                                "{} round {round}: {} requests, {} errors",
                                target.name(),
                                result.requests,
                                result.errors
                            );
                        }
                        Ok(Run {
                            round,
                            target,
                            result,
                            cpu,
                            clean: false,
                        })
                    }
                })
                .await
            }
        };

        println!();
        println!(
            "-- saturated: wrk sends each connection's next request as soon as the answer is in"
        );
        let saturated = measure(wrk.clone())
            .await?
            .report(args.smoke, &[MIN_RPS_RATIO_TARGET, MAX_P99_RATIO_TARGET]);
        all_pass &= saturated.pass;
        let mut paced = None;
        if args.pace_ms > 0 {
            let paced_wrk = wrk.paced(args.pace_ms, dir.path())?;
            println!();
            println!(
                "-- paced: each connection waits {} ms before each request (≤ {} req/s offered, the same to both)",
                args.pace_ms,
                args.connections * 1000 / args.pace_ms
            );
            // Reported, not judged: the targets are set at saturation.
            paced = Some(measure(paced_wrk).await?.report(args.smoke, &[]));
        }
        let load_after = crate::machine::load_average();
        baseline.stop().await;
        println!("load average: before {load_before}, after {load_after}");
        if upstream.calls() as usize != pods {
            bail!(
                "the agent asked upstream {} times for {pods} pods: the hot path was not measured alone",
                upstream.calls()
            );
        }
        summaries.push(CountSummary {
            pods,
            saturated,
            paced,
        });
    }
    let hits = agent
        .metric("podid_agent_cache_lookups_total{result=\"hit\"}")
        .await
        .unwrap_or(f64::NAN);
    let upstream_calls = upstream.calls();
    agent.stop().await;
    println!();
    println!(
        "agent cache hits: {hits:.0}; upstream calls: {upstream_calls} (one per cached pod: every measured answer came from the cache)"
    );
    print_summary(&summaries, args.smoke);
    Ok(args.smoke || all_pass)
}

/// One line per cached-pods count: the agent/baseline ratios.
fn print_summary(summaries: &[CountSummary], smoke: bool) {
    let mut table = ReportTable::new(&[
        "cached pods",
        "req/s ratio",
        "p99 ratio",
        "verdict (≥ 0.80, ≤ 1.25)",
        "paced p50 ratio",
        "paced p99 ratio",
    ]);
    for s in summaries {
        let paced = |f: fn(&Judged) -> f64| {
            s.paced
                .as_ref()
                .map_or("—".to_owned(), |p| format!("{:.3}", f(p)))
        };
        table.row(vec![
            s.pods.to_string(),
            format!("{:.3}", s.saturated.rps_ratio),
            format!("{:.3}", s.saturated.p99_ratio),
            match (smoke, s.saturated.noisy) {
                (true, _) => "smoke".to_owned(),
                (false, true) => format!("{} (noisy)", verdict(s.saturated.pass)),
                (false, false) => verdict(s.saturated.pass).to_owned(),
            },
            paced(|p| p.p50_ratio),
            paced(|p| p.p99_ratio),
        ]);
    }
    println!();
    println!("summary: agent / baseline, medians of the rounds' ratios");
    print!("{}", table.render());
}

mod rounds;
mod run;

use rounds::{Judged, Plan, MAX_P99_RATIO_TARGET, MIN_RPS_RATIO_TARGET};
use run::{CpuSample, Run, Target};
