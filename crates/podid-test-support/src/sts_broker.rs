//! A `podid server` whose broker asks a [`FakeSts`]: keys file, SQLite in a
//! directory of its own, one cluster with an RS256 signing key and one
//! association, both made with the `podid` CLI; pod tokens signed with that
//! key, so the broker accepts them; and a `podid agent` in front of it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use podid_token::dev::{DevAlgorithm, ProjectedToken, SigningKey};

use crate::agent::{loopback_agent_args, AGENT_LISTENING};
use crate::fake_sts::FakeSts;
use crate::keys::{aws_key_env, write_keys_file, TestKey, ADMIN, NODE};
use crate::podid::{podid_binary, PodidServerLaunch, PodidServerProcess, StderrTo};
use crate::process::{run_to_success, ChildProcess};
use crate::HarnessError;

/// The registered cluster.
pub const CLUSTER: &str = "sts-failures";
/// The cluster's token issuer.
pub const ISSUER: &str = "https://oidc.sts-failures.test";
/// The associated namespace.
pub const NAMESPACE: &str = "ns";
/// The associated service account.
pub const SERVICE_ACCOUNT: &str = "sa";
/// The association's role.
pub const ROLE_ARN: &str = "arn:aws:iam::111122223333:role/pod-role";
/// The broker's own AWS key (what it signs STS calls with).
pub const BROKER_KEY: TestKey = TestKey {
    access_key_id: "AKIABROKERSTSFAIL000",
    secret_access_key: "broker-sts-secret-0123456789abcdefghijklm",
    role: "broker",
};

/// A fake STS and a `podid server` in front of it; the server is killed and
/// its directory removed on drop.
#[derive(Debug)]
pub struct StsBroker {
    /// The fake STS the broker asks.
    pub sts: FakeSts,
    server: Option<PodidServerProcess>,
    key: SigningKey,
    dir: PathBuf,
}

/// A new empty directory under the system's temporary directory.
fn fresh_dir() -> Result<PathBuf, HarnessError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "podid-sts-broker-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).map_err(|source| HarnessError::Io {
        what: format!("creating {}", dir.display()),
        source,
    })?;
    Ok(dir)
}

impl StsBroker {
    /// Starts a fake STS answering credentials and `podid server
    /// --sts-endpoint FAKE` with `args` added, then registers [`CLUSTER`]
    /// and associates [`NAMESPACE`]/[`SERVICE_ACCOUNT`] with [`ROLE_ARN`].
    ///
    /// # Errors
    /// When the binary is missing (build it: `cargo build -p podid`), or
    /// the fake, the server or a CLI call fails.
    pub fn start(args: &[&str]) -> Result<StsBroker, HarnessError> {
        let binary = podid_binary();
        if !binary.exists() {
            return Err(HarnessError::Io {
                what: format!("{} (build it: cargo build -p podid)", binary.display()),
                source: std::io::ErrorKind::NotFound.into(),
            });
        }
        let sts = FakeSts::start()?;
        let dir = fresh_dir()?;
        let key = SigningKey::generate(DevAlgorithm::Rs256, "sts-failures-1").map_err(|e| {
            HarnessError::Io {
                what: "generating the cluster's signing key".into(),
                source: std::io::Error::other(e.to_string()),
            }
        })?;
        let keys = write_keys_file(&dir)?;
        let server = PodidServerLaunch::new(&binary)
            .args([
                "--database-url",
                &format!("sqlite://{}", dir.join("podid.db").display()),
            ])
            .args([std::ffi::OsStr::new("--keys-file"), keys.as_os_str()])
            .args(["--sts-endpoint", &sts.url])
            .args(args)
            .aws_test_key(&BROKER_KEY)
            .env_remove("PODID_DATABASE_URL")
            .stderr(StderrTo::File(dir.join("server.log")))
            .start()?;
        let broker = StsBroker {
            sts,
            server: Some(server),
            key,
            dir,
        };
        let jwks = broker.dir.join("jwks.json");
        std::fs::write(&jwks, broker.key.jwks().to_string()).map_err(|source| {
            HarnessError::Io {
                what: format!("writing {}", jwks.display()),
                source,
            }
        })?;
        let jwks = jwks.display().to_string();
        broker.cli(&[
            "cluster",
            "register",
            "--name",
            CLUSTER,
            "--issuer",
            ISSUER,
            "--jwks-file",
            &jwks,
        ])?;
        broker.associate(CLUSTER)?;
        Ok(broker)
    }

    /// Associates [`NAMESPACE`]/[`SERVICE_ACCOUNT`] of `cluster` with [`ROLE_ARN`] (the CLI).
    ///
    /// # Errors
    /// When the CLI call fails.
    pub fn associate(&self, cluster: &str) -> Result<Output, HarnessError> {
        self.cli(&[
            "association",
            "create",
            "--cluster-name",
            cluster,
            "--namespace",
            NAMESPACE,
            "--service-account",
            SERVICE_ACCOUNT,
            "--role-arn",
            ROLE_ARN,
        ])
    }

    /// `http://ADDR` of the server (empty after [`StsBroker::stop`]).
    pub fn endpoint(&self) -> String {
        self.server
            .as_ref()
            .map(|s| s.endpoint.clone())
            .unwrap_or_default()
    }

    /// Runs a `podid` CLI verb against the server as the admin (bounded: 60 s).
    ///
    /// # Errors
    /// When it fails or does not finish in time.
    pub fn cli(&self, args: &[&str]) -> Result<Output, HarnessError> {
        let mut command = Command::new(podid_binary());
        command.args(args).args(["--endpoint", &self.endpoint()]);
        with_aws_key(&mut command, &ADMIN);
        run_to_success(
            &format!("podid {}", args.join(" ")),
            command,
            Duration::from_secs(60),
        )
    }

    /// Starts `podid agent` for [`CLUSTER`] on 127.0.0.1 (port 0) asking
    /// this server, signing with the node key, with its default upstream
    /// settings; returns it (killed on drop) and its credential address.
    ///
    /// # Errors
    /// When it does not start or print its address within 60 s.
    pub fn start_agent(&self) -> Result<(ChildProcess, SocketAddr), HarnessError> {
        let mut command = Command::new(podid_binary());
        command
            .arg("agent")
            .args(loopback_agent_args(CLUSTER, &self.endpoint()))
            .env("PODID_LOG", "warn")
            .stdin(Stdio::null())
            .stderr(Stdio::null());
        with_aws_key(&mut command, &NODE);
        let mut agent = ChildProcess::spawn("podid agent", command, false)?;
        let line = agent.wait_for_line(AGENT_LISTENING, Duration::from_secs(60))?;
        let addr = line.parse().map_err(|source| HarnessError::Address {
            what: "podid agent".into(),
            line,
            source,
        })?;
        Ok((agent, addr))
    }

    /// A projected token of pod `pod` (uid `uid-{pod}`) of
    /// [`NAMESPACE`]/[`SERVICE_ACCOUNT`], issued now, valid a day, signed
    /// with the cluster's key.
    pub fn token(&self, pod: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut t = ProjectedToken::new(ISSUER, NAMESPACE, SERVICE_ACCOUNT, now);
        t.pod_name = pod.to_owned();
        t.pod_uid = format!("uid-{pod}");
        t.sign(&self.key)
    }

    /// Stops the server with SIGTERM (bounded: 10 s, then SIGKILL) and
    /// returns its whole log (stderr, written to a file), read after it
    /// exited and so flushed.
    ///
    /// # Errors
    /// When the log cannot be read.
    pub fn stop(&mut self) -> Result<String, HarnessError> {
        if let Some(server) = self.server.take() {
            server.terminate(Duration::from_secs(10));
        }
        let path = self.dir.join("server.log");
        std::fs::read_to_string(&path).map_err(|source| HarnessError::Io {
            what: format!("reading {}", path.display()),
            source,
        })
    }

    /// The directory holding the database and keys file.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The process's AWS credentials are `key` and nothing else.
fn with_aws_key(command: &mut Command, key: &TestKey) {
    for (name, value) in aws_key_env(key.access_key_id, key.secret_access_key) {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
}

impl Drop for StsBroker {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
