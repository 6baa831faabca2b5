//! Target 2, the agent's memory: VmRSS of the real agent idle and with 10,000
//! cached pods (method: docs/benchmarks.md, "Agent memory").

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::http_client::HttpConnection;
use crate::machine::{mib, resident_by_mapping, Machine, Memory};
use crate::processes::{agent_binary, AgentProcess, BaselineServer};
use crate::report::{verdict, ReportTable};
use crate::tokens::projected_token;

/// Idle RSS bound (KiB).
pub const MAX_IDLE_KIB: u64 = 10 * 1024;
/// RSS bound with `--pods` (10,000) cached (KiB).
pub const MAX_FULL_KIB: u64 = 25 * 1024;

/// `podid-bench agent-memory`.
#[derive(Debug, clap::Args)]
pub struct AgentMemoryArgs {
    /// The agent executable (default: `podid-agent` next to this executable;
    /// `target/release/podid` runs `podid agent` instead).
    #[arg(long)]
    agent: Option<PathBuf>,
    /// Pods to cache (the agent's default --max-cache-size is 10,000).
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Concurrent connections filling the cache.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Length of the session tokens the fake EKS Auth answers.
    #[arg(long, default_value_t = podid_test_support::fake_eks_auth::DEFAULT_SESSION_TOKEN_BYTES)]
    session_token_bytes: usize,
    /// Environment for the agent, KEY=VALUE (repeatable), e.g. MALLOC_ARENA_MAX=1.
    #[arg(long = "agent-env", value_parser = parse_env)]
    agent_env: Vec<(String, String)>,
    /// CPUs the agent may use (taskset list); default: all.
    #[arg(long)]
    cpus: Option<String>,
    /// Run the agent through this command (split on spaces), e.g.
    /// `valgrind --tool=massif --massif-out-file=massif.out`: RSS figures are
    /// then the profiler's, not the agent's.
    #[arg(long)]
    agent_wrapper: Option<String>,
    /// A quick check that everything runs: 200 pods, no verdict.
    #[arg(long)]
    smoke: bool,
}

fn parse_env(s: &str) -> anyhow::Result<(String, String)> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| anyhow::anyhow!("'{s}' is not KEY=VALUE"))
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

/// Asks for every token once over `concurrency` connections; returns the
/// largest answer seen.
pub(crate) async fn ask_all(
    addr: std::net::SocketAddr,
    tokens: Arc<Vec<String>>,
    concurrency: usize,
) -> anyhow::Result<usize> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (tokens, next) = (tokens.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut connection = HttpConnection::open(addr).await?;
            let mut largest = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(token) = tokens.get(i) else { break };
                let (status, _, body) = connection
                    .get("/v1/credentials", &[("authorization", token)])
                    .await?;
                if status != 200 {
                    bail!(
                        "pod {i}: the agent answered {status}: {}",
                        String::from_utf8_lossy(&body)
                    );
                }
                largest = largest.max(body.len());
            }
            Ok::<usize, anyhow::Error>(largest)
        }));
    }
    let mut largest = 0;
    for t in tasks {
        largest = largest.max(t.await.context("a filling task panicked")??);
    }
    Ok(largest)
}

/// Runs the benchmark; `Ok(true)` when every target holds (or in smoke mode).
pub async fn run(args: AgentMemoryArgs) -> anyhow::Result<bool> {
    let agent_bin = agent_binary(args.agent.as_deref())?;
    let pods = if args.smoke { 200 } else { args.pods.max(1) };
    println!("== agent memory (issue 7, target 2) ==");
    println!("{}", Machine::read().describe());
    let env_text: Vec<String> = args
        .agent_env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!(
        "podid: {}; agent environment: {}; agent CPUs: {}",
        agent_bin.display(),
        if env_text.is_empty() {
            "(none added)".to_owned()
        } else {
            env_text.join(" ")
        },
        args.cpus.as_deref().unwrap_or("all")
    );

    let upstream = crate::fake_eks_auth::start("127.0.0.1:0".parse()?, args.session_token_bytes)?;
    let wrapper: Vec<String> = args
        .agent_wrapper
        .as_deref()
        .map(|w| w.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    if !wrapper.is_empty() {
        println!("agent run through: {}", wrapper.join(" "));
    }
    let agent = AgentProcess::start_wrapped(
        &agent_bin,
        &upstream.url,
        args.cpus.as_deref(),
        &wrapper,
        &args.agent_env,
    )
    .await?;
    let pid = agent.pid();

    // The baseline: the minimal hyper server, idle.
    let dir = tempfile::tempdir()?;
    let body_file = dir.path().join("body.json");
    std::fs::write(&body_file, b"{}")?;
    let baseline = BaselineServer::start(&body_file, args.cpus.as_deref()).await?;

    settle().await;
    let idle = Memory::of(pid)?;
    let idle_maps = resident_by_mapping(pid)?;
    let baseline_idle = Memory::of(baseline.pid())?;
    baseline.stop().await;

    let tokens: Arc<Vec<String>> = Arc::new((0..pods as u64).map(projected_token).collect());
    let token_bytes = tokens.iter().map(String::len).sum::<usize>() as f64 / pods as f64;
    ask_all(agent.credentials, Arc::new(tokens[..1].to_vec()), 1).await?;
    settle().await;
    let one = Memory::of(pid)?;

    let started = Instant::now();
    let body_bytes = ask_all(agent.credentials, tokens.clone(), args.concurrency).await?;
    let fill_seconds = started.elapsed().as_secs_f64();
    let cached = agent.metric("podid_agent_cached_entries").await?;
    if cached as usize != pods || upstream.calls() as usize != pods {
        bail!(
            "expected {pods} cached pods and upstream calls; the agent holds {cached}, upstream saw {}",
            upstream.calls()
        );
    }
    settle().await;
    let full = Memory::of(pid)?;

    ask_all(agent.credentials, tokens.clone(), args.concurrency).await?;
    if upstream.calls() as usize != pods {
        bail!("the second pass asked upstream: not every pod was cached");
    }
    settle().await;
    let full_after_hits = Memory::of(pid)?;
    agent.stop().await;

    let mut table = ReportTable::new(&[
        "agent state",
        "VmRSS MiB",
        "VmHWM MiB",
        "RssAnon MiB",
        "RssFile MiB",
        "threads",
        "target VmRSS",
        "verdict",
    ]);
    let smoke = args.smoke;
    let judge = |kib: u64, bound: u64| {
        if smoke {
            "smoke".to_owned()
        } else {
            verdict(kib <= bound).to_owned()
        }
    };
    let row = |name: String, m: &Memory, target: String, verdict: String| {
        vec![
            name,
            mib(m.rss),
            mib(m.hwm),
            mib(m.anon),
            mib(m.file),
            m.threads.to_string(),
            target,
            verdict,
        ]
    };
    table.row(row(
        "idle (started, no pod yet)".into(),
        &idle,
        "≤ 10 MiB".into(),
        judge(idle.rss, MAX_IDLE_KIB),
    ));
    table.row(row("1 pod cached".into(), &one, "—".into(), "—".into()));
    let full_name = format!("{pods} pods cached");
    table.row(row(
        full_name.clone(),
        &full,
        "≤ 25 MiB".into(),
        judge(full.rss, MAX_FULL_KIB),
    ));
    table.row(row(
        format!("{full_name}, after a second pass of hits"),
        &full_after_hits,
        "≤ 25 MiB".into(),
        judge(full_after_hits.rss, MAX_FULL_KIB),
    ));
    table.row(row(
        "baseline: minimal hyper server, idle".into(),
        &baseline_idle,
        "—".into(),
        "—".into(),
    ));
    println!();
    print!("{}", table.render());

    println!();
    println!("idle agent, resident memory by mapping (the largest):");
    for (kib, mapping) in idle_maps.iter().take(6) {
        println!("  {:>8} KiB  {mapping}", kib);
    }
    let per_pod = (full.rss.saturating_sub(idle.rss) * 1024) as f64 / pods as f64;
    println!();
    println!(
        "filled {pods} pods in {fill_seconds:.1} s over {} connections ({:.0} pods/s)",
        args.concurrency,
        pods as f64 / fill_seconds
    );
    println!(
        "per cached pod: {per_pod:.0} bytes of RSS = {:.2}× its answer ({body_bytes} bytes; tokens {token_bytes:.0} bytes)",
        per_pod / body_bytes.max(1) as f64
    );
    println!(
        "idle: agent {} MiB = {:.2}× the minimal hyper server's {} MiB (anonymous memory {} vs {} MiB)",
        mib(idle.rss),
        idle.rss as f64 / baseline_idle.rss.max(1) as f64,
        mib(baseline_idle.rss),
        mib(idle.anon),
        mib(baseline_idle.anon)
    );
    Ok(smoke
        || (idle.rss <= MAX_IDLE_KIB
            && full.rss <= MAX_FULL_KIB
            && full_after_hits.rss <= MAX_FULL_KIB))
}
