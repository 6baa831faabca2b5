//! podid's cluster registry, under `/podid/v1/clusters`: a cluster is registered once with its
//! token issuer and signing keys; associations name only registered clusters.

use serde::{Deserialize, Serialize};

use crate::EpochMillis;

/// The audience projected tokens carry unless a cluster says otherwise.
pub const DEFAULT_AUDIENCE: &str = "pods.eks.amazonaws.com";

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
