//! [`AgentError`], the agent's one error type: starting and serving, its HTTP
//! client (`http.rs`), token files (`identity.rs`), the change feed
//! (`follow/`) and the pod check (`podcheck/`). No variant carries a token,
//! a key or a request header. (A broker refusal a pod sees is not an error
//! chain but a wire answer: `upstream::UpstreamError`.)

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Why the agent cannot start, or why one of its calls got no answer.
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
    /// The pod check cannot be set up (kubelet URL, CA file, token file):
    /// one of the pod check's errors.
    #[error("invalid configuration")]
    PodCheck(#[source] Box<AgentError>),

    // The HTTP client (`http.rs`).
    /// The URL cannot be called.
    #[error("'{url}' is not an http:// or https:// URL with a host")]
    BadUrl {
        /// The URL.
        url: String,
    },
    /// The request could not be built (a header value, say).
    #[error("cannot build the request")]
    HttpRequest {
        /// The cause.
        #[source]
        source: http::Error,
    },
    /// The TLS client could not be set up (system roots unreadable, …).
    #[error("cannot set up TLS: {what}")]
    TlsSetup {
        /// What failed.
        what: String,
    },
    /// The server's certificate is not trusted (or its name does not match).
    #[error("{host}'s TLS certificate is not trusted")]
    Untrusted {
        /// The host called.
        host: String,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// No connection (refused, unreachable, TLS handshake failed).
    #[error("cannot connect to {host}")]
    Connect {
        /// The host called.
        host: String,
        /// The cause.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// The connection broke before a whole answer head came.
    #[error("the call to {host} failed")]
    CallFailed {
        /// The host called.
        host: String,
        /// The cause.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// No whole answer within the call's timeout.
    #[error("{host} did not answer within {timeout:?}")]
    Timeout {
        /// The host called.
        host: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The answer's body is longer than allowed.
    #[error("{host}'s answer is larger than {limit} bytes")]
    TooLarge {
        /// The host called.
        host: String,
        /// The limit.
        limit: usize,
    },
    /// The answer's body broke off.
    #[error("{host}'s answer broke off: {reason}")]
    AnswerBrokeOff {
        /// The host called.
        host: String,
        /// What the body reader said.
        reason: String,
    },

    // Token files (`identity.rs`): the agent's identity token, the kubelet token.
    /// The token file cannot be read.
    #[error("cannot read the token file {path}")]
    TokenFileRead {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The token file holds no token, or something that cannot be a header.
    #[error("the token file {path} {why}")]
    TokenFileUnusable {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: &'static str,
    },

    // The change feed (`follow/`).
    /// The node's AWS credentials (SigV4 for the feed) cannot be loaded.
    #[error("cannot load the node's AWS credentials")]
    FeedCredentials(#[source] aws_credential_types::provider::error::CredentialsError),
    /// The feed request cannot be signed.
    #[error("cannot sign the feed request")]
    FeedSigning(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The server answered the feed call with an error.
    #[error("the server answered {status} {code}: {message}")]
    FeedRefused {
        /// Its status.
        status: u16,
        /// Its `__type` (or `x-amzn-ErrorType`), at most 64 characters.
        code: String,
        /// Its message, at most 256 characters.
        message: String,
    },
    /// The server's answer is not a change feed page.
    #[error("the server's answer is not a change feed page")]
    FeedUnreadable(#[source] serde_json::Error),

    // The pod check (`podcheck/`).
    /// The kubelet URL, CA file or TLS set-up is unusable (at start).
    #[error("invalid pod check configuration: {what}")]
    PodCheckConfig {
        /// What is wrong.
        what: String,
    },
    /// The kubelet token file cannot be read, or holds no token: one of the
    /// token file's errors.
    #[error("the kubelet token file is unusable")]
    KubeletToken(#[source] Box<AgentError>),
    /// The kubelet could not be called: one of the HTTP client's errors.
    #[error("cannot reach the kubelet")]
    KubeletUnreachable(#[source] Box<AgentError>),
    /// The kubelet refused the agent's token (401, 403).
    #[error(
        "the kubelet refused the agent's credentials ({status}): it needs `get` on nodes/proxy"
    )]
    KubeletUnauthorized {
        /// Its status.
        status: u16,
    },
    /// The kubelet answered another status.
    #[error("the kubelet answered {status} to GET /pods")]
    KubeletStatus {
        /// Its status.
        status: u16,
    },
    /// The kubelet's answer is not a `PodList`.
    #[error("the kubelet's answer is not a PodList")]
    NotPodList(#[source] serde_json::Error),
}

impl AgentError {
    /// For the HTTP client's errors: whether the server could not be reached
    /// or did not answer (as opposed to a request the client could not make).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            AgentError::Untrusted { .. }
                | AgentError::Connect { .. }
                | AgentError::CallFailed { .. }
                | AgentError::Timeout { .. }
                | AgentError::TooLarge { .. }
                | AgentError::AnswerBrokeOff { .. }
        )
    }

    /// For the pod check's errors, a short word for metrics and readiness:
    /// `config`, `token_file`, `unreachable`, `unauthorized`, `status`,
    /// `invalid`; `other` for any other error.
    pub fn pod_check_kind(&self) -> &'static str {
        match self {
            AgentError::PodCheckConfig { .. } => "config",
            AgentError::KubeletToken(_) => "token_file",
            AgentError::KubeletUnreachable(_) => "unreachable",
            AgentError::KubeletUnauthorized { .. } => "unauthorized",
            AgentError::KubeletStatus { .. } => "status",
            AgentError::NotPodList(_) => "invalid",
            _ => "other",
        }
    }
}
