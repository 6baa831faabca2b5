//! podid's server unreachable: a closed port, and a server that accepts
//! connections and never answers. The pod is admitted unchanged, with a
//! warning naming the cause, within the API server's `timeoutSeconds: 3` of
//! the shipped MutatingWebhookConfiguration (deploy/base/webhook.yaml), and the
//! unreachable counter goes up.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use podid_webhook::{HttpLookup, WebhookSettings};

/// `--lookup-timeout-ms` default (docs/webhook.md).
const TIMEOUT: Duration = Duration::from_millis(1500);
/// The API server gives up on the webhook after `timeoutSeconds: 3`
/// (deploy/base/webhook.yaml): the answer must come before.
const API_SERVER_TIMEOUT: Duration = Duration::from_secs(3);

async fn admit_against(
    endpoint: &str,
) -> (
    podid_webhook::review::AdmissionReviewResponse,
    Duration,
    String,
) {
    let lookup = HttpLookup::new(endpoint, "c1", "us-east-1", None, TIMEOUT).unwrap();
    let ca = TestCa::new("podid test CA").unwrap();
    let files = CertFiles::new(&ca.leaf(1, "unreachable").unwrap()).unwrap();
    let settings = WebhookSettings {
        lookup_timeout: TIMEOUT,
        ..Default::default()
    };
    let webhook = start(Arc::new(lookup), &files, settings).await;
    let https = client(&ca.pem, false);
    // Warm the TLS connection so the measurement is the admission alone.
    https
        .get(format!("{}/healthz", webhook.url))
        .send()
        .await
        .unwrap();
    let review = pod_review("uid-unreachable", "default", "s3-reader");
    let started = Instant::now();
    let (answer, _) = post_review(&https, &webhook.url, &review).await;
    let elapsed = started.elapsed();
    let text = get_text(&https, &webhook.url, "/metrics").await;
    webhook.stop().await;
    (answer, elapsed, text)
}

fn assert_admitted_unchanged_with_warning(
    answer: &podid_webhook::review::AdmissionReviewResponse,
    elapsed: Duration,
    metrics: &str,
    cause: &str,
) {
    assert!(
        elapsed < API_SERVER_TIMEOUT,
        "answered in {elapsed:?}, after the API server gave up"
    );
    assert!(answer.response.allowed);
    assert!(answer.response.patch.is_none() && answer.response.patch_type.is_none());
    assert_eq!(
        answer.response.warnings.len(),
        1,
        "{:?}",
        answer.response.warnings
    );
    let warning = &answer.response.warnings[0];
    assert!(
        warning.starts_with("podid: AWS pod identity was not injected: podid server unreachable"),
        "{warning}"
    );
    assert!(warning.contains(cause), "{warning}");
    assert!(warning.len() <= 256, "{warning}");
    assert_eq!(
        metric(metrics, "podid_webhook_server_unreachable_total"),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        metric(
            metrics,
            r#"podid_webhook_association_lookups_total{result="unreachable"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(metrics, r#"podid_webhook_admissions_total{result="error"}"#),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_port() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (answer, elapsed, metrics) = admit_against(&format!("http://127.0.0.1:{port}")).await;
    assert_admitted_unchanged_with_warning(&answer, elapsed, &metrics, "cannot connect");
    // A refusal fails at once, not at the timeout: the warning says so (no clock).
    let warning = &answer.response.warnings[0];
    assert!(!warning.contains("1500 ms"), "{warning}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_that_never_answers() {
    // Accepts connections, reads nothing, answers nothing; holds them until the test ends.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let (answer, elapsed, metrics) = admit_against(&format!("http://127.0.0.1:{port}")).await;
    assert_admitted_unchanged_with_warning(&answer, elapsed, &metrics, "1500 ms");
    // A lower bound holds under any load.
    assert!(
        elapsed >= TIMEOUT - Duration::from_millis(100),
        "it waited for the timeout: {elapsed:?}"
    );
    hold.abort();
}
