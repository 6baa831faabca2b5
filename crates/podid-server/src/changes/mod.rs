//! The change feed of a cluster's associations, `GET /podid/v1/clusters/{name}/changes`:
//! a long poll that agents and the webhook follow to drop revoked credentials at once.

use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::Extension;
use podid_api::changes::{ChangesResponse, MAX_CHANGES_PER_PAGE, MAX_WAIT_SECONDS};
use podid_api::{validate, ApiError};
use tokio::time::Instant;

use crate::authz::{Operation, Principal};
use crate::wire::{answer, path_error, query_pairs, store_error};
use crate::{AppState, SharedState};

pub(crate) mod notify;
pub(crate) mod retention;

pub(crate) use notify::ChangeNotifier;

/// The parameters of a feed request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FeedQuery {
    /// Changes after this position; `None`: only the feed's end.
    after: Option<i64>,
    /// How long to wait for a change when there is none yet.
    wait: Duration,
    /// The most changes in one answer.
    max_results: u32,
}

/// `value` as a whole number in `min..=max`, else a 400 naming `name`.
fn number(name: &str, value: &str, min: i64, max: i64) -> Result<i64, ApiError> {
    match value.parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::invalid_parameter(format!(
            "{name} '{}' must be a whole number from {min} to {max}",
            podid_api::arn::printable(value)
        ))),
    }
}

/// Reads `after`, `waitSeconds` and `maxResults`; any other parameter is refused.
fn parse_query(raw: &Option<String>) -> Result<FeedQuery, ApiError> {
    let mut query = FeedQuery {
        after: None,
        wait: Duration::ZERO,
        max_results: MAX_CHANGES_PER_PAGE as u32,
    };
    for (key, value) in query_pairs(raw) {
        match key.as_str() {
            "after" => query.after = Some(number("after", &value, 0, i64::MAX)?),
            "waitSeconds" => {
                let max = MAX_WAIT_SECONDS as i64;
                let seconds = number("waitSeconds", &value, 0, max)?;
                query.wait = Duration::from_secs(seconds.unsigned_abs());
            }
            "maxResults" => {
                let max = MAX_CHANGES_PER_PAGE as i64;
                let n = number("maxResults", &value, 1, max)?;
                query.max_results = u32::try_from(n).unwrap_or(1);
            }
            other => {
                return Err(ApiError::invalid_parameter(format!(
                    "unknown parameter '{}': the feed takes after, waitSeconds and maxResults",
                    podid_api::arn::printable(other)
                )))
            }
        }
    }
    Ok(query)
}

/// `GET /podid/v1/clusters/{name}/changes?after=N&waitSeconds=W&maxResults=M`.
pub async fn list(
    State(state): State<SharedState>,
    Extension(principal): Extension<Principal>,
    name: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Response {
    answer(Operation::ListAssociationChanges, &principal, async {
        let Path(name) = name.map_err(path_error)?;
        validate::cluster_name(&name)?;
        let query = parse_query(&raw)?;
        follow(&state, &name, &query).await
    })
    .await
}

/// The cluster's changes after `query.after`, waiting up to `query.wait` for
/// one; 404 for a cluster that is not registered and has nothing to tell (a
/// deregistered cluster's last changes, `cluster-delete` among them, are still
/// answered to a follower behind them).
async fn follow(
    state: &AppState,
    cluster: &str,
    query: &FeedQuery,
) -> Result<ChangesResponse, ApiError> {
    let deadline = Instant::now() + query.wait;
    // Subscribed before the first look: a write committed after it wakes the wait.
    let mut woken = state.changes.subscribe();
    let mut registered = false;
    loop {
        let answer = state
            .store
            .association_changes(cluster, query.after, query.max_results)
            .await
            .map_err(store_error)?;
        if !answer.changes.is_empty() {
            return Ok(answer);
        }
        if !registered {
            state
                .store
                .get_cluster(cluster)
                .await
                .map_err(store_error)?
                .ok_or_else(|| {
                    ApiError::not_found(format!("No cluster found for name: {cluster}."))
                })?;
            registered = true;
        }
        let now = Instant::now();
        if answer.reset || query.after.is_none() || now >= deadline || state.changes.is_closing() {
            return Ok(answer);
        }
        let nap = (deadline - now).min(state.changes.recheck());
        if let Ok(Err(_)) = tokio::time::timeout(nap, woken.changed()).await {
            // No notifier any more (not while the state lives): look every nap.
            tokio::time::sleep(nap).await;
        }
    }
}

#[cfg(test)]
mod tests;
