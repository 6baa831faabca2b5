//! Change events: who changed which association or cluster, from what to
//! what. Recorded next to the store call that makes the change, so every
//! way in (the API today) records the same event.

use podid_api::audit::{AuditEvent, AuditKind, AuditOutcome, AuditState};
use podid_api::cluster::Cluster;
use podid_api::ApiError;
use podid_store::StoredAssociation;

use crate::authz::{Operation, Principal};
use crate::wire::RequestId;
use crate::AppState;

/// Who asked for a change: the signing key's id (`anonymous` without
/// authentication) and the request's id.
pub(crate) struct Changer<'a> {
    pub(crate) caller: &'a str,
    pub(crate) request_id: &'a str,
}

impl<'a> Changer<'a> {
    /// The caller and request of an API call.
    pub(crate) fn of(principal: &'a Principal, request_id: &'a RequestId) -> Self {
        Changer {
            caller: &principal.access_key_id,
            request_id: &request_id.0,
        }
    }
}

/// One change to record.
pub(crate) struct Change {
    /// The operation.
    pub(crate) action: Operation,
    /// The cluster changed, or whose association changed.
    pub(crate) cluster: String,
    /// The association changed.
    pub(crate) association_id: Option<String>,
    /// The touched fields before.
    pub(crate) before: Option<AuditState>,
    /// The touched fields after.
    pub(crate) after: Option<AuditState>,
}

impl Change {
    /// A change of `cluster` (and association `id`) by `action`, its fields not yet known.
    pub(crate) fn new(action: Operation, cluster: &str, id: Option<&str>) -> Change {
        Change {
            action,
            cluster: podid_api::arn::printable(cluster),
            association_id: id.map(podid_api::arn::printable),
            before: None,
            after: None,
        }
    }

    /// With `before` and `after` cut down to the fields that differ.
    pub(crate) fn diff(mut self, before: &AuditState, after: &AuditState) -> Change {
        let (old, new) = AuditState::changes(before, after);
        self.before = Some(old);
        self.after = Some(new);
        self
    }

    /// Records the change, or its refusal when `error` says it was not
    /// made, through the audit writer (never waiting long for room).
    pub(crate) async fn record(
        self,
        state: &AppState,
        who: &Changer<'_>,
        error: Option<&ApiError>,
    ) {
        let Some(broker) = &state.broker else {
            return;
        };
        let mut event = AuditEvent::new(
            AuditKind::Change,
            state.clock.now_millis(),
            who.request_id,
            who.caller,
            self.cluster,
            AuditOutcome::Succeeded,
        );
        event.action = Some(self.action.name().to_owned());
        event.association_id = self.association_id;
        event.before = self.before.filter(|s| !s.is_empty());
        event.after = self.after.filter(|s| !s.is_empty());
        if let Some(e) = error {
            event.outcome = super::outcome_of(e);
            event.error_code = Some(e.kind.name().to_owned());
        }
        broker.audit.record(event).await;
    }
}

/// An association's recorded fields: never its external id.
pub(crate) fn association_state(a: &StoredAssociation) -> AuditState {
    AuditState {
        namespace: Some(a.namespace.clone()),
        service_account: Some(a.service_account.clone()),
        role_arn: Some(a.role_arn.clone()),
        target_role_arn: a.target_role_arn.clone(),
        disable_session_tags: Some(a.disable_session_tags),
        policy: a.policy.clone(),
        tag_keys: Some(a.tags.keys().cloned().collect()),
        ..AuditState::default()
    }
}

/// Tag keys, as a state's field.
pub(crate) fn tag_keys<'a>(keys: impl IntoIterator<Item = &'a String>) -> AuditState {
    let mut keys: Vec<String> = keys.into_iter().cloned().collect();
    keys.sort();
    keys.dedup();
    AuditState {
        tag_keys: Some(keys),
        ..AuditState::default()
    }
}

/// A cluster's recorded fields: its keys by `kid`, not the document.
pub(crate) fn cluster_state(c: &Cluster) -> AuditState {
    let key_ids = c.jwks.get("keys").and_then(|k| k.as_array()).map(|keys| {
        keys.iter()
            .filter_map(|k| k.get("kid").and_then(|v| v.as_str()))
            .map(podid_api::arn::printable)
            .collect()
    });
    AuditState {
        issuer: Some(c.issuer.clone()),
        audience: Some(c.audience.clone()),
        cluster_arn: Some(c.cluster_arn.clone()),
        key_source: Some(c.key_source.as_str().to_owned()),
        jwks_uri: c.jwks_uri.clone(),
        key_ids,
        agent_identity: Some(c.agent_identity.as_str().to_owned()),
        agent_service_account: Some(c.agent_service_account.clone()),
        node_binding: Some(c.node_binding),
        token_review_url: c.token_review.as_ref().map(|r| r.api_server_url.clone()),
        ..AuditState::default()
    }
}
