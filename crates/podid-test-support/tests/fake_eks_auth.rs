//! The fake EKS Auth over HTTP: its answers, its modes, its records; and the keys file.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use podid_test_support::fake_eks_auth::{FIXED_SECRET_ACCESS_KEY, FIXED_SESSION_TOKEN};
use podid_test_support::{
    write_keys_file, FakeEksAuthServer, FakeEksAuthSettings, FakeReply, SessionTokens, ADMIN, NODE,
    READER,
};

async fn call(fake: &FakeEksAuthServer, token: &str) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(format!(
            "{}/clusters/c1/assume-role-for-pod-identity",
            fake.url
        ))
        .header("authorization", "AWS4-HMAC-SHA256 x")
        .json(&serde_json::json!({ "token": token }))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test]
async fn answers_credentials_then_the_chosen_error_and_records_calls() {
    let fake = FakeEksAuthServer::start(FakeEksAuthSettings::default()).unwrap();
    let (status, body) = call(&fake, "t1").await;
    assert_eq!(status, 200);
    assert_eq!(body["credentials"]["sessionToken"], FIXED_SESSION_TOKEN);
    assert_eq!(
        body["credentials"]["secretAccessKey"],
        FIXED_SECRET_ACCESS_KEY
    );
    let expiration = body["credentials"]["expiration"].as_i64().unwrap();
    assert!(expiration > podid_test_support::tokens::now_secs() + 3500);
    fake.set_reply(FakeReply::Error {
        status: 404,
        kind: "ResourceNotFoundException",
    });
    let (status, body) = call(&fake, "t2").await;
    assert_eq!(status, 404);
    assert_eq!(body["message"], "fake ResourceNotFoundException");
    assert_eq!(fake.calls(), 2);
    let seen = fake.seen();
    assert_eq!(seen[0].cluster, "c1");
    assert_eq!(seen[0].authorization, "AWS4-HMAC-SHA256 x");
    assert_eq!(seen[1].token, "t2");
}

#[tokio::test]
async fn random_tokens_have_the_asked_length() {
    let fake = FakeEksAuthServer::start(FakeEksAuthSettings {
        tokens: SessionTokens::Random { bytes: 800 },
        record: false,
        ..FakeEksAuthSettings::default()
    })
    .unwrap();
    let (_, a) = call(&fake, "t").await;
    let (_, b) = call(&fake, "t").await;
    let token = a["credentials"]["sessionToken"].as_str().unwrap();
    assert_eq!(token.len(), 800);
    assert_ne!(a["credentials"], b["credentials"]);
    assert!(fake.seen().is_empty());
}

#[test]
fn the_keys_file_holds_the_three_keys() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(write_keys_file(dir.path()).unwrap()).unwrap();
    for key in [ADMIN, READER, NODE] {
        assert!(
            text.contains(&format!(
                "access_key_id = \"{}\"\nsecret_access_key = \"{}\"\nrole = \"{}\"",
                key.access_key_id, key.secret_access_key, key.role
            )),
            "{text}"
        );
    }
}
