//! podid's node agent: serves pods' container credentials on the link-local
//! addresses as EKS Pod Identity's agent does ([`Agent::bind`], [`Agent::serve`]).
//!
//! docs/agent.md gives its answers, probes, cache and flags.
#![forbid(unsafe_code)]

pub mod cache;
pub mod clock;
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

use std::net::SocketAddr;

pub use cache::PodCredentialCache;
pub use clock::TokioClock;
pub use podid_api::clock::{Clock, SystemClock};
pub use policy::CachePolicy;
pub use server::{Agent, AgentConfig, CREDENTIALS_PATH};
pub use upstream::{
    CredentialSource, EksAuthUpstream, FetchedCredentials, UpstreamError, UpstreamSettings,
};

/// Why the agent cannot start or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// None of the bind hosts could be bound.
    #[error("none of the bind hosts could be bound ({tried}); does the node have the agent's addresses (run `podid agent init`)?")]
    NoListener {
        /// Each address tried and why it failed.
        tried: String,
    },
    /// A bind host is a wildcard or multicast address: the `Host` check
    /// compares requests against the bind hosts, so each must be one address.
    #[error("invalid configuration: bind host {host} is not a single address (the Host check compares requests against the bind hosts)")]
    BindHostNotSingle {
        /// The address.
        host: std::net::IpAddr,
    },
    /// The listeners' limits cannot be enforced.
    #[error("invalid configuration")]
    Listen(#[from] podid_listen::ListenError),
    /// The pod check cannot be set up (kubelet URL, CA file).
    #[error("invalid configuration")]
    PodCheck(#[from] podcheck::PodCheckError),
}
