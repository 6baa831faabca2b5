//! The EKS pod-identity-association operations.

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use podid_api::association::{
    AssociationResponse, CreateAssociationRequest, ListAssociationsResponse,
    PodIdentityAssociation, Tags, TagsBody, UpdateAssociationRequest,
};
use podid_api::{validate, ApiError};
use podid_store::{IdempotencyKey, ListQuery, StoredAssociation};
use rand::Rng;
use sha2::{Digest, Sha256};

use crate::authz::{Operation, Principal, Role};
use crate::broker::audit::change::{association_state, tag_keys, Change, Changer};
use crate::wire::{
    answer, parse_json, path_error, query_pairs, store_error, RequestId, SubjectFilter,
    MAX_UPDATE_ATTEMPTS,
};
use crate::{AppState, SharedState};

const ID_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A new association id: `a-` and 17 random lowercase alphanumerics.
pub fn new_association_id() -> String {
    let mut rng = rand::rng();
    let tail: String = (0..17)
        .map(|_| ID_ALPHABET[rng.random_range(0..ID_ALPHABET.len())] as char)
        .collect();
    format!("a-{tail}")
}

/// The association as the API shows it to `viewer`: its `externalId` only to admins.
fn to_wire(state: &AppState, viewer: &Principal, a: StoredAssociation) -> PodIdentityAssociation {
    let external_id = (viewer.role == Role::Admin).then_some(a.external_id);
    PodIdentityAssociation {
        association_arn: state.scope.association_arn(&a.cluster, &a.id),
        cluster_name: a.cluster,
        namespace: a.namespace,
        service_account: a.service_account,
        role_arn: a.role_arn,
        association_id: a.id,
        tags: a.tags,
        created_at: a.created_at,
        modified_at: a.modified_at,
        owner_arn: None,
        disable_session_tags: a.disable_session_tags,
        target_role_arn: a.target_role_arn,
        external_id,
        policy: a.policy,
    }
}

fn required<'a>(field: &str, value: &'a Option<String>) -> Result<&'a str, ApiError> {
    value
        .as_deref()
        .ok_or_else(|| ApiError::invalid_parameter(format!("{field} is required")))
}

/// A digest of what an idempotent request asks for, so a reused token with a
/// different request is recognised.
fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

/// `POST /clusters/{cluster}/pod-identity-associations`.
pub async fn create(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    cluster: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(Operation::CreatePodIdentityAssociation, &principal, async {
        let Path(cluster) = cluster.map_err(path_error)?;
        validate::cluster_name(&cluster)?;
        let req: CreateAssociationRequest = parse_json(&headers, &body)?;
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
                    request_digest: digest(&[&cluster, &json]),
                })
            }
            None => None,
        };
        let now = state.clock.now_millis();
        let record = StoredAssociation {
            id: new_association_id(),
            cluster: cluster.clone(),
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
            let mut change = Change::new(Operation::CreatePodIdentityAssociation, &cluster, made);
            change.after = Some(association_state(&record));
            let who = Changer::of(&principal, &request_id);
            change.record(&state, &who, written.as_ref().err()).await;
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
        Ok(AssociationResponse {
            association: to_wire(&state, &principal, written.association),
        })
    })
    .await
}

/// `GET /clusters/{cluster}/pod-identity-associations/{id}`.
pub async fn describe(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    params: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    answer(
        Operation::DescribePodIdentityAssociation,
        &principal,
        async {
            let Path((cluster, id)) = params.map_err(path_error)?;
            let found = load(&state, &cluster, &id).await?;
            Ok(AssociationResponse {
                association: to_wire(&state, &principal, found),
            })
        },
    )
    .await
}

async fn load(state: &AppState, cluster: &str, id: &str) -> Result<StoredAssociation, ApiError> {
    validate::cluster_name(cluster)?;
    validate::association_id(id)?;
    state
        .store
        .get_association(cluster, id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "Pod identity association {id} not found in cluster {cluster}."
            ))
        })
}

/// An opaque, filter-bound page token.
fn encode_next_token(after: i64, query: &ListQuery) -> String {
    let raw = format!(
        "v1\n{after}\n{}",
        digest(&[
            &query.cluster,
            query.namespace.as_deref().unwrap_or(""),
            query.service_account.as_deref().unwrap_or("")
        ])
    );
    URL_SAFE_NO_PAD.encode(raw)
}

fn decode_next_token(token: &str, query: &ListQuery) -> Result<i64, ApiError> {
    let bad = || ApiError::invalid_parameter("nextToken is invalid or belongs to another query");
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let mut lines = raw.split('\n');
    let (Some("v1"), Some(after), Some(bound), None) =
        (lines.next(), lines.next(), lines.next(), lines.next())
    else {
        return Err(bad());
    };
    let after: i64 = after.parse().map_err(|_| bad())?;
    let expected = digest(&[
        &query.cluster,
        query.namespace.as_deref().unwrap_or(""),
        query.service_account.as_deref().unwrap_or(""),
    ]);
    if bound != expected {
        return Err(bad());
    }
    Ok(after)
}

/// `GET /clusters/{cluster}/pod-identity-associations`.
pub async fn list(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    cluster: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Response {
    answer(Operation::ListPodIdentityAssociations, &principal, async {
        let Path(cluster) = cluster.map_err(path_error)?;
        validate::cluster_name(&cluster)?;
        let mut query = ListQuery {
            cluster: cluster.clone(),
            limit: 100,
            ..Default::default()
        };
        let mut next_token = None;
        let mut subject = SubjectFilter::default();
        for (key, value) in query_pairs(&raw) {
            match key.as_str() {
                "maxResults" => {
                    let n: i64 = value.parse().map_err(|_| {
                        ApiError::invalid_parameter(format!(
                            "maxResults '{}' is not a number",
                            podid_api::arn::printable(&value)
                        ))
                    })?;
                    validate::max_results(n)?;
                    query.limit = n as u32;
                }
                "nextToken" => next_token = Some(value),
                _ => subject.take(&key, value)?,
            }
        }
        query.namespace = subject.namespace;
        query.service_account = subject.service_account;
        if let Some(token) = next_token {
            query.after = Some(decode_next_token(&token, &query)?);
        }
        if state
            .store
            .get_cluster(&cluster)
            .await
            .map_err(store_error)?
            .is_none()
        {
            return Err(ApiError::not_found(format!(
                "No cluster found for name: {cluster}."
            )));
        }
        let page = state
            .store
            .list_associations(&query)
            .await
            .map_err(store_error)?;
        Ok(ListAssociationsResponse {
            associations: page
                .items
                .into_iter()
                .map(|a| to_wire(&state, &principal, a).summary())
                .collect(),
            next_token: page.next.map(|after| encode_next_token(after, &query)),
        })
    })
    .await
}

/// `POST /clusters/{cluster}/pod-identity-associations/{id}`.
pub async fn update(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    params: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(Operation::UpdatePodIdentityAssociation, &principal, async {
        let Path((cluster, id)) = params.map_err(path_error)?;
        validate::cluster_name(&cluster)?;
        validate::association_id(&id)?;
        let req: UpdateAssociationRequest = parse_json(&headers, &body)?;
        if req.role_arn.is_none()
            && req.target_role_arn.is_none()
            && req.disable_session_tags.is_none()
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
                request_digest: digest(&[&cluster, &id, &json]),
            }
        });
        // Read, change, write if nobody wrote in between; otherwise read again.
        let mut attempt = 0;
        let written = loop {
            attempt += 1;
            let current = match load(&state, &cluster, &id).await {
                Ok(current) => current,
                Err(e) => break Err(e),
            };
            let updated = apply_update(&req, current.clone(), state.clock.now_millis())?;
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
            let mut change =
                Change::new(Operation::UpdatePodIdentityAssociation, &cluster, Some(&id));
            if let Ok((before, w)) = &written {
                change = change.diff(
                    &association_state(before),
                    &association_state(&w.association),
                );
            }
            let who = Changer::of(&principal, &request_id);
            change.record(&state, &who, written.as_ref().err()).await;
        }
        let (_, written) = written?;
        Ok(AssociationResponse {
            association: to_wire(&state, &principal, written.association),
        })
    })
    .await
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

/// `DELETE /clusters/{cluster}/pod-identity-associations/{id}`.
pub async fn delete(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    params: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    answer(Operation::DeletePodIdentityAssociation, &principal, async {
        let Path((cluster, id)) = params.map_err(path_error)?;
        validate::cluster_name(&cluster)?;
        validate::association_id(&id)?;
        let deleted = state
            .store
            .delete_association(&cluster, &id)
            .await
            .map_err(store_error);
        state.forget_lookups();
        state.changes.published();
        let mut change = Change::new(Operation::DeletePodIdentityAssociation, &cluster, Some(&id));
        change.before = deleted.as_ref().ok().map(association_state);
        let who = Changer::of(&principal, &request_id);
        change.record(&state, &who, deleted.as_ref().err()).await;
        let deleted = deleted?;
        tracing::info!(cluster = %cluster, association_id = %id, "association deleted");
        Ok(AssociationResponse {
            association: to_wire(&state, &principal, deleted),
        })
    })
    .await
}

fn resource(
    state: &AppState,
    arn: Result<Path<String>, PathRejection>,
) -> Result<(String, String), ApiError> {
    let Path(arn) = arn.map_err(path_error)?;
    let (cluster, id) = state.scope.parse_association_arn(&arn)?;
    Ok((cluster.to_owned(), id.to_owned()))
}

/// `GET /tags/{arn}`.
pub async fn list_tags(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    arn: Result<Path<String>, PathRejection>,
) -> Response {
    answer(Operation::ListTagsForResource, &principal, async {
        let (cluster, id) = resource(&state, arn)?;
        let found = load(&state, &cluster, &id).await?;
        Ok(TagsBody {
            tags: Some(found.tags),
        })
    })
    .await
}

/// `POST /tags/{arn}`.
pub async fn tag(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    arn: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(Operation::TagResource, &principal, async {
        let (cluster, id) = resource(&state, arn)?;
        let req: TagsBody = parse_json(&headers, &body)?;
        let tags = req
            .tags
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::invalid_parameter("tags is required"))?;
        validate::tags(&tags)?;
        let tagged = state
            .store
            .update_tags(&cluster, &id, &tags, &[])
            .await
            .map_err(store_error);
        state.changes.published();
        // The keys it set (added or overwritten).
        let mut change = Change::new(Operation::TagResource, &cluster, Some(&id));
        change.after = Some(tag_keys(tags.keys()));
        let who = Changer::of(&principal, &request_id);
        change.record(&state, &who, tagged.as_ref().err()).await;
        tagged?;
        Ok(serde_json::json!({}))
    })
    .await
}

/// `DELETE /tags/{arn}?tagKeys=…`.
pub async fn untag(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    arn: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Response {
    answer(Operation::UntagResource, &principal, async {
        let (cluster, id) = resource(&state, arn)?;
        let keys: Vec<String> = query_pairs(&raw)
            .into_iter()
            .filter(|(k, _)| k == "tagKeys")
            .map(|(_, v)| v)
            .collect();
        if keys.is_empty() {
            return Err(ApiError::invalid_parameter("tagKeys is required"));
        }
        if keys.len() > validate::MAX_TAGS {
            return Err(ApiError::invalid_parameter(
                "at most 50 tagKeys may be given",
            ));
        }
        for key in &keys {
            validate::tag_key(key)?;
        }
        let untagged = state
            .store
            .update_tags(&cluster, &id, &Tags::new(), &keys)
            .await
            .map_err(store_error);
        state.changes.published();
        // The keys it removed.
        let mut change = Change::new(Operation::UntagResource, &cluster, Some(&id));
        change.before = Some(tag_keys(&keys));
        let who = Changer::of(&principal, &request_id);
        change.record(&state, &who, untagged.as_ref().err()).await;
        untagged?;
        Ok(serde_json::json!({}))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_eks_shape() {
        for _ in 0..100 {
            let id = new_association_id();
            assert!(validate::association_id(&id).is_ok(), "{id}");
        }
        assert_ne!(new_association_id(), new_association_id());
    }

    #[test]
    fn next_tokens_round_trip_and_are_bound_to_their_query() {
        let q = ListQuery {
            cluster: "blue".into(),
            namespace: Some("default".into()),
            limit: 10,
            ..Default::default()
        };
        let token = encode_next_token(42, &q);
        assert_eq!(decode_next_token(&token, &q).unwrap(), 42);
        let other = ListQuery {
            namespace: None,
            ..q.clone()
        };
        assert!(decode_next_token(&token, &other).is_err());
        for bad in ["", "!!!", "djE", &URL_SAFE_NO_PAD.encode("v1\nx\ny")] {
            assert!(decode_next_token(bad, &q).is_err(), "{bad}");
        }
    }
}
