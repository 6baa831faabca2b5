//! The EKS pod-identity-association API (`rest-json`, signing name `eks`), with the field names
//! and shapes of the EKS service model, so the AWS CLI and SDKs talk to podid unchanged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::EpochMillis;

/// Resource tags: key to value.
pub type Tags = BTreeMap<String, String>;

/// A pod identity association as EKS describes it (`PodIdentityAssociation`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodIdentityAssociation {
    /// The cluster the association belongs to.
    pub cluster_name: String,
    /// The Kubernetes namespace of the service account.
    pub namespace: String,
    /// The Kubernetes service account.
    pub service_account: String,
    /// The IAM role the pods' credentials are issued for.
    pub role_arn: String,
    /// `arn:{partition}:eks:{region}:{account}:podidentityassociation/{cluster}/{id}`.
    pub association_arn: String,
    /// `a-` and 17 lowercase alphanumerics.
    pub association_id: String,
    /// Resource tags.
    pub tags: Tags,
    /// When the association was created.
    pub created_at: EpochMillis,
    /// When the association was last changed.
    pub modified_at: EpochMillis,
    /// The principal that owns the association; podid leaves it out (EKS sets it
    /// only for associations created by add-ons).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_arn: Option<String>,
    /// Whether the session tags are left off the credentials.
    pub disable_session_tags: bool,
    /// A role assumed with the first role's credentials (role chaining).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_role_arn: Option<String>,
    /// The `sts:ExternalId` used when assuming the target role; generated at create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// An inline session policy applied to the pods' sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

impl PodIdentityAssociation {
    /// The summary that list operations return.
    pub fn summary(&self) -> PodIdentityAssociationSummary {
        PodIdentityAssociationSummary {
            cluster_name: self.cluster_name.clone(),
            namespace: self.namespace.clone(),
            service_account: self.service_account.clone(),
            association_arn: self.association_arn.clone(),
            association_id: self.association_id.clone(),
            owner_arn: self.owner_arn.clone(),
        }
    }
}

/// What `ListPodIdentityAssociations` returns per association.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodIdentityAssociationSummary {
    /// The cluster the association belongs to.
    pub cluster_name: String,
    /// The Kubernetes namespace.
    pub namespace: String,
    /// The Kubernetes service account.
    pub service_account: String,
    /// The association's ARN.
    pub association_arn: String,
    /// The association's id.
    pub association_id: String,
    /// The owner, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_arn: Option<String>,
}

/// Body of `CreatePodIdentityAssociation`. Every field is optional on the wire so
/// that a missing one gets a precise `InvalidParameterException` rather than a
/// generic parse error.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateAssociationRequest {
    /// Required: the Kubernetes namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Required: the Kubernetes service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// Required: the IAM role ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// Idempotency token: the same token with the same request returns the same association.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_request_token: Option<String>,
    /// Resource tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    /// Leave the session tags off the credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_session_tags: Option<bool>,
    /// Role to chain into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_role_arn: Option<String>,
    /// Inline session policy; requires `disableSessionTags: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

/// Body of `UpdatePodIdentityAssociation`.
///
/// An empty `targetRoleArn` or `policy` removes it, as in EKS.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateAssociationRequest {
    /// New role ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// Idempotency token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_request_token: Option<String>,
    /// New session-tags setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_session_tags: Option<bool>,
    /// New target role; empty removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_role_arn: Option<String>,
    /// New session policy; empty removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

/// `{"association": A}`: the answer of create, describe, update and delete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssociationResponse {
    /// The association.
    pub association: PodIdentityAssociation,
}

/// The answer of `ListPodIdentityAssociations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListAssociationsResponse {
    /// One page of summaries.
    pub associations: Vec<PodIdentityAssociationSummary>,
    /// Opaque token of the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// Body of `TagResource` and answer of `ListTagsForResource`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TagsBody {
    /// The tags.
    #[serde(default)]
    pub tags: Option<Tags>,
}
