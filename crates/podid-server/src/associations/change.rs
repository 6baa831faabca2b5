//! The changing association operations (create, update, delete, tag, untag) as
//! core functions: validation, the store write and the change audit in one place,
//! called by the API's handlers and by the web console alike.

use podid_api::association::{CreateAssociationRequest, Tags, UpdateAssociationRequest};
use podid_api::error::ErrorKind;
use podid_api::{validate, ApiError};
use podid_store::{IdempotencyKey, StoredAssociation};

use super::{digest, load, new_association_id};
use crate::authz::{Operation, Principal};
use crate::broker::audit::change::{association_state, tag_keys, Change, Changer};
use crate::wire::{store_error, RequestId, MAX_UPDATE_ATTEMPTS};
use crate::AppState;

/// Who asks for a change: the key and the request's id (for the audit).
#[derive(Clone, Copy)]
pub(crate) struct Caller<'a> {
    /// The key that asked.
    pub(crate) principal: &'a Principal,
    /// The request's id.
    pub(crate) request_id: &'a RequestId,
}

impl Caller<'_> {
    /// `Ok` if the key's role may call `operation` on `cluster`, else `AccessDenied`.
    fn authorise(&self, operation: Operation, cluster: &str) -> Result<(), ApiError> {
        self.principal.authorise(operation)?;
        if self.principal.clusters.allows(cluster) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorKind::AccessDenied,
                format!(
                    "key {} is scoped to clusters and may not act on cluster '{}'",
                    self.principal.access_key_id,
                    podid_api::arn::printable(cluster)
                ),
            ))
        }
    }

    fn changer(&self) -> Changer<'_> {
        Changer::of(self.principal, self.request_id)
    }
}

fn required<'a>(field: &str, value: &'a Option<String>) -> Result<&'a str, ApiError> {
    value
        .as_deref()
        .ok_or_else(|| ApiError::invalid_parameter(format!("{field} is required")))
}

/// CreatePodIdentityAssociation in `cluster`: validates, writes, audits; returns
/// the association (an idempotent replay's is the first one).
pub(crate) async fn create_association(
    state: &AppState,
    caller: Caller<'_>,
    cluster: &str,
    req: &CreateAssociationRequest,
) -> Result<StoredAssociation, ApiError> {
    caller.authorise(Operation::CreatePodIdentityAssociation, cluster)?;
    validate::cluster_name(cluster)?;
    let namespace = required("namespace", &req.namespace)?;
    let service_account = required("serviceAccount", &req.service_account)?;
    let role_arn = required("roleArn", &req.role_arn)?;
    validate::namespace(namespace)?;
    validate::service_account(service_account)?;
    validate::role_arn("roleArn", role_arn)?;
    if let Some(target) = &req.target_role_arn {
        validate::role_arn("targetRoleArn", target)?;
    }
    let tags = req.tags.clone().unwrap_or_default();
    validate::tags(&tags)?;
    let disable_session_tags = req.disable_session_tags.unwrap_or(false);
    if let Some(policy) = &req.policy {
        validate::policy(policy, disable_session_tags)?;
    }
    let idempotency = match &req.client_request_token {
        Some(token) => {
            validate::client_request_token(token)?;
            let mut canonical = req.clone();
            canonical.client_request_token = None;
            let json = serde_json::to_string(&canonical).unwrap_or_default();
            Some(IdempotencyKey {
                token: token.clone(),
                operation: "create".to_owned(),
                request_digest: digest(&[cluster, &json]),
            })
        }
        None => None,
    };
    let now = state.clock.now_millis();
    let record = StoredAssociation {
        id: new_association_id(),
        cluster: cluster.to_owned(),
        namespace: namespace.to_owned(),
        service_account: service_account.to_owned(),
        role_arn: role_arn.to_owned(),
        target_role_arn: req.target_role_arn.clone(),
        external_id: uuid::Uuid::new_v4().to_string(),
        disable_session_tags,
        policy: req.policy.clone(),
        tags,
        created_at: now,
        modified_at: now,
    };
    let written = state
        .store
        .create_association(&record, idempotency.as_ref())
        .await
        .map_err(store_error);
    state.forget_lookups();
    state.changes.published();
    // A replay wrote nothing: no change to record.
    if !matches!(&written, Ok(w) if w.replayed) {
        let made = written.as_ref().ok().map(|w| w.association.id.as_str());
        let mut change = Change::new(Operation::CreatePodIdentityAssociation, cluster, made);
        change.after = Some(association_state(&record));
        change
            .record(state, &caller.changer(), written.as_ref().err())
            .await;
    }
    let written = written?;
    if !written.replayed {
        tracing::info!(
            cluster = %cluster,
            association_id = %written.association.id,
            namespace,
            service_account,
            "association created"
        );
    }
    Ok(written.association)
}

/// UpdatePodIdentityAssociation: validates, writes (retrying a concurrent
/// write), audits the diff; returns the association as written.
pub(crate) async fn update_association(
    state: &AppState,
    caller: Caller<'_>,
    cluster: &str,
    id: &str,
    req: &UpdateAssociationRequest,
) -> Result<StoredAssociation, ApiError> {
    caller.authorise(Operation::UpdatePodIdentityAssociation, cluster)?;
    validate::cluster_name(cluster)?;
    validate::association_id(id)?;
    if req.role_arn.is_none() && req.target_role_arn.is_none() && req.disable_session_tags.is_none()
    {
        return Err(ApiError::invalid_parameter(
            "an update must change at least one of roleArn, targetRoleArn \
             and disableSessionTags",
        ));
    }
    if let Some(role) = &req.role_arn {
        validate::role_arn("roleArn", role)?;
    }
    if let Some(target) = req.target_role_arn.as_deref().filter(|t| !t.is_empty()) {
        validate::role_arn("targetRoleArn", target)?;
    }
    if let Some(token) = &req.client_request_token {
        validate::client_request_token(token)?;
    }
    let idempotency = req.client_request_token.as_ref().map(|token| {
        let mut canonical = req.clone();
        canonical.client_request_token = None;
        let json = serde_json::to_string(&canonical).unwrap_or_default();
        IdempotencyKey {
            token: token.clone(),
            operation: "update".to_owned(),
            request_digest: digest(&[cluster, id, &json]),
        }
    });
    // Read, change, write if nobody wrote in between; otherwise read again.
    let mut attempt = 0;
    let written = loop {
        attempt += 1;
        let current = match load(state, cluster, id).await {
            Ok(current) => current,
            Err(e) => break Err(e),
        };
        let updated = apply_update(req, current.clone(), state.clock.now_millis())?;
        let result = state
            .store
            .update_association(&updated, current.modified_at, idempotency.as_ref())
            .await;
        state.forget_lookups();
        state.changes.published();
        match result {
            Err(podid_store::StoreError::Conflict) if attempt < MAX_UPDATE_ATTEMPTS => continue,
            result => break result.map(|w| (current, w)).map_err(store_error),
        }
    };
    if !matches!(&written, Ok((_, w)) if w.replayed) {
        let mut change = Change::new(Operation::UpdatePodIdentityAssociation, cluster, Some(id));
        if let Ok((before, w)) = &written {
            change = change.diff(
                &association_state(before),
                &association_state(&w.association),
            );
        }
        change
            .record(state, &caller.changer(), written.as_ref().err())
            .await;
    }
    let (_, written) = written?;
    Ok(written.association)
}

/// `current` with an update request applied, validated as a whole. The new
/// `modifiedAt` is always later than the old one: it is the version that
/// concurrent updates and the broker's credential cache key on.
fn apply_update(
    req: &UpdateAssociationRequest,
    current: StoredAssociation,
    now: podid_api::EpochMillis,
) -> Result<StoredAssociation, ApiError> {
    let disable_session_tags = req
        .disable_session_tags
        .unwrap_or(current.disable_session_tags);
    let policy = match &req.policy {
        Some(p) if p.is_empty() => None,
        Some(p) => Some(p.clone()),
        None => current.policy.clone(),
    };
    if let Some(p) = &policy {
        validate::policy(p, disable_session_tags)?;
    }
    let target_role_arn = match &req.target_role_arn {
        Some(t) if t.is_empty() => None,
        Some(t) => Some(t.clone()),
        None => current.target_role_arn.clone(),
    };
    Ok(StoredAssociation {
        role_arn: req
            .role_arn
            .clone()
            .unwrap_or_else(|| current.role_arn.clone()),
        target_role_arn,
        disable_session_tags,
        policy,
        modified_at: podid_api::EpochMillis(now.0.max(current.modified_at.0 + 1)),
        ..current
    })
}

/// DeletePodIdentityAssociation: deletes, audits; returns what was deleted.
pub(crate) async fn delete_association(
    state: &AppState,
    caller: Caller<'_>,
    cluster: &str,
    id: &str,
) -> Result<StoredAssociation, ApiError> {
    caller.authorise(Operation::DeletePodIdentityAssociation, cluster)?;
    validate::cluster_name(cluster)?;
    validate::association_id(id)?;
    let deleted = state
        .store
        .delete_association(cluster, id)
        .await
        .map_err(store_error);
    state.forget_lookups();
    state.changes.published();
    let mut change = Change::new(Operation::DeletePodIdentityAssociation, cluster, Some(id));
    change.before = deleted.as_ref().ok().map(association_state);
    change
        .record(state, &caller.changer(), deleted.as_ref().err())
        .await;
    let deleted = deleted?;
    tracing::info!(cluster = %cluster, association_id = %id, "association deleted");
    Ok(deleted)
}

/// TagResource on an association: sets (adds or overwrites) `tags`, audits the keys.
pub(crate) async fn tag_association(
    state: &AppState,
    caller: Caller<'_>,
    cluster: &str,
    id: &str,
    tags: Option<Tags>,
) -> Result<(), ApiError> {
    caller.authorise(Operation::TagResource, cluster)?;
    let tags = tags
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::invalid_parameter("tags is required"))?;
    validate::tags(&tags)?;
    let tagged = state
        .store
        .update_tags(cluster, id, &tags, &[])
        .await
        .map_err(store_error);
    state.changes.published();
    // The keys it set (added or overwritten).
    let mut change = Change::new(Operation::TagResource, cluster, Some(id));
    change.after = Some(tag_keys(tags.keys()));
    change
        .record(state, &caller.changer(), tagged.as_ref().err())
        .await;
    tagged.map(|_| ())
}

/// UntagResource on an association: removes `keys`, audits them.
pub(crate) async fn untag_association(
    state: &AppState,
    caller: Caller<'_>,
    cluster: &str,
    id: &str,
    keys: &[String],
) -> Result<(), ApiError> {
    caller.authorise(Operation::UntagResource, cluster)?;
    if keys.is_empty() {
        return Err(ApiError::invalid_parameter("tagKeys is required"));
    }
    if keys.len() > validate::MAX_TAGS {
        return Err(ApiError::invalid_parameter(
            "at most 50 tagKeys may be given",
        ));
    }
    for key in keys {
        validate::tag_key(key)?;
    }
    let untagged = state
        .store
        .update_tags(cluster, id, &Tags::new(), keys)
        .await
        .map_err(store_error);
    state.changes.published();
    // The keys it removed.
    let mut change = Change::new(Operation::UntagResource, cluster, Some(id));
    change.before = Some(tag_keys(keys));
    change
        .record(state, &caller.changer(), untagged.as_ref().err())
        .await;
    untagged.map(|_| ())
}
