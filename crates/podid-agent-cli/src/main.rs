//! `podid-agent`: the node agent alone. The same flags as `podid agent`, in an
//! executable without the server, store, webhook and CLI code, so that a node
//! pays only for the agent's pages (the stock agent is its own executable too).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use podid_runtime::LogFormat;

/// podid's node agent: serves pods' credentials on the link-local address.
#[derive(Debug, Parser)]
#[command(name = "podid-agent", version, about)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text", env = "PODID_LOG_FORMAT")]
    log_format: LogFormat,
    /// Log filter (tracing-subscriber syntax), default `info`.
    #[arg(long, env = "PODID_LOG", default_value = "info")]
    log: String,
    #[command(flatten)]
    agent: podid_agent_cli::AgentCommand,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    podid_runtime::init_logging(cli.log_format, &cli.log);
    let runtime = match podid_runtime::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(podid_agent_cli::command(cli.agent)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
