//! What the broker, storm and association-API benchmarks share: a real
//! `podid server` process, its keys file, a test cluster with RS256 keys,
//! CPU pinning, SigV4-signed requests built ahead of time, a small raw
//! HTTP/1.1 client for them, and percentiles.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use podid_token::dev::{DevAlgorithm, ProjectedToken, SigningKey};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// The admin key of the benchmarks' keys file (association and cluster calls).
pub const ADMIN_KEY: &str = "AKIDPODIDBENCHADMIN0";
/// Its secret.
pub const ADMIN_SECRET: &str = "podid-bench-admin-secret-not-a-real-one";
/// The node key: the one `common::AgentProcess` signs with.
pub const NODE_KEY: &str = "AKIDPODIDBENCH000000";
/// Its secret.
pub const NODE_SECRET: &str = "podid-bench-secret-key-not-a-real-one00";
/// The broker's own (fake) AWS key, which signs its STS calls.
pub const BROKER_KEY: &str = "AKIDPODIDBROKER00000";
/// The account of podid's ARNs and of the roles.
pub const ACCOUNT: &str = "111122223333";
/// The test cluster's name (the one `common::AgentProcess` names).
pub const CLUSTER: &str = "bench";
/// Its token issuer.
pub const ISSUER: &str = "https://oidc.podid.test/bench";

/// Writes a keys file with the admin and the node key.
pub fn write_keys(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("keys.toml");
    std::fs::write(
        &path,
        format!(
            "[[key]]\naccess_key_id = \"{ADMIN_KEY}\"\nsecret_access_key = \"{ADMIN_SECRET}\"\nrole = \"admin\"\n\n\
             [[key]]\naccess_key_id = \"{NODE_KEY}\"\nsecret_access_key = \"{NODE_SECRET}\"\nrole = \"node\"\n"
        ),
    )?;
    Ok(path)
}

/// Pins every thread of this process (and so the threads it starts later)
/// to `cpus` (taskset syntax, e.g. `0` or `0-1`); warns if taskset fails.
pub fn pin_self(cpus: &str) {
    let pid = std::process::id().to_string();
    let ok = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("warning: cannot pin podid-bench to CPUs {cpus} (taskset failed); figures are less reliable");
    }
}

/// Runs the benchmark at niceness `n` (root only for a negative `n`):
/// every thread of this process (threads started later inherit it), the
/// processes it starts from now on (`common::set_niceness`), and this
/// session's autogroup (`common::AutogroupBoost`, restored when the returned
/// guard drops) — the same rules as the agent benchmarks (docs/benchmarks.md).
pub fn raise_priority(n: i32) -> Option<crate::common::AutogroupBoost> {
    if n == 0 {
        return None;
    }
    crate::common::set_niceness(n);
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.filter_map(Result::ok) {
            let _ = std::process::Command::new("renice")
                .args(["-n", &n.to_string(), "-p"])
                .arg(task.file_name())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
    crate::common::AutogroupBoost::set(n)
}

/// The command that runs `program` pinned to `cpus` (if any) at the niceness
/// set by [`raise_priority`].
pub fn command(cpus: Option<&str>, program: &Path) -> Command {
    let mut words: Vec<std::ffi::OsString> = crate::common::niceness_prefix()
        .into_iter()
        .map(Into::into)
        .collect();
    if let Some(cpus) = cpus {
        words.extend(["taskset".into(), "-c".into(), cpus.into()]);
    }
    words.push(program.into());
    let mut c = Command::new(&words[0]);
    c.args(&words[1..]);
    c
}

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
    /// A server on a SQLite file in `dir`, with the benchmark's keys file
    /// there, asking `sts_endpoint` (at most 50 calls/s, the default wait),
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
            keys_file: write_keys(dir)?,
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
    child: Child,
    pid: u32,
    /// `http://ADDR`.
    pub endpoint: String,
    /// The bound address.
    pub addr: SocketAddr,
}

impl ServerProcess {
    /// Starts the server and waits for its "listening" line.
    pub async fn start(o: &ServerOptions) -> anyhow::Result<ServerProcess> {
        let mut cmd = command(o.cpus.as_deref(), &o.podid);
        let log =
            std::fs::File::create(&o.log_file).with_context(|| o.log_file.display().to_string())?;
        cmd.args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--region",
            "us-east-1",
            "--account-id",
            ACCOUNT,
        ])
        .arg("--database-url")
        .arg(&o.database_url)
        .arg("--keys-file")
        .arg(&o.keys_file)
        .arg("--sts-endpoint")
        .arg(&o.sts_endpoint)
        .arg("--sts-max-rps")
        .arg(o.sts_max_rps.to_string());
        if let Some(wait) = o.sts_max_wait_ms {
            cmd.arg("--sts-max-wait-ms").arg(wait.to_string());
        }
        cmd.env("AWS_ACCESS_KEY_ID", BROKER_KEY)
            .env(
                "AWS_SECRET_ACCESS_KEY",
                "podid-bench-broker-secret-not-real-0000",
            )
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/nonexistent/podid-bench")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/podid-bench")
            .env("PODID_LOG", &o.log)
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("PODID_DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {} server", o.podid.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("the server exited at once"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .context("the server did not start within 60 s")??
            .ok_or_else(|| {
                let log = std::fs::read_to_string(&o.log_file).unwrap_or_default();
                anyhow!("the server exited before listening:\n{log}")
            })?;
        let endpoint = line
            .trim()
            .strip_prefix("podid server listening on ")
            .ok_or_else(|| anyhow!("unexpected first line {line:?}"))?
            .to_owned();
        let addr = endpoint
            .trim_start_matches("http://")
            .parse()
            .context("the server's address")?;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(ServerProcess {
            child,
            pid,
            endpoint,
            addr,
        })
    }

    /// Its process id (nice and taskset exec the server: the same process).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Stops it with SIGTERM (so its audit writer drains), SIGKILL after 10 s.
    pub async fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }
}

/// A signing client for the association API and the cluster registry, as the admin.
pub fn admin_client(endpoint: &str) -> anyhow::Result<podid_client::ApiClient> {
    Ok(podid_client::ApiClient::builder(endpoint)
        .credentials(Some(Credentials::new(
            ADMIN_KEY,
            ADMIN_SECRET,
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

/// The headers (`host`, `content-type`, `x-amz-date`, `authorization`) of a
/// request SigV4-signed by the node key, as an agent signs
/// `AssumeRoleForPodIdentity` (signing name `eks-auth`).
pub fn signed_headers(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    at: SystemTime,
) -> anyhow::Result<Vec<(String, String)>> {
    let host = addr.to_string();
    let identity: Identity =
        Credentials::new(NODE_KEY, NODE_SECRET, None, None, "podid-bench").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("eks-auth")
        .time(at)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| anyhow!("signing parameters: {e}"))?
        .into();
    let url = format!("http://{host}{path}");
    let headers = [
        ("host", host.as_str()),
        ("content-type", "application/json"),
    ];
    let signable =
        SignableRequest::new(method, url, headers.into_iter(), SignableBody::Bytes(body))
            .map_err(|e| anyhow!("signable request: {e}"))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| anyhow!("signing: {e}"))?
        .into_parts();
    let mut out: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    out.extend(
        instructions
            .headers()
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    Ok(out)
}

/// The bytes of such a request, body included.
pub fn signed_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    at: SystemTime,
) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len() + 512);
    out.extend_from_slice(format!("{method} {path} HTTP/1.1\r\n").as_bytes());
    for (k, v) in signed_headers(addr, method, path, body, at)? {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

/// A keep-alive HTTP/1.1 connection that sends prepared request bytes and
/// reads a `Content-Length` answer: as little client work as possible.
pub struct RawConnection {
    stream: BufReader<TcpStream>,
    line: String,
    body: Vec<u8>,
}

impl RawConnection {
    /// Connects to `addr`.
    pub async fn open(addr: SocketAddr) -> anyhow::Result<RawConnection> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(RawConnection {
            stream: BufReader::with_capacity(16 * 1024, stream),
            line: String::new(),
            body: Vec::new(),
        })
    }

    /// Sends `request` and returns the status (the body is kept in
    /// [`RawConnection::body`]).
    pub async fn send(&mut self, request: &[u8]) -> anyhow::Result<u16> {
        self.stream.get_mut().write_all(request).await?;
        self.line.clear();
        if self.stream.read_line(&mut self.line).await? == 0 {
            bail!("the server closed the connection");
        }
        let status: u16 = self
            .line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("bad status line {:?}", self.line))?;
        let mut length = 0usize;
        loop {
            self.line.clear();
            if self.stream.read_line(&mut self.line).await? == 0 {
                bail!("the server closed the connection in the headers");
            }
            let l = self.line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().context("content-length")?;
                }
            }
        }
        self.body.resize(length, 0);
        self.stream.read_exact(&mut self.body).await?;
        Ok(status)
    }

    /// The last answer's body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

/// What a closed-loop run of prepared requests measured.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    /// Requests answered.
    pub requests: usize,
    /// Answers other than 200.
    pub errors: usize,
    /// The first non-200 answer, for the report.
    pub first_error: Option<String>,
    /// Wall time.
    pub seconds: f64,
    /// Per-request latencies (µs), sorted.
    pub latencies_us: Vec<f64>,
}

impl LoadResult {
    /// Requests per second.
    pub fn rps(&self) -> f64 {
        if self.seconds > 0.0 {
            self.requests as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Sends every request of `requests` once, over `connections` keep-alive
/// connections, each sending its next request when the previous answer is in.
pub async fn closed_loop(
    addr: SocketAddr,
    requests: std::sync::Arc<Vec<Vec<u8>>>,
    connections: usize,
) -> anyhow::Result<LoadResult> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = std::sync::Arc::new(AtomicUsize::new(0));
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        conns.push(RawConnection::open(addr).await?);
    }
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(connections);
    for mut conn in conns {
        let (requests, next) = (requests.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            let mut first_error = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(request) = requests.get(i) else {
                    break;
                };
                let t = Instant::now();
                let status = conn.send(request).await?;
                latencies.push(t.elapsed().as_secs_f64() * 1e6);
                if status != 200 {
                    errors += 1;
                    if first_error.is_none() {
                        first_error = Some(format!(
                            "HTTP {status}: {}",
                            String::from_utf8_lossy(conn.body())
                        ));
                    }
                }
            }
            Ok::<_, anyhow::Error>((latencies, errors, first_error))
        }));
    }
    let mut result = LoadResult::default();
    for t in tasks {
        let (latencies, errors, first_error) = t.await??;
        result.requests += latencies.len();
        result.latencies_us.extend(latencies);
        result.errors += errors;
        if result.first_error.is_none() {
            result.first_error = first_error;
        }
    }
    result.seconds = started.elapsed().as_secs_f64();
    result.latencies_us.sort_by(f64::total_cmp);
    Ok(result)
}

/// One connection of [`busy_poll_loop`].
struct PollConnection {
    stream: std::net::TcpStream,
    buf: Vec<u8>,
    /// Index of the request in flight and when it was sent.
    in_flight: Option<(usize, Instant)>,
}

/// The status, and the whole answer's length once `buf` holds all of it.
fn complete_answer(buf: &[u8]) -> anyhow::Result<Option<(u16, usize)>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).context("answer head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line"))?;
    let mut length = 0usize;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().context("content-length")?;
            }
        }
    }
    let total = end + 4 + length;
    Ok((buf.len() >= total).then_some((status, total)))
}

/// Like [`closed_loop`], but one thread drives every connection by polling
/// non-blocking sockets and never sleeps. An idle load generator blocked in
/// epoll has to be woken (an inter-processor interrupt, costly in a VM) by
/// every answer, and on loopback that wake-up is charged to the server's
/// `write`: a cost no server pays when its clients are other machines. A
/// client that is always running removes it. Needs a CPU of its own.
pub fn busy_poll_loop(
    addr: SocketAddr,
    requests: &[Vec<u8>],
    connections: usize,
) -> anyhow::Result<LoadResult> {
    use std::io::{ErrorKind, Read, Write};
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections.max(1) {
        let stream =
            std::net::TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        conns.push(PollConnection {
            stream,
            buf: Vec::with_capacity(16 * 1024),
            in_flight: None,
        });
    }
    let write_all = |stream: &mut std::net::TcpStream, mut data: &[u8]| -> anyhow::Result<()> {
        while !data.is_empty() {
            match stream.write(data) {
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    };
    let mut result = LoadResult::default();
    result.latencies_us.reserve(requests.len());
    let mut next = 0usize;
    let started = Instant::now();
    for c in &mut conns {
        if next < requests.len() {
            write_all(&mut c.stream, &requests[next])?;
            c.in_flight = Some((next, Instant::now()));
            next += 1;
        }
    }
    let mut chunk = vec![0u8; 64 * 1024];
    let mut open = conns.iter().filter(|c| c.in_flight.is_some()).count();
    while open > 0 {
        for c in &mut conns {
            let Some((_, sent)) = c.in_flight else {
                continue;
            };
            match c.stream.read(&mut chunk) {
                Ok(0) => bail!("the server closed a connection"),
                Ok(n) => c.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e.into()),
            }
            let Some((status, total)) = complete_answer(&c.buf)? else {
                continue;
            };
            result.latencies_us.push(sent.elapsed().as_secs_f64() * 1e6);
            result.requests += 1;
            if status != 200 {
                result.errors += 1;
                if result.first_error.is_none() {
                    result.first_error = Some(format!(
                        "HTTP {status}: {}",
                        String::from_utf8_lossy(&c.buf[..total.min(c.buf.len())])
                    ));
                }
            }
            c.buf.drain(..total);
            if next < requests.len() {
                write_all(&mut c.stream, &requests[next])?;
                c.in_flight = Some((next, Instant::now()));
                next += 1;
            } else {
                c.in_flight = None;
                open -= 1;
            }
        }
    }
    result.seconds = started.elapsed().as_secs_f64();
    result.latencies_us.sort_by(f64::total_cmp);
    Ok(result)
}

/// CPU time this thread has run, in seconds (/proc/thread-self/schedstat, ns).
pub fn thread_cpu_seconds() -> f64 {
    schedstat_ns(Path::new("/proc/thread-self/schedstat")).unwrap_or(0) as f64 / 1e9
}

/// CPU time every thread of process `pid` has run, in seconds (schedstat, ns).
pub fn process_cpu_seconds_precise(pid: u32) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    let ns: u64 = tasks
        .filter_map(Result::ok)
        .filter_map(|t| schedstat_ns(&t.path().join("schedstat")))
        .sum();
    ns as f64 / 1e9
}

fn schedstat_ns(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The `p`-th percentile (0–100) of sorted values (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn signed_requests_carry_a_sigv4_header_and_the_body() {
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let req = signed_request(
            addr,
            "POST",
            "/clusters/bench/assume-role-for-pod-identity",
            b"{}",
            SystemTime::now(),
        )
        .unwrap();
        let text = String::from_utf8(req).unwrap();
        assert!(text.starts_with("POST /clusters/bench/assume-role-for-pod-identity HTTP/1.1\r\n"));
        assert!(text.contains("authorization: AWS4-HMAC-SHA256 Credential=AKIDPODIDBENCH000000/"));
        assert!(text.contains("/eks-auth/aws4_request"));
        assert!(text.ends_with("content-length: 2\r\n\r\n{}"));
    }
}

/// Where a benchmark's processes run (taskset CPU lists).
#[derive(Debug, Clone, clap::Args)]
pub struct Placement {
    /// CPUs of the server (and of what is measured against it), taskset syntax.
    #[arg(long, default_value = "0")]
    pub server_cpus: String,
    /// CPUs of this process (the load generator).
    #[arg(long, default_value = "1")]
    pub load_cpus: String,
    /// Do not pin anything (for machines without taskset).
    #[arg(long)]
    pub no_pin: bool,
}

impl Placement {
    /// The server's CPUs, unless nothing is pinned.
    pub fn server(&self) -> Option<&str> {
        (!self.no_pin).then_some(self.server_cpus.as_str())
    }

    /// The load generator's CPUs, unless nothing is pinned.
    pub fn load(&self) -> Option<&str> {
        (!self.no_pin).then_some(self.load_cpus.as_str())
    }

    /// Pins this process to the server's CPUs (for a baseline measured in it).
    pub fn pin_self_to_server(&self) {
        if let Some(cpus) = self.server() {
            pin_self(cpus);
        }
    }

    /// Pins this process to the load generator's CPUs.
    pub fn pin_self_to_load(&self) {
        if let Some(cpus) = self.load() {
            pin_self(cpus);
        }
    }
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
