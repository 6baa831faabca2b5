//! The change feed of a cluster's associations, `GET /podid/v1/clusters/{name}/changes`:
//! what agents and the webhook follow to drop revoked credentials at once.

use serde::{Deserialize, Serialize};

use crate::EpochMillis;

/// The longest a feed request may wait for a change, in seconds.
pub const MAX_WAIT_SECONDS: u64 = 30;

/// The most changes one answer carries.
pub const MAX_CHANGES_PER_PAGE: usize = 500;

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    /// An association was created.
    Create,
    /// An association's settings changed (role, target role, tags, …).
    Update,
    /// An association was deleted.
    Delete,
    /// The cluster's settings or keys changed: everything held for it is revalidated.
    ClusterUpdate,
    /// The cluster was deleted: everything held for it is dropped.
    ClusterDelete,
}

impl ChangeKind {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Create => "create",
            ChangeKind::Update => "update",
            ChangeKind::Delete => "delete",
            ChangeKind::ClusterUpdate => "cluster-update",
            ChangeKind::ClusterDelete => "cluster-delete",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "create" => Some(ChangeKind::Create),
            "update" => Some(ChangeKind::Update),
            "delete" => Some(ChangeKind::Delete),
            "cluster-update" => Some(ChangeKind::ClusterUpdate),
            "cluster-delete" => Some(ChangeKind::ClusterDelete),
            _ => None,
        }
    }
}

/// One change, at its position in the feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// The feed position of this change (increasing; gaps are allowed).
    pub position: i64,
    /// What changed.
    pub kind: ChangeKind,
    /// When it changed.
    pub time: EpochMillis,
    /// The association, for `create`, `update` and `delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub association_id: Option<String>,
    /// The association's namespace, for `create`, `update` and `delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The association's service account, for `create`, `update` and `delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}

/// The feed's answer.
///
/// Without `after` the answer carries no changes and `position` is where to
/// start following. With `after=N` it carries the cluster's changes after N,
/// oldest first, and the position to ask from next. `reset: true` says N is
/// older than the feed keeps (or unknown to this server): the follower must
/// revalidate everything it holds, then follow from `position`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangesResponse {
    /// Changes after the asked position, oldest first.
    pub changes: Vec<Change>,
    /// The position to pass as `after` next.
    pub position: i64,
    /// The asked position can no longer be followed from.
    #[serde(default)]
    pub reset: bool,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn kinds_read_and_write_their_wire_names() {
        for (kind, name) in [
            (ChangeKind::Create, "create"),
            (ChangeKind::Update, "update"),
            (ChangeKind::Delete, "delete"),
            (ChangeKind::ClusterUpdate, "cluster-update"),
            (ChangeKind::ClusterDelete, "cluster-delete"),
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), serde_json::json!(name));
            assert_eq!(ChangeKind::parse(name), Some(kind));
            assert_eq!(kind.as_str(), name);
        }
        assert_eq!(ChangeKind::parse("other"), None);
    }

    #[test]
    fn an_answer_reads_from_its_documented_shape() {
        let answer: ChangesResponse = serde_json::from_value(serde_json::json!({
            "changes": [{"position": 7, "kind": "delete", "time": 1,
                         "associationId": "a-1", "namespace": "ns", "serviceAccount": "sa"}],
            "position": 9
        }))
        .unwrap();
        assert!(!answer.reset);
        assert_eq!(answer.changes[0].kind, ChangeKind::Delete);
        assert_eq!(answer.changes[0].association_id.as_deref(), Some("a-1"));
    }
}
