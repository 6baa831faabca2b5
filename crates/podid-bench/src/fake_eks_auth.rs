//! A fake EKS Auth: answers every `AssumeRoleForPodIdentity` with fresh
//! credentials shaped like real STS ones (a 20-character `ASIA…` key id, a
//! 40-character secret, a session token of about 800 bytes, one hour of
//! validity), whatever the token and signature. Counts its calls.
//!
//! Runs inside a benchmark (`FakeEksAuth::start`) or on its own
//! (`podid-bench fake-eks-auth`), e.g. to point a hand-started agent at it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::post;
use axum::Json;
use podid_api::eks_auth::{
    AssumeRoleForPodIdentityRequest, AssumeRoleForPodIdentityResponse, AssumedRoleUser,
    PodCredentials, PodIdentityAssociationRef, Subject,
};

use crate::tokens::{now_secs, Rng};

/// `podid-bench fake-eks-auth`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Length of the session tokens answered.
    #[arg(long, default_value_t = DEFAULT_SESSION_TOKEN_BYTES)]
    session_token_bytes: usize,
}

/// Real STS session tokens of role sessions with tags are 700–1,100 bytes.
pub const DEFAULT_SESSION_TOKEN_BYTES: usize = 800;

struct Inner {
    calls: AtomicU64,
    session_token_bytes: usize,
}

/// A running fake (on the caller's runtime).
#[derive(Clone)]
pub struct FakeEksAuth {
    inner: Arc<Inner>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl FakeEksAuth {
    /// Listens on `listen` (port 0: any) and serves in a background task.
    pub async fn start(
        listen: SocketAddr,
        session_token_bytes: usize,
    ) -> anyhow::Result<FakeEksAuth> {
        let inner = Arc::new(Inner {
            calls: AtomicU64::new(0),
            session_token_bytes,
        });
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new()
            .route(
                "/clusters/{cluster}/assume-role-for-pod-identity",
                post(assume),
            )
            .with_state(inner.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("fake EKS Auth stopped: {e}");
            }
        });
        Ok(FakeEksAuth { inner, url })
    }

    /// Calls answered so far.
    pub fn calls(&self) -> u64 {
        self.inner.calls.load(Ordering::Relaxed)
    }
}

async fn assume(
    State(inner): State<Arc<Inner>>,
    Path(cluster): Path<String>,
    Json(request): Json<AssumeRoleForPodIdentityRequest>,
) -> Json<AssumeRoleForPodIdentityResponse> {
    let n = inner.calls.fetch_add(1, Ordering::Relaxed) + 1;
    let mut rng =
        Rng::new(n ^ (request.token.as_deref().map_or(0, str::len) as u64).rotate_left(32));
    let session = format!("eks-{cluster}-pod-{n}");
    // Real session tokens are the base64 of binary (standard alphabet, padded).
    let session_token = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .encode(rng.bytes(inner.session_token_bytes * 3 / 4))
    };
    Json(AssumeRoleForPodIdentityResponse {
        subject: Subject { namespace: "bench".into(), service_account: "bench".into() },
        audience: "pods.eks.amazonaws.com".into(),
        pod_identity_association: PodIdentityAssociationRef {
            association_arn: format!(
                "arn:aws:eks:us-east-1:111122223333:podidentityassociation/{cluster}/a-0123456789abcdefg"
            ),
            association_id: "a-0123456789abcdefg".into(),
        },
        assumed_role_user: AssumedRoleUser {
            arn: format!("arn:aws:sts::111122223333:assumed-role/bench-role/{session}"),
            assume_role_id: format!("AROAEXAMPLEBENCH0000:{session}"),
        },
        credentials: PodCredentials {
            session_token,
            secret_access_key: rng.alphanumeric(40),
            access_key_id: format!("ASIA{:016X}", n),
            expiration: i64::try_from(now_secs() + 3600).unwrap_or(i64::MAX),
        },
    })
}

/// Serves until killed, printing `fake EKS Auth listening on ADDR`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let fake = FakeEksAuth::start(args.listen, args.session_token_bytes).await?;
    println!(
        "fake EKS Auth listening on {}",
        fake.url.trim_start_matches("http://")
    );
    std::future::pending::<()>().await;
    Ok(())
}
