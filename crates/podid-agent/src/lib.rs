//! podid's node agent: serves pods' container credentials on the link-local
//! addresses as EKS Pod Identity's agent does ([`Agent::bind`], [`Agent::serve`]).
//!
//! docs/agent.md gives its answers, probes, cache and flags.
#![forbid(unsafe_code)]

pub mod cache;
pub mod clock;
mod error;
pub mod follow;
pub mod host;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod podcheck;
pub mod policy;
pub mod ratelimit;
pub mod response;
mod server;
pub mod token;
pub mod upstream;

pub use cache::PodCredentialCache;
pub use clock::TokioClock;
pub use error::AgentError;
pub use podid_api::clock::{Clock, SystemClock};
pub use policy::CachePolicy;
pub use server::{Agent, AgentConfig, CREDENTIALS_PATH};
pub use upstream::{
    CredentialSource, EksAuthUpstream, FetchedCredentials, UpstreamError, UpstreamSettings,
};
