//! Durability of the real server process: data survives a restart, and
//! `kill -9` in the middle of a burst of creates leaves no half-written
//! association and loses no acknowledged one — on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use serde_json::{json, Value};

/// A database for one test: a SQLite file, or a fresh PostgreSQL schema.
fn database(dir: &std::path::Path, postgres: bool) -> Option<String> {
    if !postgres {
        return Some(sqlite_url(dir));
    }
    let base = match std::env::var("PODID_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            podid_test_support::skip_or_fail(
                "PostgreSQL durability tests: PODID_TEST_POSTGRES_URL is not set",
            );
            return None;
        }
    };
    let schema = format!(
        "durability_{}_{}",
        std::process::id(),
        dir.file_name()
            .unwrap()
            .to_string_lossy()
            .replace(['.', '-'], "_")
            .to_lowercase()
    );
    let status = std::process::Command::new("psql")
        .args([base.as_str(), "-qtAc", &format!("CREATE SCHEMA {schema}")])
        .status()
        .unwrap();
    assert!(status.success(), "psql could not create schema {schema}");
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{sep}options=-c%20search_path%3D{schema}"))
}

/// The bound of every wait here: a request, the burst, the workers after the kill.
const WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// An HTTP client whose requests give up after [`WAIT`].
fn client() -> reqwest::ClientBuilder {
    reqwest::Client::builder().timeout(WAIT)
}

async fn register(http: &reqwest::Client, endpoint: &str) {
    let jwks: Value = serde_json::from_str(JWKS).unwrap();
    let r = http
        .post(format!("{endpoint}/podid/v1/clusters"))
        .json(&json!({"name": "blue", "issuer": "https://issuer.test", "jwks": jwks}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

async fn list_all(http: &reqwest::Client, endpoint: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let mut url = reqwest::Url::parse(&format!(
            "{endpoint}/clusters/blue/pod-identity-associations"
        ))
        .unwrap();
        url.query_pairs_mut().append_pair("maxResults", "100");
        if let Some(t) = &next {
            url.query_pairs_mut().append_pair("nextToken", t);
        }
        let page: Value = http.get(url).send().await.unwrap().json().await.unwrap();
        out.extend(page["associations"].as_array().unwrap().iter().cloned());
        match page["nextToken"].as_str() {
            Some(t) => next = Some(t.to_owned()),
            None => return out,
        }
    }
}

async fn describe(http: &reqwest::Client, endpoint: &str, id: &str) -> Value {
    let r = http
        .get(format!(
            "{endpoint}/clusters/blue/pod-identity-associations/{id}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["association"].clone()
}

async fn restart_keeps_data(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = database(dir.path(), postgres) else {
        return;
    };
    let http = client().build().unwrap();
    let server = start_server(&["--insecure-no-auth", "--database-url", &db]);
    register(&http, &server.endpoint).await;
    let mut created = BTreeMap::new();
    for i in 0..5 {
        let body = json!({"namespace": "default", "serviceAccount": format!("sa-{i}"),
                          "roleArn": format!("arn:aws:iam::111122223333:role/r{i}"), "tags": {"n": i.to_string()}});
        let r: Value = http
            .post(format!(
                "{}/clusters/blue/pod-identity-associations",
                server.endpoint
            ))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        created.insert(
            r["association"]["associationId"]
                .as_str()
                .unwrap()
                .to_owned(),
            r["association"].clone(),
        );
    }
    assert!(
        server
            .terminate(std::time::Duration::from_secs(30))
            .is_some_and(|s| s.success()),
        "server did not exit cleanly on SIGTERM"
    );

    let server = start_server(&["--insecure-no-auth", "--database-url", &db]);
    for (id, before) in &created {
        assert_eq!(&describe(&http, &server.endpoint, id).await, before);
    }
    assert_eq!(list_all(&http, &server.endpoint).await.len(), 5);
}

#[tokio::test]
async fn restart_keeps_data_sqlite() {
    restart_keeps_data(false).await;
}

#[tokio::test]
async fn restart_keeps_data_postgres() {
    restart_keeps_data(true).await;
}

async fn kill9_during_burst(postgres: bool) {
    let dir = tempfile::tempdir().unwrap();
    let Some(db) = database(dir.path(), postgres) else {
        return;
    };
    let http = client().pool_max_idle_per_host(0).build().unwrap();
    let server = start_server(&["--insecure-no-auth", "--database-url", &db]);
    let endpoint = server.endpoint.clone();
    register(&http, &endpoint).await;

    // Workers create associations as fast as they can; each acknowledged one is
    // recorded with what was asked. After enough acknowledgements the server is
    // killed with SIGKILL while requests are still in flight.
    const KILL_AFTER: usize = 150;
    let acked: Arc<Mutex<HashMap<String, (String, String)>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let threshold = Arc::new(tokio::sync::Notify::new());
    let mut workers = Vec::new();
    for w in 0..8 {
        let (http, endpoint, acked, count, threshold) = (
            http.clone(),
            endpoint.clone(),
            acked.clone(),
            count.clone(),
            threshold.clone(),
        );
        workers.push(tokio::spawn(async move {
            for n in 0.. {
                let sa = format!("sa-{w}-{n}");
                let role = format!("arn:aws:iam::111122223333:role/{sa}");
                let body = json!({"namespace": "default", "serviceAccount": sa, "roleArn": role, "tags": {"sa": sa}});
                let sent =
                    http.post(format!("{endpoint}/clusters/blue/pod-identity-associations")).json(&body).send().await;
                let Ok(response) = sent else { return };
                if response.status() != 200 {
                    return;
                }
                let Ok(v) = response.json::<Value>().await else { return };
                let id = v["association"]["associationId"].as_str().unwrap().to_owned();
                acked.lock().unwrap().insert(id, (sa, role));
                if count.fetch_add(1, Ordering::SeqCst) + 1 == KILL_AFTER {
                    threshold.notify_one();
                }
            }
        }));
    }
    tokio::time::timeout(WAIT, threshold.notified())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{KILL_AFTER} acknowledged creates within {WAIT:?}: only {}",
                count.load(Ordering::SeqCst)
            )
        });
    server.kill();
    for w in workers {
        tokio::time::timeout(WAIT, w)
            .await
            .unwrap_or_else(|_| panic!("a worker did not stop within {WAIT:?} of the kill"))
            .unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= KILL_AFTER);

    let server = start_server(&["--insecure-no-auth", "--database-url", &db]);
    let stored = list_all(&http, &server.endpoint).await;
    let mut seen_sa = std::collections::HashSet::new();
    for summary in &stored {
        let id = summary["associationId"].as_str().unwrap();
        let full = describe(&http, &server.endpoint, id).await;
        let sa = full["serviceAccount"].as_str().unwrap();
        assert!(
            seen_sa.insert(sa.to_owned()),
            "service account {sa} stored twice"
        );
        // Whole or absent: every stored association carries everything its request asked for.
        assert_eq!(
            full["roleArn"],
            format!("arn:aws:iam::111122223333:role/{sa}")
        );
        assert_eq!(full["tags"]["sa"], sa);
        assert_eq!(full["namespace"], "default");
    }
    let stored_ids: std::collections::HashSet<_> = stored
        .iter()
        .map(|s| s["associationId"].as_str().unwrap().to_owned())
        .collect();
    for (id, (sa, _)) in &acked {
        assert!(
            stored_ids.contains(id),
            "acknowledged association {id} ({sa}) was lost"
        );
    }
    // Requests cut by the kill may or may not have committed, but nothing else appears.
    assert!(
        stored.len() <= acked.len() + 8,
        "{} stored, {} acknowledged",
        stored.len(),
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_during_burst_sqlite() {
    kill9_during_burst(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_during_burst_postgres() {
    kill9_during_burst(true).await;
}
