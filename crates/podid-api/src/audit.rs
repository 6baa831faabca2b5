//! The audit trail: one event per broker decision (`credential`) and one per
//! change to an association or a cluster (`change`). Never a secret.

use serde::{Deserialize, Serialize};

use crate::EpochMillis;

/// What an event records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditKind {
    /// A broker decision (`AssumeRoleForPodIdentity`).
    #[default]
    Credential,
    /// A change to an association or a cluster.
    Change,
}

impl AuditKind {
    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Credential => "credential",
            AuditKind::Change => "change",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "credential" => Some(AuditKind::Credential),
            "change" => Some(AuditKind::Change),
            _ => None,
        }
    }
}

/// How the request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditOutcome {
    /// Credentials were handed out.
    Issued,
    /// A change was written.
    Succeeded,
    /// The request was refused (bad token, no association, STS denied; a
    /// change naming something absent or conflicting).
    Denied,
    /// The server could not answer (STS unavailable, throttled, internal error).
    Failed,
}

impl AuditOutcome {
    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Issued => "issued",
            AuditOutcome::Succeeded => "succeeded",
            AuditOutcome::Denied => "denied",
            AuditOutcome::Failed => "failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "issued" => Some(AuditOutcome::Issued),
            "succeeded" => Some(AuditOutcome::Succeeded),
            "denied" => Some(AuditOutcome::Denied),
            "failed" => Some(AuditOutcome::Failed),
            _ => None,
        }
    }
}

/// What an association or a cluster looked like before or after a change:
/// only the fields the change touched (all of them for a create or a
/// delete). A field in `before` but not in `after` was cleared. Never holds
/// the external id or a key document, only its key ids.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditState {
    /// The association's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The association's service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// The association's role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// The role chained into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_role_arn: Option<String>,
    /// Whether session tags are left off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_session_tags: Option<bool>,
    /// The inline session policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The association's tag keys (not their values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_keys: Option<Vec<String>>,
    /// The cluster's token issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The audience the broker accepts for the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// The cluster's ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_arn: Option<String>,
    /// Where the cluster's keys come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_source: Option<String>,
    /// The cluster's JWKS URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// The `kid`s of the cluster's keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ids: Option<Vec<String>>,
    /// How the cluster's agents authenticate (`key` or `token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_identity: Option<String>,
    /// The cluster's agent service account (`namespace/name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_service_account: Option<String>,
    /// Whether the cluster's node binding is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_binding: Option<bool>,
    /// The API server asked with `TokenReview` (its URL only: never the credential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_review_url: Option<String>,
}

impl AuditState {
    /// `(before, after)` cut down to the fields whose values differ.
    pub fn changes(before: &AuditState, after: &AuditState) -> (AuditState, AuditState) {
        let (Some(old), Some(new)) = (fields(before), fields(after)) else {
            return (before.clone(), after.clone());
        };
        let keep = |from: &serde_json::Map<String, serde_json::Value>,
                    other: &serde_json::Map<String, serde_json::Value>| {
            let changed: serde_json::Map<String, serde_json::Value> = from
                .iter()
                .filter(|(k, v)| other.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            serde_json::from_value(serde_json::Value::Object(changed)).unwrap_or_default()
        };
        (keep(&old, &new), keep(&new, &old))
    }

    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        *self == AuditState::default()
    }
}

/// The set fields of a state, as a JSON object.
fn fields(state: &AuditState) -> Option<serde_json::Map<String, serde_json::Value>> {
    match serde_json::to_value(state) {
        Ok(serde_json::Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// One audit event. Never holds a token, a key or any other secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// Position in the audit log (assigned when stored; 0 before).
    #[serde(default)]
    pub seq: i64,
    /// What the event records.
    #[serde(default)]
    pub kind: AuditKind,
    /// The operation of a change (`CreatePodIdentityAssociation`,
    /// `RegisterCluster`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// When the decision was made.
    pub time: EpochMillis,
    /// The request's `x-amzn-requestid`.
    pub request_id: String,
    /// The access key id the caller signed with (`anonymous` without authentication).
    pub caller: String,
    /// The cluster named in the request.
    pub cluster: String,
    /// The pod's namespace, when the token said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The pod's service account, when the token said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// The pod's name, when the token said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// The pod's uid, when the token said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// The node the pod token names (`kubernetes.io.node.name`), when it names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The node the calling agent proved with its own token (token identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_node: Option<String>,
    /// The association used or changed, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub association_id: Option<String>,
    /// The role the pod got (the target role when chaining), when one was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// A change's fields before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<AuditState>,
    /// A change's fields after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<AuditState>,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// The error answered, for refusals and failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
}

impl AuditEvent {
    /// An event of `kind` with only who, when and where filled in.
    pub fn new(
        kind: AuditKind,
        time: EpochMillis,
        request_id: &str,
        caller: &str,
        cluster: String,
        outcome: AuditOutcome,
    ) -> AuditEvent {
        AuditEvent {
            seq: 0,
            kind,
            action: None,
            time,
            request_id: request_id.to_owned(),
            caller: caller.to_owned(),
            cluster,
            namespace: None,
            service_account: None,
            pod_name: None,
            pod_uid: None,
            node_name: None,
            caller_node: None,
            association_id: None,
            role_arn: None,
            before: None,
            after: None,
            outcome,
            error_code: None,
        }
    }
}

/// `GET /podid/v1/audit` answer: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListAuditResponse {
    /// One page of events.
    pub events: Vec<AuditEvent>,
    /// Token of the next (older) page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn changes_keep_only_the_fields_that_differ() {
        let before = AuditState {
            namespace: Some("ns".into()),
            role_arn: Some("arn:aws:iam::111122223333:role/a".into()),
            target_role_arn: Some("arn:aws:iam::111122223333:role/t".into()),
            tag_keys: Some(vec!["team".into()]),
            ..Default::default()
        };
        let after = AuditState {
            namespace: Some("ns".into()),
            role_arn: Some("arn:aws:iam::111122223333:role/b".into()),
            tag_keys: Some(vec!["team".into()]),
            ..Default::default()
        };
        let (old, new) = AuditState::changes(&before, &after);
        assert_eq!(
            serde_json::to_value(&old).unwrap(),
            serde_json::json!({
                "roleArn": "arn:aws:iam::111122223333:role/a",
                "targetRoleArn": "arn:aws:iam::111122223333:role/t"
            })
        );
        assert_eq!(
            serde_json::to_value(&new).unwrap(),
            serde_json::json!({"roleArn": "arn:aws:iam::111122223333:role/b"})
        );
        let (same_old, same_new) = AuditState::changes(&before, &before);
        assert!(same_old.is_empty() && same_new.is_empty());
    }

    #[test]
    fn events_without_a_kind_read_as_credential_events() {
        let event: AuditEvent = serde_json::from_value(serde_json::json!({
            "time": 1, "requestId": "r", "caller": "k", "cluster": "c", "outcome": "issued"
        }))
        .unwrap();
        assert_eq!(event.kind, AuditKind::Credential);
        assert_eq!(
            AuditOutcome::parse("succeeded"),
            Some(AuditOutcome::Succeeded)
        );
        assert_eq!(AuditKind::parse("change"), Some(AuditKind::Change));
        assert_eq!(AuditKind::parse("other"), None);
    }
}
