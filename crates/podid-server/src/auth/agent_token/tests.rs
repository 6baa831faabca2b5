use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method};
use podid_api::cluster::Cluster;
use podid_token::dev::{DevAlgorithm, ProjectedToken, SigningKey};
use podid_token::NoJwksFetcher;

use super::*;

const NOW: i64 = 1_800_000_000;
const ISSUER: &str = "https://oidc.nodes.test";

fn headers(authorization: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_bytes(authorization).unwrap(),
    );
    h
}

#[test]
fn bearer_tokens_are_told_from_sigv4() {
    assert_eq!(
        bearer(&headers(b"Bearer abc.def")).unwrap().unwrap(),
        "abc.def"
    );
    assert_eq!(bearer(&headers(b"bearer  abc ")).unwrap().unwrap(), "abc");
    assert_eq!(bearer(&headers(b"BEARER x")).unwrap().unwrap(), "x");
    assert!(bearer(&headers(
        b"AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/eks/aws4_request"
    ))
    .is_none());
    assert!(bearer(&headers(b"Bearer")).is_none());
    assert!(bearer(&headers(b"Basic dXNlcjpwdw==")).is_none());
    assert!(bearer(&HeaderMap::new()).is_none());
    let e = bearer(&headers(b"Bearer \xe9t\xe9")).unwrap().unwrap_err();
    assert_eq!(e.kind, ErrorKind::AccessDenied);
}

#[test]
fn only_the_credential_call_and_the_feed_take_agent_tokens() {
    let route = |m: Method, p: &str| agent_route(&m, p).map(|c| c.into_owned());
    assert_eq!(
        route(Method::POST, "/clusters/blue/assume-role-for-pod-identity").as_deref(),
        Some("blue")
    );
    assert_eq!(
        route(Method::GET, "/podid/v1/clusters/blue/changes").as_deref(),
        Some("blue")
    );
    assert_eq!(
        route(Method::GET, "/podid/v1/clusters/bl%75e/changes").as_deref(),
        Some("blue")
    );
    for (m, p) in [
        (Method::GET, "/clusters/blue/assume-role-for-pod-identity"),
        (Method::POST, "/podid/v1/clusters/blue/changes"),
        (Method::GET, "/clusters/blue/pod-identity-associations"),
        (Method::GET, "/podid/v1/clusters/blue"),
        (Method::GET, "/podid/v1/clusters/blue/changes/x"),
        (Method::POST, "/clusters/blue/assume-role-for-pod-identity/"),
        (Method::GET, "/podid/v1/audit"),
        (Method::GET, "/metrics"),
    ] {
        assert_eq!(route(m.clone(), p), None, "{m} {p}");
    }
}

#[test]
fn agent_service_accounts_split_in_two() {
    assert_eq!(
        split_service_account("podid-system/podid-agent"),
        Some(("podid-system", "podid-agent"))
    );
    for bad in ["podid-agent", "/a", "a/", "a/b/c", ""] {
        assert_eq!(split_service_account(bad), None, "{bad}");
    }
}

struct Setup {
    key: SigningKey,
    cluster: Cluster,
    trust: ClusterTrust,
    verifier: TokenVerifier,
}

fn setup(identity: AgentIdentity) -> Setup {
    let key = SigningKey::generate(DevAlgorithm::Es256, "nodes-1").unwrap();
    let mut cluster =
        crate::broker::node_binding::sample_cluster(identity, identity == AgentIdentity::Token);
    cluster.name = "nodes".into();
    cluster.issuer = ISSUER.into();
    cluster.jwks = key.jwks();
    let trust = crate::broker::lookups::trust_of(&cluster);
    let clock: podid_token::SecondsClock = Arc::new(|| NOW);
    let verifier = TokenVerifier::new(Arc::new(NoJwksFetcher), clock, 100);
    Setup {
        key,
        cluster,
        trust,
        verifier,
    }
}

/// An agent token as kubelet projects it: podid-system/podid-agent, audience podid, node-a.
fn agent_token() -> ProjectedToken {
    let mut t = ProjectedToken::new(ISSUER, "podid-system", "podid-agent", NOW - 60);
    t.audience = vec![AGENT_AUDIENCE.into()];
    t.node_name = Some("node-a".into());
    t.expires_in_secs = 3600;
    t
}

async fn check(s: &Setup, token: &str) -> Result<Principal, ApiError> {
    verify(&s.verifier, &s.trust, &s.cluster, token).await
}

#[tokio::test]
async fn an_agent_token_is_a_node_principal_of_its_cluster() {
    let s = setup(AgentIdentity::Token);
    let principal = check(&s, &agent_token().sign(&s.key)).await.unwrap();
    assert_eq!(principal.access_key_id, "sa:podid-system/podid-agent");
    assert_eq!(principal.role, Role::Node);
    assert_eq!(
        principal.clusters,
        Clusters::Only(Arc::from(["nodes".to_owned()]))
    );
    assert_eq!(principal.node.as_deref(), Some("node-a"));
}

#[tokio::test]
async fn agent_tokens_are_refused_with_a_reason() {
    let s = setup(AgentIdentity::Token);
    let refused = |token: String| {
        let s = &s;
        async move {
            let e = check(s, &token).await.unwrap_err();
            assert!(!e.message.contains(&token));
            (e.kind, e.message)
        }
    };
    let mut pods_audience = agent_token();
    pods_audience.audience = vec!["pods.eks.amazonaws.com".into()];
    assert_eq!(
        refused(pods_audience.sign(&s.key)).await,
        (
            ErrorKind::AccessDenied,
            "the agent token's audience does not include podid".to_owned()
        )
    );
    let mut expired = agent_token();
    expired.issued_at = NOW - 7200;
    assert_eq!(
        refused(expired.sign(&s.key)).await,
        (
            ErrorKind::AccessDenied,
            "the agent token for cluster nodes has expired".to_owned()
        )
    );
    let mut pod = agent_token();
    pod.namespace = "default".into();
    pod.service_account = "podid-agent".into();
    let (kind, message) = refused(pod.sign(&s.key)).await;
    assert_eq!(kind, ErrorKind::AccessDenied);
    assert!(
        message.contains("default/podid-agent is not the agent service account"),
        "{message}"
    );
    let mut nodeless = agent_token();
    nodeless.node_name = None;
    let (kind, message) = refused(nodeless.sign(&s.key)).await;
    assert_eq!(kind, ErrorKind::AccessDenied);
    assert!(message.contains("names no node"), "{message}");
    let other = SigningKey::generate(DevAlgorithm::Es256, "nodes-1").unwrap();
    let (kind, message) = refused(agent_token().sign(&other)).await;
    assert_eq!(kind, ErrorKind::AccessDenied);
    assert!(message.contains("signature does not verify"), "{message}");
}

#[tokio::test]
async fn key_clusters_refuse_agent_tokens() {
    let s = setup(AgentIdentity::Key);
    let e = check(&s, &agent_token().sign(&s.key)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::AccessDenied);
    assert_eq!(
        e.message,
        "cluster nodes authenticates its agents by SigV4 key (agentIdentity key), \
         not by service-account token"
    );
}

#[tokio::test]
async fn other_failures_name_the_check_and_unfetchable_keys_are_503() {
    let mut s = setup(AgentIdentity::Token);
    let mut t = agent_token();
    t.issuer = "https://elsewhere.test".into();
    let e = check(&s, &t.sign(&s.key)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::AccessDenied);
    assert_eq!(
        e.message,
        "the agent token is not valid for cluster nodes: \
         the token's issuer is not the cluster's issuer"
    );
    // Keys only at a URL that cannot be fetched now.
    s.trust.jwks = serde_json::Value::Null;
    s.trust.jwks_uri = Some("https://oidc.nodes.test/keys".into());
    s.trust.version = 2;
    let e = check(&s, &agent_token().sign(&s.key)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::ServiceUnavailable, "{}", e.message);
    assert!(
        e.message
            .starts_with("the keys of cluster nodes cannot be fetched now"),
        "{}",
        e.message
    );
}
