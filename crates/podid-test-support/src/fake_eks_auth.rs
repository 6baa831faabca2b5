//! A fake EKS Auth: answers `POST /clusters/{cluster}/assume-role-for-pod-identity`
//! with credentials shaped like real ones (or with a chosen error, or never),
//! whatever the token and signature, on a runtime of its own so that it can
//! be killed outright. Counts its calls and can record what it was sent.
//! Its change feed (`GET /podid/v1/clusters/{cluster}/changes`) is a quiet
//! one: no change ever, each long poll answered after its `waitSeconds`, as a
//! podid server answers agents of a cluster nobody changes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use rand::distr::Alphanumeric;
use rand::{Rng as _, RngCore as _, SeedableRng as _};
use tokio::sync::Semaphore;

use crate::HarnessError;

/// A session token shaped like STS's: the base64 of binary, with padding.
pub const FIXED_SESSION_TOKEN: &str = "CzBVep/E6Q4zWH2ix+wRNluApcrvFDleg6jN8hc8YYar0PUaP2SJrtP4HUJnjLHW+yBFao+02f4jSG2St9wBJktwlbrfBClOc5i94gcsUXabwOUKL1R5nsPoDTJXfKHG6xA1Wn+kye4TOF2Cp8zxFjtgharP9Bk+Y4it0vccQWaLsNX6H0RpjrPY/SJHbJG22wAlSm+Uud4DKE1yl7zhBitQdZq/5AkuU3idwucMMVZ7oMXqDzRZfqPI7RI3XIGmy/AVOl+Eqc7zGD1ih6zR9htAZYqv1PkeQ2iNstf8IUZrkLXa/yRJbpO43QInTHGWu+AFKk90mb7jCC1Sd5zB5gswVXqfxOkOM1h9osfsETZbgKXK7xQ5XoOozfIXPGGGq9D1Gj9kia7T+B1CZw==";

/// The secret access key of [`SessionTokens::Fixed`] answers.
pub const FIXED_SECRET_ACCESS_KEY: &str = "SECRET-KEY";

/// Real STS session tokens of role sessions with tags are 700–1,100 bytes.
pub const DEFAULT_SESSION_TOKEN_BYTES: usize = 800;

/// What the fake answers.
#[derive(Debug, Clone)]
pub enum FakeReply {
    /// Credentials valid for `lifetime`.
    Ok {
        /// From now to `expiration`.
        lifetime: Duration,
    },
    /// An EKS Auth error: this status and `x-amzn-errortype: kind`.
    Error {
        /// HTTP status.
        status: u16,
        /// The error type, e.g. `ResourceNotFoundException`.
        kind: &'static str,
    },
    /// No answer, ever.
    Hang,
}

/// The session tokens and secrets of its credentials.
#[derive(Debug, Clone)]
pub enum SessionTokens {
    /// Always [`FIXED_SESSION_TOKEN`] and [`FIXED_SECRET_ACCESS_KEY`].
    Fixed,
    /// New random ones each call: a base64 session token of about this many
    /// bytes and a 40-character secret (deterministic per call number).
    Random {
        /// Length of the session token.
        bytes: usize,
    },
}

/// How to start a [`FakeEksAuthServer`].
#[derive(Debug, Clone)]
pub struct FakeEksAuthSettings {
    /// Where to listen (port 0: any).
    pub listen: SocketAddr,
    /// Its credentials' tokens.
    pub tokens: SessionTokens,
    /// The first answer mode (see [`FakeEksAuthServer::set_reply`]).
    pub reply: FakeReply,
    /// Calls wait until [`FakeEksAuthServer::release`].
    pub gated: bool,
    /// Keep each call's cluster, `authorization` header and token.
    pub record: bool,
}

impl Default for FakeEksAuthSettings {
    fn default() -> Self {
        FakeEksAuthSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tokens: SessionTokens::Fixed,
            reply: FakeReply::Ok {
                lifetime: Duration::from_secs(3600),
            },
            gated: false,
            record: true,
        }
    }
}

/// One call the fake received.
#[derive(Clone, PartialEq, Eq)]
pub struct SeenCall {
    /// The cluster in the path.
    pub cluster: String,
    /// The `authorization` header.
    pub authorization: String,
    /// The body's `token`.
    pub token: String,
}

/// The cluster only: the signature and the token are credentials.
impl std::fmt::Debug for SeenCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SeenCall({})", self.cluster)
    }
}

struct Shared {
    calls: AtomicU64,
    reply: Mutex<FakeReply>,
    tokens: SessionTokens,
    gate: Option<Semaphore>,
    record: bool,
    seen: Mutex<Vec<SeenCall>>,
}

/// A running fake EKS Auth, stopped on drop.
pub struct FakeEksAuthServer {
    shared: Arc<Shared>,
    /// `http://ADDR`.
    pub url: String,
    /// The bound address.
    pub addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for FakeEksAuthServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeEksAuthServer")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl FakeEksAuthServer {
    /// Binds and serves on a runtime of its own (one worker thread).
    ///
    /// # Errors
    /// [`HarnessError::Io`] when it cannot bind or start its runtime.
    pub fn start(settings: FakeEksAuthSettings) -> Result<FakeEksAuthServer, HarnessError> {
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| HarnessError::Io { what, source }
        };
        let shared = Arc::new(Shared {
            calls: AtomicU64::new(0),
            reply: Mutex::new(settings.reply),
            tokens: settings.tokens,
            gate: settings.gated.then(|| Semaphore::new(0)),
            record: settings.record,
            seen: Mutex::new(Vec::new()),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fake-eks-auth")
            .enable_all()
            .build()
            .map_err(io("starting the fake EKS Auth's runtime"))?;
        let listener = std::net::TcpListener::bind(settings.listen).map_err(io(&format!(
            "binding the fake EKS Auth to {}",
            settings.listen
        )))?;
        listener
            .set_nonblocking(true)
            .map_err(io("setting the fake EKS Auth's socket non-blocking"))?;
        let addr = listener
            .local_addr()
            .map_err(io("reading the fake EKS Auth's address"))?;
        let app = axum::Router::new()
            .route(
                "/clusters/{cluster}/assume-role-for-pod-identity",
                post(assume),
            )
            .route("/podid/v1/clusters/{cluster}/changes", get(quiet_feed))
            .with_state(shared.clone());
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener)
                .map_err(io("registering the fake EKS Auth's socket"))?
        };
        runtime.spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("fake EKS Auth stopped: {e}");
            }
        });
        Ok(FakeEksAuthServer {
            shared,
            url: format!("http://{addr}"),
            addr,
            runtime: Some(runtime),
        })
    }

    /// Calls received so far.
    pub fn calls(&self) -> u64 {
        self.shared.calls.load(Ordering::SeqCst)
    }

    /// What later calls get.
    pub fn set_reply(&self, reply: FakeReply) {
        if let Ok(mut r) = self.shared.reply.lock() {
            *r = reply;
        }
    }

    /// Lets every waiting and later call through (a gated fake).
    pub fn release(&self) {
        if let Some(gate) = &self.shared.gate {
            gate.add_permits(Semaphore::MAX_PERMITS / 2);
        }
    }

    /// The calls received so far, when recording.
    pub fn seen(&self) -> Vec<SeenCall> {
        self.shared
            .seen
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Stops it: its runtime, listener and connections go away.
    pub fn kill(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for FakeEksAuthServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A feed without changes: the end is position 0; a poll after it waits its
/// `waitSeconds` (at most 30) and answers no change.
async fn quiet_feed(
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> axum::Json<serde_json::Value> {
    let after = query.get("after").and_then(|v| v.parse::<i64>().ok());
    if let Some(after) = after {
        let wait = query
            .get("waitSeconds")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            .min(30);
        tokio::time::sleep(Duration::from_secs(wait)).await;
        return axum::Json(serde_json::json!({"changes": [], "position": after, "reset": false}));
    }
    axum::Json(serde_json::json!({"changes": [], "position": 0, "reset": false}))
}

async fn assume(
    State(shared): State<Arc<Shared>>,
    Path(cluster): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let n = shared.calls.fetch_add(1, Ordering::SeqCst) + 1;
    let token = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["token"].as_str().map(str::to_owned))
        .unwrap_or_default();
    if shared.record {
        let authorization = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if let Ok(mut seen) = shared.seen.lock() {
            seen.push(SeenCall {
                cluster: cluster.clone(),
                authorization,
                token: token.clone(),
            });
        }
    }
    if let Some(gate) = &shared.gate {
        if let Ok(permit) = gate.acquire().await {
            permit.forget();
        }
    }
    let reply = shared
        .reply
        .lock()
        .map(|r| r.clone())
        .unwrap_or(FakeReply::Hang);
    match reply {
        FakeReply::Hang => std::future::pending().await,
        FakeReply::Error { status, kind } => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            [
                ("x-amzn-errortype", kind),
                ("content-type", "application/json"),
            ],
            serde_json::json!({ "message": format!("fake {kind}") }).to_string(),
        )
            .into_response(),
        FakeReply::Ok { lifetime } => {
            let (session_token, secret) = match &shared.tokens {
                SessionTokens::Fixed => (
                    FIXED_SESSION_TOKEN.to_owned(),
                    FIXED_SECRET_ACCESS_KEY.to_owned(),
                ),
                SessionTokens::Random { bytes } => {
                    let seed = n ^ (token.len() as u64).rotate_left(32);
                    random_credentials(seed, *bytes)
                }
            };
            let expiration = (SystemTime::now() + lifetime)
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let session = format!("eks-{cluster}-pod-{n}");
            let body = serde_json::json!({
                "subject": {"namespace": "ns", "serviceAccount": "sa"},
                "audience": "pods.eks.amazonaws.com",
                "podIdentityAssociation": {
                    "associationArn": format!("arn:aws:eks:us-east-1:111122223333:podidentityassociation/{cluster}/a-0123456789abcdefg"),
                    "associationId": "a-0123456789abcdefg",
                },
                "assumedRoleUser": {
                    "arn": format!("arn:aws:sts::111122223333:assumed-role/role/{session}"),
                    "assumeRoleId": format!("AROAEXAMPLE:{session}"),
                },
                "credentials": {
                    "sessionToken": session_token,
                    "secretAccessKey": secret,
                    "accessKeyId": format!("ASIA{n:016X}"),
                    "expiration": expiration,
                },
            });
            ([("content-type", "application/json")], body.to_string()).into_response()
        }
    }
}

/// A session token of about `bytes` bytes (base64 of random binary, as
/// STS's are) and a 40-character secret, from `seed`.
fn random_credentials(seed: u64, bytes: usize) -> (String, String) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut binary = vec![0u8; bytes * 3 / 4];
    rng.fill_bytes(&mut binary);
    let token = base64::engine::general_purpose::STANDARD.encode(binary);
    let secret = (&mut rng)
        .sample_iter(Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    (token, secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_credentials_have_the_asked_size_and_differ_by_seed() {
        let (token, secret) = random_credentials(1, 800);
        assert_eq!(token.len(), 800);
        assert_eq!(secret.len(), 40);
        assert!(secret.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(random_credentials(2, 800).0, token);
        assert_eq!(random_credentials(1, 800).0, token);
    }
}
