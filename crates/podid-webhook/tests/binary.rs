//! The `podid webhook` subcommand as a process: a `podid server` with API
//! keys, the webhook signing its lookups with a `reader` key from the AWS
//! environment variables, its stdout "listening" line on port 0, HTTPS with a
//! test CA, following the change feed with that key, and a clean exit on
//! SIGTERM. A webhook holding a wrong secret is
//! refused by the server and admits pods unchanged with a warning.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use podid_test_support::{run_to_success, ChildProcess, TestKey, ADMIN, READER};

/// Runs `podid webhook ARGS` with `key` as its only AWS credentials and
/// waits (bounded) for its "listening" line; returns it and its URL.
fn spawn_webhook(args: &[&str], key: (&str, &str)) -> (ChildProcess, String) {
    let mut cmd = Command::new(podid_bin());
    cmd.arg("webhook")
        .args(args)
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env("AWS_ACCESS_KEY_ID", key.0)
        .env("AWS_SECRET_ACCESS_KEY", key.1)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("PODID_LOG", "warn")
        .stderr(std::process::Stdio::null());
    let mut process = ChildProcess::spawn("podid webhook", cmd, false).unwrap();
    let url = process
        .wait_for_line("podid webhook listening on ", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("webhook did not start: {e}"));
    (process, url)
}

/// Runs a `podid` CLI verb signed with the admin key.
fn cli(endpoint: &str, args: &[&str]) {
    let mut cmd = Command::new(podid_bin());
    cmd.args(args)
        .args(["--endpoint", endpoint])
        .env("AWS_ACCESS_KEY_ID", ADMIN.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", ADMIN.secret_access_key)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE");
    if let Err(e) = run_to_success("podid", cmd, Duration::from_secs(60)) {
        panic!("{args:?}: {e}");
    }
}

fn pair(key: &TestKey) -> (&'static str, &'static str) {
    (key.access_key_id, key.secret_access_key)
}

fn webhook(files: &CertFiles, endpoint: &str, key: (&str, &str)) -> (ChildProcess, String) {
    let (cert, key_file) = (
        files.cert.display().to_string(),
        files.key.display().to_string(),
    );
    let (p, url) = spawn_webhook(
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key_file,
            "--cluster-name",
            "bin",
            "--endpoint",
            endpoint,
            "--region",
            "us-east-1",
        ],
        key,
    );
    assert!(
        url.starts_with("https://127.0.0.1:") && !url.ends_with(":0"),
        "{url}"
    );
    (p, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podid_webhook_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let keys = podid_test_support::write_keys_file(dir.path()).unwrap();
    let db = format!("sqlite://{}", dir.path().join("x.db").display());
    let server = podid_test_support::PodidServerLaunch::new(podid_bin())
        .args(["--keys-file", keys.to_str().unwrap()])
        .args(["--database-url", &db])
        .log("warn")
        .aws_test_key(&ADMIN)
        .stderr(podid_test_support::StderrTo::Null)
        .start()
        .unwrap_or_else(|e| panic!("podid server did not start: {e}"));
    let endpoint = server.endpoint.clone();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, JWKS).unwrap();
    cli(
        &endpoint,
        &[
            "cluster",
            "register",
            "--name",
            "bin",
            "--issuer",
            "https://issuer.test",
            "--jwks-file",
            &jwks.display().to_string(),
        ],
    );
    let sa = "bin-sa";
    cli(
        &endpoint,
        &[
            "association",
            "create",
            "--cluster-name",
            "bin",
            "--namespace",
            "default",
            "--service-account",
            sa,
            "--role-arn",
            "arn:aws:iam::111122223333:role/r",
        ],
    );

    let ca = TestCa::new("podid test CA").unwrap();
    let files = CertFiles::new(&ca.leaf(1, "binary").unwrap()).unwrap();
    let https = client(&ca.pem, false);

    // The reader key signs the lookups: injected.
    let (good, url) = webhook(&files, &endpoint, pair(&READER));
    let review = pod_review("uid-bin", "default", sa);
    let (answer, _) = post_review(&https, &url, &review).await;
    assert!(
        answer.response.warnings.is_empty(),
        "{:?}",
        answer.response.warnings
    );
    assert!(injected(&patched(&review, &answer)));
    let (answer, _) = post_review(
        &https,
        &url,
        &pod_review("uid-other", "default", "other-sa"),
    )
    .await;
    assert!(answer.response.patch.is_none());
    let ready = https.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    // It follows the change feed with the reader key (the default
    // --follow-changes true): the next pod is answered from the followed set.
    podid_test_support::wait::eventually(Duration::from_secs(30), "the feed followed", || async {
        let text = get_text(&https, &url, "/metrics").await;
        metric(&text, "podid_webhook_feed_connected") == 1.0
            && metric(&text, "podid_webhook_associations_known") == 1.0
    })
    .await;
    // The first admission may or may not have come after the set was loaded:
    // count only what this one adds.
    let followed = r#"podid_webhook_association_lookups_total{result="followed"}"#;
    let before = metric(&get_text(&https, &url, "/metrics").await, followed);
    let (answer, _) = post_review(&https, &url, &pod_review("uid-bin-2", "default", sa)).await;
    assert!(answer.response.patch.is_some());
    let text = get_text(&https, &url, "/metrics").await;
    assert_eq!(metric(&text, followed), before + 1.0, "{text}");

    // SIGTERM: a clean exit.
    let status = good
        .terminate(Duration::from_secs(15))
        .expect("the webhook did not exit on SIGTERM");
    assert!(status.success(), "{status:?}");

    // A wrong secret: the server refuses the lookup, the pod passes unchanged with a warning.
    let (_bad, url) = webhook(&files, &endpoint, (READER.access_key_id, "not-the-secret"));
    let (answer, _) = post_review(&https, &url, &review).await;
    assert!(answer.response.patch.is_none());
    assert!(
        answer.response.warnings[0].contains("InvalidSignatureException"),
        "{:?}",
        answer.response.warnings
    );
    drop(server);
}
