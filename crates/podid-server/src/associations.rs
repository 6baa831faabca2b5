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
    PodIdentityAssociation, TagsBody, UpdateAssociationRequest,
};
use podid_api::{validate, ApiError};
use podid_store::{ListQuery, StoredAssociation};
use rand::Rng;
use sha2::{Digest, Sha256};

use crate::authz::{Operation, Principal, Role};
use crate::wire::{
    answer, parse_json, path_error, query_pairs, store_error, RequestId, SubjectFilter,
};
use crate::{AppState, SharedState};

mod change;
pub(crate) use change::{
    create_association, delete_association, tag_association, untag_association, update_association,
    Caller,
};

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
pub(crate) fn to_wire(
    state: &AppState,
    viewer: &Principal,
    a: StoredAssociation,
) -> PodIdentityAssociation {
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
        let caller = Caller {
            principal: &principal,
            request_id: &request_id,
        };
        let created = create_association(&state, caller, &cluster, &req).await?;
        Ok(AssociationResponse {
            association: to_wire(&state, &principal, created),
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

pub(crate) async fn load(
    state: &AppState,
    cluster: &str,
    id: &str,
) -> Result<StoredAssociation, ApiError> {
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
        let caller = Caller {
            principal: &principal,
            request_id: &request_id,
        };
        let written = update_association(&state, caller, &cluster, &id, &req).await?;
        Ok(AssociationResponse {
            association: to_wire(&state, &principal, written),
        })
    })
    .await
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
        let caller = Caller {
            principal: &principal,
            request_id: &request_id,
        };
        let deleted = delete_association(&state, caller, &cluster, &id).await?;
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
        let caller = Caller {
            principal: &principal,
            request_id: &request_id,
        };
        tag_association(&state, caller, &cluster, &id, req.tags).await?;
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
        let caller = Caller {
            principal: &principal,
            request_id: &request_id,
        };
        untag_association(&state, caller, &cluster, &id, &keys).await?;
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
