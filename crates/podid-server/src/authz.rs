//! Authorisation: the operations the server answers, the roles of API keys,
//! and which role may call which operation.

use podid_api::{ApiError, ErrorKind};
use serde::Deserialize;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// Describe, list and tag reads of associations; cluster reads.
    Reader,
    /// Only the credential call (`AssumeRoleForPodIdentity`), for node agents.
    Node,
}

impl Role {
    /// The role's name as the keys file spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Reader => "reader",
            Role::Node => "node",
        }
    }

    /// Whether the role may call `operation`.
    pub fn allows(self, operation: Operation) -> bool {
        match self {
            Role::Admin => true,
            Role::Reader => operation.is_read(),
            Role::Node => operation == Operation::AssumeRoleForPodIdentity,
        }
    }
}

/// Every operation the server answers, as named in metrics, logs and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// `CreatePodIdentityAssociation`.
    CreatePodIdentityAssociation,
    /// `DescribePodIdentityAssociation`.
    DescribePodIdentityAssociation,
    /// `ListPodIdentityAssociations`.
    ListPodIdentityAssociations,
    /// `UpdatePodIdentityAssociation`.
    UpdatePodIdentityAssociation,
    /// `DeletePodIdentityAssociation`.
    DeletePodIdentityAssociation,
    /// `TagResource`.
    TagResource,
    /// `UntagResource`.
    UntagResource,
    /// `ListTagsForResource`.
    ListTagsForResource,
    /// Cluster registry: register.
    RegisterCluster,
    /// Cluster registry: describe.
    DescribeCluster,
    /// Cluster registry: list.
    ListClusters,
    /// Cluster registry: update.
    UpdateCluster,
    /// Cluster registry: deregister.
    DeregisterCluster,
    /// EKS Auth: issue credentials for a pod.
    AssumeRoleForPodIdentity,
    /// The broker's audit trail: list.
    ListAuditEvents,
}

impl Operation {
    /// The operation's name.
    pub fn name(self) -> &'static str {
        match self {
            Operation::CreatePodIdentityAssociation => "CreatePodIdentityAssociation",
            Operation::DescribePodIdentityAssociation => "DescribePodIdentityAssociation",
            Operation::ListPodIdentityAssociations => "ListPodIdentityAssociations",
            Operation::UpdatePodIdentityAssociation => "UpdatePodIdentityAssociation",
            Operation::DeletePodIdentityAssociation => "DeletePodIdentityAssociation",
            Operation::TagResource => "TagResource",
            Operation::UntagResource => "UntagResource",
            Operation::ListTagsForResource => "ListTagsForResource",
            Operation::RegisterCluster => "RegisterCluster",
            Operation::DescribeCluster => "DescribeCluster",
            Operation::ListClusters => "ListClusters",
            Operation::UpdateCluster => "UpdateCluster",
            Operation::DeregisterCluster => "DeregisterCluster",
            Operation::AssumeRoleForPodIdentity => "AssumeRoleForPodIdentity",
            Operation::ListAuditEvents => "ListAuditEvents",
        }
    }

    /// Whether the operation only reads.
    pub fn is_read(self) -> bool {
        matches!(
            self,
            Operation::DescribePodIdentityAssociation
                | Operation::ListPodIdentityAssociations
                | Operation::ListTagsForResource
                | Operation::DescribeCluster
                | Operation::ListClusters
                | Operation::ListAuditEvents
        )
    }
}

/// Who made an authenticated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The access key id the request was signed with (safe to log).
    pub access_key_id: String,
    /// The key's role.
    pub role: Role,
}

impl Principal {
    /// The caller of an unauthenticated server (`--insecure-no-auth`): an admin.
    pub(crate) fn anonymous() -> Self {
        Principal {
            access_key_id: "anonymous".to_owned(),
            role: Role::Admin,
        }
    }

    /// `Ok` if the principal's role may call `operation`, else `AccessDenied`.
    pub(crate) fn authorise(&self, operation: Operation) -> Result<(), ApiError> {
        if self.role.allows(operation) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorKind::AccessDenied,
                format!(
                    "key {} (role {}) is not allowed to call {}",
                    self.access_key_id,
                    self.role.as_str(),
                    operation.name()
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests;
