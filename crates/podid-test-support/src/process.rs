//! A child process whose stdout is read line by line (so it never blocks on
//! a full pipe), with bounded waits for the lines it prints, its stderr
//! optionally captured, and a kill when dropped.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::HarnessError;

/// A running child process, killed on drop.
#[derive(Debug)]
pub struct ChildProcess {
    name: String,
    child: Option<Child>,
    pid: u32,
    lines: Receiver<String>,
    stderr: Option<Arc<Mutex<String>>>,
    /// Closed when the stderr reader has read everything.
    stderr_done: Option<Receiver<()>>,
}

impl ChildProcess {
    /// Starts `command` (called `name` in errors) with its stdout piped;
    /// its stderr is captured when `capture_stderr`, else left as `command`
    /// sets it.
    ///
    /// # Errors
    /// [`HarnessError::Spawn`] when the process cannot be started.
    pub fn spawn(
        name: &str,
        mut command: Command,
        capture_stderr: bool,
    ) -> Result<ChildProcess, HarnessError> {
        command.stdout(Stdio::piped());
        if capture_stderr {
            command.stderr(Stdio::piped());
        }
        let mut child = command.spawn().map_err(|source| HarnessError::Spawn {
            what: name.to_owned(),
            source,
        })?;
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let stderr = child
            .stderr
            .take()
            .filter(|_| capture_stderr)
            .map(|mut pipe| {
                let sink = Arc::new(Mutex::new(String::new()));
                let into = sink.clone();
                std::thread::spawn(move || {
                    let _done = done_tx;
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = pipe.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        if let Ok(mut text) = into.lock() {
                            text.push_str(&String::from_utf8_lossy(&buf[..n]));
                        }
                    }
                });
                sink
            });
        let (tx, lines) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                // Keeps reading after the receiver is gone: the pipe never fills.
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let _ = tx.send(line);
                }
            });
        }
        Ok(ChildProcess {
            name: name.to_owned(),
            pid: child.id(),
            child: Some(child),
            lines,
            stderr_done: stderr.is_some().then_some(done_rx),
            stderr,
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What it wrote to stderr so far, when captured (else empty).
    pub fn stderr(&self) -> String {
        self.stderr
            .as_ref()
            .and_then(|s| s.lock().ok().map(|s| s.clone()))
            .unwrap_or_default()
    }

    /// Reads stdout lines until one starts with `prefix`, for at most
    /// `timeout`; returns the rest of that line, trimmed. Lines before it
    /// are skipped.
    ///
    /// # Errors
    /// [`HarnessError::NoLine`] after `timeout`, [`HarnessError::Exited`]
    /// when stdout closes first.
    pub fn wait_for_line(
        &mut self,
        prefix: &str,
        timeout: Duration,
    ) -> Result<String, HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return Ok(rest.trim().to_owned());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(HarnessError::NoLine {
                        what: self.name.clone(),
                        prefix: prefix.to_owned(),
                        timeout,
                        stderr: self.stderr(),
                    })
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // The stderr reader may still be copying the last words.
                    self.wait_stderr_closed(Duration::from_secs(2));
                    return Err(HarnessError::Exited {
                        what: self.name.clone(),
                        prefix: prefix.to_owned(),
                        stderr: self.stderr(),
                    });
                }
            }
        }
    }

    /// [`ChildProcess::wait_for_line`] for each of `prefixes`, in any order
    /// of the lines, all within `timeout`; the rests in the order of `prefixes`.
    ///
    /// # Errors
    /// As [`ChildProcess::wait_for_line`], for the first prefix not seen.
    pub fn wait_for_lines(
        &mut self,
        prefixes: &[&str],
        timeout: Duration,
    ) -> Result<Vec<String>, HarnessError> {
        let deadline = Instant::now() + timeout;
        let mut found: Vec<Option<String>> = vec![None; prefixes.len()];
        while let Some(missing) = found.iter().position(Option::is_none) {
            let left = deadline.saturating_duration_since(Instant::now());
            let (what, prefix) = (self.name.clone(), prefixes[missing].to_owned());
            let line = match self.lines.recv_timeout(left) {
                Ok(line) => line,
                Err(RecvTimeoutError::Timeout) => {
                    let stderr = self.stderr();
                    return Err(HarnessError::NoLine {
                        what,
                        prefix,
                        timeout,
                        stderr,
                    });
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.wait_stderr_closed(Duration::from_secs(2));
                    let stderr = self.stderr();
                    return Err(HarnessError::Exited {
                        what,
                        prefix,
                        stderr,
                    });
                }
            };
            for (slot, prefix) in found.iter_mut().zip(prefixes) {
                if let (None, Some(rest)) = (&slot, line.strip_prefix(prefix)) {
                    *slot = Some(rest.trim().to_owned());
                    break;
                }
            }
        }
        Ok(found.into_iter().flatten().collect())
    }

    /// Waits (bounded) until the process exits, after SIGTERM; SIGKILL
    /// after `timeout`. The exit status, or `None` when it had to be killed.
    pub fn terminate(mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let (tx, rx) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let status = child.wait();
            let _ = tx.send(());
            (child, status)
        });
        let exited = rx.recv_timeout(timeout).is_ok();
        if !exited {
            let _ = Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
        }
        let (_, status) = waiter.join().ok()?;
        status.ok().filter(|_| exited)
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Gives the stderr reader up to `limit` to copy what is left in the pipe.
    fn wait_stderr_closed(&mut self, limit: Duration) {
        if let Some(done) = &self.stderr_done {
            let _ = done.recv_timeout(limit);
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `command` (called `name` in errors) to its end, for at most
/// `timeout`, with its stdout and stderr captured; its output when it
/// exits with success.
///
/// # Errors
/// [`HarnessError::Spawn`], [`HarnessError::Failed`] (with its stderr) for a
/// failure status, [`HarnessError::Timeout`] (it is killed) after `timeout`.
pub fn run_to_success(
    name: &str,
    mut command: Command,
    timeout: Duration,
) -> Result<Output, HarnessError> {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| HarnessError::Spawn {
            what: name.to_owned(),
            source,
        })?;
    let pid = child.id().to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(timeout) {
        Ok(output) => output.map_err(|source| HarnessError::Io {
            what: format!("waiting for {name}"),
            source,
        })?,
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            return Err(HarnessError::Timeout {
                what: name.to_owned(),
                timeout,
            });
        }
    };
    if !output.status.success() {
        return Err(HarnessError::Failed {
            what: name.to_owned(),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(output)
}
