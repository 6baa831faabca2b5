//! `podid-bench fake-eks-auth`: `podid-test-support`'s fake EKS Auth on its
//! own (answering every `AssumeRoleForPodIdentity` with fresh credentials
//! shaped like real STS ones), e.g. to point a hand-started agent at it.

use std::net::SocketAddr;

use podid_test_support::fake_eks_auth::DEFAULT_SESSION_TOKEN_BYTES;
use podid_test_support::{FakeEksAuthServer, FakeEksAuthSettings, SessionTokens};

/// `podid-bench fake-eks-auth`.
#[derive(Debug, clap::Args)]
pub struct FakeEksAuthArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Length of the session tokens answered.
    #[arg(long, default_value_t = DEFAULT_SESSION_TOKEN_BYTES)]
    session_token_bytes: usize,
}

/// The fake as the benchmarks run it: random ~`session_token_bytes` session
/// tokens, one hour of validity, nothing recorded.
pub fn start(listen: SocketAddr, session_token_bytes: usize) -> anyhow::Result<FakeEksAuthServer> {
    Ok(FakeEksAuthServer::start(FakeEksAuthSettings {
        listen,
        tokens: SessionTokens::Random {
            bytes: session_token_bytes,
        },
        record: false,
        ..FakeEksAuthSettings::default()
    })?)
}

/// Serves until killed, printing `fake EKS Auth listening on ADDR`.
pub async fn run(args: FakeEksAuthArgs) -> anyhow::Result<()> {
    let fake = start(args.listen, args.session_token_bytes)?;
    println!("fake EKS Auth listening on {}", fake.addr);
    std::future::pending::<()>().await;
    Ok(())
}
