//! `/console/audit`: the audit trail of the clusters the key may see, newest first,
//! filtered by cluster, outcome, namespace and kind, in pages of 50 both ways.

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use podid_api::audit::{AuditEvent, AuditKind, AuditOutcome, AuditState};
use podid_store::AuditQuery;

use super::associations::{detail_href, utc, PAGE_SIZE};
use super::login::store_failed;
use super::page::{message, render, Page};
use super::params;
use super::ConsoleState;
use crate::authz::Clusters;

/// The outcomes the filter offers.
const OUTCOMES: [AuditOutcome; 4] = [
    AuditOutcome::Issued,
    AuditOutcome::Denied,
    AuditOutcome::Succeeded,
    AuditOutcome::Failed,
];

/// The kinds the filter offers.
const KINDS: [AuditKind; 2] = [AuditKind::Credential, AuditKind::Change];

/// The store's scope for a key's clusters: `None` for every cluster.
pub(crate) fn scope_of(clusters: &Clusters) -> Option<&[String]> {
    match clusters {
        Clusters::All => None,
        Clusters::Only(names) => Some(names),
    }
}

/// A page position: older than an event (`o<seq>`) or newer than it (`n<seq>`).
#[derive(Debug, Clone, Copy)]
enum Position {
    Older(i64),
    Newer(i64),
}

impl Position {
    fn parse(s: &str) -> Option<Position> {
        let (make, n): (fn(i64) -> Position, _) = match s.split_at_checked(1)? {
            ("o", n) => (Position::Older, n),
            ("n", n) => (Position::Newer, n),
            _ => return None,
        };
        n.parse().ok().filter(|n| *n > 0).map(make)
    }

    fn encode(self) -> String {
        match self {
            Position::Older(n) => format!("o{n}"),
            Position::Newer(n) => format!("n{n}"),
        }
    }
}

/// The query parameters, as typed (empty means no filter).
#[derive(Debug)]
struct Filters {
    cluster: String,
    outcome: String,
    namespace: String,
    kind: String,
    page: String,
}

impl Filters {
    /// The parameters of a query string; unknown ones are ignored.
    fn parse(raw: Option<&str>) -> Filters {
        let [cluster, outcome, namespace, kind, page] =
            params::read(raw, ["cluster", "outcome", "namespace", "kind", "page"]);
        Filters {
            cluster,
            outcome,
            namespace,
            kind,
            page,
        }
    }

    /// This page's URL with these filters at `position`.
    fn href(&self, position: Position) -> String {
        let pairs = [
            ("cluster", self.cluster.as_str()),
            ("outcome", &self.outcome),
            ("namespace", &self.namespace),
            ("kind", &self.kind),
        ];
        params::href("/console/audit", &pairs, &position.encode())
    }

    /// The store's query for these filters and the key's scope; the message of the
    /// first invalid parameter otherwise.
    fn query(&self, clusters: &Clusters) -> Result<AuditQuery, &'static str> {
        let text = |v: &str| (!v.is_empty()).then(|| v.to_owned());
        let mut q = AuditQuery {
            clusters: scope_of(clusters).map(<[String]>::to_vec),
            cluster: text(&self.cluster),
            namespace: text(&self.namespace),
            limit: PAGE_SIZE,
            ..AuditQuery::default()
        };
        if !self.outcome.is_empty() {
            q.outcome = Some(
                AuditOutcome::parse(&self.outcome)
                    .ok_or("The outcome is one of issued, denied, succeeded or failed.")?,
            );
        }
        if !self.kind.is_empty() {
            q.kind = Some(AuditKind::parse(&self.kind).ok_or("The kind is credential or change.")?);
        }
        match self.page.as_str() {
            "" => {}
            page => match Position::parse(page) {
                Some(Position::Older(n)) => q.before = Some(n),
                Some(Position::Newer(n)) => q.after = Some(n),
                None => return Err("The page parameter is not a position this table gave out."),
            },
        }
        Ok(q)
    }
}

/// One changed field of a change event: its name, before and after.
struct Change {
    field: String,
    before: String,
    after: String,
}

/// The fields a change event's states hold, by their wire names.
fn changes(before: Option<&AuditState>, after: Option<&AuditState>) -> Vec<Change> {
    let fields = |s: Option<&AuditState>| match s.map(serde_json::to_value) {
        Some(Ok(serde_json::Value::Object(map))) => map,
        _ => serde_json::Map::new(),
    };
    let (before, after) = (fields(before), fields(after));
    let shown = |v: Option<&serde_json::Value>| match v {
        None => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    };
    let mut names: Vec<&String> = before.keys().chain(after.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| Change {
            field: name.clone(),
            before: shown(before.get(name)),
            after: shown(after.get(name)),
        })
        .collect()
}

/// One row of the table.
struct Row {
    time: String,
    kind: &'static str,
    outcome: &'static str,
    cluster: String,
    subject: String,
    node: String,
    caller_node: String,
    association_id: String,
    association_href: String,
    role_arn: String,
    caller: String,
    error: String,
    action: String,
    changes: Vec<Change>,
}

impl From<AuditEvent> for Row {
    fn from(e: AuditEvent) -> Row {
        // namespace/service account/pod, "-" for a missing part; empty when all are.
        let parts = [&e.namespace, &e.service_account, &e.pod_name];
        let subject = if parts.iter().all(|p| p.is_none()) {
            String::new()
        } else {
            parts.map(|p| p.as_deref().unwrap_or("-")).join("/")
        };
        let association_id = e.association_id.unwrap_or_default();
        let association_href = detail_href(&e.cluster, &association_id);
        Row {
            time: utc(e.time),
            kind: e.kind.as_str(),
            outcome: e.outcome.as_str(),
            subject,
            node: e.node_name.unwrap_or_default(),
            caller_node: e.caller_node.unwrap_or_default(),
            association_id,
            association_href,
            role_arn: e.role_arn.unwrap_or_default(),
            caller: e.caller,
            error: e.error_code.unwrap_or_default(),
            action: e.action.unwrap_or_default(),
            changes: changes(e.before.as_ref(), e.after.as_ref()),
            cluster: e.cluster,
        }
    }
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    page: Page,
    filters: Filters,
    outcomes: [&'static str; 4],
    kinds: [&'static str; 2],
    rows: Vec<Row>,
    next: Option<String>,
    prev: Option<String>,
}

/// `GET /console/audit`.
pub(crate) async fn list(
    State(console): State<ConsoleState>,
    page: Page,
    RawQuery(raw): RawQuery,
) -> Response {
    let filters = Filters::parse(raw.as_deref());
    let query = match filters.query(&page.key.clusters) {
        Ok(q) => q,
        Err(text) => return message(StatusCode::BAD_REQUEST, "Invalid filter", text),
    };
    let found = match console.app.store.list_audit(&query).await {
        Ok(p) => p,
        Err(e) => return store_failed(&e),
    };
    let next = found.next.map(|n| filters.href(Position::Older(n)));
    let prev = found.prev.map(|n| filters.href(Position::Newer(n)));
    render(
        StatusCode::OK,
        &AuditPage {
            page,
            filters,
            outcomes: OUTCOMES.map(AuditOutcome::as_str),
            kinds: KINDS.map(AuditKind::as_str),
            rows: found.events.into_iter().map(Row::from).collect(),
            next,
            prev,
        },
    )
}
