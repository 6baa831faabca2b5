//! The scheme and redirect rules, and what the caller is told.

use super::*;

fn u(s: &str) -> url::Url {
    url::Url::parse(s).unwrap()
}

#[test]
fn only_https_unless_http_is_allowed() {
    for url in [
        "https://k8s.example/openid/v1/jwks",
        "HTTPS://k8s.example/jwks",
    ] {
        assert!(check_scheme(url, false).is_ok(), "{url}");
        assert!(check_scheme(url, true).is_ok(), "{url}");
    }
    for url in ["http://10.0.0.1/jwks", "HTTP://10.0.0.1/jwks"] {
        assert!(
            matches!(check_scheme(url, false), Err(FetchError::NotHttps { .. })),
            "{url}"
        );
        assert!(check_scheme(url, true).is_ok(), "{url}");
    }
    for url in ["file:///etc/passwd", "ftp://x/jwks", "k8s.example/jwks", ""] {
        assert!(check_scheme(url, true).is_err(), "{url}");
    }
}

#[test]
fn redirects_stay_on_https() {
    let https = [u("https://a.example/jwks")];
    let http = [u("http://a.example/jwks")];
    // From https: only to https, whatever --allow-http-jwks says.
    for allow_http in [false, true] {
        assert!(redirect_allowed(&https, &u("https://b.example/jwks"), allow_http).is_ok());
        assert!(redirect_allowed(&https, &u("http://b.example/jwks"), allow_http).is_err());
        assert!(redirect_allowed(&https, &u("file:///etc/passwd"), allow_http).is_err());
    }
    // From http (allowed only with the flag): to http only with it.
    assert!(redirect_allowed(&http, &u("http://b.example/jwks"), true).is_ok());
    assert!(redirect_allowed(&http, &u("http://b.example/jwks"), false).is_err());
    assert!(redirect_allowed(&http, &u("https://b.example/jwks"), false).is_ok());
    // Three redirects at the most.
    let chain: Vec<url::Url> = (0..=MAX_REDIRECTS)
        .map(|i| u(&format!("https://a.example/{i}")))
        .collect();
    assert!(redirect_allowed(&chain[..MAX_REDIRECTS], &u("https://b.example/"), false).is_ok());
    assert!(redirect_allowed(&chain, &u("https://b.example/"), false).is_err());
}

#[test]
fn the_caller_is_told_nothing_the_url_answered() {
    let answered = [
        FetchError::Status {
            url: "https://10.0.0.1:8443/secret-path".into(),
            status: 418,
        },
        FetchError::Shape {
            url: "https://10.0.0.1:8443/secret-path".into(),
            expected: "JSON",
        },
        FetchError::Request {
            url: "https://10.0.0.1:8443/secret-path".into(),
            reason: "connection reset by internal-db-7".into(),
        },
    ];
    let messages: Vec<String> = answered.iter().map(|e| caller_error(e).message).collect();
    for (e, message) in answered.iter().zip(&messages) {
        // One message for all: nothing tells a status, a shape or a reason apart.
        assert_eq!(message, &messages[0], "{e}");
        for leak in ["418", "JSON", "internal-db-7", "10.0.0.1", "secret-path"] {
            assert!(!message.contains(leak), "{message}");
        }
        assert_eq!(caller_error(e).kind, podid_api::ErrorKind::InvalidParameter);
    }
    assert!(
        messages[0].contains("could not be fetched"),
        "{}",
        messages[0]
    );
    let refused = caller_error(&FetchError::NotHttps {
        url: "http://10.0.0.1/jwks".into(),
    });
    assert!(refused.message.contains("https://"), "{}", refused.message);
    assert!(
        refused.message.contains("--allow-http-jwks"),
        "{}",
        refused.message
    );
    assert!(!refused.message.contains("10.0.0.1"), "{}", refused.message);
}

/// A fetcher answering one document for every URL.
struct Answering(serde_json::Value);

#[async_trait]
impl DocumentFetcher for Answering {
    async fn fetch_json(&self, _url: &str) -> Result<serde_json::Value, FetchError> {
        Ok(self.0.clone())
    }
}

#[tokio::test]
async fn discovered_and_fetched_documents_are_checked() {
    let discovery =
        |jwks_uri: serde_json::Value| Answering(serde_json::json!({ "jwks_uri": jwks_uri }));
    let found = discover_jwks_uri(&discovery("https://k/jwks".into()), "https://k/").await;
    assert_eq!(found.unwrap(), "https://k/jwks");
    for bad in [
        serde_json::json!("not a url"),
        serde_json::json!(5),
        serde_json::json!(null),
    ] {
        let e = discover_jwks_uri(&discovery(bad.clone()), "https://k")
            .await
            .unwrap_err();
        assert!(matches!(e, FetchError::Shape { .. }), "{bad}: {e}");
    }
    let jwks = serde_json::json!({"keys": [{"kty": "RSA"}]});
    assert_eq!(
        fetch_jwks(&Answering(jwks.clone()), "https://k/jwks")
            .await
            .unwrap(),
        jwks
    );
    for not_jwks in [
        serde_json::json!({"keys": []}),
        serde_json::json!({"issuer": "x"}),
    ] {
        let e = fetch_jwks(&Answering(not_jwks), "https://k/jwks")
            .await
            .unwrap_err();
        assert!(matches!(e, FetchError::Shape { .. }), "{e}");
    }
}

#[test]
fn extra_roots_must_be_pem_certificates() {
    let policy = |pem: &[u8]| FetchPolicy {
        allow_http: false,
        extra_roots_pem: Some(pem.to_vec()),
    };
    assert!(HttpFetcher::new(&FetchPolicy::default()).is_ok());
    assert!(HttpFetcher::new(&policy(
        b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"
    ))
    .is_err());
}
