//! podid's cluster registry, under `/podid/v1/clusters`: a cluster is registered once with its
//! token issuer and signing keys; associations name only registered clusters.

use serde::{Deserialize, Serialize};

use crate::{EpochMillis, Secret};

/// The audience projected tokens carry unless a cluster says otherwise.
pub const DEFAULT_AUDIENCE: &str = "pods.eks.amazonaws.com";

/// The audience of the token an agent proves its node with.
pub const AGENT_AUDIENCE: &str = "podid";

/// The service account (`namespace/name`) whose tokens are agent identities
/// unless a cluster names another.
pub const DEFAULT_AGENT_SERVICE_ACCOUNT: &str = "podid-system/podid-agent";

/// How a cluster's agents authenticate to the broker and the change feed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentIdentity {
    /// A SigV4 key of role `node` from the keys file (the stock eks-pod-identity-agent).
    #[default]
    Key,
    /// The agent's own projected service-account token (audience `podid`,
    /// bound to its pod and node), sent as `Authorization: Bearer`.
    Token,
}

impl AgentIdentity {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentIdentity::Key => "key",
            AgentIdentity::Token => "token",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "key" => Some(AgentIdentity::Key),
            "token" => Some(AgentIdentity::Token),
            _ => None,
        }
    }
}

/// A cluster's API server, asked with `TokenReview` whether a pod token is
/// still authenticated before credentials are issued.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenReviewSettings {
    /// `https://…` of the cluster's API server.
    pub api_server_url: String,
    /// PEM of the CA that signed the API server's certificate (public).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// The bearer token that may create `tokenreviews`; stored, never
    /// serialised (no answer, log or audit record carries it).
    #[serde(skip)]
    pub token: Option<Secret>,
}

impl std::fmt::Debug for TokenReviewSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewSettings")
            .field("api_server_url", &self.api_server_url)
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<pem>"))
            .field("token", &self.token)
            .finish()
    }
}

/// `tokenReview` in a registration or update: where the API server is and
/// the credential to call it with (write-only).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenReviewRequest {
    /// Required: `https://…` of the API server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_server_url: Option<String>,
    /// PEM of the API server's CA (default: the system roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// Required: a bearer token allowed to create `tokenreviews`
    /// (ClusterRole `system:auth-delegator`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl std::fmt::Debug for TokenReviewRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewRequest")
            .field("api_server_url", &self.api_server_url)
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<pem>"))
            .field("token", &self.token.as_ref().map(|_| "**redacted**"))
            .finish()
    }
}

fn default_agent_service_account() -> String {
    DEFAULT_AGENT_SERVICE_ACCOUNT.to_owned()
}

/// Where a cluster's token-signing keys come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeySource {
    /// A JWKS given in the registration (inline, or a file the CLI read).
    Inline,
    /// A JWKS URL the server fetches.
    Uri,
    /// The issuer's OpenID discovery document names the JWKS URL.
    Discovery,
}

impl KeySource {
    /// The name stored and shown for the source.
    pub fn as_str(self) -> &'static str {
        match self {
            KeySource::Inline => "inline",
            KeySource::Uri => "uri",
            KeySource::Discovery => "discovery",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "inline" => Some(KeySource::Inline),
            "uri" => Some(KeySource::Uri),
            "discovery" => Some(KeySource::Discovery),
            _ => None,
        }
    }
}

/// A registered cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    /// The cluster's name, as associations name it.
    pub name: String,
    /// The `iss` of the cluster's service-account tokens.
    pub issuer: String,
    /// The audience the broker accepts.
    pub audience: String,
    /// The cluster ARN put in the `eks-cluster-arn` session tag.
    pub cluster_arn: String,
    /// Where the keys come from.
    pub key_source: KeySource,
    /// The JWKS URL for `uri` and `discovery` sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// The current key set (a JWKS document).
    pub jwks: serde_json::Value,
    /// How the cluster's agents authenticate (`key` by default).
    #[serde(default)]
    pub agent_identity: AgentIdentity,
    /// `namespace/name` of the agents' service account (token identity).
    #[serde(default = "default_agent_service_account")]
    pub agent_service_account: String,
    /// Whether a pod token is refused unless its node is the calling agent's
    /// (token identity only; on by default there).
    #[serde(default)]
    pub node_binding: bool,
    /// The API server asked with `TokenReview` before issuing, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_review: Option<TokenReviewSettings>,
    /// When the cluster was registered.
    pub created_at: EpochMillis,
    /// When the cluster was last changed.
    pub modified_at: EpochMillis,
}

/// Body of `POST /podid/v1/clusters`.
///
/// Exactly one key source: `jwks`, `jwksUri`, or `discovery: true`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterClusterRequest {
    /// Required: the cluster's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Required: the tokens' issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Accepted audience; default `pods.eks.amazonaws.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Cluster ARN for session tags; default `arn:{partition}:eks:{region}:{account}:cluster/{name}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_arn: Option<String>,
    /// An inline JWKS document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    /// A JWKS URL the server fetches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Discover the JWKS URL from `{issuer}/.well-known/openid-configuration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<bool>,
    /// `key` (default) or `token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_identity: Option<AgentIdentity>,
    /// `namespace/name`; default `podid-system/podid-agent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_service_account: Option<String>,
    /// Default: on with token identity; must be off with key identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_binding: Option<bool>,
    /// Ask the cluster's API server with `TokenReview` before issuing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_review: Option<TokenReviewRequest>,
}

/// Body of `PATCH /podid/v1/clusters/{name}`: the fields to change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateClusterRequest {
    /// New issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// New audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// New cluster ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_arn: Option<String>,
    /// New inline JWKS (switches the source to `inline`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    /// New JWKS URL (switches the source to `uri`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Re-run discovery (switches the source to `discovery`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<bool>,
    /// New agent identity (`node_binding` follows it unless given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_identity: Option<AgentIdentity>,
    /// New agent service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_service_account: Option<String>,
    /// Node binding on or off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_binding: Option<bool>,
    /// New `TokenReview` settings (all fields required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_review: Option<TokenReviewRequest>,
    /// `true` stops asking the API server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_token_review: Option<bool>,
}

/// `{"cluster": C}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterResponse {
    /// The cluster.
    pub cluster: Cluster,
}

/// `{"clusters": [C]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListClustersResponse {
    /// Every registered cluster, by name.
    pub clusters: Vec<Cluster>,
}
