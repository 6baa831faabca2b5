//! podid's cluster registry: `/podid/v1/clusters`.

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;
use podid_api::cluster::{
    Cluster, ClusterResponse, KeySource, ListClustersResponse, RegisterClusterRequest,
    UpdateClusterRequest, DEFAULT_AUDIENCE,
};
use podid_api::{validate, ApiError};

use crate::authz::{Operation, Principal};
use crate::broker::audit::change::{cluster_state, Change, Changer};
use crate::jwks::discover_jwks_uri;
use crate::wire::{answer, parse_json, path_error, store_error, RequestId, MAX_UPDATE_ATTEMPTS};
use crate::{AppState, SharedState};

mod agents;
mod token_review;

fn cluster_arn(value: &str) -> Result<(), ApiError> {
    let ok = value.starts_with("arn:")
        && value.len() <= 2048
        && value.split(':').count() >= 6
        && !value.contains(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_parameter(format!(
            "clusterArn '{}' is not an ARN",
            podid_api::arn::printable(value)
        )))
    }
}

/// The keys a registration or update names: (source, jwks uri, jwks document).
async fn resolve_keys(
    state: &AppState,
    issuer: &str,
    jwks: Option<serde_json::Value>,
    jwks_uri: Option<String>,
    discovery: bool,
) -> Result<Option<(KeySource, Option<String>, serde_json::Value)>, ApiError> {
    let given =
        usize::from(jwks.is_some()) + usize::from(jwks_uri.is_some()) + usize::from(discovery);
    if given > 1 {
        return Err(ApiError::invalid_parameter(
            "give exactly one key source: jwks, jwksUri or discovery",
        ));
    }
    let fetch_failed = |e: crate::jwks::FetchError| crate::jwks::caller_error(&e);
    if let Some(doc) = jwks {
        validate::jwks(&doc)?;
        return Ok(Some((KeySource::Inline, None, doc)));
    }
    let (source, uri) = if let Some(uri) = jwks_uri {
        validate::url("jwksUri", &uri)?;
        (KeySource::Uri, uri)
    } else if discovery {
        (
            KeySource::Discovery,
            discover_jwks_uri(state.fetcher.as_ref(), issuer)
                .await
                .map_err(fetch_failed)?,
        )
    } else {
        return Ok(None);
    };
    validate::url("jwks_uri", &uri)?;
    let doc = crate::jwks::fetch_jwks(state.fetcher.as_ref(), &uri)
        .await
        .map_err(fetch_failed)?;
    Ok(Some((source, Some(uri), doc)))
}

/// `POST /podid/v1/clusters`.
pub async fn register(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(Operation::RegisterCluster, &principal, async {
        let req: RegisterClusterRequest = parse_json(&headers, &body)?;
        let agents = agents::registered(&req)?;
        let review = req
            .token_review
            .as_ref()
            .map(token_review::settings)
            .transpose()?;
        let name = req
            .name
            .ok_or_else(|| ApiError::invalid_parameter("name is required"))?;
        validate::cluster_name(&name)?;
        let issuer = req
            .issuer
            .ok_or_else(|| ApiError::invalid_parameter("issuer is required"))?;
        validate::url("issuer", &issuer)?;
        let audience = req.audience.unwrap_or_else(|| DEFAULT_AUDIENCE.to_owned());
        validate::audience(&audience)?;
        let arn = req
            .cluster_arn
            .unwrap_or_else(|| state.scope.cluster_arn(&name));
        cluster_arn(&arn)?;
        if state
            .store
            .get_cluster(&name)
            .await
            .map_err(store_error)?
            .is_some()
        {
            return Err(store_error(podid_store::StoreError::ClusterExists(name)));
        }
        let (key_source, jwks_uri, jwks) = resolve_keys(
            &state,
            &issuer,
            req.jwks,
            req.jwks_uri,
            req.discovery.unwrap_or(false),
        )
        .await?
        .ok_or_else(|| {
            ApiError::invalid_parameter("a key source is required: jwks, jwksUri or discovery")
        })?;
        let now = state.clock.now_millis();
        let cluster = Cluster {
            name,
            issuer,
            audience,
            cluster_arn: arn,
            key_source,
            jwks_uri,
            jwks,
            agent_identity: agents.identity,
            agent_service_account: agents.service_account,
            node_binding: agents.node_binding,
            token_review: review,
            created_at: now,
            modified_at: now,
        };
        let inserted = state
            .store
            .insert_cluster(&cluster)
            .await
            .map_err(store_error);
        state.forget_lookups();
        let mut change = Change::new(Operation::RegisterCluster, &cluster.name, None);
        change.after = Some(cluster_state(&cluster));
        let who = Changer::of(&principal, &request_id);
        change.record(&state, &who, inserted.as_ref().err()).await;
        inserted?;
        tracing::info!(
            cluster = %cluster.name,
            issuer = %cluster.issuer,
            key_source = cluster.key_source.as_str(),
            agent_identity = cluster.agent_identity.as_str(),
            node_binding = cluster.node_binding,
            "cluster registered"
        );
        Ok(ClusterResponse { cluster })
    })
    .await
}

/// `GET /podid/v1/clusters`.
pub async fn list(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
) -> Response {
    answer(Operation::ListClusters, &principal, async {
        let clusters = state.store.list_clusters().await.map_err(store_error)?;
        Ok(ListClustersResponse { clusters })
    })
    .await
}

async fn load(state: &AppState, name: &str) -> Result<Cluster, ApiError> {
    validate::cluster_name(name)?;
    state
        .store
        .get_cluster(name)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::not_found(format!("No cluster found for name: {name}.")))
}

/// `GET /podid/v1/clusters/{name}`.
pub async fn describe(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    name: Result<Path<String>, PathRejection>,
) -> Response {
    answer(Operation::DescribeCluster, &principal, async {
        let Path(name) = name.map_err(path_error)?;
        Ok(ClusterResponse {
            cluster: load(&state, &name).await?,
        })
    })
    .await
}

/// `PATCH /podid/v1/clusters/{name}`.
pub async fn update(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(Operation::UpdateCluster, &principal, async {
        let Path(name) = name.map_err(path_error)?;
        let req: UpdateClusterRequest = parse_json(&headers, &body)?;
        if req == UpdateClusterRequest::default() {
            return Err(ApiError::invalid_parameter(
                "nothing to update: give issuer, audience, clusterArn, jwks, jwksUri or discovery",
            ));
        }
        // Fetch new keys once, outside the retry loop.
        let issuer_for_discovery = match &req.issuer {
            Some(i) => i.clone(),
            None => load(&state, &name).await?.issuer,
        };
        let keys = resolve_keys(
            &state,
            &issuer_for_discovery,
            req.jwks.clone(),
            req.jwks_uri.clone(),
            req.discovery.unwrap_or(false),
        )
        .await?;
        if let Some(issuer) = &req.issuer {
            validate::url("issuer", issuer)?;
        }
        if let Some(audience) = &req.audience {
            validate::audience(audience)?;
        }
        if let Some(arn) = &req.cluster_arn {
            cluster_arn(arn)?;
        }
        if let Some(account) = &req.agent_service_account {
            agents::check_service_account(account)?;
        }
        let review = token_review::updated(&req)?;
        // Read, change, write if nobody wrote in between; otherwise read again.
        let mut attempt = 0;
        let updated = loop {
            attempt += 1;
            let current = match load(&state, &name).await {
                Ok(current) => current,
                Err(e) => break Err(e),
            };
            let mut cluster = current.clone();
            if let Some(issuer) = &req.issuer {
                cluster.issuer = issuer.clone();
            }
            if let Some(audience) = &req.audience {
                cluster.audience = audience.clone();
            }
            if let Some(arn) = &req.cluster_arn {
                cluster.cluster_arn = arn.clone();
            }
            if let Some((source, uri, jwks)) = &keys {
                cluster.key_source = *source;
                cluster.jwks_uri = uri.clone();
                cluster.jwks = jwks.clone();
            }
            match agents::updated(&req, &current) {
                Ok(agents) => agents.apply(&mut cluster),
                Err(e) => break Err(e),
            }
            if let Some(review) = &review {
                cluster.token_review = review.clone();
            }
            cluster.modified_at =
                podid_api::EpochMillis(state.clock.now_millis().0.max(current.modified_at.0 + 1));
            let result = state
                .store
                .update_cluster(&cluster, current.modified_at)
                .await;
            state.forget_lookups();
            state.changes.published();
            match result {
                Err(podid_store::StoreError::Conflict) if attempt < MAX_UPDATE_ATTEMPTS => continue,
                result => break result.map(|()| (current, cluster)).map_err(store_error),
            }
        };
        let mut change = Change::new(Operation::UpdateCluster, &name, None);
        if let Ok((before, after)) = &updated {
            change = change.diff(&cluster_state(before), &cluster_state(after));
        }
        let who = Changer::of(&principal, &request_id);
        change.record(&state, &who, updated.as_ref().err()).await;
        let (_, cluster) = updated?;
        tracing::info!(cluster = %cluster.name, "cluster updated");
        Ok(ClusterResponse { cluster })
    })
    .await
}

/// `DELETE /podid/v1/clusters/{name}[?force=true]`.
pub async fn deregister(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    Extension(request_id): Extension<RequestId>,
    name: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Response {
    answer(Operation::DeregisterCluster, &principal, async {
        let Path(name) = name.map_err(path_error)?;
        validate::cluster_name(&name)?;
        let mut force = false;
        for (key, value) in url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()) {
            if key == "force" {
                force = match value.as_ref() {
                    "true" | "1" | "" => true,
                    "false" | "0" => false,
                    other => {
                        return Err(ApiError::invalid_parameter(format!(
                            "force '{}' must be true or false",
                            podid_api::arn::printable(other)
                        )))
                    }
                };
            }
        }
        let cluster = state
            .store
            .delete_cluster(&name, force)
            .await
            .map_err(store_error);
        state.forget_lookups();
        state.changes.published();
        let mut change = Change::new(Operation::DeregisterCluster, &name, None);
        change.before = cluster.as_ref().ok().map(cluster_state);
        let who = Changer::of(&principal, &request_id);
        change.record(&state, &who, cluster.as_ref().err()).await;
        let cluster = cluster?;
        tracing::info!(cluster = %name, force, "cluster deregistered");
        Ok(ClusterResponse { cluster })
    })
    .await
}
