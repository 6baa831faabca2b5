//! What podid's test harnesses and benchmarks share: a keys file with the
//! test keys, a `podid server` process with its bound address, a fake EKS
//! Auth, and test JWKS and tokens. Not published; used by tests and by
//! `podid-bench`.

pub mod agent;
pub mod attack;
pub mod ci;
pub mod console_pages;
pub mod dev_kubelet;
mod error;
pub mod fake_eks_auth;
pub mod fake_sts;
pub mod fleet;
pub mod keys;
pub mod kube;
pub mod podid;
pub mod process;
pub mod relay;
pub mod scrape;
pub mod signed;
pub mod sigv4;
pub mod sts_broker;
pub mod tls;
pub mod tokens;
pub mod wait;

pub use ci::{in_ci, skip_or_fail};
pub use error::HarnessError;
pub use fake_eks_auth::{FakeEksAuthServer, FakeEksAuthSettings, FakeReply, SessionTokens};
pub use keys::{write_keys_file, TestKey, ACCOUNT_ID, ADMIN, NODE, READER};
pub use podid::{podid_binary, PodidServerLaunch, PodidServerProcess, StderrTo};
pub use process::{run_to_success, ChildProcess};
pub use tokens::{pod_token, unsigned_token, TEST_JWKS};
pub use wait::yield_until;
