//! What the cluster registry fetches, against a real `podid server` process (built with
//! `cargo build -p podid`) and local key servers (https with a CA the server trusts through
//! `--jwks-ca-file`, and plain http):
//!
//! - an `http://` JWKS URL or discovery issuer is refused (`InvalidParameterException`, naming
//!   the rule) without being fetched, unless the server runs with `--allow-http-jwks`;
//! - a redirect from https to http is refused, with or without `--allow-http-jwks`, and the
//!   http target is never asked; a redirect that stays on https is followed;
//! - whatever an address answered (a status, an HTML page, JSON that is no key set, a discovery
//!   document naming a bogus URL, nothing at all) the caller gets one and the same message,
//!   carrying none of it; the server's log has the detail.
#![allow(clippy::unwrap_used, missing_docs)]

mod jwks_common;

use jwks_common::*;
use podid_token::dev::{DevAlgorithm, SigningKey};
use serde_json::{json, Value};

/// Asserts an `InvalidParameterException` answer (status, `__type`) and returns its message.
fn invalid_parameter(status: u16, answer: &Value, text: &str) -> String {
    assert_eq!(status, 400, "{text}");
    assert_eq!(answer["__type"], "InvalidParameterException", "{text}");
    answer["message"].as_str().unwrap().to_owned()
}

fn a_jwks() -> Value {
    jwks_of(&[&SigningKey::generate(DevAlgorithm::Es256, "k").unwrap()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_key_urls_need_allow_http_jwks() {
    let plain = KeyServer::start(None).await;
    let uri = plain.set("/jwks", Answer::json(&a_jwks()));
    plain.set(
        "/.well-known/openid-configuration",
        Answer::json(&json!({ "issuer": plain.base, "jwks_uri": uri })),
    );
    let server = Server::start(&[], None);
    for (name, fields) in [
        ("by-url", json!({ "jwksUri": uri })),
        (
            "by-discovery",
            json!({ "issuer": plain.base, "discovery": true }),
        ),
    ] {
        let (status, answer, text) = server.register(name, fields).await;
        let message = invalid_parameter(status, &answer, &text);
        assert!(
            message.contains("https://") && message.contains("--allow-http-jwks"),
            "{message}"
        );
    }
    assert_eq!(plain.hits(), Vec::<String>::new());

    let trial = Server::start(&["--allow-http-jwks"], None);
    let (status, _, text) = trial.register("by-url", json!({ "jwksUri": uri })).await;
    assert_eq!(status, 200, "{text}");
    let discovery = json!({ "issuer": plain.base, "discovery": true });
    let (status, answer, text) = trial.register("by-discovery", discovery).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(answer["cluster"]["jwksUri"], uri);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_may_not_leave_https() {
    let ca = TestCa::new("podid JWKS test CA").unwrap();
    let secure = KeyServer::start(Some(&ca)).await;
    let plain = KeyServer::start(None).await;
    let jwks = a_jwks();
    let http_target = plain.set("/jwks", Answer::json(&jwks));
    let https_target = secure.set("/jwks", Answer::json(&jwks));
    let to_http = secure.set("/to-http", Answer::Redirect(http_target));
    let to_https = secure.set("/to-https", Answer::Redirect(https_target));

    for args in [&[][..], &["--allow-http-jwks"][..]] {
        let mut server = Server::start(args, Some(&ca.pem));
        let (status, answer, text) = server.register("down", json!({ "jwksUri": to_http })).await;
        let message = invalid_parameter(status, &answer, &text);
        assert!(
            message.contains("could not be fetched"),
            "{args:?}: {message}"
        );
        assert_eq!(plain.hits(), Vec::<String>::new(), "{args:?}");
        // Following a redirect that stays on https is fine.
        let (status, answer, text) = server.register("up", json!({ "jwksUri": to_https })).await;
        assert_eq!(status, 200, "{args:?}: {text}");
        assert_eq!(answer["cluster"]["jwks"], jwks);
        let log = server.stop();
        assert!(
            log.contains("a redirect away from https:// was refused"),
            "{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_an_address_answered_is_not_told_to_the_caller() {
    const MARK: &str = "INTERNAL-ONLY-7f3a";
    let ca = TestCa::new("podid JWKS test CA").unwrap();
    let inside = KeyServer::start(Some(&ca)).await;
    let page = format!("<html><title>{MARK} admin console</title></html>").into_bytes();
    let cases = [
        (
            "status",
            Answer::Body(
                500,
                "application/json",
                format!(r#"{{"error":"{MARK}"}}"#).into_bytes(),
            ),
        ),
        (
            "forbidden",
            Answer::Body(403, "text/plain", MARK.as_bytes().to_vec()),
        ),
        ("page", Answer::Body(200, "text/html", page)),
        ("json", Answer::json(&json!({ "keys": [], "secret": MARK }))),
        ("big-status", Answer::Body(418, "text/plain", Vec::new())),
    ];
    let mut bodies = Vec::new();
    for (path, answer) in cases {
        bodies.push(json!({ "jwksUri": inside.set(&format!("/{path}"), answer) }));
    }
    // A discovery document naming a bogus URL; and a port nothing listens on.
    let issuer = format!("{}/issuer", inside.base);
    inside.set(
        "/issuer/.well-known/openid-configuration",
        Answer::json(&json!({ "jwks_uri": format!("{MARK} not a URL") })),
    );
    bodies.push(json!({ "issuer": issuer, "discovery": true }));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    bodies.push(json!({ "jwksUri": format!("https://127.0.0.1:{port}/jwks") }));

    let mut server = Server::start(&[], Some(&ca.pem));
    let mut messages = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let (status, answer, text) = server.register(&format!("c{i}"), body.clone()).await;
        messages.push(invalid_parameter(status, &answer, &text));
        for leak in [
            MARK,
            "500",
            "403",
            "418",
            "html",
            "admin console",
            "not a URL",
        ] {
            assert!(!text.contains(leak), "{body}: {leak:?} in {text}");
        }
    }
    assert!(
        messages.iter().all(|m| m == &messages[0]),
        "one message for every case: {messages:#?}"
    );
    let log = server.stop();
    for detail in [
        "answered HTTP 500",
        "answered HTTP 403",
        "answered HTTP 418",
        "did not return JSON",
    ] {
        assert!(log.contains(detail), "{detail:?} not in the log:\n{log}");
    }
}
