//! `--audit-mode` against a real `podid server` (built with `cargo build -p
//! podid`) in front of a fake STS: the audit table is made unwritable by a
//! SQLite trigger (`BEFORE INSERT … RAISE(ABORT)`, created with the sqlite3
//! shell on the server's database file). Fail-closed then answers no
//! credentials — 503 `ServiceUnavailableException` in the AWS error shape,
//! as the EKS Auth API reference names it — and best-effort answers them and
//! counts the lost event in `podid_broker_audit_dropped_total`. Calls are
//! made by aws-sdk-eksauth signed with the node key, one attempt each.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_eksauth::error::{ProvideErrorMetadata, SdkError};
use podid_test_support::fake_sts::{FAKE_STS_SECRET_ACCESS_KEY, FAKE_STS_SESSION_TOKEN};
use podid_test_support::sigv4::Signer;
use podid_test_support::sts_broker::{StsBroker, CLUSTER};
use podid_test_support::{skip_or_fail, ADMIN, NODE};

/// What the server answered one `AssumeRoleForPodIdentity`.
#[derive(Debug)]
enum Answer {
    /// Credentials: their access key id.
    Issued(String),
    /// An AWS error: status, `x-amzn-errortype`, `__type` (as the SDK read
    /// it), and the raw body.
    Refused {
        status: u16,
        header: String,
        code: String,
        body: String,
    },
}

/// The node's EKS Auth client: aws-sdk-eksauth at `endpoint`, no retries.
struct Node(aws_sdk_eksauth::Client);

impl Node {
    fn at(endpoint: &str) -> Node {
        let key = aws_credential_types::Credentials::new(
            NODE.access_key_id,
            NODE.secret_access_key,
            None,
            None,
            "node key",
        );
        let config = aws_sdk_eksauth::Config::builder()
            .behavior_version(aws_sdk_eksauth::config::BehaviorVersion::latest())
            .credentials_provider(key)
            .region(aws_sdk_eksauth::config::Region::from_static("us-east-1"))
            .retry_config(aws_sdk_eksauth::config::retry::RetryConfig::disabled())
            .endpoint_url(endpoint)
            .build();
        Node(aws_sdk_eksauth::Client::from_conf(config))
    }

    async fn assume(&self, token: &str) -> Answer {
        let sent = self.0.assume_role_for_pod_identity();
        match sent.cluster_name(CLUSTER).token(token).send().await {
            Ok(out) => Answer::Issued(out.credentials().unwrap().access_key_id().to_owned()),
            Err(SdkError::ServiceError(e)) => Answer::Refused {
                status: e.raw().status().as_u16(),
                header: e
                    .raw()
                    .headers()
                    .get("x-amzn-errortype")
                    .unwrap_or("")
                    .to_owned(),
                code: e.err().code().unwrap_or("").to_owned(),
                body: String::from_utf8_lossy(e.raw().body().bytes().unwrap_or_default())
                    .into_owned(),
            },
            Err(other) => panic!("no answer from the server: {other:?}"),
        }
    }
}

/// Runs `sql` on the server's database with the sqlite3 shell (waiting up
/// to 5 s for the server's write lock); `false` when there is no sqlite3.
fn sqlite3(db: &Path, sql: &str) -> bool {
    let ran = Command::new("sqlite3")
        .args(["-cmd", ".timeout 5000"])
        .arg(db)
        .arg(sql)
        .output();
    match ran {
        Ok(out) => {
            assert!(out.status.success(), "sqlite3: {out:?}");
            true
        }
        Err(e) => {
            skip_or_fail(&format!("audit mode tests: sqlite3 cannot run ({e})"));
            false
        }
    }
}

const UNWRITABLE: &str = "CREATE TRIGGER audit_unwritable BEFORE INSERT ON audit_events \
     BEGIN SELECT RAISE(ABORT, 'audit table unwritable (test)'); END;";
const WRITABLE: &str = "DROP TRIGGER audit_unwritable;";

/// The server's metrics exposition, as a signed caller (the admin key,
/// signed by aws-sigv4) reads it on the API's address.
async fn metrics(broker: &StsBroker) -> String {
    let url = format!("{}/metrics", broker.endpoint());
    let signer = Signer {
        access_key_id: ADMIN.access_key_id,
        secret_access_key: ADMIN.secret_access_key,
        session_token: None,
        region: "us-east-1",
        service: "eks",
        time: SystemTime::now(),
        every_header: false,
    };
    let mut request = reqwest::Client::new().get(&url);
    for (name, value) in signer.headers("GET", &url, &[], b"").unwrap() {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    assert!(response.status().is_success(), "{url}: {response:?}");
    response.text().await.unwrap()
}

/// The value of the sample `line_start` (a metric name with its labels).
fn sample(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or(0.0)
}

const DROPPED: &str = "podid_broker_audit_dropped_total ";

/// The events of `kind` of [`CLUSTER`] (via the CLI, signed with the admin
/// key), newest first.
fn events(broker: &StsBroker, kind: &str) -> Vec<serde_json::Value> {
    let out = broker
        .cli(&[
            "audit",
            "list",
            "-o",
            "json",
            "--kind",
            kind,
            "--cluster-name",
            CLUSTER,
        ])
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    listed["events"].as_array().unwrap().clone()
}

/// Waits (bounded) until the set-up's two changes (the cluster's
/// registration, the association) are written, so that no event of theirs
/// is still queued when the table becomes unwritable.
async fn setup_written(broker: &StsBroker) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while events(broker, "change").len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the set-up's changes were not written in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_answers_no_credentials_while_the_audit_table_is_unwritable() {
    let mut broker = StsBroker::start(&["--audit-mode", "fail-closed"]).unwrap();
    let db = broker.dir().join("podid.db");
    let node = Node::at(&broker.endpoint());
    let (first, second) = (broker.token("first"), broker.token("second"));

    // Writable: credentials, and their event is stored before the answer
    // (listed at once, no waiting).
    let Answer::Issued(_) = node.assume(&first).await else {
        panic!("fail-closed with a writable audit table issued nothing");
    };
    let issued = events(&broker, "credential");
    assert_eq!(issued.len(), 1, "{issued:?}");
    assert_eq!(issued[0]["outcome"], "issued");
    assert_eq!(issued[0]["podName"], "first");

    setup_written(&broker).await;
    if !sqlite3(&db, UNWRITABLE) {
        return;
    }
    // A new pod, and the first pod again (its credentials cached): both refused.
    for token in [&second, &first] {
        let answer = node.assume(token).await;
        let Answer::Refused {
            status,
            header,
            code,
            body,
        } = &answer
        else {
            panic!("fail-closed answered credentials it could not audit: {answer:?}");
        };
        assert_eq!(
            (*status, code.as_str()),
            (503, "ServiceUnavailableException"),
            "{answer:?}"
        );
        assert!(
            header.starts_with("ServiceUnavailableException"),
            "{answer:?}"
        );
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["__type"], "ServiceUnavailableException");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(body.get("credentials").is_none(), "{body}");
        for secret in [FAKE_STS_SECRET_ACCESS_KEY, FAKE_STS_SESSION_TOKEN] {
            assert!(!body.to_string().contains(secret), "{body}");
        }
    }
    let text = metrics(&broker).await;
    assert!(sample(&text, DROPPED) >= 2.0, "{text}");
    let refused =
        "podid_broker_issuances_total{outcome=\"failed\",error=\"ServiceUnavailableException\"} ";
    assert_eq!(sample(&text, refused), 2.0, "{text}");

    // Writable again: the same pod gets credentials.
    assert!(sqlite3(&db, WRITABLE));
    let Answer::Issued(_) = node.assume(&second).await else {
        panic!("fail-closed issued nothing once the audit table was writable again");
    };
    let log = broker.stop().unwrap();
    assert!(
        log.contains("audit write failed: credentials refused (fail-closed)"),
        "{log}"
    );
    for secret in [
        FAKE_STS_SECRET_ACCESS_KEY,
        FAKE_STS_SESSION_TOKEN,
        &first,
        &second,
    ] {
        assert!(!log.contains(secret), "the server's log carries a secret");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn best_effort_answers_credentials_and_counts_the_lost_event() {
    let mut broker = StsBroker::start(&[]).unwrap();
    let db = broker.dir().join("podid.db");
    let node = Node::at(&broker.endpoint());
    setup_written(&broker).await;
    if !sqlite3(&db, UNWRITABLE) {
        return;
    }
    let before = sample(&metrics(&broker).await, DROPPED);
    let token = broker.token("best-effort");
    let answer = node.assume(&token).await;
    // What the fake STS issued (its key ids are ASIAFAKESTS and a number).
    assert!(
        matches!(&answer, Answer::Issued(key) if key.starts_with("ASIAFAKESTS")),
        "{answer:?}"
    );
    // The writer retries 3 times (0.2 + 0.4 + 0.8 s), then drops the event.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let dropped = sample(&metrics(&broker).await, DROPPED);
        if dropped > before {
            assert_eq!(dropped, before + 1.0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lost event was not counted in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = broker.stop().unwrap();
    assert!(log.contains("audit event lost (store failed)"), "{log}");
    assert!(!log.contains(&token), "the server's log carries the token");
}
