//! `/console/clusters`: each registered cluster the key may see.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::audit::scope_of;
use super::login::store_failed;
use super::page::{render, Page};
use super::ConsoleState;

/// One row of the table.
struct Row {
    name: String,
    issuer: String,
    key_source: &'static str,
    key_ids: Vec<String>,
    associations: u64,
    agent_identity: &'static str,
}

#[derive(Template)]
#[template(path = "console/clusters.html")]
struct ClustersPage {
    page: Page,
    clusters: Vec<Row>,
}

/// `GET /console/clusters`.
pub(crate) async fn list(State(console): State<ConsoleState>, page: Page) -> Response {
    let store = console.app.store.as_ref();
    let clusters = match store.list_clusters().await {
        Ok(c) => c,
        Err(e) => return store_failed(&e),
    };
    let counts = match store.count_associations(scope_of(&page.key.clusters)).await {
        Ok(c) => c,
        Err(e) => return store_failed(&e),
    };
    let mut rows = Vec::new();
    for c in clusters
        .into_iter()
        .filter(|c| page.key.clusters.allows(&c.name))
    {
        let associations = counts.get(&c.name).copied().unwrap_or(0);
        let key_ids = c.jwks["keys"]
            .as_array()
            .map(|keys| {
                keys.iter()
                    .map(|k| k["kid"].as_str().unwrap_or("(no kid)").to_owned())
                    .collect()
            })
            .unwrap_or_default();
        rows.push(Row {
            key_source: c.key_source.as_str(),
            agent_identity: c.agent_identity.as_str(),
            name: c.name,
            issuer: c.issuer,
            key_ids,
            associations,
        });
    }
    render(
        StatusCode::OK,
        &ClustersPage {
            page,
            clusters: rows,
        },
    )
}
