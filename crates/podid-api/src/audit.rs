//! Audit events of the credential broker: one per decision.

use serde::{Deserialize, Serialize};

use crate::EpochMillis;

/// What the broker decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditOutcome {
    /// Credentials were handed out.
    Issued,
    /// The request was refused (bad token, no association, STS denied).
    Denied,
    /// The broker could not answer (STS unavailable, throttled, internal error).
    Failed,
}

impl AuditOutcome {
    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Issued => "issued",
            AuditOutcome::Denied => "denied",
            AuditOutcome::Failed => "failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "issued" => Some(AuditOutcome::Issued),
            "denied" => Some(AuditOutcome::Denied),
            "failed" => Some(AuditOutcome::Failed),
            _ => None,
        }
    }
}

/// One broker decision. Never holds a token, a key or any other secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// Position in the audit log (assigned when stored; 0 before).
    #[serde(default)]
    pub seq: i64,
    /// When the decision was made.
    pub time: EpochMillis,
    /// The request's `x-amzn-requestid`.
    pub request_id: String,
    /// The access key id the caller signed with.
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
    /// The association used, when one was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub association_id: Option<String>,
    /// The role the pod got (the target role when chaining), when one was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// The decision.
    pub outcome: AuditOutcome,
    /// The error answered, for refusals and failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
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
