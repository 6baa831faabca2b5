//! Changes from the console's forms against a real `podid server` process (build it
//! first: `cargo build -p podid`): create, edit (role, tags), delete as an admin; a
//! validation error next to its field; a reader's and a CSRF-less POST refused; the
//! change audit names the console's key.
//!
//! The oracle is the API itself, signed with SigV4 (ListPodIdentityAssociations,
//! DescribePodIdentityAssociation, ListAuditEvents), and the literals (the
//! inputs' names, the element ids of spec.md, 303 after create and delete, 403).
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use podid_test_support::console_pages::{
    field_errors, has_id, href_of, input_value, ConsoleSession,
};
use podid_test_support::signed::signed_call;
use podid_test_support::wait::eventually;
use podid_test_support::{podid_binary, PodidServerLaunch, PodidServerProcess, TEST_JWKS};
use serde_json::{json, Value};

const ADMIN: (&str, &str) = ("FORMADMIN", "form-admin-secret-0123456789");
const READER: (&str, &str) = ("FORMREADER", "form-reader-secret-0123456789");
const BLUE_ADMIN: (&str, &str) = ("BLUEADMIN", "blue-admin-secret-0123456789");
const ROLE: &str = "arn:aws:iam::111122223333:role/console-made";
const ROLE2: &str = "arn:aws:iam::111122223333:role/console-edited";

struct Server {
    _dir: tempfile::TempDir,
    process: PodidServerProcess,
}

/// A server with clusters blue and green, an admin, a reader and an admin scoped to blue.
async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    let entry = |(id, secret): (&str, &str), role: &str| {
        format!("[[key]]\naccess_key_id = \"{id}\"\nsecret_access_key = \"{secret}\"\nrole = \"{role}\"\n\n")
    };
    let scoped = entry(BLUE_ADMIN, "admin") + "clusters = [\"blue\"]\n";
    std::fs::write(
        &keys,
        entry(ADMIN, "admin") + &entry(READER, "reader") + &scoped,
    )
    .unwrap();
    let db = format!("sqlite://{}", dir.path().join("podid.db").display());
    let process = PodidServerLaunch::new(podid_binary())
        .args(["--database-url", &db, "--keys-file", keys.to_str().unwrap()])
        .start()
        .unwrap_or_else(|e| panic!("podid server did not start: {e}"));
    let jwks: Value = serde_json::from_str(TEST_JWKS).unwrap();
    for name in ["blue", "green"] {
        let issuer = format!("https://issuer.test/{name}");
        let body = json!({"name": name, "issuer": issuer, "jwks": jwks});
        api(&process.endpoint, "POST", "/podid/v1/clusters", &body).await;
    }
    Server { _dir: dir, process }
}

/// A signed API call as the admin; 200 expected.
async fn api(endpoint: &str, method: &str, path: &str, body: &Value) -> Value {
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let answer = signed_call(endpoint, ADMIN, method, path, &bytes).await;
    assert_eq!(answer.status, 200, "{method} {path}: {answer:?}");
    answer.body
}

/// The associations ListPodIdentityAssociations gives for blue.
async fn listed(endpoint: &str) -> Vec<Value> {
    let out = api(
        endpoint,
        "GET",
        "/clusters/blue/pod-identity-associations",
        &Value::Null,
    )
    .await;
    out["associations"].as_array().unwrap().clone()
}

/// The session's CSRF token, read from a page's forms.
async fn csrf(session: &ConsoleSession) -> String {
    let page = session.get("/console/associations").await;
    input_value(&page.body, "csrf_token").expect("a csrf_token input")
}

/// The API's error message for creating shop/cart in blue with `role` (must be refused).
async fn api_refusal(endpoint: &str, role: &str) -> String {
    let body = json!({"namespace": "shop", "serviceAccount": "cart", "roleArn": role});
    let path = "/clusters/blue/pod-identity-associations";
    let answer = signed_call(endpoint, ADMIN, "POST", path, body.to_string().as_bytes()).await;
    assert!(answer.status >= 400, "{answer:?}");
    answer.body["message"].as_str().unwrap().to_owned()
}

fn create_form<'a>(token: &'a str, role: &'a str, tags: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf_token", token),
        ("cluster_name", "blue"),
        ("namespace", "shop"),
        ("service_account", "cart"),
        ("role_arn", role),
        ("target_role_arn", ""),
        ("tags", tags),
    ]
}

#[tokio::test]
async fn an_admin_creates_edits_and_deletes_through_the_forms() {
    let server = start().await;
    let endpoint = server.process.endpoint.as_str();
    let admin = ConsoleSession::sign_in(endpoint, ADMIN.0, ADMIN.1).await;
    let token = csrf(&admin).await;

    // The form: the inputs the issue names, blue in the cluster select.
    let form = admin.get("/console/associations/new").await;
    assert_eq!(form.status, 200, "{}", form.body);
    for name in [
        "cluster_name",
        "namespace",
        "service_account",
        "role_arn",
        "target_role_arn",
        "disable_session_tags",
        "tags",
        "csrf_token",
    ] {
        assert!(
            form.body.contains(&format!("name=\"{name}\"")),
            "input {name}"
        );
    }
    assert!(form.body.contains("<option value=\"blue\""));

    // Create: 303 to the detail page; the API lists it.
    let tags = "team=payments\nowner=<b>ops</b>\n";
    let made = admin
        .post(
            "/console/associations/new",
            &create_form(&token, ROLE, tags),
        )
        .await;
    assert_eq!(made.status, 303, "{}", made.body);
    let detail = made.location.unwrap();
    let tail = detail.strip_prefix("/console/associations/blue/").unwrap();
    let id = percent_encoding::percent_decode_str(tail)
        .decode_utf8()
        .unwrap()
        .into_owned();
    let listed_now = listed(endpoint).await;
    assert_eq!(listed_now.len(), 1);
    assert_eq!(listed_now[0]["associationId"], id.as_str());
    assert_eq!(listed_now[0]["namespace"], "shop");
    assert_eq!(listed_now[0]["serviceAccount"], "cart");
    let describe = format!("/clusters/blue/pod-identity-associations/{id}");
    let a = api(endpoint, "GET", &describe, &Value::Null).await;
    assert_eq!(a["association"]["roleArn"], ROLE);
    assert_eq!(a["association"]["disableSessionTags"], false);
    assert_eq!(
        a["association"]["tags"],
        json!({"team": "payments", "owner": "<b>ops</b>"})
    );

    // The detail page has the admin's controls.
    let page = admin.get(&detail).await;
    let edit_href = format!("/console/associations/blue/{id}/edit");
    assert_eq!(href_of(&page.body, "edit-association").unwrap(), edit_href);
    assert!(has_id(&page.body, "delete-association"));

    // Edit: the role changes, a tag changes, one goes, one comes.
    let edit = admin.get(&format!("{detail}/edit")).await;
    assert_eq!(edit.status, 200);
    assert_eq!(input_value(&edit.body, "role_arn").unwrap(), ROLE);
    let edited = admin
        .post(
            &format!("{detail}/edit"),
            &[
                ("csrf_token", &token),
                ("role_arn", ROLE2),
                ("target_role_arn", ""),
                ("tags", "team=checkout\nenv=prod"),
            ],
        )
        .await;
    assert_eq!(edited.status, 303, "{}", edited.body);
    assert_eq!(edited.location.as_deref(), Some(detail.as_str()));
    let a = api(endpoint, "GET", &describe, &Value::Null).await;
    assert_eq!(a["association"]["roleArn"], ROLE2);
    assert_eq!(
        a["association"]["tags"],
        json!({"team": "checkout", "env": "prod"})
    );

    // Delete: a confirmation page, then 303 to the list; the API no longer has it.
    let confirm = admin.get(&format!("{detail}/delete")).await;
    assert_eq!(confirm.status, 200);
    assert!(has_id(&confirm.body, "confirm-delete"));
    let gone = admin
        .post(&format!("{detail}/delete"), &[("csrf_token", &token)])
        .await;
    assert_eq!(gone.status, 303, "{}", gone.body);
    assert_eq!(gone.location.as_deref(), Some("/console/associations"));
    assert!(listed(endpoint).await.is_empty());

    // The change audit has the console's changes under the admin's key id (the
    // audit writer runs behind the answer: polled with a bound).
    let actions = [
        "CreatePodIdentityAssociation",
        "UpdatePodIdentityAssociation",
        "UntagResource",
        "TagResource",
        "DeletePodIdentityAssociation",
    ];
    eventually(
        Duration::from_secs(10),
        "the console's changes audited",
        || async {
            let audit = api(
                endpoint,
                "GET",
                "/podid/v1/audit?kind=change&cluster=blue",
                &Value::Null,
            )
            .await;
            let mine: Vec<&Value> = audit["events"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["associationId"] == id.as_str())
                .collect();
            for e in &mine {
                assert_eq!(e["caller"], ADMIN.0, "{e}");
            }
            actions
                .iter()
                .all(|a| mine.iter().any(|e| e["action"] == *a))
        },
    )
    .await;
}

#[tokio::test]
async fn a_bad_role_arn_is_shown_next_to_its_field_with_the_apis_message() {
    let server = start().await;
    let endpoint = server.process.endpoint.as_str();
    let admin = ConsoleSession::sign_in(endpoint, ADMIN.0, ADMIN.1).await;
    let token = csrf(&admin).await;
    let bad = "arn:aws:iam::12:role/<x>";
    let answer = admin
        .post(
            "/console/associations/new",
            &create_form(&token, bad, "k=v"),
        )
        .await;
    assert_eq!(answer.status, 400);
    // The API's own answer to the same request is the oracle.
    let message = api_refusal(endpoint, bad).await;
    assert_eq!(field_errors(&answer.body, "role_arn"), [message]);
    // The form again with what was typed.
    assert_eq!(input_value(&answer.body, "role_arn").unwrap(), bad);
    assert_eq!(input_value(&answer.body, "namespace").unwrap(), "shop");
    assert!(listed(endpoint).await.is_empty());
    // A badly formed tags line is the tags field's error.
    let answer = admin
        .post(
            "/console/associations/new",
            &create_form(&token, ROLE, "no-equals"),
        )
        .await;
    assert_eq!(
        field_errors(&answer.body, "tags").len(),
        1,
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn readers_and_posts_without_the_csrf_token_are_refused() {
    let server = start().await;
    let endpoint = server.process.endpoint.as_str();
    let made = api(
        endpoint,
        "POST",
        "/clusters/blue/pod-identity-associations",
        &json!({"namespace": "shop", "serviceAccount": "cart", "roleArn": ROLE}),
    )
    .await;
    let id = made["association"]["associationId"]
        .as_str()
        .unwrap()
        .to_owned();
    let detail = format!("/console/associations/blue/{id}");

    let reader = ConsoleSession::sign_in(endpoint, READER.0, READER.1).await;
    let reader_token = csrf(&reader).await;
    let page = reader.get(&detail).await;
    assert_eq!(page.status, 200);
    for control in ["edit-association", "delete-association", "new-association"] {
        assert!(!has_id(&page.body, control), "{control} shown to a reader");
    }
    assert_eq!(reader.get("/console/associations/new").await.status, 403);
    let refused = reader
        .post(
            "/console/associations/new",
            &create_form(&reader_token, ROLE2, ""),
        )
        .await;
    assert_eq!(refused.status, 403);
    let edit = [("csrf_token", reader_token.as_str()), ("role_arn", ROLE2)];
    assert_eq!(
        reader.post(&format!("{detail}/edit"), &edit).await.status,
        403
    );
    let delete = [("csrf_token", reader_token.as_str())];
    assert_eq!(
        reader
            .post(&format!("{detail}/delete"), &delete)
            .await
            .status,
        403
    );

    let admin = ConsoleSession::sign_in(endpoint, ADMIN.0, ADMIN.1).await;
    for token in [None, Some(""), Some(reader_token.as_str())] {
        let mut form = vec![("role_arn", ROLE2)];
        if let Some(t) = token {
            form.push(("csrf_token", t));
        }
        assert_eq!(
            admin.post(&format!("{detail}/edit"), &form).await.status,
            403
        );
        let form: Vec<_> = form
            .into_iter()
            .filter(|(k, _)| *k == "csrf_token")
            .collect();
        assert_eq!(
            admin.post(&format!("{detail}/delete"), &form).await.status,
            403
        );
        let mut create = create_form("", ROLE2, "");
        create.retain(|(k, _)| *k != "csrf_token");
        create.extend(token.map(|t| ("csrf_token", t)));
        assert_eq!(
            admin
                .post("/console/associations/new", &create)
                .await
                .status,
            403
        );
    }
    // Nothing changed.
    assert_eq!(listed(endpoint).await.len(), 1);
    let describe = format!("/clusters/blue/pod-identity-associations/{id}");
    let a = api(endpoint, "GET", &describe, &Value::Null).await;
    assert_eq!(a["association"]["roleArn"], ROLE);
}

#[tokio::test]
async fn whole_request_errors_scope_and_tag_rules_on_the_forms() {
    let server = start().await;
    let endpoint = server.process.endpoint.as_str();
    let admin = ConsoleSession::sign_in(endpoint, ADMIN.0, ADMIN.1).await;
    let token = csrf(&admin).await;
    let made = admin
        .post("/console/associations/new", &create_form(&token, ROLE, ""))
        .await;
    assert_eq!(made.status, 303, "{}", made.body);
    let detail = made.location.unwrap();

    // The same service account again: the API's conflict, for the whole form.
    let again = admin
        .post("/console/associations/new", &create_form(&token, ROLE2, ""))
        .await;
    assert_eq!(again.status, 400);
    let message = api_refusal(endpoint, ROLE2).await;
    assert_eq!(field_errors(&again.body, "form"), [message]);
    assert!(has_id(&again.body, "form-error"));

    // An edit whose tags break the API's rules writes nothing, not even the role.
    let edited = admin
        .post(
            &format!("{detail}/edit"),
            &[
                ("csrf_token", &token),
                ("role_arn", ROLE2),
                ("tags", "aws:reserved=x"),
            ],
        )
        .await;
    assert_eq!(edited.status, 400);
    let errors = field_errors(&edited.body, "tags");
    assert_eq!(errors.len(), 1, "{}", edited.body);
    assert!(
        errors[0].contains("'aws:' prefix is reserved"),
        "{errors:?}"
    );
    let all = listed(endpoint).await;
    let id = all[0]["associationId"].as_str().unwrap();
    let describe = format!("/clusters/blue/pod-identity-associations/{id}");
    let a = api(endpoint, "GET", &describe, &Value::Null).await;
    assert_eq!(a["association"]["roleArn"], ROLE);

    // An admin scoped to blue: only blue in the select; green is refused.
    let scoped = ConsoleSession::sign_in(endpoint, BLUE_ADMIN.0, BLUE_ADMIN.1).await;
    let scoped_token = csrf(&scoped).await;
    let form = scoped.get("/console/associations/new").await;
    assert!(form.body.contains("<option value=\"blue\""));
    assert!(!form.body.contains("<option value=\"green\""));
    let mut green = create_form(&scoped_token, ROLE, "");
    green[1] = ("cluster_name", "green");
    let refused = scoped.post("/console/associations/new", &green).await;
    assert_eq!(refused.status, 400);
    let errors = field_errors(&refused.body, "form");
    assert!(
        errors[0].contains("may not act on cluster 'green'"),
        "{errors:?}"
    );
    let green_list = api(
        endpoint,
        "GET",
        "/clusters/green/pod-identity-associations",
        &Value::Null,
    )
    .await;
    assert_eq!(green_list["associations"], json!([]));
}
