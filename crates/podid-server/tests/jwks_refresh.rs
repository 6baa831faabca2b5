//! A cluster registered by an https JWKS URL follows the URL: a real `podid server` process
//! (built with `cargo build -p podid`) refreshes the keys every second here
//! (`--jwks-refresh-interval 1`) from a local https key server whose CA it trusts through
//! `--jwks-ca-file`. A token signed with key K is accepted (credentials from the fake STS, then
//! from the caches); K is removed from the served set; after the next refresh the registry holds
//! the new set and the same token, accepted before, is refused with EKS Auth's
//! `InvalidTokenException` (HTTP 400, the EKS Auth API reference), while a token signed with the
//! key that stayed is still accepted. A key server that then fails leaves the keys as they are.
#![allow(clippy::unwrap_used, missing_docs)]

mod jwks_common;

use std::time::Duration;

use jwks_common::*;
use podid_test_support::wait::eventually;
use podid_token::dev::{DevAlgorithm, SigningKey};
use serde_json::json;

/// How long the test waits for a refresh every second to have happened (generous: a loaded
/// 2-core machine).
const REFRESH_WAIT: Duration = Duration::from_secs(20);

/// Keys K (RS256) and `stays` (ES256) served at `https://…/openid/v1/jwks` by a key server with
/// a CA of its own; a server trusting that CA, refreshing every `interval` seconds, with
/// `cluster` registered by that URL and ns/sa associated.
async fn url_cluster(cluster: &str, interval: &str) -> (KeyServer, SigningKey, SigningKey, Server) {
    let ca = TestCa::new("podid JWKS test CA").unwrap();
    let keys = KeyServer::start(Some(&ca)).await;
    let k = SigningKey::generate(DevAlgorithm::Rs256, "k").unwrap();
    let stays = SigningKey::generate(DevAlgorithm::Es256, "stays").unwrap();
    let uri = keys.set("/openid/v1/jwks", Answer::json(&jwks_of(&[&k, &stays])));
    let server = Server::start(&["--jwks-refresh-interval", interval], Some(&ca.pem));
    let (status, registered, text) = server.register(cluster, json!({ "jwksUri": uri })).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(registered["cluster"]["keySource"], "uri");
    assert_eq!(registered["cluster"]["jwks"], jwks_of(&[&k, &stays]));
    server.associate(cluster).await;
    (keys, k, stays, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_removed_from_the_https_jwks_is_refused_after_the_next_refresh() {
    let (keys, k, stays, mut server) = url_cluster("blue", "1").await;

    // Accepted, twice (the second from the verifier's and the broker's caches).
    let signed_k = token(&k, "pod-k");
    for _ in 0..2 {
        let (status, answer) = server.assume("blue", &signed_k).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["subject"]["serviceAccount"], "sa");
    }
    assert_eq!(server.sts.request_count(), 1);

    // K leaves the served set. The next refresh writes the new set to the registry.
    let after = jwks_of(&[&stays]);
    keys.set("/openid/v1/jwks", Answer::json(&after));
    let waited = eventually(
        REFRESH_WAIT,
        "the registry holding the new key set",
        || async { server.describe("blue").await["jwks"] == after },
    )
    .await;
    eprintln!("the registry held the new key set {waited:?} after K was removed");
    // …and the audit trail has it as a change of the cluster by the refresh (written in
    // batches: a bounded wait).
    eventually(REFRESH_WAIT, "the refresh's change event", || async {
        let (status, text) = server
            .call(
                reqwest::Method::GET,
                "/podid/v1/audit?kind=change&cluster=blue",
                None,
            )
            .await;
        assert_eq!(status, 200, "{text}");
        let events: serde_json::Value = serde_json::from_str(&text).unwrap();
        events["events"].as_array().unwrap().iter().any(|e| {
            e["caller"] == "podid-server:jwks-refresh"
                && e["action"] == "UpdateCluster"
                && e["before"]["keyIds"] == json!(["k", "stays"])
                && e["after"]["keyIds"] == json!(["stays"])
        })
    })
    .await;

    // The same token is refused from then on; the key that stayed still works.
    for _ in 0..2 {
        let (status, answer) = server.assume("blue", &signed_k).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["__type"], "InvalidTokenException", "{answer}");
    }
    let (status, answer) = server.assume("blue", &token(&stays, "pod-s")).await;
    assert_eq!(status, 200, "{answer}");

    // The key server fails: the keys stay as they are (several refreshes later).
    keys.set(
        "/openid/v1/jwks",
        Answer::Body(503, "text/plain", b"down".to_vec()),
    );
    let failed_from = keys.hits().len();
    eventually(REFRESH_WAIT, "two failed refreshes", || async {
        keys.hits().len() >= failed_from + 2
    })
    .await;
    assert_eq!(server.describe("blue").await["jwks"], after);
    let (status, answer) = server.assume("blue", &token(&stays, "pod-t")).await;
    assert_eq!(status, 200, "{answer}");
    let (status, _) = server.assume("blue", &signed_k).await;
    assert_eq!(status, 400);

    let log = server.stop();
    assert!(
        log.contains("cluster keys changed") && log.contains(r#"removed=["k"]"#),
        "{log}"
    );
    assert!(log.contains("answered HTTP 503"), "{log}");
    assert!(
        log.contains("the cluster's keys stay as they were"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_fetches_the_keys_before_trusting_the_stored_set() {
    // The registry holds {K, stays}; while the server is down K leaves the URL. The first
    // refresh, at start-up, replaces the stored set.
    // An hour between refreshes: only the one at start-up happens during the test.
    let (keys, k, stays, mut server) = url_cluster("green", "3600").await;
    let (status, _) = server.assume("green", &token(&k, "p")).await;
    assert_eq!(status, 200);
    server.stop();

    let after = jwks_of(&[&stays]);
    keys.set("/openid/v1/jwks", Answer::json(&after));
    server.restart();
    eventually(REFRESH_WAIT, "the start-up refresh", || async {
        server.describe("green").await["jwks"] == after
    })
    .await;
    let (status, answer) = server.assume("green", &token(&k, "p")).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["__type"], "InvalidTokenException", "{answer}");
    let (status, _) = server.assume("green", &token(&stays, "p")).await;
    assert_eq!(status, 200);
    assert!(server.stop().contains("cluster keys changed"));
}
