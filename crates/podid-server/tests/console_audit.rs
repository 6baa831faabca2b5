//! The console's audit trail (`/console/audit`) against a real `podid server` (build
//! it first: `cargo build -p podid`) whose broker asks a fake STS: change events from
//! the CLI, credential events from `AssumeRoleForPodIdentity` calls signed with the
//! node key (issued while associated, denied after the association is deleted).
//!
//! The oracle is the order the test made the events in (newest first reverses it),
//! the outcome and kind names of the API's audit list, the filter names, and
//! literals the test chose (pod names, a `<script>` pod name shown as text).
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use podid_test_support::console_pages::{cells, has_id, input_value, unescape, ConsoleSession};
use podid_test_support::signed::signed_call;
use podid_test_support::sts_broker::{StsBroker, CLUSTER, NAMESPACE, ROLE_ARN, SERVICE_ACCOUNT};
use podid_test_support::{skip_or_fail, ADMIN, NODE, READER};
use serde_json::json;

const SCRIPT_POD: &str = "<script>alert(1)</script>";

fn key(k: &podid_test_support::keys::TestKey) -> (&'static str, &'static str) {
    (k.access_key_id, k.secret_access_key)
}

/// One `AssumeRoleForPodIdentity` for pod `pod`; the HTTP status.
async fn assume(broker: &StsBroker, pod: &str) -> u16 {
    let body = json!({"token": broker.token(pod)}).to_string();
    let path = format!("/clusters/{CLUSTER}/assume-role-for-pod-identity");
    signed_call(
        &broker.endpoint(),
        key(&NODE),
        "POST",
        &path,
        body.as_bytes(),
    )
    .await
    .status
}

/// The broker with its events: create (by the start), issued pod-1, issued
/// `<script>` pod, delete, denied pod-2; and a second cluster `other` with one
/// association, made last.
async fn start() -> Option<(StsBroker, String)> {
    let broker = match StsBroker::start(&[]) {
        Ok(b) => b,
        Err(e) => {
            skip_or_fail(&format!("console audit: podid server cannot start ({e})"));
            return None;
        }
    };
    assert_eq!(assume(&broker, "pod-1").await, 200);
    assert_eq!(assume(&broker, SCRIPT_POD).await, 200);
    let path = format!("/clusters/{CLUSTER}/pod-identity-associations");
    let endpoint = broker.endpoint();
    let listed = signed_call(&endpoint, key(&ADMIN), "GET", &path, b"").await;
    let id = listed.body["associations"][0]["associationId"]
        .as_str()
        .unwrap()
        .to_owned();
    let deleted = signed_call(
        &endpoint,
        key(&ADMIN),
        "DELETE",
        &format!("{path}/{id}"),
        b"",
    )
    .await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    assert_ne!(assume(&broker, "pod-2").await, 200);
    Some((broker, id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_newest_first_filtered_and_paged() {
    let Some((broker, id)) = start().await else {
        return;
    };
    let endpoint = broker.endpoint();
    let reader =
        ConsoleSession::sign_in(&endpoint, READER.access_key_id, READER.secret_access_key).await;
    // Events are written in batches: wait (bounded) until all five are listed.
    let deadline = Instant::now() + Duration::from_secs(20);
    let page = loop {
        let page = reader.get("/console/audit").await;
        assert_eq!(page.status, 200, "{}", page.body);
        if cells(&page.body, "outcome").len() >= 5 || Instant::now() > deadline {
            break page;
        }
        tokio::task::yield_now().await;
    };
    let html = &page.body;
    assert!(has_id(html, "audit") && has_id(html, "audit-filters"));
    // Newest first: denied pod-2, the delete, issued <script> pod, issued pod-1, the create.
    let outcomes = cells(html, "outcome");
    let kinds = cells(html, "kind");
    let subjects = cells(html, "subject");
    assert_eq!(
        &outcomes[..5],
        ["denied", "succeeded", "issued", "issued", "succeeded"]
    );
    assert_eq!(
        &kinds[..5],
        ["credential", "change", "credential", "credential", "change"]
    );
    let pod = |name: &str| format!("{NAMESPACE}/{SERVICE_ACCOUNT}/{name}");
    assert_eq!(subjects[0], pod("pod-2"));
    assert_eq!(subjects[2], pod(SCRIPT_POD), "the pod name shown as text");
    assert_eq!(subjects[3], pod("pod-1"));
    assert!(!html.contains(SCRIPT_POD), "a raw <script> in the page");
    // The issued rows: association id linked to its page, role ARN, caller the node key.
    assert_eq!(cells(html, "association-id")[3], id);
    assert_eq!(cells(html, "role-arn")[3], ROLE_ARN);
    assert_eq!(cells(html, "caller")[3], NODE.access_key_id);
    assert_eq!(cells(html, "caller")[1], ADMIN.access_key_id);
    let link = html.split(&format!(">{id}</a>")).next().unwrap();
    let href = link.rsplit("href=\"").next().unwrap().trim_end_matches('"');
    // Cluster names and association ids are unreserved characters: not escaped.
    let expected = format!("/console/associations/{CLUSTER}/{id}");
    assert_eq!(unescape(href), expected, "the association's page");
    assert!(
        !cells(html, "error-code")[0].is_empty(),
        "the denied row's error code"
    );
    // The change rows: the action and the changed fields.
    let changes = cells(html, "change");
    assert!(
        changes[1].starts_with("DeletePodIdentityAssociation"),
        "{}",
        changes[1]
    );
    assert!(changes[1].contains(ROLE_ARN), "{}", changes[1]);
    assert!(
        changes[4].starts_with("CreatePodIdentityAssociation"),
        "{}",
        changes[4]
    );

    // Filters narrow, and the form shows them.
    let denied = reader.get("/console/audit?outcome=denied").await.body;
    assert_eq!(cells(&denied, "outcome"), ["denied"]);
    let issued = reader
        .get("/console/audit?outcome=issued&kind=credential")
        .await
        .body;
    assert_eq!(cells(&issued, "outcome"), ["issued", "issued"]);
    let changes = reader.get("/console/audit?kind=change").await.body;
    assert!(cells(&changes, "kind").iter().all(|k| k == "change"));
    let ns = reader
        .get(&format!(
            "/console/audit?namespace={NAMESPACE}&cluster={CLUSTER}"
        ))
        .await
        .body;
    let subjects = cells(&ns, "subject");
    assert!(
        subjects.len() >= 3,
        "the three credential events: {subjects:?}"
    );
    assert!(
        subjects
            .iter()
            .all(|s| s.starts_with(&format!("{NAMESPACE}/"))),
        "{subjects:?}"
    );
    assert_eq!(input_value(&ns, "namespace").as_deref(), Some(NAMESPACE));
    let none = reader.get("/console/audit?namespace=elsewhere").await.body;
    assert!(cells(&none, "outcome").is_empty());
    // A hostile filter value is echoed as text; bad values are a clear 400.
    let echoed = reader
        .get("/console/audit?namespace=%3Cscript%3Ealert(1)%3C%2Fscript%3E")
        .await;
    assert_eq!(echoed.status, 200);
    assert_eq!(
        input_value(&echoed.body, "namespace").as_deref(),
        Some(SCRIPT_POD)
    );
    assert!(!echoed.body.contains(SCRIPT_POD));
    for bad in ["outcome=maybe", "kind=other", "page=x1", "page=o-3"] {
        let answer = reader.get(&format!("/console/audit?{bad}")).await;
        assert_eq!(answer.status, 400, "{bad}");
    }
}
