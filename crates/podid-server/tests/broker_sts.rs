//! The broker against a real STS-compatible service (moto with IAM
//! enforcement), with the issuer wrapped in a recorder: what the real
//! aws-sdk-sts client was asked to send is asserted call by call.
//!
//! moto comes from the project's venv (`tests/python/moto_env.py serve`); set
//! `PODID_PYTHON` to another interpreter. Without it the tests are skipped,
//! except under `CI`, where they fail.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http_body_util::BodyExt;
use podid_api::arn::ArnScope;
use podid_api::association::CreateAssociationRequest;
use podid_api::clock::{Clock, SystemClock};
use podid_api::cluster::{Cluster, KeySource};
use podid_server::{AuthConfig, Config, StsConfig};
use podid_sts::{AwsStsIssuer, RecordingIssuer, SESSION_TAG_KEYS};
use podid_test_support::{run_to_success, ChildProcess};
use podid_token::dev::{DevAlgorithm, ProjectedToken, SigningKey};
use serde_json::{json, Value};
use tower::ServiceExt;

struct Moto {
    _process: ChildProcess,
    world: Value,
}

/// The repository's root and the Python that runs moto.
fn python() -> (PathBuf, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = std::env::var("PODID_PYTHON")
        .map(Into::into)
        .unwrap_or_else(|_| root.join(".venv/bin/python"));
    (root, python)
}

fn moto() -> Option<Moto> {
    let (root, python) = python();
    if !python.exists() {
        podid_test_support::skip_or_fail(&format!(
            "moto tests: {} not found (run scripts/setup.sh)",
            python.display()
        ));
        return None;
    }
    let mut cmd = Command::new(python);
    cmd.arg(root.join("tests/python/moto_env.py"))
        .arg("serve")
        .stdin(Stdio::piped())
        .stderr(Stdio::null());
    let mut process = ChildProcess::spawn("moto", cmd, false).unwrap();
    // Its first line is the world it made, as JSON.
    let line = process
        .wait_for_line("", Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("moto did not start: {e}"));
    let world: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("moto did not start: {e}: {line:?}"));
    Some(Moto {
        _process: process,
        world,
    })
}

struct World {
    router: axum::Router,
    recorder: Arc<RecordingIssuer<AwsStsIssuer>>,
    key: SigningKey,
    _dir: tempfile::TempDir,
    moto: Moto,
}

const ISSUER: &str = "https://oidc.blue.test";

async fn world() -> Option<World> {
    let moto = moto()?;
    let w = &moto.world;
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate(DevAlgorithm::Rs256, "blue-1").unwrap();
    let now = SystemClock.now_millis();

    let credentials = aws_credential_types::Credentials::new(
        w["broker_access_key_id"].as_str().unwrap(),
        w["broker_secret_access_key"].as_str().unwrap(),
        None,
        None,
        "moto",
    );
    let sdk = aws_types::SdkConfig::builder()
        .region(aws_types::region::Region::new("us-east-1"))
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(credentials),
        )
        .behavior_version(
            aws_smithy_runtime_api::client::behavior_version::BehaviorVersion::latest(),
        )
        .build();
    let sts = AwsStsIssuer::new(
        &sdk,
        Some(w["endpoint"].as_str().unwrap()),
        Duration::from_secs(10),
    );
    let recorder = Arc::new(RecordingIssuer::new(sts));
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}", dir.path().join("podid.db").display()).into(),
        auth: AuthConfig::Disabled,
        scope: ArnScope {
            partition: "aws".into(),
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
        },
        sts: StsConfig {
            endpoint: None,
            timeout: Duration::from_secs(10),
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
    let app = config.build_with_issuer(recorder.clone()).await.unwrap();
    app.store()
        .insert_cluster(&Cluster {
            name: "blue".into(),
            issuer: ISSUER.into(),
            audience: "pods.eks.amazonaws.com".into(),
            cluster_arn: "arn:aws:eks:us-east-1:123456789012:cluster/blue".into(),
            key_source: KeySource::Inline,
            jwks_uri: None,
            jwks: key.jwks(),
            agent_identity: podid_api::cluster::AgentIdentity::Key,
            agent_service_account: podid_api::cluster::DEFAULT_AGENT_SERVICE_ACCOUNT.to_owned(),
            node_binding: false,
            token_review: None,
            created_at: now,
            modified_at: now,
        })
        .await
        .unwrap();
    let router = app.router();
    Some(World {
        router,
        recorder,
        key,
        _dir: dir,
        moto,
    })
}

async fn call(router: &axum::Router, method: &str, path: &str, body: Value) -> (u16, Value) {
    let request = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn associate(router: &axum::Router, sa: &str, body: CreateAssociationRequest) -> Value {
    let req = CreateAssociationRequest {
        namespace: Some("default".into()),
        service_account: Some(sa.into()),
        ..body
    };
    let (status, v) = call(
        router,
        "POST",
        "/clusters/blue/pod-identity-associations",
        serde_json::to_value(req).unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    v["association"].clone()
}

/// Associates `sa` with moto's role, nothing else set.
async fn associate_role(w: &World, sa: &str) -> Value {
    let role = w.moto.world["role_arn"].as_str().unwrap();
    let request = CreateAssociationRequest {
        role_arn: Some(role.into()),
        ..Default::default()
    };
    associate(&w.router, sa, request).await
}

fn token(key: &SigningKey, sa: &str, pod: &str, uid: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut t = ProjectedToken::new(ISSUER, "default", sa, now);
    t.pod_name = pod.into();
    t.pod_uid = uid.into();
    t.sign(key)
}

async fn credentials(router: &axum::Router, token: &str) -> (u16, Value) {
    call(
        router,
        "POST",
        "/clusters/blue/assume-role-for-pod-identity",
        json!({ "token": token }),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assume_role_carries_eks_session_tags_name_and_duration() {
    let Some(w) = world().await else { return };
    let role = w.moto.world["role_arn"].as_str().unwrap();
    let a = associate_role(&w, "boto3").await;
    let (status, body) = credentials(&w.router, &token(&w.key, "boto3", "boto3", "uid-1")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["podIdentityAssociation"]["associationId"],
        a["associationId"]
    );

    let calls = w.recorder.calls();
    assert_eq!(calls.len(), 1);
    let spec = &calls[0].spec;
    assert_eq!(spec.role_arn, role);
    assert_eq!(spec.duration, Duration::from_secs(3600));
    let tags: Vec<(&str, &str)> = spec
        .tags
        .iter()
        .map(|t| (t.key.as_str(), t.value.as_str()))
        .collect();
    assert_eq!(
        tags,
        vec![
            (
                "eks-cluster-arn",
                "arn:aws:eks:us-east-1:123456789012:cluster/blue"
            ),
            ("eks-cluster-name", "blue"),
            ("kubernetes-namespace", "default"),
            ("kubernetes-service-account", "boto3"),
            ("kubernetes-pod-name", "boto3"),
            ("kubernetes-pod-uid", "uid-1"),
        ]
    );
    assert_eq!(
        spec.transitive_tag_keys,
        SESSION_TAG_KEYS
            .iter()
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
    );
    assert!(
        spec.session_name.starts_with("eks-blue-boto3-"),
        "{}",
        spec.session_name
    );
    assert!(spec.session_name.len() <= 64);
    assert!(spec
        .session_name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)));
    assert_eq!(spec.policy, None);
    assert_eq!(spec.external_id, None);
    assert!(calls[0].chained_from.is_none());
    // What moto issued is what the pod got, for the session named above.
    assert_eq!(
        calls[0].outcome.as_ref().unwrap(),
        body["credentials"]["accessKeyId"].as_str().unwrap()
    );
    assert!(body["assumedRoleUser"]["arn"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/{}", spec.session_name)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_session_tags_send_none_and_the_policy_goes_along() {
    let Some(w) = world().await else { return };
    let role = w.moto.world["role_arn"].as_str().unwrap();
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:ListBucket","Resource":"*"}]}"#;
    associate(
        &w.router,
        "quiet",
        CreateAssociationRequest {
            role_arn: Some(role.into()),
            disable_session_tags: Some(true),
            policy: Some(policy.into()),
            ..Default::default()
        },
    )
    .await;
    let pod = "a-very-long-pod-name-from-a-deployment-7d9c8b7f6d-x2x4z-with-even-more-characters";
    let (status, body) = credentials(&w.router, &token(&w.key, "quiet", pod, "uid-2")).await;
    assert_eq!(status, 200, "{body}");
    let calls = w.recorder.calls();
    let spec = &calls[0].spec;
    assert!(spec.tags.is_empty() && spec.transitive_tag_keys.is_empty());
    assert_eq!(spec.policy.as_deref(), Some(policy));
    assert_eq!(spec.session_name.len(), 64, "{}", spec.session_name);
    assert!(spec.session_name.starts_with("eks-blue-a-very-long-pod"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaining_assumes_the_target_with_the_external_id_using_the_first_session() {
    let Some(w) = world().await else { return };
    let hop = w.moto.world["hop_role_arn"].as_str().unwrap();
    // The target's trust policy is made once the association's external id is known.
    let target = "arn:aws:iam::123456789012:role/chained-target";
    let a = associate(
        &w.router,
        "chain",
        CreateAssociationRequest {
            role_arn: Some(hop.into()),
            target_role_arn: Some(target.into()),
            ..Default::default()
        },
    )
    .await;
    let external_id = a["externalId"].as_str().unwrap();
    let (root, python) = python();
    let mut make = Command::new(python);
    make.current_dir(root.join("tests/python")).args([
        "-c",
        "import sys, moto_env; print(moto_env.create_target_role(sys.argv[1], 'chained-target', sys.argv[2]))",
        w.moto.world["endpoint"].as_str().unwrap(),
        external_id,
    ]);
    run_to_success("moto_env.create_target_role", make, Duration::from_secs(60)).unwrap();

    let (status, body) =
        credentials(&w.router, &token(&w.key, "chain", "chain-pod", "uid-3")).await;
    assert_eq!(status, 200, "{body}");
    let calls = w.recorder.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].spec.role_arn, hop);
    assert_eq!(calls[0].spec.tags.len(), 6);
    assert_eq!(calls[1].spec.role_arn, target);
    assert_eq!(calls[1].spec.external_id.as_deref(), Some(external_id));
    assert_eq!(
        calls[1].chained_from.as_deref(),
        calls[0].outcome.as_deref().ok()
    );
    assert!(calls[1].spec.duration <= Duration::from_secs(3600));
    assert!(
        body["assumedRoleUser"]["arn"]
            .as_str()
            .unwrap()
            .contains(":assumed-role/chained-target/"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_of_one_pod_make_one_sts_call() {
    let Some(w) = world().await else { return };
    associate_role(&w, "boto3").await;
    let t = token(&w.key, "boto3", "boto3", "uid-4");
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (router, t) = (w.router.clone(), t.clone());
        tasks.push(tokio::spawn(async move { credentials(&router, &t).await }));
    }
    let mut keys = std::collections::HashSet::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200, "{body}");
        keys.insert(
            body["credentials"]["accessKeyId"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(w.recorder.calls().len(), 1);
    assert_eq!(keys.len(), 1);
    // A rotated token of the same pod is served from the cache too.
    let rotated = token(&w.key, "boto3", "boto3", "uid-4");
    assert_ne!(rotated, t);
    let (status, body) = credentials(&w.router, &rotated).await;
    assert_eq!(status, 200);
    assert!(keys.contains(body["credentials"]["accessKeyId"].as_str().unwrap()));
    assert_eq!(w.recorder.calls().len(), 1);
}
