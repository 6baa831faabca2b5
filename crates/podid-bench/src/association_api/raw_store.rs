//! `podid-bench raw-store`: the association benchmark's raw-store side in a
//! process of its own, and the handle that drives it.

use anyhow::{bail, Context};

use super::{raw_creates, raw_walk};
use crate::processes::self_binary;

/// `podid-bench raw-store` (hidden): the raw-store side of the association
/// benchmark in a process of its own, pinned like the server, so the
/// baseline runs as the server does (its own process, one CPU, a runtime with
/// one worker, one store kept open). Reads one command per line on stdin —
/// `register FILE`, `create START END CONCURRENCY`, `walk PAGE_SIZE` — and
/// answers each with one JSON line.
#[derive(Debug, clap::Args)]
pub struct RawStoreArgs {
    /// The store.
    #[arg(long)]
    database_url: String,
}

/// Runs `podid-bench raw-store`.
pub async fn raw_store(args: RawStoreArgs) -> anyhow::Result<()> {
    let store = podid_store::open(&args.database_url)
        .await
        .context("opening the store")?;
    loop {
        let read = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map(|n| (n, line))
        });
        let (n, line) = read.await??;
        if n == 0 {
            break;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let number = |i: usize| -> anyhow::Result<usize> {
            words
                .get(i)
                .context("missing argument")?
                .parse()
                .context("not a number")
        };
        let out = match words.first().copied() {
            Some("register") => {
                let text = std::fs::read_to_string(words.get(1).context("register FILE")?)?;
                let cluster: podid_api::cluster::Cluster = serde_json::from_str(&text)?;
                store.insert_cluster(&cluster).await?;
                serde_json::json!({})
            }
            Some("create") => {
                serde_json::json!({ "rate": raw_creates(&store, number(1)?..number(2)?, number(3)?).await? })
            }
            Some("walk") => {
                serde_json::to_value(raw_walk(&store, u32::try_from(number(1)?)?).await?)?
            }
            _ => bail!("unknown command {line:?}"),
        };
        println!("{out}");
    }
    Ok(())
}

/// A `podid-bench raw-store` child process.
pub(super) struct RawStore {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl RawStore {
    /// Starts one on `url`, pinned to `cpus`.
    pub(super) async fn start(cpus: Option<&str>, url: &str) -> anyhow::Result<RawStore> {
        use tokio::io::AsyncBufReadExt;
        let mut cmd = crate::priority::command(cpus, &self_binary()?);
        cmd.args(["raw-store", "--database-url", url])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd.spawn().context("starting podid-bench raw-store")?;
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = child.stdout.take().context("no stdout")?;
        Ok(RawStore {
            child,
            stdin,
            lines: tokio::io::BufReader::new(stdout).lines(),
        })
    }

    /// Sends one command and reads its answer.
    pub(super) async fn call(&mut self, command: &str) -> anyhow::Result<serde_json::Value> {
        use tokio::io::AsyncWriteExt;
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await?;
        self.stdin.flush().await?;
        let line = self
            .lines
            .next_line()
            .await?
            .with_context(|| format!("raw-store exited during {command:?}"))?;
        serde_json::from_str(&line).with_context(|| format!("raw-store answered {line:?}"))
    }

    pub(super) async fn stop(mut self) {
        drop(self.stdin);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}
