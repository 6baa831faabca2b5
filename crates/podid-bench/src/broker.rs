//! Target 3, the broker: `AssumeRoleForPodIdentity` with a fresh token per
//! call vs RS256 signature verification alone on the same CPU (method:
//! docs/benchmarks.md, "Broker throughput").

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use aws_lc_rs::signature::{RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::load_loop::{busy_poll_loop, closed_loop, LoadResult};
use crate::machine;
use crate::priority::Placement;
use crate::processes::BaselineServer;
use crate::report::{median, percentile, verdict, ReportTable};
use crate::server::{
    self, bench_association, Pod, RunArgs, ServerOptions, ServerProcess, TestCluster, CLUSTER,
};
use crate::signing::SignedCall;
use crate::sts_responder::StsResponder;

/// The target: broker rate ÷ signature-verification rate.
const TARGET_RATIO: f64 = 0.5;

/// `podid-bench broker`.
#[derive(Debug, clap::Args)]
pub struct BrokerArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Pods (distinct pod uids), each with cached credentials.
    #[arg(long, default_value_t = 1000)]
    pods: usize,
    /// Associations the pods are spread over (one service account each).
    #[arg(long, default_value_t = 1000)]
    associations: usize,
    /// Alternating rounds (baseline, server).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Requests (fresh tokens) per round.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Concurrent keep-alive connections of the load generator.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// The server and the baseline on the server's CPUs, the load generator
    /// (this process) on the load CPUs.
    #[command(flatten)]
    place: Placement,
    /// The server's log filter (its default, `info`, writes one access-log line per request).
    #[arg(long, default_value = "info")]
    server_log: String,
    /// The load generator: `busy-poll` (one thread polling non-blocking
    /// sockets, never sleeping, so answers need not wake it) or `tokio`.
    #[arg(long, value_enum, default_value = "busy-poll")]
    client: Client,
    /// Keep the server running after the rounds for this many seconds (to attach a profiler).
    #[arg(long, default_value_t = 0)]
    hold_secs: u64,
}

/// How the load generator waits for answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Client {
    /// One thread polling every connection without sleeping.
    BusyPoll,
    /// A tokio task per connection (epoll; the thread sleeps when idle).
    Tokio,
}

/// Pod `i` of `n`, on association `i % associations`.
fn pods(n: usize, associations: usize) -> Vec<Pod> {
    let mut rng = crate::tokens::seeded(0xB40CE7);
    (0..n)
        .map(|i| {
            let a = i % associations.max(1);
            Pod {
                namespace: format!("ns-{}", a / 100),
                service_account: format!("sa-{a}"),
                name: format!(
                    "sa-{a}-7d9f8b6c5d-{}",
                    crate::tokens::alphanumeric(&mut rng, 5).to_lowercase()
                ),
                uid: crate::tokens::uuid(&mut rng),
                node: format!("node-{}", i % 10),
            }
        })
        .collect()
}

/// The public key, parsed once, as the fastest in-process verifier holds it.
struct Verifier {
    key: aws_lc_rs::signature::ParsedPublicKey,
}

impl Verifier {
    fn new(jwk: &serde_json::Value) -> anyhow::Result<Verifier> {
        let b64 = |name: &str| -> anyhow::Result<Vec<u8>> {
            let text = jwk[name]
                .as_str()
                .with_context(|| format!("JWK without {name}"))?;
            Ok(URL_SAFE_NO_PAD.decode(text)?)
        };
        let (n, e) = (b64("n")?, b64("e")?);
        let key = RsaPublicKeyComponents { n: &n, e: &e }
            .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
            .map_err(|_| anyhow::anyhow!("the RSA key does not parse"))?;
        Ok(Verifier { key })
    }

    /// Verifies one compact JWS's RS256 signature (base64url decoding included).
    fn verify(&self, token: &str) -> bool {
        let Some((input, sig)) = token.rsplit_once('.') else {
            return false;
        };
        let Ok(sig) = URL_SAFE_NO_PAD.decode(sig) else {
            return false;
        };
        self.key.verify_sig(input.as_bytes(), &sig).is_ok()
    }
}

/// Verifications per second of `tokens` on this thread: the signature alone
/// (per second of wall time, and per second of this thread's CPU time), and
/// podid-token's whole check (decoding, claims) for reference.
fn baseline_round(
    verifier: &Verifier,
    trust: &podid_token::ClusterTrust,
    keys: &podid_token::KeySet,
    tokens: &[String],
) -> anyhow::Result<(f64, f64, f64)> {
    let (started, cpu) = (Instant::now(), machine::thread_cpu_seconds());
    for t in tokens {
        if !verifier.verify(t) {
            bail!("a minted token's signature does not verify");
        }
    }
    let sig_rate = tokens.len() as f64 / started.elapsed().as_secs_f64();
    let sig_cpu_rate = tokens.len() as f64 / (machine::thread_cpu_seconds() - cpu).max(1e-9);
    let now = server::epoch_secs();
    let started = Instant::now();
    for t in tokens {
        podid_token::verify_token(t, trust, keys, now)
            .context("podid_token::verify_token refused a minted token")?;
    }
    let full_rate = tokens.len() as f64 / started.elapsed().as_secs_f64();
    Ok((sig_rate, sig_cpu_rate, full_rate))
}

/// SigV4 verifications per second on this thread: the server's own check
/// (`podid_server::auth::SigV4Verifier::verify`) of the round's requests.
fn sigv4_round(
    verifier: &podid_server::auth::SigV4Verifier,
    requests: &[(http::HeaderMap, Vec<u8>)],
) -> anyhow::Result<f64> {
    let uri: http::Uri = format!("/clusters/{CLUSTER}/assume-role-for-pod-identity").parse()?;
    let now = SystemTime::now();
    let started = Instant::now();
    for (headers, body) in requests {
        verifier
            .verify(now, "POST", &uri, headers, body)
            .map_err(|e| anyhow::anyhow!("verify_request refused a request: {}", e.message))?;
    }
    Ok(requests.len() as f64 / started.elapsed().as_secs_f64())
}

/// One `AssumeRoleForPodIdentity` call per token, signed now by the node key.
fn signed_calls(addr: std::net::SocketAddr, tokens: &[String]) -> anyhow::Result<Vec<SignedCall>> {
    let path = format!("/clusters/{CLUSTER}/assume-role-for-pod-identity");
    let now = SystemTime::now();
    tokens
        .iter()
        .map(|t| {
            let body = serde_json::to_vec(&serde_json::json!({ "token": t }))?;
            SignedCall::new(addr, "POST", &path, body, now)
        })
        .collect()
}

/// The round's requests as header maps and bodies, for [`sigv4_round`].
fn request_parts(
    addr: std::net::SocketAddr,
    tokens: &[String],
) -> anyhow::Result<Vec<(http::HeaderMap, Vec<u8>)>> {
    signed_calls(addr, tokens)?
        .into_iter()
        .map(|c| Ok((c.header_map()?, c.body.to_vec())))
        .collect()
}

struct ServerRound {
    load: LoadResult,
    server_cpu_seconds: f64,
    server_core_busy: f64,
}

/// Runs `podid-bench broker`; `Ok(true)` when the target holds.
pub async fn run(args: BrokerArgs) -> anyhow::Result<bool> {
    let mut args = args;
    if args.run.smoke {
        (args.pods, args.associations, args.rounds, args.requests) = (100, 100, 1, 2000);
    }
    let (_priority, podid) = args.run.begin("# Broker throughput (target 3)")?;
    if args.pods == 0 || args.associations == 0 || args.rounds == 0 || args.requests == 0 {
        bail!("--pods, --associations, --rounds and --requests must be positive");
    }
    args.place.pin_self_to_load();
    let dir = tempfile::tempdir()?;
    let sts = StsResponder::start(1_000_000).await?;
    let cluster = TestCluster::generate()?;
    let options = ServerOptions {
        sts_max_rps: 10_000,
        sts_max_wait_ms: Some(30_000),
        cpus: args.place.server().map(str::to_owned),
        ..ServerOptions::sqlite_in(&podid, dir.path(), sts.endpoint(), &args.server_log)?
    };
    let server = ServerProcess::start(&options).await?;
    println!(
        "server: {} server on {} (SQLite, SigV4 node key, log {}), CPUs {}; load generator ({:?}): CPUs {}, {} connections",
        podid.display(),
        server.endpoint,
        args.server_log,
        args.place.server().unwrap_or("any"),
        args.client,
        args.place.load().unwrap_or("any"),
        args.connections
    );
    let admin = server::admin_client(&server.endpoint)?;
    cluster
        .register(&admin)
        .await
        .context("registering the test cluster")?;
    let t = Instant::now();
    server::create_associations(&admin, (0..args.associations).map(bench_association), 16)
        .await
        .context("creating the associations")?;
    println!(
        "setup: {} associations in {:.1} s",
        args.associations,
        t.elapsed().as_secs_f64()
    );

    let pods = pods(args.pods, args.associations);
    let t = Instant::now();
    // One more token per pod for the warm-up, and one for a sample answer.
    let total = args.pods + 1 + args.rounds * args.requests;
    let key = &cluster.key;
    let minted = tokio::task::block_in_place(|| server::mint_tokens(key, &pods, 0, total));
    println!(
        "setup: {total} RS256 tokens minted in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let (warmup, rest) = minted.split_at(args.pods);
    let (sample, rest) = rest.split_at(1);
    let rounds: Vec<Vec<String>> = rest.chunks(args.requests).map(<[String]>::to_vec).collect();

    // Warm-up: one call per pod, each costing one AssumeRole.
    let warm = closed_loop(
        server.addr,
        Arc::new(signed_calls(server.addr, warmup)?),
        args.connections,
    )
    .await?;
    if warm.errors > 0 {
        bail!(
            "warm-up: {} of {} calls failed; first: {}",
            warm.errors,
            warm.requests,
            warm.first_error.unwrap_or_default()
        );
    }
    let sts_calls = sts.calls().len();
    println!(
        "warm-up: {} pods got credentials ({} AssumeRole calls), {:.0} calls/s",
        warm.requests,
        sts_calls,
        warm.rps()
    );
    if sts_calls != args.pods {
        bail!("expected one AssumeRole per pod in the warm-up, the STS responder saw {sts_calls}");
    }

    // A broker answer, for the HTTP floor: a minimal hyper server answering
    // these bytes to every request (`podid-bench baseline`).
    let mut conn = crate::http_client::HttpConnection::open(server.addr).await?;
    let sample_call = signed_calls(server.addr, sample)?.remove(0);
    let (status, _, answer) = conn.send(sample_call.to_request()?).await?;
    if status != 200 {
        bail!(
            "sample call answered {status}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    let body_file = dir.path().join("answer.json");
    std::fs::write(&body_file, &answer)?;
    drop(conn);
    let floor_server = BaselineServer::start(&body_file, args.place.server())
        .await
        .context("starting the HTTP floor server")?;

    let jwk = &cluster.key.jwk();
    let verifier = Verifier::new(jwk)?;
    let trust = podid_token::ClusterTrust {
        name: CLUSTER.into(),
        issuer: server::ISSUER.into(),
        audience: podid_api::cluster::DEFAULT_AUDIENCE.into(),
        jwks: cluster.key.jwks(),
        jwks_uri: None,
        version: 1,
    };
    let keys = podid_token::KeySet::from_jwks(&trust.jwks)?;
    let ring = podid_server::keys::KeyRing::parse(&std::fs::read_to_string(&options.keys_file)?)
        .map_err(|e| anyhow::anyhow!("keys file: {e}"))?;
    let sigv4 = podid_server::auth::SigV4Verifier::new(ring);

    let mut table = ReportTable::new(&[
        "round",
        "signatures/s (1 thread)",
        "verify_token/s",
        "SigV4 checks/s",
        "HTTP floor req/s",
        "broker calls/s",
        "ratio",
        "CPU-time ratio",
        "p50 ms",
        "p99 ms",
        "max ms",
        "server CPU µs/call",
        "server CPU busy %",
    ]);
    let mut ratios = Vec::new();
    let mut cpu_ratios = Vec::new();
    let (mut sig_rates, mut full_rates, mut broker_rates) = (Vec::new(), Vec::new(), Vec::new());
    let mut floor_rates = Vec::new();
    let mut sigv4_rates = Vec::new();
    let mut all_latencies = Vec::new();
    for (r, tokens) in rounds.iter().enumerate() {
        // Baseline: one thread on the server's CPU.
        args.place.pin_self_to_server();
        let parts = request_parts(server.addr, tokens)?;
        let (sig_rate, sig_cpu_rate, full_rate, sigv4_rate) = tokio::task::block_in_place(|| {
            let (sig, sig_cpu, full) = baseline_round(&verifier, &trust, &keys, tokens)?;
            Ok::<_, anyhow::Error>((sig, sig_cpu, full, sigv4_round(&sigv4, &parts)?))
        })?;
        args.place.pin_self_to_load();
        // The server: the same tokens, each in a new request.
        let requests = Arc::new(signed_calls(server.addr, tokens)?);
        // The HTTP floor: the same requests to a server that only answers.
        let floor = drive(floor_server.addr, &requests, args.connections, args.client).await?;
        let floor_rate = floor.rps();
        let round = server_round(
            &server,
            requests,
            args.connections,
            &args.place.server_cpus,
            args.client,
        )
        .await?;
        if round.load.errors > 0 {
            bail!(
                "round {}: {} of {} calls failed; first: {}",
                r + 1,
                round.load.errors,
                round.load.requests,
                round.load.first_error.unwrap_or_default()
            );
        }
        let rate = round.load.rps();
        let ratio = rate / sig_rate;
        // Calls per second of the server's CPU time ÷ signatures per second of
        // the baseline thread's CPU time: the same comparison, unaffected by
        // other processes taking turns on the CPU.
        let cpu_ratio = (round.load.requests as f64 / round.server_cpu_seconds) / sig_cpu_rate;
        let l = &round.load.latencies_us;
        table.row(vec![
            format!("{}", r + 1),
            format!("{sig_rate:.0}"),
            format!("{full_rate:.0}"),
            format!("{sigv4_rate:.0}"),
            format!("{floor_rate:.0}"),
            format!("{rate:.0}"),
            format!("{ratio:.3}"),
            format!("{cpu_ratio:.3}"),
            format!("{:.2}", percentile(l, 50.0) / 1000.0),
            format!("{:.2}", percentile(l, 99.0) / 1000.0),
            format!("{:.2}", percentile(l, 100.0) / 1000.0),
            format!(
                "{:.0}",
                round.server_cpu_seconds * 1e6 / round.load.requests as f64
            ),
            format!("{:.0}", round.server_core_busy),
        ]);
        ratios.push(ratio);
        cpu_ratios.push(cpu_ratio);
        sig_rates.push(sig_rate);
        full_rates.push(full_rate);
        broker_rates.push(rate);
        floor_rates.push(floor_rate);
        sigv4_rates.push(sigv4_rate);
        all_latencies.extend_from_slice(l);
    }
    all_latencies.sort_by(f64::total_cmp);
    let extra = sts.calls().len() - sts_calls;
    let ratio = median(&ratios);
    table.row(vec![
        "median".into(),
        format!("{:.0}", median(&sig_rates)),
        format!("{:.0}", median(&full_rates)),
        format!("{:.0}", median(&sigv4_rates)),
        format!("{:.0}", median(&floor_rates)),
        format!("{:.0}", median(&broker_rates)),
        format!("{ratio:.3}"),
        format!("{:.3}", median(&cpu_ratios)),
        format!("{:.2}", percentile(&all_latencies, 50.0) / 1000.0),
        format!("{:.2}", percentile(&all_latencies, 99.0) / 1000.0),
        format!("{:.2}", percentile(&all_latencies, 100.0) / 1000.0),
        String::new(),
        String::new(),
    ]);
    println!();
    print!("{}", table.render());
    println!();
    println!(
        "each round: {} requests, every one with a token not seen before, {} pods with cached credentials over {} associations; AssumeRole calls after the warm-up: {extra}",
        args.requests, args.pods, args.associations
    );
    let pass = ratio >= TARGET_RATIO && extra == 0;
    println!(
        "CPU-time ratio (median): {:.3} — calls per second of the server's CPU ÷ signatures per second of the baseline thread's CPU",
        median(&cpu_ratios)
    );
    println!(
        "broker ÷ RS256 signature verification (same CPU, median of {} rounds) = {ratio:.3}; target ≥ {TARGET_RATIO}: {}",
        args.rounds,
        verdict(pass)
    );
    // What a server could reach on this CPU at best if it did nothing but
    // answer over HTTP and check the signature; and if it also did the checks
    // the protocol requires (the SigV4 signature of the node's request, the
    // token's claims), with nothing else (no lookups, cache, audit, log).
    let (sig, floor) = (median(&sig_rates), median(&floor_rates));
    let (full, sigv4) = (median(&full_rates), median(&sigv4_rates));
    let broker = median(&broker_rates);
    let bound = 1.0 / (1.0 / floor + 1.0 / sig);
    let required = 1.0 / (1.0 / floor + 1.0 / full + 1.0 / sigv4);
    println!(
        "bound 1: HTTP floor ({floor:.0}/s) + one RS256 signature ({sig:.0}/s) per call: at most {bound:.0}/s = {:.3} × the signature rate",
        bound / sig
    );
    println!(
        "bound 2: HTTP floor + the token's full check ({full:.0}/s) + the request's SigV4 check ({sigv4:.0}/s): at most {required:.0}/s = {:.3} × the signature rate",
        required / sig
    );
    println!(
        "the broker reaches {:.3} of bound 1 and {:.3} of bound 2 (the rest: lookups, caches, audit, access log, metrics, JSON)",
        broker / bound,
        broker / required
    );
    floor_server.stop().await;
    if args.hold_secs > 0 {
        println!(
            "holding the server (pid {}) for {} s",
            server.pid(),
            args.hold_secs
        );
        tokio::time::sleep(Duration::from_secs(args.hold_secs)).await;
    }
    server.stop().await;
    Ok(pass)
}

/// Sends every request once with the chosen client.
async fn drive(
    addr: std::net::SocketAddr,
    requests: &Arc<Vec<SignedCall>>,
    connections: usize,
    client: Client,
) -> anyhow::Result<LoadResult> {
    match client {
        Client::BusyPoll => {
            let bytes: Vec<Vec<u8>> = requests.iter().map(SignedCall::to_bytes).collect();
            tokio::task::spawn_blocking(move || busy_poll_loop(addr, &bytes, connections)).await?
        }
        Client::Tokio => closed_loop(addr, requests.clone(), connections).await,
    }
}

async fn server_round(
    server: &ServerProcess,
    requests: Arc<Vec<SignedCall>>,
    connections: usize,
    server_cpus: &str,
    client: Client,
) -> anyhow::Result<ServerRound> {
    let cpu_before = machine::process_cpu_seconds_precise(server.pid());
    let jiffies_before = machine::cpu_jiffies();
    let load = drive(server.addr, &requests, connections, client).await?;
    let jiffies_after = machine::cpu_jiffies();
    let cpu_after = machine::process_cpu_seconds_precise(server.pid());
    let busy = machine::cpu_busy(&jiffies_before, &jiffies_after);
    let server_core_busy = server_cpus
        .split(',')
        .filter_map(|c| c.trim().parse::<usize>().ok())
        .filter_map(|c| busy.get(c).copied())
        .fold(None, |acc: Option<(f64, usize)>, b| {
            Some(acc.map_or((b, 1), |(s, n)| (s + b, n + 1)))
        })
        .map_or(f64::NAN, |(s, n)| s / n as f64);
    Ok(ServerRound {
        load,
        server_cpu_seconds: cpu_after - cpu_before,
        server_core_busy,
    })
}
