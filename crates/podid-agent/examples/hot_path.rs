//! Rough in-process comparison of the agent's cached hot path with a minimal
//! hyper server answering the same bytes:
//! `cargo run --release -p podid-agent --example hot_path [connections] [seconds]`.
//! Server and load each get one runtime thread; for real numbers use a load
//! generator (oha, wrk) against the `podid agent` process.
#![allow(missing_docs, clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use podid_agent::upstream::Secret;
use podid_agent::{Agent, AgentConfig, CredentialSource, FetchedCredentials, SystemClock, UpstreamError};

struct Fixed;

#[async_trait]
impl CredentialSource for Fixed {
    async fn fetch(&self, _token: &str) -> Result<FetchedCredentials, UpstreamError> {
        Ok(FetchedCredentials {
            access_key_id: "ASIAXXXXXXXXXXXXXXXX".into(),
            secret_access_key: Secret::new("x".repeat(40)),
            session_token: Secret::new("y".repeat(800)),
            expiration: SystemTime::now() + Duration::from_secs(3600),
            assumed_role_arn: "arn:aws:sts::111122223333:assumed-role/r/s".into(),
        })
    }
}

async fn load(addr: SocketAddr, token: Arc<str>, connections: usize, seconds: u64) -> u64 {
    let count = Arc::new(AtomicU64::new(0));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (count, token) = (count.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
            tokio::spawn(connection);
            let host = addr.to_string();
            while tokio::time::Instant::now() < deadline {
                let request = http::Request::get("/v1/credentials")
                    .header("host", &host)
                    .header("authorization", &*token)
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let response = sender.send_request(request).await.unwrap();
                assert_eq!(response.status(), 200);
                let _ = response.into_body().collect().await.unwrap();
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    count.load(Ordering::Relaxed)
}

async fn minimal_server(body: Bytes) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = stream.set_nodelay(true);
            let body = body.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_| {
                    let mut response = http::Response::new(Full::new(body.clone()));
                    response
                        .headers_mut()
                        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    addr
}

fn main() {
    let mut args = std::env::args().skip(1);
    let connections: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let server = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let client = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let exp = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() + 3600;
    let claims = format!(
        r#"{{"iss":"https://oidc.example.com/id/ABCDEF","sub":"system:serviceaccount:default:sa","aud":["pods.eks.amazonaws.com"],"exp":{exp},"kubernetes.io":{{"namespace":"default","pod":{{"name":"p","uid":"0d7c5b4e-1111-2222-3333-444455556666"}}}}}}"#
    );
    let token: Arc<str> =
        format!("{}.{}.{}", b64(br#"{"alg":"RS256","kid":"abc"}"#), b64(claims.as_bytes()), b64(&[7u8; 256])).into();
    let (agent_addr, minimal_addr) = server.block_on(async {
        let config = AgentConfig {
            bind_hosts: vec!["127.0.0.1".parse().unwrap()],
            port: 0,
            probe_port: 0,
            metrics_port: 0,
            ..AgentConfig::default()
        };
        let agent = Agent::bind(config, Arc::new(Fixed), Arc::new(SystemClock)).await.unwrap();
        let addr = agent.credential_addrs()[0];
        let body = agent.cache().get(&token).await.unwrap().body;
        tokio::spawn(agent.serve(std::future::pending()));
        (addr, minimal_server(body).await)
    });
    for round in 1..=3 {
        let agent = client.block_on(load(agent_addr, token.clone(), connections, seconds)) / seconds;
        let minimal = client.block_on(load(minimal_addr, token.clone(), connections, seconds)) / seconds;
        println!(
            "round {round}: agent {agent} req/s, minimal hyper {minimal} req/s, ratio {:.2}",
            agent as f64 / minimal as f64
        );
    }
}
