//! The benchmarks' HTTP client: hyper's HTTP/1.1 client connection, one
//! keep-alive connection per caller, for sequential requests.

use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// A status, the response headers and the body.
pub type Answer = (u16, http::HeaderMap, Bytes);

/// A keep-alive HTTP/1.1 connection.
pub struct HttpConnection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: String,
}

impl HttpConnection {
    /// Connects to `addr` (TCP_NODELAY).
    pub async fn open(addr: SocketAddr) -> anyhow::Result<HttpConnection> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(HttpConnection {
            sender,
            host: addr.to_string(),
        })
    }

    /// `GET path` with `headers` (and `Host: ADDR`).
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Answer> {
        let mut request = http::Request::get(path).header(http::header::HOST, &self.host);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        self.send(request.body(Full::new(Bytes::new()))?).await
    }

    /// Sends `request` as it is and reads the whole answer.
    pub async fn send(&mut self, request: http::Request<Full<Bytes>>) -> anyhow::Result<Answer> {
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, headers, body))
    }
}

/// One `GET` on a new connection.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Answer> {
    HttpConnection::open(addr).await?.get(path, headers).await
}
