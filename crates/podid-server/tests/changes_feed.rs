//! The change feed, `GET /podid/v1/clusters/{name}/changes`, against a real
//! `podid server` process (build it first: `cargo build -p podid`).
//!
//! Expected answers are literals of issue 14's contract (docs/api.md, "Change
//! feed"): the JSON field names `changes`, `position`, `reset`, `kind`,
//! `associationId`, `namespace`, `serviceAccount`, `time`; the kinds `create`,
//! `update`, `delete`, `cluster-update`, `cluster-delete`; AWS's error names.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use podid_test_support::signed::{signed_call, ApiAnswer};
use podid_test_support::wait::eventually;
use podid_test_support::{podid_binary, PodidServerLaunch, PodidServerProcess, TEST_JWKS};
use serde_json::{json, Value};

type Key = (&'static str, &'static str);
const ADMIN: Key = ("FEEDADMIN", "feed-admin-secret-0123456789");
const READER: Key = ("FEEDREADER", "feed-reader-secret-0123456789");
const NODE: Key = ("FEEDNODE", "feed-node-secret-0123456789ab");
const GREEN_READER: Key = ("GREENREADER", "green-reader-secret-012345678");
const ROLE: &str = "arn:aws:iam::111122223333:role/feed-test";

struct Server {
    dir: tempfile::TempDir,
    process: PodidServerProcess,
}

fn keys_file(dir: &std::path::Path) -> String {
    let entry = |(id, secret): Key, role: &str, extra: &str| {
        format!("[[key]]\naccess_key_id = \"{id}\"\nsecret_access_key = \"{secret}\"\nrole = \"{role}\"\n{extra}\n\n")
    };
    let text = entry(ADMIN, "admin", "")
        + &entry(READER, "reader", "")
        + &entry(NODE, "node", "")
        + &entry(GREEN_READER, "reader", r#"clusters = ["green"]"#);
    let path = dir.join("keys.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// `podid server` with `extra` flags on a SQLite file in `dir`.
fn launch(dir: &std::path::Path, extra: &[&str]) -> PodidServerProcess {
    let db = format!("sqlite://{}", dir.join("podid.db").display());
    PodidServerLaunch::new(podid_binary())
        .args(["--database-url", &db, "--keys-file", &keys_file(dir)])
        .args(extra)
        .start()
        .unwrap_or_else(|e| panic!("podid server did not start: {e}"))
}

/// A server with clusters blue and green registered.
async fn start(extra: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let process = launch(dir.path(), extra);
    let server = Server { dir, process };
    for name in ["blue", "green"] {
        let registration = json!({
            "name": name,
            "issuer": format!("https://issuer.test/{name}"),
            "jwks": serde_json::from_str::<Value>(TEST_JWKS).unwrap(),
        });
        let answer = call(&server, ADMIN, "POST", "/podid/v1/clusters", &registration).await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    server
}

async fn call(server: &Server, key: Key, method: &str, target: &str, body: &Value) -> ApiAnswer {
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    signed_call(&server.process.endpoint, key, method, target, &body).await
}

/// `GET` the feed of `cluster` with `query` as `key`.
async fn feed(server: &Server, key: Key, cluster: &str, query: &str) -> ApiAnswer {
    let target = format!("/podid/v1/clusters/{cluster}/changes{query}");
    call(server, key, "GET", &target, &Value::Null).await
}

/// The feed's end: the position of an answer without `after`.
async fn end(server: &Server, cluster: &str) -> i64 {
    let answer = feed(server, READER, cluster, "").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["changes"], json!([]));
    assert_eq!(answer.body["reset"], json!(false));
    answer.body["position"].as_i64().unwrap()
}

/// Creates the association of `sa` in `cluster`: (id, ARN).
async fn associate(server: &Server, cluster: &str, sa: &str) -> (String, String) {
    let body = json!({"namespace": "ns", "serviceAccount": sa, "roleArn": ROLE});
    let target = format!("/clusters/{cluster}/pod-identity-associations");
    let answer = call(server, ADMIN, "POST", &target, &body).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let a = &answer.body["association"];
    (
        a["associationId"].as_str().unwrap().to_owned(),
        a["associationArn"].as_str().unwrap().to_owned(),
    )
}

async fn delete(server: &Server, cluster: &str, id: &str) {
    let target = format!("/clusters/{cluster}/pod-identity-associations/{id}");
    let answer = call(server, ADMIN, "DELETE", &target, &Value::Null).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

/// Asserts an error answer: status, `x-amzn-errortype` and `__type`.
fn refused(answer: &ApiAnswer, status: u16, kind: &str) {
    assert_eq!(
        (answer.status, answer.error_type.as_str(), answer.kind()),
        (status, kind, kind),
        "{answer:?}"
    );
}

/// A delete made through the API wakes a request waiting on the feed: it
/// answers with the `delete` within the issue's 2 s of the delete's sending.
/// The store is re-read only every 60 s here, so only the in-process wake-up
/// can answer it in time (without it the request answers after its 20 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_wakes_a_waiting_feed_request() {
    let server = start(&["--change-recheck-ms", "60000"]).await;
    let (id, _) = associate(&server, "blue", "app").await;
    let from = end(&server, "blue").await;
    let query = format!("?after={from}&waitSeconds=20");
    let waiting = {
        let endpoint = server.process.endpoint.clone();
        let target = format!("/podid/v1/clusters/blue/changes{query}");
        tokio::spawn(async move {
            let answer = signed_call(&endpoint, NODE, "GET", &target, &[]).await;
            (answer, Instant::now())
        })
    };
    // A request sent after it that waits its whole second: by its answer the
    // first one is parked in the server (its own bounded wait, not a sleep).
    let started = Instant::now();
    let quiet = feed(
        &server,
        NODE,
        "blue",
        &format!("?after={from}&waitSeconds=1"),
    )
    .await;
    let waited = started.elapsed();
    assert_eq!(quiet.status, 200, "{quiet:?}");
    assert_eq!(
        quiet.body,
        json!({"changes": [], "position": from, "reset": false})
    );
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    assert!(!waiting.is_finished(), "the 20 s request answered early");

    // Measured from the delete's sending: its own round trip is included.
    let deleted_at = Instant::now();
    delete(&server, "blue", &id).await;
    let (answer, answered_at) = tokio::time::timeout(Duration::from_secs(25), waiting)
        .await
        .expect("the waiting request answers")
        .unwrap();
    let delay = answered_at.saturating_duration_since(deleted_at);
    println!("feed wake-up after a delete: {delay:?}");
    assert_eq!(answer.status, 200, "{answer:?}");
    let change = &answer.body["changes"][0];
    assert_eq!(change["kind"], json!("delete"));
    assert_eq!(change["associationId"], json!(id));
    assert!(delay < Duration::from_secs(2), "woken after {delay:?}");
}

/// A write by another server process on the same database reaches a waiting
/// request through the re-query (every 200 ms here), well before its 20 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_by_another_process_reaches_a_waiting_request() {
    let server = start(&["--change-recheck-ms", "200"]).await;
    let other = Server {
        process: launch(server.dir.path(), &[]),
        dir: tempfile::tempdir().unwrap(),
    };
    let from = end(&server, "blue").await;
    let endpoint = server.process.endpoint.clone();
    let target = format!("/podid/v1/clusters/blue/changes?after={from}&waitSeconds=20");
    let waiting = tokio::spawn(async move {
        let answer = signed_call(&endpoint, READER, "GET", &target, &[]).await;
        (answer, Instant::now())
    });
    let quiet = feed(
        &server,
        READER,
        "blue",
        &format!("?after={from}&waitSeconds=1"),
    )
    .await;
    assert_eq!(quiet.body["changes"], json!([]));
    let (id, _) = associate(&other, "blue", "elsewhere").await;
    let created_at = Instant::now();
    let (answer, answered_at) = tokio::time::timeout(Duration::from_secs(25), waiting)
        .await
        .unwrap()
        .unwrap();
    let delay = answered_at.saturating_duration_since(created_at);
    println!("feed wake-up after another process's create: {delay:?}");
    assert_eq!(answer.body["changes"][0]["associationId"], json!(id));
    assert_eq!(answer.body["changes"][0]["kind"], json!("create"));
    assert!(delay < Duration::from_secs(10), "seen after {delay:?}");
}

/// Create, update, tag, untag, delete and a cluster update appear in order
/// with the documented JSON; pages of maxResults; a deregistered cluster's
/// `cluster-delete` reaches a follower behind it, then the cluster is 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_write_appears_in_order_with_its_documented_json() {
    let server = start(&[]).await;
    let from = end(&server, "blue").await;
    let (id, arn) = associate(&server, "blue", "app").await;
    associate(&server, "green", "app").await;
    let item = format!("/clusters/blue/pod-identity-associations/{id}");
    let role = json!({"roleArn": format!("{ROLE}-2")});
    assert_eq!(call(&server, ADMIN, "POST", &item, &role).await.status, 200);
    let tags = format!("/tags/{}", urlencoding(&arn));
    let tag = json!({"tags": {"team": "blue"}});
    assert_eq!(call(&server, ADMIN, "POST", &tags, &tag).await.status, 200);
    let untag = format!("{tags}?tagKeys=team");
    assert_eq!(
        call(&server, ADMIN, "DELETE", &untag, &Value::Null)
            .await
            .status,
        200
    );
    delete(&server, "blue", &id).await;
    let audience = json!({"audience": "other-audience"});
    let cluster = "/podid/v1/clusters/blue";
    assert_eq!(
        call(&server, ADMIN, "PATCH", cluster, &audience)
            .await
            .status,
        200
    );

    let answer = feed(&server, READER, "blue", &format!("?after={from}")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let body = &answer.body;
    assert_eq!(fields(body), ["changes", "position", "reset"]);
    assert_eq!(body["reset"], json!(false));
    let changes = body["changes"].as_array().unwrap();
    let kinds: Vec<&str> = changes
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "create",
            "update",
            "update",
            "update",
            "delete",
            "cluster-update"
        ]
    );
    let mut last = from;
    for change in changes {
        let position = change["position"].as_i64().unwrap();
        assert!(position > last, "{changes:?}");
        last = position;
        assert!(change["time"].as_f64().unwrap() > 1.7e9, "{change}");
    }
    for change in &changes[..5] {
        assert_eq!(
            fields(change),
            [
                "associationId",
                "kind",
                "namespace",
                "position",
                "serviceAccount",
                "time"
            ]
        );
        assert_eq!(change["associationId"], json!(id));
        assert_eq!(change["namespace"], json!("ns"));
        assert_eq!(change["serviceAccount"], json!("app"));
    }
    assert_eq!(fields(&changes[5]), ["kind", "position", "time"]);
    // The answer's position is the feed's end (green's create is in it too).
    assert_eq!(
        body["position"].as_i64().unwrap(),
        end(&server, "blue").await
    );

    // Two at a time: the position continues after each page's last change.
    let page = feed(
        &server,
        NODE,
        "blue",
        &format!("?after={from}&maxResults=2"),
    )
    .await;
    let page = &page.body;
    assert_eq!(page["changes"].as_array().unwrap().len(), 2);
    assert_eq!(page["position"], page["changes"][1]["position"]);
    let next = feed(
        &server,
        NODE,
        "blue",
        &format!("?after={}&maxResults=2", page["position"]),
    )
    .await;
    assert_eq!(next.body["changes"][0], changes[2]);

    // Deregistered: a follower behind it gets cluster-delete; then 404.
    let at = end(&server, "blue").await;
    let gone = call(&server, ADMIN, "DELETE", cluster, &Value::Null).await;
    assert_eq!(gone.status, 200, "{gone:?}");
    let last = feed(&server, READER, "blue", &format!("?after={at}")).await;
    assert_eq!(last.body["changes"][0]["kind"], json!("cluster-delete"));
    let after = last.body["position"].as_i64().unwrap();
    refused(
        &feed(&server, READER, "blue", &format!("?after={after}")).await,
        404,
        "ResourceNotFoundException",
    );
}

/// `reset: true` for a position older than the retention kept (a tiny
/// retention here) and for one beyond the feed's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_after_pruning_and_beyond_the_end() {
    let server = start(&["--change-retention", "1s"]).await;
    let from = end(&server, "blue").await;
    associate(&server, "blue", "pruned").await;
    let now_end = end(&server, "blue").await;
    assert!(now_end > from);
    let beyond = feed(&server, NODE, "blue", &format!("?after={}", now_end + 1000)).await;
    assert_eq!(
        beyond.body,
        json!({"changes": [], "position": now_end, "reset": true})
    );
    // Pruned within a few seconds (retention 1 s, pruned every second).
    let took = eventually(Duration::from_secs(15), "the create is pruned", || async {
        let answer = feed(&server, NODE, "blue", &format!("?after={from}")).await;
        answer.body == json!({"changes": [], "position": now_end, "reset": true})
    })
    .await;
    println!("pruned and reset after {took:?}");
    // From the end on, following goes on.
    let caught_up = feed(&server, NODE, "blue", &format!("?after={now_end}")).await;
    assert_eq!(
        caught_up.body,
        json!({"changes": [], "position": now_end, "reset": false})
    );
}

/// Bad parameters are 400 InvalidParameterException; the wait is capped at
/// 30 s; readers and nodes may read, a key scoped to another cluster may not;
/// an unknown cluster is 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_keys_and_clusters() {
    let server = start(&[]).await;
    for bad in [
        "?waitSeconds=31",
        "?waitSeconds=-1",
        "?after=-1",
        "?after=abc",
        "?maxResults=0",
        "?maxResults=501",
        "?since=3",
    ] {
        refused(
            &feed(&server, READER, "blue", bad).await,
            400,
            "InvalidParameterException",
        );
    }
    let answer = feed(&server, READER, "blue", "?waitSeconds=31").await;
    assert_eq!(
        answer.message(),
        "waitSeconds '31' must be a whole number from 0 to 30"
    );
    let repeated = feed(&server, READER, "blue", "?after=1&after=2").await;
    assert_eq!(repeated.status, 400, "{repeated:?}");
    for key in [ADMIN, READER, NODE] {
        let answer = feed(
            &server,
            key,
            "blue",
            "?after=0&maxResults=500&waitSeconds=0",
        )
        .await;
        assert_eq!(answer.status, 200, "{key:?}: {answer:?}");
    }
    let scoped = feed(&server, GREEN_READER, "blue", "").await;
    refused(&scoped, 403, "AccessDeniedException");
    assert_eq!(
        scoped.message(),
        "key GREENREADER is scoped to clusters and may not act on cluster 'blue'"
    );
    assert_eq!(feed(&server, GREEN_READER, "green", "").await.status, 200);
    let unknown = feed(&server, READER, "purple", "?after=0&waitSeconds=5").await;
    refused(&unknown, 404, "ResourceNotFoundException");
    assert_eq!(unknown.message(), "No cluster found for name: purple.");
    let unsigned = reqwest::get(format!(
        "{}/podid/v1/clusters/blue/changes",
        server.process.endpoint
    ))
    .await
    .unwrap();
    assert_eq!(unsigned.status().as_u16(), 403);
}

/// The field names of a JSON object, sorted.
fn fields(object: &Value) -> Vec<&str> {
    let mut names: Vec<&str> = object
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    names
}

/// An ARN as one path segment.
fn urlencoding(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}
