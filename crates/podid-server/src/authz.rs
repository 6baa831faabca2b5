//! Authorisation: the operations the server answers, the roles of API keys,
//! which role may call which operation, and the clusters a key may act on.

use std::sync::Arc;

use podid_api::{ApiError, ErrorKind};
use serde::Deserialize;

pub(crate) mod routes;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// Describe, list and tag reads of associations; cluster reads.
    Reader,
    /// Only the credential call (`AssumeRoleForPodIdentity`) and the change
    /// feed (`ListAssociationChanges`), for node agents.
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
            Role::Node => matches!(
                operation,
                Operation::AssumeRoleForPodIdentity | Operation::ListAssociationChanges
            ),
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
    /// The change feed of a cluster's associations.
    ListAssociationChanges,
}

impl Operation {
    /// Every operation, in the order of the enum.
    pub const ALL: [Operation; 16] = [
        Operation::CreatePodIdentityAssociation,
        Operation::DescribePodIdentityAssociation,
        Operation::ListPodIdentityAssociations,
        Operation::UpdatePodIdentityAssociation,
        Operation::DeletePodIdentityAssociation,
        Operation::TagResource,
        Operation::UntagResource,
        Operation::ListTagsForResource,
        Operation::RegisterCluster,
        Operation::DescribeCluster,
        Operation::ListClusters,
        Operation::UpdateCluster,
        Operation::DeregisterCluster,
        Operation::AssumeRoleForPodIdentity,
        Operation::ListAuditEvents,
        Operation::ListAssociationChanges,
    ];

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
            Operation::ListAssociationChanges => "ListAssociationChanges",
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
                | Operation::ListAssociationChanges
        )
    }
}

/// The clusters a key may act on (`clusters = [...]` in the keys file).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Clusters {
    /// Every cluster (no `clusters` in the key's entry).
    #[default]
    All,
    /// Only these, by name.
    Only(Arc<[String]>),
}

impl Clusters {
    /// Whether the key may act on cluster `name`.
    pub fn allows(&self, name: &str) -> bool {
        match self {
            Clusters::All => true,
            Clusters::Only(names) => names.iter().any(|n| n == name),
        }
    }
}

/// Who made an authenticated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The access key id the request was signed with (safe to log).
    pub access_key_id: String,
    /// The key's role.
    pub role: Role,
    /// The clusters the key may act on.
    pub clusters: Clusters,
    /// The node an agent token proved (`kubernetes.io.node.name`); `None`
    /// for SigV4 keys and the anonymous caller.
    pub node: Option<String>,
}

impl Principal {
    /// The caller of an unauthenticated server (`--insecure-no-auth`): an admin.
    pub(crate) fn anonymous() -> Self {
        Principal {
            access_key_id: "anonymous".to_owned(),
            role: Role::Admin,
            clusters: Clusters::All,
            node: None,
        }
    }

    /// `Ok` if the principal may act on every cluster the request (`method`,
    /// `uri`, `body`) names, else `AccessDenied`. A key scoped to clusters is
    /// refused any request that cannot be bound to named clusters (listing
    /// every cluster, the audit trail without `cluster=`, unknown paths).
    pub(crate) fn authorise_clusters(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        body: &[u8],
    ) -> Result<(), ApiError> {
        if matches!(self.clusters, Clusters::All) {
            return Ok(());
        }
        let denied = |what: String| {
            Err(ApiError::new(
                ErrorKind::AccessDenied,
                format!(
                    "key {} is scoped to clusters and may not act on {what}",
                    self.access_key_id
                ),
            ))
        };
        match routes::clusters_named(method, uri, body) {
            routes::Named::Clusters(names) => match names.iter().find(|n| !self.clusters.allows(n))
            {
                None => Ok(()),
                Some(other) => denied(format!("cluster '{}'", podid_api::arn::printable(other))),
            },
            routes::Named::Every => denied("every cluster: name one of its clusters".to_owned()),
            routes::Named::Unknown => denied("this request".to_owned()),
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
