//! `podid-bench baseline`: the hot path's baseline, a minimal hyper server
//! answering every request with a file's bytes (docs/benchmarks.md, "Agent hot path").

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http_body_util::Full;
use hyper_util::rt::TokioIo;

/// `podid-bench baseline`.
#[derive(Debug, clap::Args)]
pub struct BaselineArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The body to answer with (the agent's cached answer).
    #[arg(long)]
    body_file: PathBuf,
}

/// Serves until killed, printing `baseline listening on ADDR` first.
pub async fn run(args: BaselineArgs) -> anyhow::Result<()> {
    let body = Bytes::from(
        std::fs::read(&args.body_file).with_context(|| args.body_file.display().to_string())?,
    );
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("baseline listening on {}", listener.local_addr()?);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.keep_alive(true);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("accept failed: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        let service = hyper::service::service_fn(move |_request| {
            let mut response = http::Response::new(Full::new(body.clone()));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            std::future::ready(Ok::<_, std::convert::Infallible>(response))
        });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}
