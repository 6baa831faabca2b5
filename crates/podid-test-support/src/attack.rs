//! Hostile HTTP clients, for tests that attack a listener: half-open
//! connections (a request's start, never finished), a head sent a byte at a
//! time, a body announced large and trickled, a kept-alive connection whose
//! next request trickles; each reports when the server closed it. And a
//! process's memory, read from `/proc/PID/status`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::HarnessError;

/// A byte stream to a server, plain or TLS.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Where the hostile clients connect: plain TCP, or TLS trusting a CA.
#[derive(Clone)]
pub struct Target {
    /// The server's address.
    pub addr: SocketAddr,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Target {
    /// Plain TCP to `addr`.
    pub fn plain(addr: SocketAddr) -> Target {
        Target { addr, tls: None }
    }

    /// TLS to `addr` (as `localhost`) with `config`.
    pub fn tls(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Target {
        Target {
            addr,
            tls: Some(tokio_rustls::TlsConnector::from(config)),
        }
    }

    /// A TCP connection, without TLS even for a TLS target.
    ///
    /// # Errors
    /// When the connection fails.
    pub async fn tcp(&self) -> std::io::Result<TcpStream> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        Ok(tcp)
    }

    /// A connection ready for HTTP (the TLS handshake done for a TLS target).
    ///
    /// # Errors
    /// When the connection or the handshake fails.
    pub async fn connect(&self) -> std::io::Result<Box<dyn Stream>> {
        let tcp = self.tcp().await?;
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some(connector) => {
                let name = rustls_pki_types::ServerName::try_from("localhost")
                    .map_err(std::io::Error::other)?;
                Ok(Box::new(connector.connect(name, tcp).await?))
            }
        }
    }
}

/// How one hostile connection ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The server closed the connection (EOF or reset) before the client gave up.
    pub closed: bool,
    /// From the start of the phase under attack to the close (or to giving up).
    pub after: Duration,
    /// Bytes the client sent in that phase.
    pub sent: usize,
    /// What the server sent in that phase.
    pub received: Vec<u8>,
}

impl Outcome {
    /// The HTTP status the server answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        let text = std::str::from_utf8(self.received.get(..12)?).ok()?;
        text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
    }
}

/// Sends `bytes` one at a time, one every `every`, and reads whatever the
/// server sends, until the server closes the connection or `limit` has
/// passed since `since` (the start of the phase under attack).
pub async fn trickle(
    conn: &mut (impl Stream + ?Sized),
    bytes: &[u8],
    every: Duration,
    since: Instant,
    limit: Duration,
) -> Outcome {
    let give_up = since + limit;
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut sent, mut received, mut buf) = (0, Vec::new(), [0u8; 4096]);
    let end = |closed: bool, sent, received| Outcome {
        closed,
        after: since.elapsed(),
        sent,
        received,
    };
    loop {
        tokio::select! {
            read = conn.read(&mut buf) => match read {
                Ok(0) | Err(_) => return end(true, sent, received),
                Ok(n) => received.extend_from_slice(&buf[..n]),
            },
            _ = ticker.tick(), if sent < bytes.len() => {
                let byte = &bytes[sent..=sent];
                if conn.write_all(byte).await.is_err() || conn.flush().await.is_err() {
                    return end(true, sent, received);
                }
                sent += 1;
            }
            () = tokio::time::sleep_until(give_up) => return end(false, sent, received),
        }
    }
}

/// Reads one HTTP/1.1 answer with a `Content-Length` (head and body), for at most `limit`.
///
/// # Errors
/// When the connection ends first, the answer has no length, or `limit` passes.
pub async fn read_answer(
    conn: &mut (impl Stream + ?Sized),
    limit: Duration,
) -> std::io::Result<Vec<u8>> {
    let read = async {
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or_else(|| std::io::Error::other("an answer without content-length"))?;
                if answer.len() >= end + 4 + length {
                    return Ok(answer);
                }
            }
            let n = conn.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            answer.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// What the hostile clients of one [`Attack`] send.
#[derive(Debug, Clone)]
pub struct AttackPlan {
    /// Connections that send [`AttackPlan::partial_head`] and then nothing.
    pub half_open: usize,
    /// Connections that send nothing at all (to a TLS server: no handshake).
    pub silent: usize,
    /// A request's start, never finished.
    pub partial_head: Vec<u8>,
    /// A head trickled byte by byte (long enough not to end within `limit`).
    pub slow_head: Vec<u8>,
    /// A complete head announcing a large body, sent at once.
    pub slow_body_head: Vec<u8>,
    /// That body, trickled.
    pub slow_body: Vec<u8>,
    /// A complete request, answered; then [`AttackPlan::slow_head`] trickles
    /// on the same connection.
    pub keep_alive_request: Vec<u8>,
    /// Pause between two trickled bytes.
    pub every: Duration,
    /// Each client gives up this long after its phase started.
    pub limit: Duration,
}

impl AttackPlan {
    /// A plan against `method path` on `host`: 500 half-open connections,
    /// none silent, a byte every 100 ms, 30 s for everything.
    pub fn new(host: &str, method: &str, path: &str) -> AttackPlan {
        let slow_head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nX-Slow: {}",
            "a".repeat(4096)
        );
        AttackPlan {
            half_open: 500,
            silent: 0,
            partial_head: format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nX-Half: ")
                .into_bytes(),
            slow_head: slow_head.into_bytes(),
            slow_body_head: format!(
                "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
                 Content-Length: 100000\r\n\r\n"
            )
            .into_bytes(),
            slow_body: vec![b' '; 4096],
            keep_alive_request: format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n")
                .into_bytes(),
            every: Duration::from_millis(100),
            limit: Duration::from_secs(30),
        }
    }
}

/// How every hostile client of an [`Attack`] ended.
#[derive(Debug)]
pub struct AttackReport {
    /// The half-open connections, from their connection.
    pub half_open: Vec<Outcome>,
    /// The silent connections, from their connection.
    pub silent: Vec<Outcome>,
    /// The slow head, from the connection.
    pub slow_head: Outcome,
    /// The slow body, from the moment its head was sent.
    pub slow_body: Outcome,
    /// The kept-alive connection, from the moment its first answer was read.
    pub keep_alive: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    HalfOpen,
    Silent,
    SlowHead,
    SlowBody,
    KeepAlive,
}

/// Hostile clients running against one server at the same time.
#[derive(Debug)]
pub struct Attack {
    tasks: JoinSet<std::io::Result<(Role, Outcome)>>,
}

impl Attack {
    /// Starts every client of `plan` against `target` and returns once each
    /// has sent what it sends at once (the half-open heads, the slow body's
    /// head, the kept-alive request answered) or failed to, within
    /// `plan.limit`. (Clients in place early may be cut before the last ones are.)
    ///
    /// # Errors
    /// When the clients are not all in place within `plan.limit`.
    pub async fn launch(target: &Target, plan: &AttackPlan) -> Result<Attack, HarnessError> {
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut tasks = JoinSet::new();
        let roles = std::iter::repeat_n(Role::HalfOpen, plan.half_open)
            .chain(std::iter::repeat_n(Role::Silent, plan.silent))
            .chain([Role::SlowHead, Role::SlowBody, Role::KeepAlive]);
        let mut clients = 0;
        for role in roles {
            clients += 1;
            let (target, plan, ready) = (target.clone(), plan.clone(), ready_tx.clone());
            tasks.spawn(async move {
                match client(role, &target, &plan, &ready).await {
                    Ok(outcome) => Ok((role, outcome)),
                    Err(e) => {
                        // Not in place, but no longer awaited: finish() reports it.
                        let _ = ready.send(());
                        Err(e)
                    }
                }
            });
        }
        drop(ready_tx);
        let all_ready = async {
            for _ in 0..clients {
                if ready_rx.recv().await.is_none() {
                    break;
                }
            }
        };
        let io = |what: &str, source| HarnessError::Io {
            what: what.to_owned(),
            source,
        };
        if tokio::time::timeout(plan.limit, all_ready).await.is_err() {
            return Err(io(
                "hostile clients not in place in time",
                std::io::ErrorKind::TimedOut.into(),
            ));
        }
        Ok(Attack { tasks })
    }

    /// Waits for every client to end (each gives up at its `limit`).
    ///
    /// # Errors
    /// When a client failed to connect or send.
    pub async fn finish(mut self) -> Result<AttackReport, HarnessError> {
        let (mut half_open, mut silent, mut single) = (Vec::new(), Vec::new(), Vec::new());
        while let Some(done) = self.tasks.join_next().await {
            let (role, outcome) = done
                .map_err(std::io::Error::other)
                .and_then(|r| r)
                .map_err(|source| HarnessError::Io {
                    what: "a hostile client".to_owned(),
                    source,
                })?;
            match role {
                Role::HalfOpen => half_open.push(outcome),
                Role::Silent => silent.push(outcome),
                other => single.push((other, outcome)),
            }
        }
        let mut take = |role| {
            single
                .iter()
                .position(|(r, _)| *r == role)
                .map(|i| single.swap_remove(i).1)
                .ok_or_else(|| HarnessError::Io {
                    what: format!("no outcome of {role:?}"),
                    source: std::io::ErrorKind::NotFound.into(),
                })
        };
        Ok(AttackReport {
            half_open,
            silent,
            slow_head: take(Role::SlowHead)?,
            slow_body: take(Role::SlowBody)?,
            keep_alive: take(Role::KeepAlive)?,
        })
    }
}

/// One hostile client: sets up its phase, says so on `ready`, then trickles.
async fn client(
    role: Role,
    target: &Target,
    plan: &AttackPlan,
    ready: &tokio::sync::mpsc::UnboundedSender<()>,
) -> std::io::Result<Outcome> {
    let (every, limit) = (plan.every, plan.limit);
    if role == Role::Silent {
        let started = Instant::now();
        let mut tcp = target.tcp().await?;
        let _ = ready.send(());
        return Ok(trickle(&mut tcp, &[], every, started, limit).await);
    }
    let started = Instant::now();
    let mut conn = target.connect().await?;
    let (since, trickled) = match role {
        Role::HalfOpen => {
            send(&mut conn, &plan.partial_head).await?;
            (started, &[][..])
        }
        Role::SlowBody => {
            send(&mut conn, &plan.slow_body_head).await?;
            (Instant::now(), &plan.slow_body[..])
        }
        Role::KeepAlive => {
            send(&mut conn, &plan.keep_alive_request).await?;
            read_answer(&mut conn, limit).await?;
            (Instant::now(), &plan.slow_head[..])
        }
        Role::SlowHead | Role::Silent => (started, &plan.slow_head[..]),
    };
    let _ = ready.send(());
    Ok(trickle(&mut conn, trickled, every, since, limit).await)
}

async fn send(conn: &mut Box<dyn Stream>, bytes: &[u8]) -> std::io::Result<()> {
    conn.write_all(bytes).await?;
    conn.flush().await
}

/// A process's resident memory, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`: resident now, KiB.
    pub rss_kib: u64,
    /// `VmHWM`: the most ever resident, KiB.
    pub hwm_kib: u64,
}

/// Reads `pid`'s `VmRSS` and `VmHWM`.
///
/// # Errors
/// When the file cannot be read or lacks either line.
pub fn memory(pid: u32) -> Result<Memory, HarnessError> {
    let path = format!("/proc/{pid}/status");
    let io = |source| HarnessError::Io {
        what: format!("reading {path}"),
        source,
    };
    let status = std::fs::read_to_string(&path).map_err(io)?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .ok_or_else(|| io(std::io::Error::other(format!("no {name} line"))))
    };
    Ok(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}
