//! `podid-bench`: podid's benchmarks, one subcommand each; a target that does
//! not hold exits 2 (method and figures: docs/benchmarks.md).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// The benchmarks, one a module (a new one: its module, a variant of
// `Command`, its arm in `main`).
mod agent_hot_path;
mod agent_memory;
mod association_api;
mod baseline;
mod broker;
mod console;
mod fake_eks_auth;
mod storm;

// What they share.
mod http_client;
mod load;
mod load_loop;
mod machine;
mod names;
mod priority;
mod processes;
mod report;
mod server;
mod signing;
mod sts_responder;
mod tokens;

/// podid's benchmark suite: figures are ratios to baselines measured in the same run.
#[derive(Debug, Parser)]
#[command(name = "podid-bench", about)]
struct BenchCli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Target 1: the agent's cached hot path vs a minimal hyper server (wrk, 64 connections, 10 s, 3 rounds).
    AgentHotPath(agent_hot_path::AgentHotPathArgs),
    /// Target 2: the agent's RSS idle and with 10,000 cached pods.
    AgentMemory(agent_memory::AgentMemoryArgs),
    /// The hot path's baseline server: answers every request with a file's bytes (used by agent-hot-path).
    Baseline(baseline::BaselineArgs),
    /// A fake EKS Auth answering every AssumeRoleForPodIdentity (for trying an agent by hand).
    FakeEksAuth(fake_eks_auth::FakeEksAuthArgs),
    /// Target 3: AssumeRoleForPodIdentity with a fresh token per call vs RS256 signature verification alone.
    Broker(broker::BrokerArgs),
    /// Target 4: 2,000 pods on 10 agents ask at once; a rate-enforcing STS responder counts the calls.
    Storm(storm::StormArgs),
    /// Target 5: association Create throughput and List over 10,000, SQLite and PostgreSQL, vs the raw store.
    AssociationApi(association_api::AssociationApiArgs),
    /// The web console's association table with 10,000 associations: render time of the first and a filtered page vs the store query.
    Console(console::ConsoleArgs),
    /// One raw-store step of association-api, in a process of its own (used by association-api).
    #[command(hide = true)]
    RawStore(association_api::RawStoreArgs),
}

fn main() -> ExitCode {
    let cli = BenchCli::parse();
    // The same runtime as `podid` builds: the baseline server must differ
    // from the agent only in what it does per request.
    let Ok(runtime) = podid_runtime::runtime()
        .inspect_err(|e| eprintln!("error: cannot start the async runtime: {e}"))
    else {
        return ExitCode::FAILURE;
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::AgentHotPath(args) => agent_hot_path::run(args).await,
            Command::AgentMemory(args) => agent_memory::run(args).await,
            Command::Baseline(args) => baseline::run(args).await.map(|()| true),
            Command::FakeEksAuth(args) => fake_eks_auth::run(args).await.map(|()| true),
            Command::Broker(args) => broker::run(args).await,
            Command::Storm(args) => storm::run(args).await,
            Command::AssociationApi(args) => association_api::run(args).await,
            Command::Console(args) => console::run(args).await,
            Command::RawStore(args) => association_api::raw_store(args).await.map(|()| true),
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("podid-bench: a target does not hold (see FAIL above)");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
