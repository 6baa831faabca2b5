//! `podid`: the server, the node agent, the admission webhook and the
//! command-line client in one binary; each verb lives in [`cmd`].
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use podid_runtime::LogFormat;

mod cmd;

use cmd::{association, audit, cluster, dev, server, trust_policy, webhook};

/// The server allocates and frees several small strings per request; mimalloc
/// does that with less work than glibc's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Pod identity for any Kubernetes cluster, wire-compatible with EKS Pod Identity.
#[derive(Debug, Parser)]
#[command(name = "podid", version, about, propagate_version = true)]
struct PodidCli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "PODID_LOG_FORMAT"
    )]
    log_format: LogFormat,
    /// Log filter (tracing-subscriber syntax, e.g. `info,podid_server=debug`);
    /// default `info` for servers, `warn` for the CLI verbs.
    #[arg(long, global = true, env = "PODID_LOG")]
    log: Option<String>,
    #[command(subcommand)]
    command: Verb,
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// Run the central server: association API, cluster registry, metrics.
    Server(server::ServerArgs),
    /// Run the node agent: serves pods' credentials on the link-local address.
    Agent(podid_agent_cli::AgentCommand),
    /// Manage pod identity associations.
    #[command(subcommand)]
    Association(association::AssociationCommand),
    /// Manage registered clusters.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Print the trust policy a target role needs so podid's broker may assume it.
    TrustPolicy(trust_policy::TrustPolicyArgs),
    /// Read the broker's audit trail.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// DEVELOPMENT TOOLS: a stand-in cluster and tokens, for trying podid without Kubernetes.
    #[command(subcommand)]
    Dev(dev::DevCommand),
    /// Run the admission webhook: injects pod identity into pods whose service account has an association.
    Webhook(webhook::WebhookArgs),
}

fn main() -> ExitCode {
    let cli = PodidCli::parse();
    let default_filter = match cli.command {
        Verb::Server(_) | Verb::Agent(_) | Verb::Webhook(_) => "info",
        _ => "warn",
    };
    let filter = cli.log.as_deref().unwrap_or(default_filter);
    // The server logs every request: its lines are written in blocks, and
    // whatever is pending when `main` ends is written then.
    let log_guard = match cli.command {
        Verb::Server(_) => Some(podid_runtime::init_logging_buffered(cli.log_format, filter)),
        _ => {
            podid_runtime::init_logging(cli.log_format, filter);
            None
        }
    };
    let runtime = match podid_runtime::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Verb::Server(args) => server::run(args).await,
            Verb::Agent(cmd) => podid_agent_cli::command(cmd).await,
            Verb::Association(cmd) => association::run(cmd).await,
            Verb::Cluster(cmd) => cluster::run(cmd).await,
            Verb::TrustPolicy(args) => trust_policy::run(&args),
            Verb::Audit(cmd) => audit::run(cmd).await,
            Verb::Dev(cmd) => dev::run(cmd).await,
            Verb::Webhook(args) => webhook::run(args).await,
        }
    });
    drop(runtime);
    drop(log_guard);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
