//! podid's node agent.
//!
//! Serves `GET /v1/credentials` to pods on the link-local addresses
//! (169.254.170.23 and fd00:ec2::23, port 80), exactly as EKS Pod Identity's
//! agent does, so every AWS SDK's container credential provider works
//! unchanged. A request's `Host` must name one of those addresses (a
//! DNS-rebinding guard, [`host`]) and its `Authorization` header must carry a
//! well-formed, unexpired JWT ([`token`]) before anything is asked upstream.
//! Credentials come from the broker — podid's server or AWS EKS Auth —
//! through `AssumeRoleForPodIdentity` ([`upstream`]), signed with the node's
//! key, and are kept per token in memory ([`cache`]), refreshed ahead in the
//! background and served on while the broker is down ([`policy`]).
//!
//! [`Agent::bind`] binds the listeners (credentials, probes, metrics) and
//! [`Agent::serve`] runs them until shutdown, draining in-flight requests.
//!
//! Answers: 200 with the container-credentials JSON; otherwise a status and
//! `{"code","message"}` — 403 for a foreign `Host`, 400 for a missing,
//! malformed or expired token, the broker's own status when it refuses (404
//! ResourceNotFoundException, 400 AccessDenied/InvalidToken/…, 429), 503 when
//! it cannot be reached in time, 429 over the listener rate limit, 404/405 for
//! other paths and methods.
//!
//! Probes (localhost): `/healthz` is 200 while the process serves; `/readyz`
//! is 503 (`"upstream":"down"`) once [`CachePolicy::unhealthy_after`]
//! consecutive broker calls failed as outages (unreachable, timeout, 5xx) and
//! 200 again after the next answered call. Metrics: `podid_agent_*` on
//! `/metrics` ([`metrics::AgentMetrics`]).
#![forbid(unsafe_code)]

pub mod cache;
pub mod clock;
pub mod host;
pub mod metrics;
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
}
