//! aws-sdk-eks (Rust), signing with a podid key, against a real `podid server`.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use aws_sdk_eks::config::timeout::TimeoutConfig;
use aws_sdk_eks::config::{BehaviorVersion, Credentials, Region};
use common::*;
use podid_test_support::{run_to_success, TestKey, ADMIN, READER};

fn eks_client(endpoint: &str, key: &TestKey) -> aws_sdk_eks::Client {
    secret_eks_client(endpoint, key.access_key_id, key.secret_access_key)
}

fn secret_eks_client(endpoint: &str, key: &str, secret: &str) -> aws_sdk_eks::Client {
    let config = aws_sdk_eks::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(key, secret, None, None, "test"))
        // A hung server fails the call instead of hanging the test.
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(std::time::Duration::from_secs(60))
                .build(),
        )
        .build();
    aws_sdk_eks::Client::from_conf(config)
}

/// A server with the test keys and cluster `blue`, registered with the CLI
/// (the tool people use for the registry).
async fn server_with_cluster_blue() -> (tempfile::TempDir, PodidServerProcess) {
    let dir = tempfile::tempdir().unwrap();
    let keys = write_keys(dir.path());
    let server = start_server(&[
        "--database-url",
        &sqlite_url(dir.path()),
        "--keys-file",
        keys.to_str().unwrap(),
    ]);
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, JWKS).unwrap();
    let mut register = std::process::Command::new(env!("CARGO_BIN_EXE_podid"));
    register
        .args(["cluster", "register", "--endpoint", &server.endpoint])
        .args(["--name", "blue", "--issuer", "https://issuer.test/blue"])
        .arg("--jwks-file")
        .arg(&jwks)
        .env("AWS_ACCESS_KEY_ID", ADMIN.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", ADMIN.secret_access_key)
        .env("AWS_CONFIG_FILE", dir.path().join("none"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.path().join("none"));
    let timeout = std::time::Duration::from_secs(60);
    tokio::task::spawn_blocking(move || {
        run_to_success("podid cluster register", register, timeout)
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("register failed: {e}"));
    (dir, server)
}

#[tokio::test]
async fn aws_sdk_eks_creates_lists_describes_and_deletes() {
    let (_dir, server) = server_with_cluster_blue().await;
    let eks = eks_client(&server.endpoint, &ADMIN);

    let created = eks
        .create_pod_identity_association()
        .cluster_name("blue")
        .namespace("default")
        .service_account("boto3")
        .role_arn("arn:aws:iam::111122223333:role/simple-pod-identity-role")
        .tags("team", "ml")
        .send()
        .await
        .unwrap()
        .association
        .unwrap();
    let id = created.association_id().unwrap().to_owned();
    assert!(id.starts_with("a-") && id.len() == 19, "{id}");
    assert_eq!(
        created.association_arn().unwrap(),
        format!("arn:aws:eks:us-east-1:111122223333:podidentityassociation/blue/{id}")
    );
    assert_eq!(
        created.tags().unwrap().get("team").map(String::as_str),
        Some("ml")
    );
    let created_at = created.created_at().unwrap().secs();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (now - created_at).abs() < 60,
        "createdAt {created_at} vs now {now}"
    );

    let listed = eks
        .list_pod_identity_associations()
        .cluster_name("blue")
        .send()
        .await
        .unwrap();
    let ids: Vec<_> = listed
        .associations()
        .iter()
        .map(|s| s.association_id().unwrap())
        .collect();
    assert_eq!(ids, vec![id.as_str()]);

    let described = eks
        .describe_pod_identity_association()
        .cluster_name("blue")
        .association_id(&id)
        .send()
        .await
        .unwrap()
        .association
        .unwrap();
    assert_eq!(described.service_account(), Some("boto3"));
    assert_eq!(
        described.role_arn(),
        Some("arn:aws:iam::111122223333:role/simple-pod-identity-role")
    );

    let deleted = eks
        .delete_pod_identity_association()
        .cluster_name("blue")
        .association_id(&id)
        .send()
        .await
        .unwrap()
        .association
        .unwrap();
    assert_eq!(deleted.association_id(), Some(id.as_str()));
    let gone = eks
        .describe_pod_identity_association()
        .cluster_name("blue")
        .association_id(&id)
        .send()
        .await;
    let err = gone.unwrap_err().into_service_error();
    assert!(err.is_resource_not_found_exception(), "{err:?}");
}

#[tokio::test]
async fn aws_sdk_eks_errors_are_modelled_and_roles_enforced() {
    let (_dir, server) = server_with_cluster_blue().await;
    let admin = eks_client(&server.endpoint, &ADMIN);
    let create = |c: &aws_sdk_eks::Client| {
        c.create_pod_identity_association()
            .cluster_name("blue")
            .namespace("default")
            .service_account("app")
            .role_arn("arn:aws:iam::111122223333:role/app")
    };
    create(&admin).send().await.unwrap();
    let dup = create(&admin)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(dup.is_resource_in_use_exception(), "{dup:?}");

    let bad = admin
        .create_pod_identity_association()
        .cluster_name("blue")
        .namespace("Not_A_Namespace")
        .service_account("app")
        .role_arn("arn:aws:iam::111122223333:role/app")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(bad.is_invalid_parameter_exception(), "{bad:?}");

    let reader = eks_client(&server.endpoint, &READER);
    assert_eq!(
        reader
            .list_pod_identity_associations()
            .cluster_name("blue")
            .send()
            .await
            .unwrap()
            .associations()
            .len(),
        1
    );
    let denied = create(&reader)
        .service_account("other")
        .send()
        .await
        .unwrap_err();
    let raw = denied.raw_response().unwrap();
    assert_eq!(raw.status().as_u16(), 403);
    assert_eq!(
        raw.headers().get("x-amzn-errortype"),
        Some("AccessDeniedException")
    );

    let wrong = secret_eks_client(
        &server.endpoint,
        ADMIN.access_key_id,
        "not-the-right-secret-at-all",
    );
    let err = wrong
        .list_pod_identity_associations()
        .cluster_name("blue")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.raw_response()
            .unwrap()
            .headers()
            .get("x-amzn-errortype"),
        Some("InvalidSignatureException")
    );
}
