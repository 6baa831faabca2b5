//! A `podid server` process on 127.0.0.1:0: how to launch it, and its bound
//! addresses read from its "listening on" lines (the API's, the metrics').

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::keys::{aws_key_env, TestKey, ACCOUNT_ID};
use crate::process::ChildProcess;
use crate::HarnessError;

/// What `podid server` prints first on stdout.
pub const LISTENING: &str = "podid server listening on ";

/// What `podid server` prints next: the metrics listener's address.
pub const METRICS_LISTENING: &str = "podid server metrics listening on ";

/// The `podid` binary for tests outside the `podid` crate: `$PODID_BIN`,
/// else the workspace's `target/debug/podid` (`$CARGO_TARGET_DIR` honoured).
/// It may not exist yet: check before use.
pub fn podid_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PODID_BIN") {
        return PathBuf::from(path);
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .join("debug/podid")
}

/// Where the server's stderr goes.
#[derive(Debug, Clone)]
pub enum StderrTo {
    /// Kept in memory ([`PodidServerProcess::stderr`]).
    Capture,
    /// Into a new file.
    File(PathBuf),
    /// Discarded.
    Null,
}

/// How to launch `podid server`: `--listen 127.0.0.1:0 --metrics-listen
/// 127.0.0.1:0 --region us-east-1 --account-id 111122223333`,
/// `PODID_LOG=info`, stderr captured, then what the builder adds.
#[derive(Clone)]
pub struct PodidServerLaunch {
    binary: PathBuf,
    wrapper: Vec<OsString>,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    stderr: StderrTo,
    timeout: Duration,
}

/// The binary and arguments; of the environment only the names (it may hold a secret key).
impl std::fmt::Debug for PodidServerLaunch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env: Vec<_> = self.env.iter().map(|(k, _)| k).collect();
        f.debug_struct("PodidServerLaunch")
            .field("binary", &self.binary)
            .field("args", &self.args)
            .field("env", &env)
            .finish_non_exhaustive()
    }
}

impl PodidServerLaunch {
    /// `binary server` with the defaults above.
    pub fn new(binary: impl Into<PathBuf>) -> PodidServerLaunch {
        let args = [
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--region",
            "us-east-1",
            "--account-id",
            ACCOUNT_ID,
        ];
        PodidServerLaunch {
            binary: binary.into(),
            wrapper: Vec::new(),
            args: args.iter().map(OsString::from).collect(),
            env: vec![("PODID_LOG".into(), Some("info".into()))],
            stderr: StderrTo::Capture,
            timeout: Duration::from_secs(60),
        }
    }

    /// Adds arguments after the defaults.
    pub fn args<I, S>(mut self, args: I) -> PodidServerLaunch
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable (the last setting wins).
    pub fn env(
        mut self,
        key: impl Into<OsString>,
        value: impl Into<OsString>,
    ) -> PodidServerLaunch {
        self.env.push((key.into(), Some(value.into())));
        self
    }

    /// Removes an environment variable.
    pub fn env_remove(mut self, key: impl Into<OsString>) -> PodidServerLaunch {
        self.env.push((key.into(), None));
        self
    }

    /// `PODID_LOG`.
    pub fn log(self, filter: &str) -> PodidServerLaunch {
        self.env("PODID_LOG", filter)
    }

    /// The AWS credentials of the process are `key` and nothing else: no
    /// profile, no session token, no config files, no instance metadata.
    pub fn aws_key(self, access_key_id: &str, secret_access_key: &str) -> PodidServerLaunch {
        aws_key_env(access_key_id, secret_access_key)
            .into_iter()
            .fold(self, |launch, (name, value)| match value {
                Some(value) => launch.env(name, value),
                None => launch.env_remove(name),
            })
    }

    /// [`PodidServerLaunch::aws_key`] with a test key.
    pub fn aws_test_key(self, key: &TestKey) -> PodidServerLaunch {
        self.aws_key(key.access_key_id, key.secret_access_key)
    }

    /// Serves HTTPS with this certificate chain and key (PEM files, reloaded
    /// when they change); the endpoint is then `https://ADDR`.
    pub fn tls(self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> PodidServerLaunch {
        self.args([
            OsString::from("--tls-cert"),
            cert.as_ref().into(),
            OsString::from("--tls-key"),
            key.as_ref().into(),
        ])
    }

    /// Runs the binary through these words (e.g. `nice -n -19 taskset -c 0`).
    pub fn wrapped_in(mut self, words: Vec<OsString>) -> PodidServerLaunch {
        self.wrapper = words;
        self
    }

    /// Where stderr goes.
    pub fn stderr(mut self, to: StderrTo) -> PodidServerLaunch {
        self.stderr = to;
        self
    }

    /// How long the server may take to print its address (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> PodidServerLaunch {
        self.timeout = timeout;
        self
    }

    /// Starts the server and waits (bounded) for its "listening on" line.
    ///
    /// # Errors
    /// When it cannot start, exits, or prints no address in time (with its
    /// captured stderr, or its log file's text, in the error).
    pub fn start(self) -> Result<PodidServerProcess, HarnessError> {
        let mut words = self.wrapper.clone();
        words.push(self.binary.clone().into());
        let mut cmd = Command::new(&words[0]);
        cmd.args(&words[1..]).arg("server").args(&self.args);
        for (k, v) in &self.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd.stdin(Stdio::null());
        let capture = match &self.stderr {
            StderrTo::Capture => true,
            StderrTo::Null => {
                cmd.stderr(Stdio::null());
                false
            }
            StderrTo::File(path) => {
                let file = std::fs::File::create(path).map_err(|source| HarnessError::Io {
                    what: format!("creating {}", path.display()),
                    source,
                })?;
                cmd.stderr(file);
                false
            }
        };
        let what = format!("{} server", self.binary.display());
        let mut process = ChildProcess::spawn(&what, cmd, capture)?;
        let endpoint = process
            .wait_for_line(LISTENING, self.timeout)
            .map_err(|e| self.with_log(e))?;
        let metrics_listen = self.args.iter().rposition(|a| a == "--metrics-listen");
        let metrics = if metrics_listen.and_then(|i| self.args.get(i + 1)) == Some(&"none".into()) {
            None
        } else {
            Some(
                process
                    .wait_for_line(METRICS_LISTENING, self.timeout)
                    .map_err(|e| self.with_log(e))?,
            )
        };
        let address = |line: &str| {
            line.trim_start_matches("https://")
                .trim_start_matches("http://")
                .parse()
                .map_err(|source| HarnessError::Address {
                    what: what.clone(),
                    line: line.to_owned(),
                    source,
                })
        };
        let addr = address(&endpoint)?;
        let metrics_addr = metrics.as_deref().map(address).transpose()?;
        Ok(PodidServerProcess {
            process,
            endpoint,
            addr,
            metrics_addr,
        })
    }

    /// A start error with the log file's text, when stderr went to one.
    fn with_log(&self, error: HarnessError) -> HarnessError {
        let StderrTo::File(path) = &self.stderr else {
            return error;
        };
        let log = std::fs::read_to_string(path).unwrap_or_default();
        match error {
            HarnessError::NoLine {
                what,
                prefix,
                timeout,
                ..
            } => HarnessError::NoLine {
                what,
                prefix,
                timeout,
                stderr: log,
            },
            HarnessError::Exited { what, prefix, .. } => HarnessError::Exited {
                what,
                prefix,
                stderr: log,
            },
            other => other,
        }
    }
}

/// A running `podid server`, killed on drop.
#[derive(Debug)]
pub struct PodidServerProcess {
    process: ChildProcess,
    /// `http://ADDR`, or `https://ADDR` with TLS.
    pub endpoint: String,
    /// The bound address.
    pub addr: SocketAddr,
    /// The metrics listener's bound address (`None` with `--metrics-listen none`).
    pub metrics_addr: Option<SocketAddr>,
}

impl PodidServerProcess {
    /// `http://METRICS_ADDR/metrics`, when the metrics listener is on.
    pub fn metrics_url(&self) -> Option<String> {
        self.metrics_addr.map(|a| format!("http://{a}/metrics"))
    }

    /// Its process id (`nice` and `taskset` exec the server: the same process).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// What it wrote to stderr so far (when captured).
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// SIGTERM, then a bounded wait for the exit; SIGKILL after `timeout`.
    /// The exit status, or `None` when it had to be killed.
    pub fn terminate(self, timeout: Duration) -> Option<ExitStatus> {
        self.process.terminate(timeout)
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(self) {
        self.process.kill();
    }
}
