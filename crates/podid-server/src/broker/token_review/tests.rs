use super::*;

/// The answer of the Kubernetes API reference's TokenReview example
/// (kubernetes.io, "Authenticating": webhook token authentication), for a
/// service account token.
const AUTHENTICATED: &str = r#"{
  "apiVersion": "authentication.k8s.io/v1",
  "kind": "TokenReview",
  "status": {
    "authenticated": true,
    "user": {
      "username": "system:serviceaccount:default:boto3",
      "uid": "42",
      "groups": ["system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"],
      "extra": {
        "authentication.kubernetes.io/pod-name": ["boto3-pod"],
        "authentication.kubernetes.io/pod-uid": ["b9f4b9c1-7d5e-4a1d-9d1e-6f0a7d3a2c11"]
      }
    },
    "audiences": ["pods.eks.amazonaws.com"]
  }
}"#;

/// The documented answer for a token the API server does not authenticate.
const REFUSED: &str = r#"{
  "apiVersion": "authentication.k8s.io/v1",
  "kind": "TokenReview",
  "status": {
    "authenticated": false,
    "error": "[invalid bearer token, pods \"boto3-pod\" not found]"
  }
}"#;

fn review(text: &str) -> TokenReview {
    serde_json::from_str(text).expect("a TokenReview")
}

#[test]
fn an_authenticated_review_names_its_user() {
    assert_eq!(
        verdict_of(&review(AUTHENTICATED)),
        Verdict::Authenticated {
            username: "system:serviceaccount:default:boto3".into()
        }
    );
}

#[test]
fn a_refused_review_keeps_the_api_servers_reason() {
    assert_eq!(
        verdict_of(&review(REFUSED)),
        Verdict::Refused("[invalid bearer token, pods \"boto3-pod\" not found]".into())
    );
    // No status, or authenticated without a user: not authenticated.
    let bare = r#"{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {}}"#;
    assert!(matches!(verdict_of(&review(bare)), Verdict::Refused(_)));
    let anonymous = r#"{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                        "spec": {}, "status": {"authenticated": true}}"#;
    assert!(matches!(
        verdict_of(&review(anonymous)),
        Verdict::Refused(_)
    ));
}

#[test]
fn a_ca_that_is_not_pem_is_refused() {
    assert!(build_client(Some("not a certificate")).is_err());
    assert!(build_client(None).is_ok());
}

fn cluster(version: i64, token_review: Option<TokenReviewSettings>) -> Cluster {
    Cluster {
        name: "blue".into(),
        issuer: "https://issuer.example".into(),
        audience: "pods.eks.amazonaws.com".into(),
        cluster_arn: "arn:aws:eks:us-east-1:111122223333:cluster/blue".into(),
        key_source: podid_api::cluster::KeySource::Inline,
        jwks_uri: None,
        jwks: serde_json::json!({"keys": []}),
        agent_identity: Default::default(),
        agent_service_account: podid_api::cluster::DEFAULT_AGENT_SERVICE_ACCOUNT.into(),
        node_binding: false,
        token_review,
        created_at: podid_api::EpochMillis(1),
        modified_at: podid_api::EpochMillis(version),
    }
}

#[test]
fn answers_are_kept_per_cluster_version_and_token() {
    let (a, b) = (cluster(1, None), cluster(2, None));
    assert_ne!(digest(&a, "t"), digest(&b, "t"));
    assert_ne!(digest(&a, "t"), digest(&a, "u"));
    assert_eq!(digest(&a, "t"), digest(&cluster(1, None), "t"));
}

#[tokio::test]
async fn a_cluster_without_an_api_server_is_not_reviewed() {
    let reviewer = Arc::new(TokenReviewer::new(DEFAULT_CACHE_TTL, Family::default()));
    assert!(reviewer
        .check(&cluster(1, None), "token", "system:serviceaccount:a:b")
        .await
        .is_ok());
}

#[tokio::test]
async fn an_unreachable_api_server_fails_closed() {
    let reviews = Family::<TokenReviewLabels, Counter>::default();
    let reviewer = Arc::new(TokenReviewer::new(DEFAULT_CACHE_TTL, reviews.clone()));
    // A port nobody listens on (bound, then closed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let settings = TokenReviewSettings {
        api_server_url: format!("https://127.0.0.1:{port}"),
        ca_pem: None,
        token: Some(podid_api::Secret::new("review-credential")),
    };
    let e = reviewer
        .check(
            &cluster(1, Some(settings)),
            "token",
            "system:serviceaccount:a:b",
        )
        .await
        .expect_err("no API server");
    assert_eq!(e.kind, ErrorKind::ServiceUnavailable);
    assert!(!e.message.contains("review-credential"), "{}", e.message);
    let failed = reviews
        .get_or_create(&TokenReviewLabels {
            result: "failed".into(),
        })
        .get();
    assert_eq!(failed, 1);
}
