//! No race between creating an association and admitting a pod: against a
//! real `podid server` process, a pod of a fresh service account is admitted
//! unchanged, the association is created, and the same pod admitted right
//! after is mutated — 50 times. Also: a server error (unknown cluster) admits
//! the pod unchanged with a warning.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use podid_webhook::{HttpLookup, WebhookSettings};
use serde_json::json;

/// A webhook (certificate named `cn`) looking `cluster`'s associations up at
/// `podid`, its certificate files, and an HTTPS client trusting it.
async fn webhook_at(
    podid: &PodidServer,
    cluster: &str,
    cn: &str,
) -> (Running, CertFiles, reqwest::Client) {
    // Not the product's 1.5 s: a slow lookup on a loaded machine must not
    // read as "unreachable" in tests about ordering and errors.
    let timeout = Duration::from_secs(10);
    let lookup = HttpLookup::new(&podid.endpoint, cluster, "us-east-1", None, timeout).unwrap();
    let ca = TestCa::new("podid test CA").unwrap();
    let files = CertFiles::new(&ca.leaf(1, cn).unwrap()).unwrap();
    let webhook = start(Arc::new(lookup), &files, WebhookSettings::default()).await;
    (webhook, files, client(&ca.pem, false))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_association_is_seen_by_the_next_admission() {
    let podid = PodidServer::start();
    podid.register_cluster("race").await;
    let (webhook, _files, https) = webhook_at(&podid, "race", "race").await;
    let api = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    for i in 0..50 {
        let sa = format!("race-sa-{i}");
        let review = pod_review(&format!("uid-{i}-before"), "default", &sa);
        let (answer, _) = post_review(&https, &webhook.url, &review).await;
        assert!(answer.response.patch.is_none(), "{sa}: no association yet");
        assert!(
            answer.response.warnings.is_empty(),
            "{sa}: {:?}",
            answer.response.warnings
        );

        let created = api
            .post(format!(
                "{}/clusters/race/pod-identity-associations",
                podid.endpoint
            ))
            .json(&json!({
                "namespace": "default",
                "serviceAccount": sa,
                "roleArn": "arn:aws:iam::111122223333:role/s3-reader",
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 200, "{}", created.text().await.unwrap());

        let review = pod_review(&format!("uid-{i}-after"), "default", &sa);
        let (answer, _) = post_review(&https, &webhook.url, &review).await;
        assert!(
            answer.response.patch.is_some(),
            "{sa}: the association created just before is seen"
        );
        assert!(injected(&patched(&review, &answer)));
    }

    let text = webhook.metrics.encode();
    assert_metrics(
        &text,
        &[
            (
                r#"podid_webhook_association_lookups_total{result="not_found"}"#,
                50.0,
            ),
            (
                r#"podid_webhook_association_lookups_total{result="found"}"#,
                50.0,
            ),
            (r#"podid_webhook_admissions_total{result="mutated"}"#, 50.0),
            (r#"podid_webhook_admissions_total{result="skipped"}"#, 50.0),
        ],
    );

    // A positive answer is reused (cached) for the next pod of that account.
    let review = pod_review("uid-cached", "default", "race-sa-0");
    let (answer, _) = post_review(&https, &webhook.url, &review).await;
    assert!(answer.response.patch.is_some());
    let text = webhook.metrics.encode();
    assert_eq!(
        metric(
            &text,
            r#"podid_webhook_association_lookups_total{result="cached"}"#
        ),
        1.0,
        "{text}"
    );
    webhook.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_admits_the_pod_with_a_warning() {
    let podid = PodidServer::start();
    let (webhook, _files, https) = webhook_at(&podid, "unregistered", "errors").await;
    let (answer, _) = post_review(
        &https,
        &webhook.url,
        &pod_review("uid-err", "default", "sa"),
    )
    .await;
    assert!(answer.response.allowed && answer.response.patch.is_none());
    let warning = answer.response.warnings.first().expect("a warning");
    assert!(
        warning.contains("not injected") && warning.contains("ResourceNotFoundException"),
        "{warning}"
    );
    let text = webhook.metrics.encode();
    assert_metrics(
        &text,
        &[
            (
                r#"podid_webhook_association_lookups_total{result="error"}"#,
                1.0,
            ),
            (r#"podid_webhook_admissions_total{result="error"}"#, 1.0),
            ("podid_webhook_server_unreachable_total", 0.0),
        ],
    );
    webhook.stop().await;
}
