//! Target 4, the cold-start storm: pods on several agents ask at once, a
//! rate-enforcing STS responder counts the calls (method: docs/benchmarks.md,
//! "Cold-start storm").

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use anyhow::{bail, Context};

use rand::Rng as _;

use crate::processes::{agent_binary, AgentProcess};
use crate::report::{percentile, verdict, ReportTable};
use crate::server::{self, Pod, RunArgs, ServerOptions, ServerProcess, TestCluster};
use crate::sts_responder::{duplicates, max_in_any_second, StsResponder};
use crate::tokens::{alphanumeric, seeded, uuid};

/// `podid-bench storm`.
#[derive(Debug, clap::Args)]
pub struct StormArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Agents (`podid-agent` processes).
    #[arg(long, default_value_t = 10)]
    agents: usize,
    /// The agent executable (default: `podid-agent` next to this executable).
    #[arg(long)]
    agent: Option<std::path::PathBuf>,
    /// Pods per agent.
    #[arg(long, default_value_t = 200)]
    pods_per_agent: usize,
    /// Service accounts (one association each) the pods are spread over.
    #[arg(long, default_value_t = 10)]
    associations: usize,
    /// The STS rate: the responder's limit and the broker's `--sts-max-rps`.
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// The broker's `--sts-max-wait-ms` (default: the server's own default, 600).
    #[arg(long)]
    sts_max_wait_ms: Option<u64>,
    /// A pod's attempt timeout, in milliseconds (botocore's container provider: 2 s).
    #[arg(long, default_value_t = 2000)]
    attempt_timeout_ms: u64,
    /// First backoff before a retry, in milliseconds (doubling, full jitter).
    #[arg(long, default_value_t = 100)]
    backoff_base_ms: u64,
    /// Longest backoff, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    backoff_cap_ms: u64,
    /// Pods stop retrying this many seconds after the target deadline.
    #[arg(long, default_value_t = 30)]
    grace_secs: u64,
    /// The server's log filter.
    #[arg(long, default_value = "info")]
    server_log: String,
}

#[derive(Debug, Clone, Default)]
struct PodOutcome {
    /// Time from the storm's start to credentials.
    got: Option<Duration>,
    attempts: u32,
    /// Status of each failed attempt (0: timeout or transport error).
    failures: Vec<u16>,
    /// The AccessKeyId the pod got.
    access_key_id: Option<String>,
    /// A refusal that is not worth retrying.
    fatal: Option<String>,
}

#[derive(Debug, Clone, Copy)]
struct RetryModel {
    attempt_timeout: Duration,
    base: Duration,
    cap: Duration,
}

async fn pod(
    agent: std::net::SocketAddr,
    token: String,
    start: tokio::time::Instant,
    give_up: tokio::time::Instant,
    model: RetryModel,
    seed: u64,
) -> PodOutcome {
    let mut rng = seeded(seed);
    let mut out = PodOutcome::default();
    tokio::time::sleep_until(start).await;
    loop {
        out.attempts += 1;
        let headers = [("authorization", token.as_str())];
        let call = crate::http_client::get(agent, "/v1/credentials", &headers);
        match tokio::time::timeout(model.attempt_timeout, call).await {
            Ok(Ok((200, _, body))) => {
                out.got = Some(start.elapsed());
                let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                out.access_key_id = parsed["AccessKeyId"].as_str().map(str::to_owned);
                return out;
            }
            Ok(Ok((status, _, body))) if status == 429 || status >= 500 => {
                let _ = body;
                out.failures.push(status);
            }
            Ok(Ok((status, _, body))) => {
                out.failures.push(status);
                out.fatal = Some(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)));
                return out;
            }
            Ok(Err(_)) | Err(_) => out.failures.push(0),
        }
        // Exponential backoff with full jitter.
        let shift = (out.attempts - 1).min(16);
        let ceiling = model.base.saturating_mul(1 << shift).min(model.cap);
        let sleep = ceiling.mul_f64(f64::from(rng.random_range(0..10_000u32)) / 10_000.0);
        if tokio::time::Instant::now() + sleep >= give_up {
            return out;
        }
        tokio::time::sleep(sleep).await;
    }
}

/// Runs `podid-bench storm`; `Ok(true)` when every check holds.
pub async fn run(args: StormArgs) -> anyhow::Result<bool> {
    let mut args = args;
    if args.run.smoke {
        (args.agents, args.pods_per_agent, args.rate) = (2, 50, 50);
    }
    let (_priority, podid) = args.run.begin("# Cold-start storm (target 4)")?;
    let agent_bin = agent_binary(args.agent.as_deref())?;
    let total = args.agents * args.pods_per_agent;
    if total == 0 || args.associations == 0 {
        bail!("--agents, --pods-per-agent and --associations must be positive");
    }
    let ideal = total as f64 / f64::from(args.rate);
    let deadline = ideal + 3.0;

    let dir = tempfile::tempdir()?;
    let sts = StsResponder::start(args.rate).await?;
    let cluster = TestCluster::generate()?;
    let options = ServerOptions {
        sts_max_rps: args.rate,
        sts_max_wait_ms: args.sts_max_wait_ms,
        ..ServerOptions::sqlite_in(&podid, dir.path(), sts.endpoint(), &args.server_log)?
    };
    let server = ServerProcess::start(&options).await?;
    let admin = server::admin_client(&server.endpoint)?;
    cluster
        .register(&admin)
        .await
        .context("registering the test cluster")?;
    let bodies = (0..args.associations).map(|k| {
        serde_json::json!({
            "namespace": "storm",
            "serviceAccount": format!("app-{k}"),
            "roleArn": format!("arn:aws:iam::{}:role/storm-app-{k}", server::ACCOUNT),
        })
    });
    server::create_associations(&admin, bodies, 1).await?;
    let mut agents = Vec::with_capacity(args.agents);
    for _ in 0..args.agents {
        // Their warnings (upstream timeouts while the broker queues for STS slots) would drown the report.
        let quiet = [("PODID_LOG".to_owned(), "error".to_owned())];
        agents.push(AgentProcess::start(&agent_bin, &server.endpoint, None, &quiet).await?);
    }
    let mut rng = seeded(0x5707);
    let pods: Vec<Pod> = (0..total)
        .map(|j| {
            let app = j % args.associations;
            Pod {
                namespace: "storm".into(),
                service_account: format!("app-{app}"),
                name: format!(
                    "app-{app}-5c7d9f8b6-{}",
                    alphanumeric(&mut rng, 5).to_lowercase()
                ),
                uid: uuid(&mut rng),
                node: format!("node-{}", j / args.pods_per_agent),
            }
        })
        .collect();
    let key = &cluster.key;
    let tokens =
        tokio::task::block_in_place(|| pods.iter().map(|p| p.token(key, 0)).collect::<Vec<_>>());
    println!(
        "setup: podid server (STS rate {}/s, --sts-max-wait-ms {}), {} agents, {} pods ({} per agent) over {} associations; \
         pods retry: attempt timeout {} ms, backoff base {} ms cap {} ms, full jitter",
        args.rate,
        args.sts_max_wait_ms.map_or_else(|| "default (600)".to_owned(), |w| w.to_string()),
        args.agents,
        total,
        args.pods_per_agent,
        args.associations,
        args.attempt_timeout_ms,
        args.backoff_base_ms,
        args.backoff_cap_ms
    );

    let model = RetryModel {
        attempt_timeout: Duration::from_millis(args.attempt_timeout_ms),
        base: Duration::from_millis(args.backoff_base_ms),
        cap: Duration::from_millis(args.backoff_cap_ms),
    };
    let start = tokio::time::Instant::now() + Duration::from_millis(500);
    let give_up = start + Duration::from_secs_f64(deadline) + Duration::from_secs(args.grace_secs);
    let mut tasks = Vec::with_capacity(total);
    for (j, token) in tokens.into_iter().enumerate() {
        let agent = agents[j / args.pods_per_agent].credentials;
        tasks.push(tokio::spawn(pod(
            agent,
            token,
            start,
            give_up,
            model,
            0xC0FFEE ^ j as u64,
        )));
    }
    let mut outcomes = Vec::with_capacity(total);
    for t in tasks {
        outcomes.push(t.await?);
    }
    // Late calls (an issuance some cancelled request left running) would land now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let calls = sts.calls();
    let start_offset = start.into_std().saturating_duration_since(sts.started());

    let got: Vec<f64> = {
        let mut v: Vec<f64> = outcomes
            .iter()
            .filter_map(|o| o.got.map(|d| d.as_secs_f64()))
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let attempts: Vec<f64> = {
        let mut v: Vec<f64> = outcomes.iter().map(|o| f64::from(o.attempts)).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let mut failure_statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for o in &outcomes {
        for s in &o.failures {
            *failure_statuses.entry(*s).or_default() += 1;
        }
    }
    let fatal: Vec<&String> = outcomes.iter().filter_map(|o| o.fatal.as_ref()).collect();
    let keys: HashSet<&str> = outcomes
        .iter()
        .filter_map(|o| o.access_key_id.as_deref())
        .collect();
    let within = got.iter().filter(|t| **t <= deadline).count();
    let dups = duplicates(&calls);
    let max_window = max_in_any_second(&calls);
    let untagged = calls.iter().filter(|c| c.pod_uid.is_none()).count();
    let uids: HashSet<&str> = calls.iter().filter_map(|c| c.pod_uid.as_deref()).collect();
    let expected_uids: HashSet<&str> = pods.iter().map(|p| p.uid.as_str()).collect();
    let first_call = calls
        .iter()
        .map(|c| c.at)
        .min()
        .map(|d| d.saturating_sub(start_offset).as_secs_f64());
    let last_call = calls
        .iter()
        .map(|c| c.at)
        .max()
        .map(|d| d.saturating_sub(start_offset).as_secs_f64());
    let total_retries: f64 = attempts.iter().map(|a| a - 1.0).sum();

    let mut checks = ReportTable::new(&["check", "measured", "target", "verdict"]);
    let mut pass = true;
    let checks_made = [
        (
            "AssumeRole calls seen by the STS responder",
            calls.len().to_string(),
            format!("= {total}"),
            calls.len() == total,
        ),
        (
            "calls in any one-second window (max)",
            max_window.to_string(),
            format!("≤ {}", args.rate),
            max_window <= args.rate as usize,
        ),
        (
            "calls the responder throttled",
            sts.throttled().to_string(),
            "0".into(),
            sts.throttled() == 0,
        ),
        (
            "malformed STS requests",
            sts.malformed().to_string(),
            "0".into(),
            sts.malformed() == 0,
        ),
        (
            "pods with more than one AssumeRole",
            dups.len().to_string(),
            "0".into(),
            dups.is_empty() && untagged == 0 && uids == expected_uids,
        ),
        (
            "pods with credentials",
            got.len().to_string(),
            format!("= {total}"),
            got.len() == total && fatal.is_empty(),
        ),
        (
            "distinct AccessKeyIds served",
            keys.len().to_string(),
            format!("= {total}"),
            keys.len() == total,
        ),
        (
            "pods with credentials within the deadline",
            format!("{within} (slowest {:.2} s)", percentile(&got, 100.0)),
            format!("all within {deadline:.1} s"),
            within == total,
        ),
    ];
    for (what, measured, target, ok) in checks_made {
        pass &= ok;
        checks.row(vec![
            what.to_owned(),
            measured,
            target,
            verdict(ok).to_owned(),
        ]);
    }

    let mut dist = ReportTable::new(&["", "p50", "p90", "p99", "max"]);
    for (name, values, decimals) in [
        ("time to credentials (s)", &got, 2),
        ("attempts per pod", &attempts, 0),
    ] {
        let mut row = vec![name.to_owned()];
        for p in [50.0, 90.0, 99.0, 100.0] {
            row.push(format!("{:.*}", decimals, percentile(values, p)));
        }
        dist.row(row);
    }
    println!();
    print!("{}", checks.render());
    println!();
    print!("{}", dist.render());
    println!();
    let statuses: Vec<String> = failure_statuses
        .iter()
        .map(|(s, n)| {
            if *s == 0 {
                format!("timeout/transport ×{n}")
            } else {
                format!("HTTP {s} ×{n}")
            }
        })
        .collect();
    println!(
        "retries: {total_retries:.0} in all ({}); refused for good: {}",
        if statuses.is_empty() {
            "none".to_owned()
        } else {
            statuses.join(", ")
        },
        fatal.len()
    );
    if let Some(f) = fatal.first() {
        println!("first refusal: {f}");
    }
    if !dups.is_empty() {
        println!(
            "duplicated pods (first 5): {:?}",
            dups.iter().take(5).collect::<Vec<_>>()
        );
    }
    if let (Some(first), Some(last)) = (first_call, last_call) {
        println!(
            "{} STS calls, the first {first:.2} s and the last {last:.2} s after the start (at most {} in any second); \
             slowest pod ÷ ideal ({total} ÷ {} = {ideal:.1} s) = {:.3}",
            calls.len(),
            args.rate,
            args.rate,
            percentile(&got, 100.0) / ideal
        );
    }
    println!("storm: {}", verdict(pass));
    for a in agents {
        a.stop().await;
    }
    server.stop().await;
    Ok(pass)
}
