//! The real `podid server` of the broker, storm and association-API
//! benchmarks (on `podid-test-support`'s launcher), its admin client, the
//! test cluster with its RS256 key, and the simulated pods' tokens.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;

use aws_credential_types::Credentials;
use podid_test_support::{write_keys_file, PodidServerLaunch, PodidServerProcess, StderrTo, ADMIN};
use podid_token::dev::{DevAlgorithm, ProjectedToken, SigningKey};

use crate::names::BROKER_KEY;
pub use crate::names::{CLUSTER, ISSUER};
use crate::priority::{raise_priority, AutogroupBoost};
use crate::report::per_second;
pub use podid_test_support::ACCOUNT_ID as ACCOUNT;

/// How to run `podid server`.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The podid binary.
    pub podid: PathBuf,
    /// `--database-url`.
    pub database_url: String,
    /// `--keys-file`.
    pub keys_file: PathBuf,
    /// `--sts-endpoint`.
    pub sts_endpoint: String,
    /// `--sts-max-rps`.
    pub sts_max_rps: u32,
    /// `--sts-max-wait-ms`, when not the default.
    pub sts_max_wait_ms: Option<u64>,
    /// CPUs to pin the server to (taskset), if any.
    pub cpus: Option<String>,
    /// `PODID_LOG` (the server's default is `info`: one access-log line per request).
    pub log: String,
    /// Where its stderr goes.
    pub log_file: PathBuf,
}

impl ServerOptions {
    /// A server on a SQLite file in `dir`, with the test keys file there,
    /// asking `sts_endpoint` (at most 50 calls/s, the default wait),
    /// unpinned, logging at `log` into `dir/server.log`.
    pub fn sqlite_in(
        podid: &Path,
        dir: &Path,
        sts_endpoint: String,
        log: &str,
    ) -> anyhow::Result<ServerOptions> {
        Ok(ServerOptions {
            podid: podid.to_path_buf(),
            database_url: format!("sqlite://{}", dir.join("podid.db").display()),
            keys_file: write_keys_file(dir)?,
            sts_endpoint,
            sts_max_rps: 50,
            sts_max_wait_ms: None,
            cpus: None,
            log: log.to_owned(),
            log_file: dir.join("server.log"),
        })
    }
}

/// A running `podid server`, killed on drop.
pub struct ServerProcess {
    process: PodidServerProcess,
    /// `http://ADDR`.
    pub endpoint: String,
    /// The bound address.
    pub addr: SocketAddr,
}

impl ServerProcess {
    /// Starts the server and waits (at most 60 s) for its "listening" line.
    pub async fn start(o: &ServerOptions) -> anyhow::Result<ServerProcess> {
        let mut launch = PodidServerLaunch::new(&o.podid)
            .wrapped_in(crate::priority::prefix_words(o.cpus.as_deref(), &[]))
            .args(["--database-url", &o.database_url])
            .args([std::ffi::OsStr::new("--keys-file"), o.keys_file.as_os_str()])
            .args(["--sts-endpoint", &o.sts_endpoint])
            .args(["--sts-max-rps".to_owned(), o.sts_max_rps.to_string()]);
        if let Some(wait) = o.sts_max_wait_ms {
            launch = launch.args(["--sts-max-wait-ms".to_owned(), wait.to_string()]);
        }
        let launch = launch
            .aws_key(BROKER_KEY, "podid-bench-broker-secret-not-real-0000")
            .env_remove("PODID_DATABASE_URL")
            .log(&o.log)
            .stderr(StderrTo::File(o.log_file.clone()))
            .timeout(Duration::from_secs(60));
        let process = tokio::task::spawn_blocking(move || launch.start()).await??;
        Ok(ServerProcess {
            endpoint: process.endpoint.clone(),
            addr: process.addr,
            process,
        })
    }

    /// Its process id (nice and taskset exec the server: the same process).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Stops it with SIGTERM (so its audit writer drains), SIGKILL after 10 s.
    pub async fn stop(self) {
        let process = self.process;
        let _ =
            tokio::task::spawn_blocking(move || process.terminate(Duration::from_secs(10))).await;
    }
}

/// A signing client for the association API and the cluster registry, as the admin.
pub fn admin_client(endpoint: &str) -> anyhow::Result<podid_client::ApiClient> {
    Ok(podid_client::ApiClient::builder(endpoint)
        .credentials(Some(Credentials::new(
            ADMIN.access_key_id,
            ADMIN.secret_access_key,
            None,
            None,
            "podid-bench",
        )))
        .timeout(Duration::from_secs(60))
        .build()?)
}

/// A test cluster: an RS256 key (2048 bits, as Kubernetes signs) and its issuer.
pub struct TestCluster {
    /// The signing key.
    pub key: SigningKey,
}

impl TestCluster {
    /// A new key.
    pub fn generate() -> anyhow::Result<TestCluster> {
        Ok(TestCluster {
            key: SigningKey::generate(DevAlgorithm::Rs256, "bench-key-1")?,
        })
    }

    /// Registers the cluster (inline JWKS) with the server.
    pub async fn register(&self, client: &podid_client::ApiClient) -> anyhow::Result<()> {
        let body = serde_json::json!({"name": CLUSTER, "issuer": ISSUER, "jwks": self.key.jwks()});
        let _: serde_json::Value = client
            .call(
                reqwest::Method::POST,
                "/podid/v1/clusters",
                &[],
                Some(&body),
            )
            .await?;
        Ok(())
    }

    /// The cluster record for an in-process store.
    pub fn record(&self) -> podid_api::cluster::Cluster {
        let now = podid_api::EpochMillis(epoch_millis());
        podid_api::cluster::Cluster {
            name: CLUSTER.to_owned(),
            issuer: ISSUER.to_owned(),
            audience: podid_api::cluster::DEFAULT_AUDIENCE.to_owned(),
            cluster_arn: format!("arn:aws:eks:us-east-1:{ACCOUNT}:cluster/{CLUSTER}"),
            key_source: podid_api::cluster::KeySource::Inline,
            jwks_uri: None,
            jwks: self.key.jwks(),
            agent_identity: podid_api::cluster::AgentIdentity::Key,
            agent_service_account: podid_api::cluster::DEFAULT_AGENT_SERVICE_ACCOUNT.to_owned(),
            node_binding: false,
            token_review: None,
            created_at: now,
            modified_at: now,
        }
    }
}

/// Milliseconds since the epoch.
pub fn epoch_millis() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Seconds since the epoch.
pub fn epoch_secs() -> i64 {
    epoch_millis() / 1000
}

/// A simulated pod: who its tokens say it is.
#[derive(Debug, Clone)]
pub struct Pod {
    /// Namespace.
    pub namespace: String,
    /// Service account.
    pub service_account: String,
    /// Pod name.
    pub name: String,
    /// Pod uid.
    pub uid: String,
    /// Node name.
    pub node: String,
}

impl Pod {
    /// A fresh token of this pod (new `jti`, `iat` `age_secs` ago), signed
    /// with the cluster's RS256 key.
    pub fn token(&self, key: &SigningKey, age_secs: i64) -> String {
        let mut t = ProjectedToken::new(
            ISSUER,
            &*self.namespace,
            &*self.service_account,
            epoch_secs() - age_secs,
        );
        t.pod_name = self.name.clone();
        t.pod_uid = self.uid.clone();
        t.node_name = Some(self.node.clone());
        t.sign(key)
    }
}

/// Signs `count` tokens on all CPUs this process may use: token `i` is for
/// `pods[i % pods.len()]`, with its own `jti` and an `iat` of `i % 300`
/// seconds ago (so no two requests carry the same token).
pub fn mint_tokens(key: &SigningKey, pods: &[Pod], first: usize, count: usize) -> Vec<String> {
    let threads = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
        .max(1);
    let chunk = count.div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..count)
            .step_by(chunk)
            .map(|start| {
                let end = (start + chunk).min(count);
                s.spawn(move || {
                    (start..end)
                        .map(|j| {
                            let i = first + j;
                            pods[i % pods.len()].token(key, (i % 300) as i64)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// The association `ns-{i/100}/sa-{i}` with role `bench-{i}`, as the API is
/// asked to create it.
pub fn bench_association(i: usize) -> serde_json::Value {
    serde_json::json!({
        "namespace": format!("ns-{}", i / 100),
        "serviceAccount": format!("sa-{i}"),
        "roleArn": format!("arn:aws:iam::{ACCOUNT}:role/bench-{i}"),
    })
}

/// Runs `call` on every item, `concurrency` at a time; calls per second.
pub async fn rate_of<I, F, Fut>(items: I, concurrency: usize, call: F) -> anyhow::Result<f64>
where
    I: IntoIterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let started = Instant::now();
    let results: Vec<anyhow::Result<()>> = futures_util::stream::iter(items)
        .map(call)
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let n = results.len();
    results.into_iter().collect::<anyhow::Result<()>>()?;
    Ok(per_second(n, started.elapsed().as_secs_f64()))
}

/// Creates the associations `bodies` yields (`POST`, as the admin), with
/// `concurrency` calls in flight; calls per second.
pub async fn create_associations(
    client: &podid_client::ApiClient,
    bodies: impl IntoIterator<Item = serde_json::Value>,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let path = format!("/clusters/{CLUSTER}/pod-identity-associations");
    rate_of(bodies, concurrency, |body| {
        let (client, path) = (client.clone(), path.clone());
        async move {
            let _: serde_json::Value = client
                .call(reqwest::Method::POST, &path, &[], Some(&body))
                .await?;
            Ok(())
        }
    })
    .await
}

/// Flags every server benchmark takes.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// A quick run with small sizes (checks that the benchmark works; its figures mean little).
    #[arg(long)]
    pub smoke: bool,
    /// Niceness of this benchmark's processes and session (root only below 0; 0 leaves priorities alone).
    #[arg(long, default_value_t = -19, allow_hyphen_values = true)]
    pub nice: i32,
    /// The podid binary (default: `podid` next to this executable).
    #[arg(long)]
    pub podid: Option<std::path::PathBuf>,
}

impl RunArgs {
    /// The start of a server benchmark: raises the priority (a smoke run
    /// leaves it alone; kept until the guard drops), finds the `podid`
    /// binary, prints `title`, the machine and the priority.
    pub fn begin(&self, title: &str) -> anyhow::Result<(Option<AutogroupBoost>, PathBuf)> {
        let nice = if self.smoke { 0 } else { self.nice };
        let priority = raise_priority(nice);
        let podid = crate::processes::podid_binary(self.podid.as_deref())?;
        println!("{title}");
        println!("{}", crate::machine::Machine::read().describe());
        println!("priority: niceness {nice} for this benchmark's processes and session");
        Ok((priority, podid))
    }
}
