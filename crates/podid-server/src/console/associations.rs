//! `/console/associations`: every association of every cluster the key may see, in one
//! table (substring filters, pages of 50, newest first); and one association's page with
//! every field, its tags and its recent audit events.

use askama::Template;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use podid_api::audit::AuditEvent;
use podid_api::EpochMillis;
use podid_store::{AuditQuery, OverviewPosition, OverviewQuery, StoredAssociation};

use super::login::store_failed;
use super::page::{message, render, Page};
use super::ConsoleState;
use crate::authz::Clusters;

/// Rows per page of the table.
pub(crate) const PAGE_SIZE: u32 = 50;

/// Audit events on an association's page.
const RECENT_EVENTS: u32 = 20;

/// The table's query parameters, as typed (empty means no filter).
#[derive(Debug, Default)]
struct Filters {
    cluster: String,
    namespace: String,
    service_account: String,
    role: String,
    page: String,
}

impl Filters {
    /// The parameters of a query string; unknown ones are ignored.
    fn parse(raw: Option<&str>) -> Filters {
        let mut f = Filters::default();
        for (name, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            let slot = match name.as_ref() {
                "cluster" => &mut f.cluster,
                "namespace" => &mut f.namespace,
                "service_account" => &mut f.service_account,
                "role" => &mut f.role,
                "page" => &mut f.page,
                _ => continue,
            };
            *slot = value.trim().to_owned();
        }
        f
    }

    /// The table's URL with these filters at `position`.
    fn href(&self, position: OverviewPosition) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("cluster", &self.cluster),
            ("namespace", &self.namespace),
            ("service_account", &self.service_account),
            ("role", &self.role),
        ] {
            if !value.is_empty() {
                query.append_pair(name, value);
            }
        }
        query.append_pair("page", &position.encode());
        format!("/console/associations?{}", query.finish())
    }
}

/// A filter's value for the store: `None` when empty.
fn filter(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

/// The store's scope for a key's clusters.
fn scope(clusters: &Clusters) -> Option<Vec<String>> {
    match clusters {
        Clusters::All => None,
        Clusters::Only(names) => Some(names.to_vec()),
    }
}

/// A time as the console shows it: UTC to the second.
pub(crate) fn utc(at: EpochMillis) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time::OffsetDateTime::from_unix_timestamp(at.seconds())
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_else(|| format!("{} ms", at.0))
}

/// What a path segment escapes: everything but RFC 3986's unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The path of an association's page.
pub(crate) fn detail_href(cluster: &str, id: &str) -> String {
    format!(
        "/console/associations/{}/{}",
        utf8_percent_encode(cluster, SEGMENT),
        utf8_percent_encode(id, SEGMENT)
    )
}

/// One row of the table.
struct Row {
    href: String,
    cluster: String,
    namespace: String,
    service_account: String,
    role_arn: String,
    target_role_arn: String,
    id: String,
    modified: String,
}

impl From<StoredAssociation> for Row {
    fn from(a: StoredAssociation) -> Row {
        Row {
            href: detail_href(&a.cluster, &a.id),
            modified: utc(a.modified_at),
            target_role_arn: a.target_role_arn.unwrap_or_default(),
            cluster: a.cluster,
            namespace: a.namespace,
            service_account: a.service_account,
            role_arn: a.role_arn,
            id: a.id,
        }
    }
}

#[derive(Template)]
#[template(path = "console/associations.html")]
struct ListPage {
    page: Page,
    filters: Filters,
    rows: Vec<Row>,
    next: Option<String>,
    prev: Option<String>,
}

/// `GET /console/associations`.
pub(crate) async fn list(
    State(console): State<ConsoleState>,
    page: Page,
    RawQuery(raw): RawQuery,
) -> Response {
    let filters = Filters::parse(raw.as_deref());
    let position = if filters.page.is_empty() {
        None
    } else {
        match OverviewPosition::parse(&filters.page) {
            Some(p) => Some(p),
            None => {
                return message(
                    StatusCode::BAD_REQUEST,
                    "Invalid page",
                    "The page parameter is not a position this table gave out.",
                )
            }
        }
    };
    let query = OverviewQuery {
        scope: scope(&page.key.clusters),
        cluster: filter(&filters.cluster),
        namespace: filter(&filters.namespace),
        service_account: filter(&filters.service_account),
        role: filter(&filters.role),
        position,
        limit: PAGE_SIZE,
    };
    let found = match console.app.store.list_all_associations(&query).await {
        Ok(p) => p,
        Err(e) => return store_failed(&e),
    };
    let next = found.next.map(|p| filters.href(p));
    let prev = found.prev.map(|p| filters.href(p));
    let rows = found.items.into_iter().map(Row::from).collect();
    render(
        StatusCode::OK,
        &ListPage {
            page,
            filters,
            rows,
            next,
            prev,
        },
    )
}

/// One audit event on an association's page.
struct EventRow {
    time: String,
    outcome: &'static str,
    what: String,
    pod: String,
    node: String,
    caller: String,
    error: String,
}

impl From<AuditEvent> for EventRow {
    fn from(e: AuditEvent) -> EventRow {
        let pod = match (&e.namespace, &e.pod_name) {
            (Some(ns), Some(pod)) => format!("{ns}/{pod}"),
            (None, Some(pod)) => pod.clone(),
            _ => String::new(),
        };
        EventRow {
            time: utc(e.time),
            outcome: e.outcome.as_str(),
            what: e.action.unwrap_or_else(|| e.kind.as_str().to_owned()),
            pod,
            node: e.node_name.or(e.caller_node).unwrap_or_default(),
            caller: e.caller,
            error: e.error_code.unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "console/association.html")]
struct DetailPage {
    page: Page,
    arn: String,
    a: StoredAssociation,
    /// Shown to admins only, as the API does.
    external_id: Option<String>,
    created: String,
    modified: String,
    events: Vec<EventRow>,
}

/// `GET /console/associations/{cluster}/{association_id}`.
pub(crate) async fn detail(
    State(console): State<ConsoleState>,
    page: Page,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let not_found = || {
        message(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such association in a cluster this key may see.",
        )
    };
    let Ok(Path((cluster, id))) = path else {
        return not_found();
    };
    if !page.key.clusters.allows(&cluster) {
        return not_found();
    }
    let store = console.app.store.as_ref();
    let a = match store.get_association(&cluster, &id).await {
        Ok(Some(a)) => a,
        Ok(None) => return not_found(),
        Err(e) => return store_failed(&e),
    };
    let events = store
        .list_audit(&AuditQuery {
            cluster: Some(cluster.clone()),
            association_id: Some(id.clone()),
            limit: RECENT_EVENTS,
            ..AuditQuery::default()
        })
        .await;
    let events = match events {
        Ok(p) => p.events.into_iter().map(EventRow::from).collect(),
        Err(e) => return store_failed(&e),
    };
    let external_id = page.is_admin().then(|| a.external_id.clone());
    render(
        StatusCode::OK,
        &DetailPage {
            arn: console.app.scope.association_arn(&a.cluster, &a.id),
            created: utc(a.created_at),
            modified: utc(a.modified_at),
            external_id,
            events,
            page,
            a,
        },
    )
}
