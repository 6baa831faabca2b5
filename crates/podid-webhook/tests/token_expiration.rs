//! `eks.amazonaws.com/token-expiration` through the `podid webhook` process (HTTPS with a test
//! CA, its lookups answered by a real `podid server`): EKS's range is 600 to 86,400 seconds (the
//! kube-apiserver's 10-minute minimum, which EKS's webhook raises smaller values to, and the day
//! EKS's webhook calls "max for EKS"). 600 and 86400 are used as written, without a warning;
//! 599 becomes 600 and 86401 becomes 86400, each with an admission warning that says so, and a
//! line in the webhook's log.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use podid_test_support::ChildProcess;
use serde_json::json;

const CLUSTER: &str = "clamp";
const SERVICE_ACCOUNT: &str = "clamp-sa";

/// `podid webhook` for [`CLUSTER`] asking `endpoint`, serving `files`; its stderr is kept.
fn spawn_webhook(files: &CertFiles, endpoint: &str) -> (ChildProcess, String) {
    let mut cmd = Command::new(podid_bin());
    cmd.arg("webhook")
        .args(["--listen", "127.0.0.1:0", "--cluster-name", CLUSTER])
        .args(["--endpoint", endpoint, "--region", "us-east-1"])
        .arg("--tls-cert")
        .arg(&files.cert)
        .arg("--tls-key")
        .arg(&files.key)
        .env("AWS_ACCESS_KEY_ID", "AKIAWEBHOOKCLAMPTEST")
        .env(
            "AWS_SECRET_ACCESS_KEY",
            "webhook-clamp-test-secret-0123456789",
        )
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("PODID_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    let mut process = ChildProcess::spawn("podid webhook", cmd, true).unwrap();
    let url = process
        .wait_for_line("podid webhook listening on ", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("webhook did not start: {e}"));
    (process, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_expiration_outside_eks_range_is_clamped_with_a_warning() {
    let server = PodidServer::start();
    server.register_cluster(CLUSTER).await;
    let association = reqwest::Client::new()
        .post(format!(
            "{}/clusters/{CLUSTER}/pod-identity-associations",
            server.endpoint
        ))
        .json(
            &json!({"namespace": "default", "serviceAccount": SERVICE_ACCOUNT,
            "roleArn": "arn:aws:iam::111122223333:role/r"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(association.status(), 200);

    let ca = TestCa::new("podid webhook clamp CA").unwrap();
    let files = CertFiles::new(&ca.leaf(1, "clamp").unwrap()).unwrap();
    let (webhook, url) = spawn_webhook(&files, &server.endpoint);
    let https = client(&ca.pem, false);

    for (annotation, want, warned) in [
        ("599", 600, true),
        ("600", 600, false),
        ("86400", 86_400, false),
        ("86401", 86_400, true),
    ] {
        let mut review = pod_review(&format!("uid-{annotation}"), "default", SERVICE_ACCOUNT);
        review["request"]["object"]["metadata"]["annotations"] =
            json!({ "eks.amazonaws.com/token-expiration": annotation });
        let (answer, _) = post_review(&https, &url, &review).await;
        let pod = patched(&review, &answer);
        assert!(injected(&pod), "{annotation}");
        let volume = pod
            .spec
            .unwrap()
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "eks-pod-identity-token");
        let source = volume
            .unwrap()
            .projected
            .unwrap()
            .sources
            .unwrap()
            .remove(0);
        let seconds = source.service_account_token.unwrap().expiration_seconds;
        assert_eq!(seconds, Some(want), "{annotation}");
        let warnings = &answer.response.warnings;
        if warned {
            assert_eq!(warnings.len(), 1, "{annotation}: {warnings:?}");
            let w = &warnings[0];
            for part in [
                format!("eks.amazonaws.com/token-expiration={annotation}"),
                "600-86400 seconds".to_owned(),
                format!("using {want} seconds"),
            ] {
                assert!(w.contains(&part), "{annotation}: {part:?} not in {w:?}");
            }
        } else {
            assert!(warnings.is_empty(), "{annotation}: {warnings:?}");
        }
    }

    // Both clamps are in the log (bounded wait: the log is written by a thread of its own).
    eventually(
        Duration::from_secs(10),
        "the clamps in the webhook's log",
        || {
            let log = webhook.stderr();
            async move {
                ["token-expiration=599", "token-expiration=86401"]
                    .iter()
                    .all(|clamp| log.contains(clamp))
                    && log.contains("token expiration annotation not used as written")
            }
        },
    )
    .await;
    // Only those two: 600 and 86400 were used as written.
    let log = webhook.stderr();
    assert_eq!(log.matches("not used as written").count(), 2, "{log}");
}
