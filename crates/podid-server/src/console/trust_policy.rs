//! `/console/trust-policy`: the one statement target roles need, for the
//! broker principal given in the query (`principal`), with a copy button.

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use podid_api::trust_policy::{document, is_principal_arn};

use super::login::field;
use super::page::{render, Page};
use super::ConsoleState;

#[derive(Template)]
#[template(path = "console/trust_policy.html")]
struct TrustPolicyPage {
    page: Page,
    principal: String,
    error: Option<&'static str>,
    policy: String,
}

/// `GET /console/trust-policy[?principal=ARN]`.
pub(crate) async fn show(
    State(console): State<ConsoleState>,
    page: Page,
    RawQuery(query): RawQuery,
) -> Response {
    let scope = &console.app.scope;
    let example = format!(
        "arn:{}:iam::{}:role/podid-broker",
        scope.partition, scope.account_id
    );
    let given = query
        .as_deref()
        .and_then(|q| field(q.as_bytes(), "principal"))
        .filter(|p| !p.is_empty());
    let (principal, error) = match given {
        Some(p) if is_principal_arn(&p) => (p, None),
        Some(p) => (
            p,
            Some("The broker principal must be an IAM role or user ARN."),
        ),
        None => (example, None),
    };
    let shown = if error.is_none() {
        principal.as_str()
    } else {
        "arn:aws:iam::123456789012:role/podid-broker"
    };
    let policy = serde_json::to_string_pretty(&document(shown)).unwrap_or_default();
    render(
        StatusCode::OK,
        &TrustPolicyPage {
            page,
            principal,
            error,
            policy,
        },
    )
}
