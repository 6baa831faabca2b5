//! The webhook following the cluster's change feed, against real `podid
//! server` processes: admissions of service accounts in the followed set cost
//! the server no request (counted in the server's own metrics); an
//! association created just before a pod is seen by its admission; a deleted
//! one is no longer injected; a server restart (with changes made while the
//! webhook was cut off) is caught up from the feed position, and a server on
//! another database makes it load the set again.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use podid_test_support::relay::Relay;
use podid_test_support::wait::eventually;
use podid_webhook::{
    FollowSettings, FollowedAssociations, ServerAccess, WebhookMetrics, WebhookSettings,
};

/// The bound of every wait here.
const WAIT: Duration = Duration::from_secs(30);
/// Not the product's 1.5 s: a loaded machine must not read as "unreachable".
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A webhook following `cluster` at `endpoint`, its follower running.
struct Followed {
    webhook: Running,
    https: reqwest::Client,
    _files: CertFiles,
    follower: tokio::task::JoinHandle<()>,
}

impl Followed {
    async fn start(endpoint: &str, cluster: &str) -> Followed {
        let access = ServerAccess {
            endpoint: endpoint.to_owned(),
            cluster: cluster.to_owned(),
            region: "us-east-1".to_owned(),
            credentials: None,
            ca: None,
        };
        let ca = TestCa::new("podid test CA").unwrap();
        let files = CertFiles::new(&ca.leaf(1, cluster).unwrap()).unwrap();
        let settings = WebhookSettings {
            lookup_timeout: LOOKUP_TIMEOUT,
            ..WebhookSettings::default()
        };
        let follow = FollowSettings {
            wait: Duration::from_secs(20),
            retry: Duration::from_millis(200),
        };
        let metrics = Arc::new(WebhookMetrics::new());
        let followed =
            FollowedAssociations::new(&access, LOOKUP_TIMEOUT, follow, metrics.clone()).unwrap();
        let follower = tokio::spawn(followed.clone().follow());
        let webhook = start_with_metrics(followed, &files, settings, metrics).await;
        Followed {
            webhook,
            https: client(&ca.pem, false),
            _files: files,
            follower,
        }
    }

    /// The admission of a pod of `sa` (namespace default): injected?, its warnings.
    async fn admit(&self, uid: &str, sa: &str) -> (bool, Vec<String>) {
        let review = pod_review(uid, "default", sa);
        let (answer, _) = post_review(&self.https, &self.webhook.url, &review).await;
        assert!(answer.response.allowed);
        let injected = answer.response.patch.is_some() && injected(&patched(&review, &answer));
        (injected, answer.response.warnings)
    }

    async fn injects(&self, uid: &str, sa: &str) -> bool {
        self.admit(uid, sa).await.0
    }

    fn metric(&self, series: &str) -> f64 {
        metric(&self.webhook.metrics.encode(), series)
    }

    /// Waits until the follower reads the feed and knows `accounts` service accounts.
    async fn until_following(&self, accounts: f64) -> Duration {
        eventually(WAIT, "the followed set", || async {
            self.metric("podid_webhook_feed_connected") == 1.0
                && self.metric("podid_webhook_associations_known") == accounts
        })
        .await
    }

    async fn stop(self) {
        self.follower.abort();
        self.webhook.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admissions_are_answered_from_the_followed_set() {
    let podid = PodidServer::start();
    podid.register_cluster("follow").await;
    for i in 0..5 {
        podid
            .associate("follow", "default", &format!("sa-{i}"))
            .await;
    }
    let followed = Followed::start(&podid.endpoint, "follow").await;
    followed.until_following(5.0).await;

    let lists = podid.requests("ListPodIdentityAssociations").await;
    let feed = podid.requests("ListAssociationChanges").await;
    for i in 0..100 {
        let sa = format!("sa-{}", i % 5);
        assert!(followed.injects(&format!("uid-{i}"), &sa).await, "{sa}");
    }
    assert_metrics(
        &followed.webhook.metrics.encode(),
        &[
            (
                r#"podid_webhook_association_lookups_total{result="followed"}"#,
                100.0,
            ),
            (r#"podid_webhook_admissions_total{result="mutated"}"#, 100.0),
        ],
    );
    assert_eq!(
        podid.requests("ListPodIdentityAssociations").await,
        lists,
        "no association lookup at the server for 100 admissions"
    );
    // Only the follower's long polls (one per 20 s without changes) reach the feed.
    let polled = podid.requests("ListAssociationChanges").await - feed;
    assert!(polled <= 5.0, "{polled} feed reads for 100 admissions");

    // A service account without an association costs one feed read (the
    // catch-up), never a listing.
    let feed = podid.requests("ListAssociationChanges").await;
    for i in 0..10 {
        assert!(!followed.injects(&format!("uid-n{i}"), "nobody").await);
    }
    let caught_up = podid.requests("ListAssociationChanges").await - feed;
    assert!(caught_up >= 10.0, "{caught_up} feed reads for 10 catch-ups");
    assert_eq!(
        followed.metric(r#"podid_webhook_feed_reads_total{reader="admission",result="ok"}"#),
        10.0
    );
    assert_eq!(podid.requests("ListPodIdentityAssociations").await, lists);
    followed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_associations_are_seen_at_once_and_deleted_ones_dropped() {
    let podid = PodidServer::start();
    podid.register_cluster("race").await;
    let followed = Followed::start(&podid.endpoint, "race").await;
    followed.until_following(0.0).await;

    let mut ids = Vec::new();
    for i in 0..30 {
        let sa = format!("race-sa-{i}");
        assert!(!followed.injects(&format!("uid-{i}-before"), &sa).await);
        ids.push((sa.clone(), podid.associate("race", "default", &sa).await));
        // No wait: the admission catches up with the feed before it says no.
        assert!(
            followed.injects(&format!("uid-{i}-after"), &sa).await,
            "{sa}: the association created just before is seen"
        );
    }
    let text = followed.webhook.metrics.encode();
    let found = metric(
        &text,
        r#"podid_webhook_association_lookups_total{result="found"}"#,
    ) + metric(
        &text,
        r#"podid_webhook_association_lookups_total{result="followed"}"#,
    );
    assert_eq!(found, 30.0, "{text}");

    // A deletion reaches the follower's long poll; the next pods are not injected.
    let mut slowest = Duration::ZERO;
    for (i, (sa, id)) in ids.iter().enumerate().take(10) {
        podid.dissociate("race", id).await;
        let took = eventually(Duration::from_secs(5), "the deletion followed", || async {
            !followed.injects(&format!("uid-{i}-deleted"), sa).await
        })
        .await;
        slowest = slowest.max(took);
    }
    eprintln!("a deleted association was no longer injected after at most {slowest:?}");
    followed.until_following(20.0).await;
    assert_eq!(
        followed.metric(r#"podid_webhook_feed_changes_total{kind="delete"}"#),
        10.0
    );

    // A deregistered cluster: the set is dropped, admissions ask the server
    // (which says the cluster is unknown) and admit the pod with a warning.
    let r = reqwest::Client::new()
        .delete(format!(
            "{}/podid/v1/clusters/race?force=true",
            podid.endpoint
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    eventually(WAIT, "the deregistration followed", || async {
        let (injected, warnings) = followed.admit("uid-gone", "race-sa-29").await;
        !injected
            && warnings
                .first()
                .is_some_and(|w| w.contains("ResourceNotFoundException"))
    })
    .await;
    followed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_is_caught_up_from_the_feed_position() {
    let podid = PodidServer::start();
    podid.register_cluster("restart").await;
    podid.associate("restart", "default", "keep").await;
    let gone = podid.associate("restart", "default", "gone").await;
    let relay = Relay::start(Some(podid.addr())).await.unwrap();
    let followed = Followed::start(&relay.url(), "restart").await;
    followed.until_following(2.0).await;

    // The server goes away: the set keeps answering; a service account not in
    // it cannot be caught up, and the pod is admitted unchanged with a warning.
    relay.point_to(None);
    let podid = podid.restart();
    eventually(WAIT, "the follower cut off", || async {
        followed.metric("podid_webhook_feed_connected") == 0.0
    })
    .await;
    assert!(followed.injects("uid-keep-down", "keep").await);
    let (injected, warnings) = followed.admit("uid-new-down", "new").await;
    assert!(!injected);
    assert!(
        warnings
            .first()
            .is_some_and(|w| w.contains("podid server unreachable")),
        "{warnings:?}"
    );

    // Changes made while the webhook could not see them.
    podid.dissociate("restart", &gone).await;
    podid.associate("restart", "default", "new").await;
    relay.point_to(Some(podid.addr()));
    let took = followed.until_following(2.0).await;
    eprintln!("caught up {took:?} after the server came back");
    assert!(!followed.injects("uid-gone-up", "gone").await);
    assert!(followed.injects("uid-new-up", "new").await);
    assert!(followed.injects("uid-keep-up", "keep").await);
    assert_eq!(
        followed.metric("podid_webhook_feed_loads_total"),
        1.0,
        "followed on from its position, not listed again"
    );

    // A server on another database: its feed does not know the position, so
    // the webhook lists that server's associations.
    let other = PodidServer::start();
    other.register_cluster("restart").await;
    other.associate("restart", "default", "elsewhere").await;
    relay.point_to(Some(other.addr()));
    drop(podid);
    eventually(WAIT, "the set listed again", || async {
        followed.metric("podid_webhook_feed_loads_total") == 2.0
            && followed.metric("podid_webhook_associations_known") == 1.0
    })
    .await;
    assert!(followed.injects("uid-elsewhere", "elsewhere").await);
    assert!(!followed.injects("uid-keep-other", "keep").await);
    followed.stop().await;
}
