//! The HTTPS server: a CA made by the test issues the webhook's certificate;
//! a real HTTPS client (reqwest + rustls) trusting only that CA and checking
//! the IP SAN posts AdmissionReviews. The certificate files are then
//! replaced — by a broken pair (kept out of service), then by a new
//! certificate — and fresh connections are polled until they present the new
//! one, while requests keep being answered throughout.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use podid_test_support::tls::Leaf;
use podid_webhook::{AssociationLookup, WebhookError, WebhookSettings};
use serde_json::json;

/// Every service account has an association.
struct Everyone;

#[async_trait::async_trait]
impl AssociationLookup for Everyone {
    async fn has_association(&self, _: &str, _: &str) -> Result<bool, WebhookError> {
        Ok(true)
    }
    fn describe(&self) -> String {
        "everyone".into()
    }
}

fn fast_reload() -> WebhookSettings {
    WebhookSettings {
        reload_interval: Duration::from_millis(100),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_and_rotates_the_certificate_without_restart() {
    let ca = TestCa::new("podid test CA").unwrap();
    let first = ca.leaf(1001, "podid-webhook-1").unwrap();
    let files = CertFiles::new(&first).unwrap();
    let server = start(Arc::new(Everyone), &files, fast_reload()).await;

    // A fresh connection verifies the chain and the 127.0.0.1 SAN and is answered.
    let fresh = client(&ca.pem, true);
    let review = pod_review("uid-first", "default", "s3-reader");
    let (answer, peer) = post_review(&fresh, &server.url, &review).await;
    assert_eq!(peer, first.der, "the first certificate is served");
    assert!(injected(&patched(&review, &answer)));

    // A client trusting another CA refuses the server.
    let stranger = client(&TestCa::new("another CA").unwrap().pem, true);
    assert!(stranger
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .is_err());

    // Keep a pooled connection and a stream of requests going during the rotation.
    let pooled = client(&ca.pem, false);
    let (_, peer) = post_review(&pooled, &server.url, &review).await;
    assert_eq!(peer, first.der);
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let background = {
        let (stop, answered, url, pooled) = (
            stop.clone(),
            answered.clone(),
            server.url.clone(),
            pooled.clone(),
        );
        tokio::spawn(async move {
            let mut i = 0;
            // Bounded: at most 2000 requests, and it stops when told.
            while !stop.load(Ordering::Relaxed) && i < 2000 {
                let review = pod_review(&format!("uid-bg-{i}"), "default", "s3-reader");
                let (answer, _) = post_review(&pooled, &url, &review).await;
                assert!(answer.response.allowed && answer.response.patch.is_some());
                answered.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        })
    };

    // 1. A broken pair (the key does not match the certificate) is not loaded.
    let second = ca.leaf(2002, "podid-webhook-2").unwrap();
    let broken = Leaf {
        cert_pem: second.cert_pem.clone(),
        key_pem: first.key_pem.clone(),
        der: Vec::new(),
    };
    files.write(&broken).unwrap();
    let metrics = server.metrics.clone();
    eventually(
        Duration::from_secs(10),
        "the broken pair to be tried",
        || {
            let m = metrics.clone();
            async move {
                metric(
                    &m.encode(),
                    r#"podid_webhook_certificate_reloads_total{result="failed"}"#,
                ) >= 1.0
            }
        },
    )
    .await;
    let r = fresh
        .get(format!("{}/readyz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "still ready on the previous certificate");
    assert_eq!(
        peer_certificate(&r),
        first.der,
        "the previous certificate stays in service"
    );

    // 2. The good new pair is picked up by fresh connections, without a restart.
    files.write(&second).unwrap();
    eventually(
        Duration::from_secs(10),
        "a fresh connection to present the new certificate",
        || {
            let (fresh, url, want) = (fresh.clone(), server.url.clone(), second.der.clone());
            async move {
                let r = fresh.get(format!("{url}/healthz")).send().await.unwrap();
                peer_certificate(&r) == want
            }
        },
    )
    .await;
    let review = pod_review("uid-second", "default", "s3-reader");
    let (answer, peer) = post_review(&fresh, &server.url, &review).await;
    assert_eq!(peer, second.der);
    assert!(injected(&patched(&review, &answer)));

    // In-flight service went on: the pooled connection (still on the old
    // certificate) kept answering throughout.
    let before = answered.load(Ordering::Relaxed);
    eventually(Duration::from_secs(10), "more background answers", || {
        let answered = answered.clone();
        async move { answered.load(Ordering::Relaxed) > before }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(30), background)
        .await
        .expect("the background requests stopped within 30 s of being told")
        .unwrap();
    assert!(answered.load(Ordering::Relaxed) > 0);
    let text = server.metrics.encode();
    assert_eq!(
        metric(
            &text,
            r#"podid_webhook_certificate_reloads_total{result="loaded"}"#
        ),
        2.0,
        "{text}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_without_a_certificate_until_one_appears() {
    let ca = TestCa::new("podid test CA").unwrap();
    let leaf = ca.leaf(7, "late").unwrap();
    let files = CertFiles::new(&leaf).unwrap();
    std::fs::remove_file(&files.cert).unwrap();
    let server = start(Arc::new(Everyone), &files, fast_reload()).await;
    assert!(!server.webhook.certs().is_loaded());
    let fresh = client(&ca.pem, true);
    assert!(
        fresh
            .get(format!("{}/healthz", server.url))
            .send()
            .await
            .is_err(),
        "no certificate, no handshake"
    );
    files.write(&leaf).unwrap();
    eventually(Duration::from_secs(10), "the certificate to load", || {
        let (fresh, url) = (fresh.clone(), server.url.clone());
        async move {
            fresh
                .get(format!("{url}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        }
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_surface() {
    let ca = TestCa::new("podid test CA").unwrap();
    let files = CertFiles::new(&ca.leaf(1, "surface").unwrap()).unwrap();
    let settings = WebhookSettings {
        max_body_bytes: 64 * 1024,
        ..fast_reload()
    };
    let server = start(Arc::new(Everyone), &files, settings).await;
    let http = client(&ca.pem, false);
    let url = &server.url;

    for (path, status) in [
        ("/healthz", 200),
        ("/readyz", 200),
        ("/metrics", 200),
        ("/nope", 404),
    ] {
        let r = http.get(format!("{url}{path}")).send().await.unwrap();
        assert_eq!(r.status(), status, "{path}");
    }
    let r = http.get(format!("{url}/mutate")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["code"],
        "MethodNotAllowed"
    );

    // Malformed reviews: 400 with a JSON message.
    let mut bodies = vec![
        ("{not json".to_owned(), "not JSON"),
        (
            json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {}}).to_string(),
            "v1beta1",
        ),
        (json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).to_string(), "no request"),
        (String::new(), "not JSON"),
    ];
    let mut no_uid = pod_review("x", "default", "sa");
    no_uid["request"].as_object_mut().unwrap().remove("uid");
    bodies.push((no_uid.to_string(), "uid"));
    for (body, needle) in bodies {
        let r = post_mutate(&http, url, body.clone()).await;
        assert_eq!(r.status(), 400, "{body}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["code"], "InvalidAdmissionReview");
        assert!(
            v["message"].as_str().unwrap().contains(needle),
            "{body}: {v}"
        );
    }

    // Too large: 413.
    let mut big = pod_review("big", "default", "sa");
    big["request"]["object"]["metadata"]["annotations"] = json!({"filler": "x".repeat(100 * 1024)});
    let r = post_mutate(&http, url, big.to_string()).await;
    assert_eq!(r.status(), 413);

    // The server still answers, over HTTP/1.1 and HTTP/2 alike.
    let h2 = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap())
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let review = pod_review("uid-h2", "default", "s3-reader");
    let r = post_mutate(&h2, url, review.to_string()).await;
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let (answer, _) = post_review(&http, url, &review).await;
    assert!(injected(&patched(&review, &answer)));

    let text = get_text(&http, url, "/metrics").await;
    assert_eq!(
        metric(&text, r#"podid_webhook_admissions_total{result="error"}"#),
        6.0,
        "{text}"
    );
    assert!(
        metric(&text, r#"podid_webhook_admissions_total{result="mutated"}"#) >= 1.0,
        "{text}"
    );
    server.stop().await;
}
