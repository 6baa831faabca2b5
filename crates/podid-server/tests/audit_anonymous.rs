//! Without authentication (`--insecure-no-auth`) a change is still audited,
//! its caller recorded as `anonymous` (docs/broker.md): a real `podid
//! server` (built with `cargo build -p podid`), unsigned HTTP calls.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use podid_test_support::{podid_binary, PodidServerLaunch, TEST_JWKS};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_without_authentication_are_audited_as_anonymous() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("podid.db").display());
    let server = PodidServerLaunch::new(podid_binary())
        .args(["--insecure-no-auth", "--database-url", &db])
        .env_remove("PODID_KEYS_FILE")
        .env_remove("PODID_DATABASE_URL")
        .start()
        .unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let jwks: Value = serde_json::from_str(TEST_JWKS).unwrap();
    let registered = http
        .post(format!("{}/podid/v1/clusters", server.endpoint))
        .json(&json!({"name": "open", "issuer": "https://oidc.open.test", "jwks": jwks}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 200);
    let request_id = registered.headers()["x-amzn-requestid"]
        .to_str()
        .unwrap()
        .to_owned();

    let url = format!("{}/podid/v1/audit?kind=change", server.endpoint);
    let deadline = Instant::now() + Duration::from_secs(30);
    let event = loop {
        let page: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
        if let Some(e) = page["events"].as_array().unwrap().first() {
            break e.clone();
        }
        assert!(Instant::now() < deadline, "no change event in 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(event["caller"], "anonymous");
    assert_eq!(event["action"], "RegisterCluster");
    assert_eq!(event["requestId"], request_id.as_str());
    assert_eq!(event["cluster"], "open");
    assert_eq!(event["outcome"], "succeeded");
    server.terminate(Duration::from_secs(10));
}
