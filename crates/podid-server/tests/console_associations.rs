//! The console's association table and detail pages against a real `podid server`
//! process (build it first: `cargo build -p podid`): two clusters filled through the
//! API, then read as a reader, an admin and a reader scoped to one cluster.
//!
//! The oracle is what the test created through the API (ids in creation order, which
//! newest-first reverses; the API's own describe answer for ARN and external id) and
//! the literals (pages of 50, the element ids of spec.md, a tag value
//! `<script>alert(1)</script>` shown as text).
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use podid_test_support::console_pages::{cells, has_id, href_of, input_value, ConsoleSession};
use podid_test_support::signed::signed_call;
use podid_test_support::{podid_binary, PodidServerLaunch, PodidServerProcess, TEST_JWKS};
use serde_json::{json, Value};

const ADMIN: (&str, &str) = ("ADMINALL", "admin-all-secret-0123456789");
const READER: (&str, &str) = ("READERALL", "reader-all-secret-0123456789");
const BLUE_READER: (&str, &str) = ("BLUEREADER", "blue-reader-secret-0123456789");
const SCRIPT: &str = "<script>alert(1)</script>";

fn keys_file() -> String {
    let entry = |(id, secret): (&str, &str), role: &str, clusters: &str| {
        format!("[[key]]\naccess_key_id = \"{id}\"\nsecret_access_key = \"{secret}\"\nrole = \"{role}\"\n{clusters}\n\n")
    };
    entry(ADMIN, "admin", "")
        + &entry(READER, "reader", "")
        + &entry(BLUE_READER, "reader", "clusters = [\"blue\"]")
}

struct Fixture {
    _dir: tempfile::TempDir,
    process: PodidServerProcess,
    /// (cluster, id, service account, role) in creation order.
    made: Vec<(String, String, String, String)>,
    /// The tagged association of green.
    tagged: String,
}

impl Fixture {
    fn endpoint(&self) -> &str {
        &self.process.endpoint
    }

    /// The ids, newest first, of what `keep` keeps.
    fn newest_first(
        &self,
        keep: impl Fn(&(String, String, String, String)) -> bool,
    ) -> Vec<String> {
        self.made
            .iter()
            .rev()
            .filter(|m| keep(m))
            .map(|m| m.1.clone())
            .collect()
    }
}

async fn admin_call(endpoint: &str, method: &str, path: &str, body: &Value) -> Value {
    let answer = signed_call(endpoint, ADMIN, method, path, body.to_string().as_bytes()).await;
    assert_eq!(answer.status, 200, "{method} {path}: {answer:?}");
    answer.body
}

/// A server with clusters blue and green: 30 associations each (alternating), then
/// one tagged green association with a target role.
async fn start() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, keys_file()).unwrap();
    let db = format!("sqlite://{}", dir.path().join("podid.db").display());
    let process = PodidServerLaunch::new(podid_binary())
        .args(["--database-url", &db, "--keys-file", keys.to_str().unwrap()])
        .start()
        .unwrap_or_else(|e| panic!("podid server did not start: {e}"));
    let endpoint = process.endpoint.clone();
    let jwks: Value = serde_json::from_str(TEST_JWKS).unwrap();
    for name in ["blue", "green"] {
        let body =
            json!({"name": name, "issuer": format!("https://issuer.test/{name}"), "jwks": jwks});
        admin_call(&endpoint, "POST", "/podid/v1/clusters", &body).await;
    }
    let mut made = Vec::new();
    for i in 0..60 {
        let (cluster, ns) = if i % 2 == 0 {
            ("blue", "web")
        } else {
            ("green", "jobs")
        };
        let sa = format!("svc-{i}");
        let role = format!("arn:aws:iam::111122223333:role/app-{i}");
        let body = json!({"namespace": ns, "serviceAccount": sa, "roleArn": role});
        let path = format!("/clusters/{cluster}/pod-identity-associations");
        let out = admin_call(&endpoint, "POST", &path, &body).await;
        let id = out["association"]["associationId"]
            .as_str()
            .unwrap()
            .to_owned();
        made.push((cluster.to_owned(), id, sa, role));
    }
    let role = "arn:aws:iam::111122223333:role/special_role".to_owned();
    let body = json!({
        "namespace": "jobs", "serviceAccount": "tagged", "roleArn": role,
        "targetRoleArn": "arn:aws:iam::444455556666:role/target",
        "tags": {"owner": SCRIPT, "team": "a&b"},
    });
    let out = admin_call(
        &endpoint,
        "POST",
        "/clusters/green/pod-identity-associations",
        &body,
    )
    .await;
    let tagged = out["association"]["associationId"]
        .as_str()
        .unwrap()
        .to_owned();
    made.push(("green".into(), tagged.clone(), "tagged".into(), role));
    Fixture {
        _dir: dir,
        process,
        made,
        tagged,
    }
}

/// The association ids a table page lists.
fn ids(html: &str) -> Vec<String> {
    cells(html, "association-id")
}

async fn page(s: &ConsoleSession, path: &str) -> String {
    let answer = s.get(path).await;
    assert_eq!(answer.status, 200, "GET {path}: {}", answer.body);
    answer.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_association_table_and_detail_pages() {
    let f = start().await;

    // Without a session: the sign-in form.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in [
        "/console/associations",
        &format!("/console/associations/green/{}", f.tagged),
    ] {
        let r = plain
            .get(format!("{}{path}", f.endpoint()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 303, "{path}");
        assert_eq!(r.headers()["location"], "/console/login");
    }

    let reader = ConsoleSession::sign_in(f.endpoint(), READER.0, READER.1).await;
    // First page: the 50 newest of both clusters, a next link, no previous, no create link.
    let all = f.newest_first(|_| true);
    assert_eq!(all.len(), 61);
    let first = page(&reader, "/console/associations").await;
    assert_eq!(ids(&first), all[..50]);
    let clusters = cells(&first, "cluster");
    assert!(clusters.contains(&"blue".to_owned()) && clusters.contains(&"green".to_owned()));
    assert_eq!(
        cells(&first, "role-arn")[0],
        "arn:aws:iam::111122223333:role/special_role"
    );
    assert!(!has_id(&first, "prev-page"));
    assert!(
        !has_id(&first, "new-association"),
        "a reader gets no create link"
    );
    let next = href_of(&first, "next-page").expect("a next link");
    let second = page(&reader, &next).await;
    assert_eq!(ids(&second), all[50..]);
    assert!(!has_id(&second, "next-page"));
    let prev = href_of(&second, "prev-page").expect("a previous link");
    assert_eq!(ids(&page(&reader, &prev).await), all[..50]);

    // Filters: substrings, combinable, literal (`_`, `%`), the role filter also on target roles.
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("cluster=green", f.newest_first(|m| m.0 == "green")),
        (
            "namespace=web&service_account=svc-1",
            f.newest_first(|m| m.0 == "blue" && m.2.starts_with("svc-1")),
        ),
        ("role=special_", vec![f.tagged.clone()]),
        ("role=444455556666", vec![f.tagged.clone()]),
        ("role=special%25", vec![]),
        ("cluster=blue&namespace=jobs", vec![]),
    ];
    for (query, want) in cases {
        let html = page(&reader, &format!("/console/associations?{query}")).await;
        assert_eq!(ids(&html), want, "{query}");
        assert!(!has_id(&html, "next-page"), "{query}");
    }
    // A filtered table pages with its filters kept.
    let apps = f.newest_first(|m| m.3.contains("role/app-"));
    let html = page(&reader, "/console/associations?role=role%2Fapp-").await;
    assert_eq!(ids(&html), apps[..50]);
    let next = href_of(&html, "next-page").unwrap();
    assert!(next.contains("role=role%2Fapp-"), "{next}");
    assert_eq!(ids(&page(&reader, &next).await), apps[50..]);
    // The filter's value is echoed as text.
    let html = page(&reader, "/console/associations?namespace=%3Cb%3Ex%22").await;
    assert!(!html.contains("<b>x"), "filter echoed unescaped");
    assert_eq!(input_value(&html, "namespace").as_deref(), Some("<b>x\""));
    assert_eq!(
        reader.get("/console/associations?page=bogus").await.status,
        400
    );

    // The detail page: every field, tags as text, the association's audit events.
    let described = signed_call(
        f.endpoint(),
        ADMIN,
        "GET",
        &format!("/clusters/green/pod-identity-associations/{}", f.tagged),
        b"",
    )
    .await
    .body["association"]
        .clone();
    let path = format!("/console/associations/green/{}", f.tagged);
    let html = page(&reader, &path).await;
    assert!(has_id(&html, "association-detail"));
    assert_eq!(
        cells(&html, "association-arn"),
        [described["associationArn"].as_str().unwrap()]
    );
    assert_eq!(
        cells(&html, "association-arn")[0],
        format!(
            "arn:aws:eks:us-east-1:111122223333:podidentityassociation/green/{}",
            f.tagged
        )
    );
    assert_eq!(
        cells(&html, "target-role-arn"),
        ["arn:aws:iam::444455556666:role/target"]
    );
    assert_eq!(cells(&html, "tag-key"), ["owner", "team"]);
    assert_eq!(cells(&html, "tag-value"), [SCRIPT, "a&b"]);
    assert!(!html.contains(SCRIPT), "a tag value rendered as markup");
    assert!(
        !html.contains(described["externalId"].as_str().unwrap()),
        "a reader sees no external id"
    );
    assert!(!has_id(&html, "edit-association") && !has_id(&html, "delete-association"));
    // The audit event of its creation (the audit batch may land just after the answer).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let html = page(&reader, &path).await;
        let what = cells(&html, "what");
        if what.contains(&"CreatePodIdentityAssociation".to_owned()) {
            assert!(has_id(&html, "events"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no audit event on the page: {what:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        reader
            .get("/console/associations/green/a-00000000000000000")
            .await
            .status,
        404
    );

    // An admin gets the create link and the external id.
    let admin = ConsoleSession::sign_in(f.endpoint(), ADMIN.0, ADMIN.1).await;
    assert!(has_id(
        &page(&admin, "/console/associations").await,
        "new-association"
    ));
    assert_eq!(
        cells(&page(&admin, &path).await, "external-id"),
        [described["externalId"].as_str().unwrap()]
    );

    // A reader scoped to blue sees blue only, and no green page.
    let blue = ConsoleSession::sign_in(f.endpoint(), BLUE_READER.0, BLUE_READER.1).await;
    let html = page(&blue, "/console/associations").await;
    assert_eq!(ids(&html), f.newest_first(|m| m.0 == "blue"));
    assert!(cells(&html, "cluster").iter().all(|c| c == "blue"));
    assert_eq!(
        ids(&page(&blue, "/console/associations?cluster=green").await),
        Vec::<String>::new()
    );
    assert_eq!(blue.get(&path).await.status, 404);
    let blue_id = &f.made[0].1;
    assert_eq!(
        blue.get(&format!("/console/associations/blue/{blue_id}"))
            .await
            .status,
        200
    );
}
