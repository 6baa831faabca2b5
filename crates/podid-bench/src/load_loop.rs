//! The broker benchmark's load generators over keep-alive connections: hyper's
//! client in a task per connection, or one thread busy-polling raw sockets
//! (kept for the broker benchmark, which measures the server and not its
//! wake-ups: docs/benchmarks.md, "Broker throughput").

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context};

use crate::http_client::HttpConnection;
use crate::signing::SignedCall;

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
        crate::report::per_second(self.requests, self.seconds)
    }
}

/// Sends every call of `calls` once, over `connections` keep-alive
/// connections (hyper's client, a tokio task each), each sending its next
/// call when the previous answer is in.
pub async fn closed_loop(
    addr: SocketAddr,
    calls: Arc<Vec<SignedCall>>,
    connections: usize,
) -> anyhow::Result<LoadResult> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        conns.push(HttpConnection::open(addr).await?);
    }
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(connections);
    for mut conn in conns {
        let (calls, next) = (calls.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            let mut first_error = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(call) = calls.get(i) else {
                    break;
                };
                let t = Instant::now();
                let (status, _, body) = conn.send(call.to_request()?).await?;
                latencies.push(t.elapsed().as_secs_f64() * 1e6);
                if status != 200 {
                    errors += 1;
                    if first_error.is_none() {
                        first_error =
                            Some(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)));
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
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head) = response.parse(buf).context("a malformed answer")?
    else {
        return Ok(None);
    };
    let status = response
        .code
        .ok_or_else(|| anyhow!("an answer without a status"))?;
    let mut length = 0usize;
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .context("content-length")?;
        }
    }
    let total = head + length;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_complete_once_their_body_is_in() {
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(complete_answer(&answer[..20]).ok(), Some(None));
        assert_eq!(
            complete_answer(&answer[..answer.len() - 1]).ok(),
            Some(None)
        );
        assert_eq!(
            complete_answer(answer).ok(),
            Some(Some((200, answer.len())))
        );
        assert!(complete_answer(b"garbage\r\n\r\n").is_err());
    }
}
