//! `GET /podid/v1/audit`: the audit trail, newest first, filtered.

use crate::authz::{Operation, Principal};
use crate::wire::{answer, query_pairs, store_error, SubjectFilter};

/// `GET /podid/v1/audit?kind&cluster&namespace&serviceAccount&outcome&since&maxResults&nextToken`:
/// the audit trail, newest first. `kind` is `credential` or `change`;
/// `since` is epoch seconds.
pub async fn list(
    axum::extract::State(state): axum::extract::State<crate::SharedState>,
    axum::Extension(principal): axum::Extension<Principal>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> axum::response::Response {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use podid_api::{validate, ApiError};

    answer(Operation::ListAuditEvents, &principal, async {
        let mut query = podid_store::AuditQuery {
            limit: 100,
            ..Default::default()
        };
        let mut subject = SubjectFilter::default();
        let bad = |what: &str, v: &str| {
            ApiError::invalid_parameter(format!(
                "{what} '{}' is invalid",
                podid_api::arn::printable(v)
            ))
        };
        for (key, value) in query_pairs(&raw) {
            match key.as_str() {
                "cluster" => {
                    validate::cluster_name(&value)?;
                    query.cluster = Some(value);
                }
                "outcome" => {
                    query.outcome = Some(
                        podid_api::audit::AuditOutcome::parse(&value).ok_or_else(|| {
                            bad("outcome (issued, succeeded, denied or failed)", &value)
                        })?,
                    );
                }
                "kind" => {
                    query.kind = Some(
                        podid_api::audit::AuditKind::parse(&value)
                            .ok_or_else(|| bad("kind (credential or change)", &value))?,
                    );
                }
                "since" => {
                    let secs: f64 = value
                        .parse()
                        .map_err(|_| bad("since (epoch seconds)", &value))?;
                    if !secs.is_finite() {
                        return Err(bad("since (epoch seconds)", &value));
                    }
                    query.since = Some(podid_api::EpochMillis((secs * 1000.0) as i64));
                }
                "maxResults" => {
                    let n: i64 = value.parse().map_err(|_| bad("maxResults", &value))?;
                    validate::max_results(n)?;
                    query.limit = n as u32;
                }
                "nextToken" => {
                    let decoded = URL_SAFE_NO_PAD
                        .decode(&value)
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .and_then(|s| s.strip_prefix("audit:").and_then(|n| n.parse::<i64>().ok()))
                        .ok_or_else(|| bad("nextToken", &value))?;
                    query.before = Some(decoded);
                }
                _ => subject.take(&key, value)?,
            }
        }
        query.namespace = subject.namespace;
        query.service_account = subject.service_account;
        let page = state.store.list_audit(&query).await.map_err(store_error)?;
        Ok(podid_api::audit::ListAuditResponse {
            events: page.events,
            next_token: page
                .next
                .map(|n| URL_SAFE_NO_PAD.encode(format!("audit:{n}"))),
        })
    })
    .await
}
