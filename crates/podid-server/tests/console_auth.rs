//! The web console's sign-in, sessions, CSRF and headers, through the
//! server's whole router in process (tower's oneshot), with a real keys file.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use podid_api::arn::ArnScope;
use podid_api::cluster::{AgentIdentity, Cluster, KeySource, DEFAULT_AGENT_SERVICE_ACCOUNT};
use podid_server::{AuthConfig, Config, StsConfig};
use tower::ServiceExt;

const KEYS: &str = r#"
[[key]]
access_key_id = "ADMIN1"
secret_access_key = "admin-secret-0123456789"
role = "admin"
[[key]]
access_key_id = "READER1"
secret_access_key = "reader-secret-0123456789"
role = "reader"
clusters = ["blue"]
[[key]]
access_key_id = "NODE1"
secret_access_key = "node-secret-0123456789"
role = "node"
"#;

/// The literal CSP of the issue's contract.
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

async fn send(router: &Router, request: Request<Body>) -> Answer {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

async fn get(router: &Router, path: &str, cookie: Option<&str>) -> Answer {
    let mut request = Request::get(path).header(header::HOST, "podid.test");
    if let Some(c) = cookie {
        request = request.header(header::COOKIE, c);
    }
    send(router, request.body(Body::empty()).unwrap()).await
}

async fn post(router: &Router, path: &str, cookie: Option<&str>, form: &str) -> Answer {
    let mut request = Request::post(path)
        .header(header::HOST, "podid.test")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        request = request.header(header::COOKIE, c);
    }
    send(router, request.body(Body::from(form.to_owned())).unwrap()).await
}

fn location(a: &Answer) -> &str {
    a.headers[header::LOCATION].to_str().unwrap()
}

/// Signs in and returns the `name=value` cookie pair.
async fn sign_in(router: &Router, key: &str, secret: &str) -> String {
    let a = post(
        router,
        "/console/login",
        None,
        &format!("access_key_id={key}&secret_access_key={secret}"),
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(location(&a), "/console/associations");
    let cookie = a.headers[header::SET_COOKIE].to_str().unwrap();
    cookie.split(';').next().unwrap().to_owned()
}

/// The hidden csrf_token of a page.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf_token\" value=\"").unwrap() + 25;
    page[at..at + page[at..].find('"').unwrap()].to_owned()
}

async fn console() -> (Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    std::fs::write(&keys, KEYS).unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}", dir.path().join("podid.db").display()).into(),
        auth: AuthConfig::KeysFile(keys),
        scope: ArnScope {
            partition: "aws".into(),
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
        },
        sts: StsConfig {
            endpoint: Some("http://127.0.0.1:9".into()),
            timeout: Duration::from_secs(1),
            max_rps: 50,
            max_wait: Duration::from_millis(600),
        },
        session_duration: Duration::from_secs(3600),
        credential_min_remaining: Duration::from_secs(900),
        credential_cache_size: 1000,
        jwks: Default::default(),
        audit: Default::default(),
        listener: Default::default(),
        token_review: Default::default(),
    };
    let app = config.build().await.unwrap();
    for (name, issuer) in [
        ("blue", "https://<script>alert(1)</script>.example"),
        ("green", "https://green.example"),
    ] {
        app.store()
            .insert_cluster(&Cluster {
                name: name.into(),
                issuer: issuer.into(),
                audience: "pods.eks.amazonaws.com".into(),
                cluster_arn: format!("arn:aws:eks:us-east-1:123456789012:cluster/{name}"),
                key_source: KeySource::Inline,
                jwks_uri: None,
                jwks: serde_json::json!({"keys": [{"kty": "RSA", "kid": format!("{name}-kid-1"), "n": "AQAB", "e": "AQAB"}]}),
                agent_identity: AgentIdentity::Key,
                agent_service_account: DEFAULT_AGENT_SERVICE_ACCOUNT.to_owned(),
                node_binding: false,
                token_review: None,
                created_at: podid_api::EpochMillis(1),
                modified_at: podid_api::EpochMillis(1),
            })
            .await
            .unwrap();
    }
    (app.router(), dir)
}

#[tokio::test]
async fn without_a_session_every_page_sends_to_the_login() {
    let (router, _dir) = console().await;
    for path in ["/console/clusters", "/console/clusters?x=1"] {
        let a = get(&router, path, None).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(location(&a), "/console/login");
        let a = get(&router, path, Some("podid_session=forged")).await;
        assert_eq!(location(&a), "/console/login");
    }
    let a = post(&router, "/console/logout", None, "csrf_token=x").await;
    assert_eq!(location(&a), "/console/login");
    let form = get(&router, "/console/login", None).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("<form id=\"login\""));
    assert!(form.body.contains("name=\"access_key_id\""));
    assert!(form.body.contains("name=\"secret_access_key\""));
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let (router, _dir) = console().await;
    let cookie = sign_in(&router, "ADMIN1", "admin-secret-0123456789").await;
    for (path, cookie, cached) in [
        ("/console/login", None, false),
        ("/console/clusters", None, false),
        ("/console/clusters", Some(cookie.as_str()), false),
        ("/console/nothing-here", None, false),
        ("/console/static/console.css", None, true),
        ("/console/static/console.js", None, true),
    ] {
        let a = get(&router, path, cookie).await;
        assert_eq!(a.headers["content-security-policy"], CSP, "{path}");
        assert_eq!(a.headers["x-frame-options"], "DENY");
        assert_eq!(a.headers["x-content-type-options"], "nosniff");
        assert_eq!(a.headers["referrer-policy"], "no-referrer");
        assert_eq!(a.headers["cache-control"] == "no-store", !cached, "{path}");
    }
    let js = get(&router, "/console/static/console.js", None).await;
    assert!(js.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
}

#[tokio::test]
async fn a_wrong_pair_shows_the_form_again_and_is_rate_limited() {
    let (router, _dir) = console().await;
    for form in [
        "access_key_id=ADMIN1&secret_access_key=wrong-secret-0123456789",
        "access_key_id=NOBODY&secret_access_key=admin-secret-0123456789",
        "access_key_id=ADMIN1",
        "",
        "access_key_id=ADMIN1&secret_access_key=admin-secret-012345678",
    ] {
        let a = post(&router, "/console/login", None, form).await;
        assert_eq!(a.status, StatusCode::OK, "{form}");
        assert!(a.headers.get(header::SET_COOKIE).is_none());
        assert!(a.body.contains("<form id=\"login\""));
        assert!(a.body.contains(
            "<p id=\"login-error\" class=\"error\">The access key id or secret access key is wrong.</p>"
        ));
        assert!(!a.body.contains("admin-secret"), "a secret is never shown");
    }
    // The sixth in the minute (all in-process requests share one source).
    let a = post(
        &router,
        "/console/login",
        None,
        "access_key_id=ADMIN1&secret_access_key=admin-secret-0123456789",
    )
    .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(a.body.contains("id=\"login-error\""));
}

#[tokio::test]
async fn a_right_pair_starts_a_session_with_the_cookie_flags() {
    let (router, _dir) = console().await;
    let a = post(
        &router,
        "/console/login",
        None,
        "access_key_id=ADMIN1&secret_access_key=admin-secret-0123456789",
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let cookie = a.headers[header::SET_COOKIE].to_str().unwrap();
    let value = cookie
        .strip_prefix("podid_session=")
        .unwrap()
        .split(';')
        .next()
        .unwrap();
    assert_eq!(value.len(), 43, "32 bytes, base64url");
    assert!(value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(cookie.split("; ").any(|f| f == flag), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: no Secure flag");
    let page = get(
        &router,
        "/console/clusters",
        Some(&format!("podid_session={value}")),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<code id=\"session-key\">ADMIN1</code>"));
    assert!(!page.body.contains("admin-secret"));
}

#[tokio::test]
async fn clusters_are_escaped_and_scoped() {
    let (router, _dir) = console().await;
    let admin = sign_in(&router, "ADMIN1", "admin-secret-0123456789").await;
    let page = get(&router, "/console/clusters", Some(&admin)).await;
    assert!(!page.body.contains("<script>alert(1)</script>"));
    assert!(
        page.body
            .contains("&#60;script&#62;alert(1)&#60;/script&#62;")
            || page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        page.body
    );
    assert!(page.body.contains("blue-kid-1") && page.body.contains("green-kid-1"));
    let reader = sign_in(&router, "READER1", "reader-secret-0123456789").await;
    let page = get(&router, "/console/clusters", Some(&reader)).await;
    assert!(page.body.contains("blue-kid-1"));
    assert!(!page.body.contains("green"), "READER1 is scoped to blue");
}

#[tokio::test]
async fn node_keys_cannot_sign_in() {
    let (router, _dir) = console().await;
    let a = post(
        &router,
        "/console/login",
        None,
        "access_key_id=NODE1&secret_access_key=node-secret-0123456789",
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.headers.get(header::SET_COOKIE).is_none());
    assert!(a.body.contains("Node keys cannot sign in"));
}

#[tokio::test]
async fn logout_needs_the_csrf_token_and_ends_the_session() {
    let (router, _dir) = console().await;
    let cookie = sign_in(&router, "READER1", "reader-secret-0123456789").await;
    let other = sign_in(&router, "ADMIN1", "admin-secret-0123456789").await;
    let page = get(&router, "/console/clusters", Some(&cookie)).await;
    let token = csrf_of(&page.body);
    let other_token = csrf_of(&get(&router, "/console/clusters", Some(&other)).await.body);
    for form in [
        String::new(),
        "csrf_token=".into(),
        format!("csrf_token={other_token}"),
    ] {
        let a = post(&router, "/console/logout", Some(&cookie), &form).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{form}");
        assert!(a.body.contains("CSRF token"));
    }
    assert_eq!(
        get(&router, "/console/clusters", Some(&cookie))
            .await
            .status,
        StatusCode::OK
    );
    let a = post(
        &router,
        "/console/logout",
        Some(&cookie),
        &format!("csrf_token={token}"),
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&a), "/console/login");
    let a = get(&router, "/console/clusters", Some(&cookie)).await;
    assert_eq!(location(&a), "/console/login");
    assert_eq!(
        get(&router, "/console/clusters", Some(&other)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_api_still_needs_sigv4() {
    let (router, _dir) = console().await;
    let cookie = sign_in(&router, "ADMIN1", "admin-secret-0123456789").await;
    let a = get(&router, "/podid/v1/clusters", Some(&cookie)).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(
        a.headers["x-amzn-errortype"],
        "MissingAuthenticationTokenException"
    );
    let a = get(&router, "/consoleX", None).await;
    assert_eq!(
        a.headers["x-amzn-errortype"],
        "MissingAuthenticationTokenException"
    );
}

#[tokio::test]
async fn the_trust_policy_page_shows_the_one_statement() {
    let (router, _dir) = console().await;
    let cookie = sign_in(&router, "READER1", "reader-secret-0123456789").await;
    let page = get(&router, "/console/trust-policy", Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    // The IAM statement of the issue: the broker may assume and tag.
    for line in [
        "&#34;Sid&#34;: &#34;PodidBroker&#34;",
        "&#34;AWS&#34;: &#34;arn:aws:iam::123456789012:role/podid-broker&#34;",
        "&#34;sts:AssumeRole&#34;",
        "&#34;sts:TagSession&#34;",
    ] {
        assert!(page.body.contains(line), "{line} in {}", page.body);
    }
    assert!(page.body.contains("data-copy=\"trust-policy\""));
    let page = get(
        &router,
        "/console/trust-policy?principal=arn%3Aaws%3Aiam%3A%3A111122223333%3Arole%2Fbroker",
        Some(&cookie),
    )
    .await;
    assert!(page.body.contains("arn:aws:iam::111122223333:role/broker"));
    let page = get(
        &router,
        "/console/trust-policy?principal=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        Some(&cookie),
    )
    .await;
    assert!(!page.body.contains("<script>alert(1)"));
    assert!(page.body.contains("data-field=\"principal\""));
}
