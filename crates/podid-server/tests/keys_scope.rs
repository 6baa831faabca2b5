//! Keys scoped to clusters, and the keys file reloaded without a restart,
//! against a real `podid server` process (build it first: `cargo build -p podid`).
//!
//! Calls are made by aws-sdk-eks and aws-sdk-eksauth where EKS has the
//! operation, else signed by aws-sigv4 (podid-test-support's signer). The
//! expected answers are literals: AWS's error names, and issue 13's rules
//! (a key with `clusters = ["blue"]` gets AccessDeniedException for green on
//! every operation; a removed key stops within 2 s; a broken file keeps the
//! previous keys; SIGHUP reloads at once).
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_sdk_eks::config::retry::RetryConfig;
use aws_sdk_eks::error::ProvideErrorMetadata;
use podid_server::authz::Operation;
use podid_test_support::signed::signed_call;
use podid_test_support::{podid_binary, PodidServerLaunch, PodidServerProcess, TEST_JWKS};
use serde_json::{json, Value};

const ADMIN: (&str, &str) = ("ADMINALL", "admin-all-secret-0123456789");
const BLUE_ADMIN: (&str, &str) = ("BLUEADMIN", "blue-admin-secret-0123456789");
const BLUE_NODE: (&str, &str) = ("BLUENODE", "blue-node-secret-0123456789");
const NEW_KEY: (&str, &str) = ("NEWKEY", "new-key-secret-0123456789ab");
const ROLE: &str = "arn:aws:iam::111122223333:role/scoped-test";

fn entry((id, secret): (&str, &str), role: &str, clusters: &str) -> String {
    format!(
        "[[key]]\naccess_key_id = \"{id}\"\nsecret_access_key = \"{secret}\"\nrole = \"{role}\"\n{clusters}\n\n"
    )
}

/// Replaces the keys file as Kubernetes replaces a Secret's file: a new file
/// renamed over the old one (never a half-written file).
fn write_keys(path: &Path, text: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, path).unwrap();
}

struct Server {
    _dir: tempfile::TempDir,
    keys: PathBuf,
    process: PodidServerProcess,
}

/// `podid server` (`cargo build -p podid` first) with `keys_text` as its keys file.
fn start(keys_text: &str, extra: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    write_keys(&keys, keys_text);
    let db = format!("sqlite://{}", dir.path().join("podid.db").display());
    let process = PodidServerLaunch::new(podid_binary())
        .args(["--database-url", &db, "--keys-file", keys.to_str().unwrap()])
        .args(extra)
        .start()
        .unwrap_or_else(|e| panic!("podid server did not start: {e}"));
    Server {
        _dir: dir,
        keys,
        process,
    }
}

/// An answer: status, `__type` (empty on success), message, body.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    status: u16,
    kind: String,
    message: String,
    body: Value,
}

/// `method target` with `body`, signed by `key` (aws-sigv4) for us-east-1
/// and the service issue 13 names for the path.
async fn call(
    server: &Server,
    key: (&str, &str),
    method: &str,
    target: &str,
    body: &[u8],
) -> Answer {
    let answer = signed_call(&server.process.endpoint, key, method, target, body).await;
    Answer {
        status: answer.status,
        kind: answer.kind().to_owned(),
        message: answer.message().to_owned(),
        body: answer.body,
    }
}

fn eks(server: &Server, (id, secret): (&str, &str)) -> aws_sdk_eks::Client {
    let config = aws_sdk_eks::Config::builder()
        .behavior_version(aws_sdk_eks::config::BehaviorVersion::latest())
        .region(aws_sdk_eks::config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            id, secret, None, None, "test",
        ))
        .endpoint_url(&server.process.endpoint)
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_eks::Client::from_conf(config)
}

fn eks_auth(server: &Server, (id, secret): (&str, &str)) -> aws_sdk_eksauth::Client {
    let config = aws_sdk_eksauth::Config::builder()
        .behavior_version(aws_sdk_eksauth::config::BehaviorVersion::latest())
        .region(aws_sdk_eksauth::config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            id, secret, None, None, "test",
        ))
        .endpoint_url(&server.process.endpoint)
        .retry_config(aws_sdk_eksauth::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_eksauth::Client::from_conf(config)
}

/// An SDK call's outcome as an [`Answer`] (status 200 on success).
fn sdk<T, E: ProvideErrorMetadata>(result: Result<T, E>) -> Answer {
    match result {
        Ok(_) => Answer {
            status: 200,
            kind: String::new(),
            message: String::new(),
            body: Value::Null,
        },
        Err(e) => Answer {
            status: 0,
            kind: e.code().unwrap_or("no code").to_owned(),
            message: e.message().unwrap_or("").to_owned(),
            body: Value::Null,
        },
    }
}

async fn register(server: &Server, name: &str) {
    let jwks: Value = serde_json::from_str(TEST_JWKS).unwrap();
    let body = json!({"name": name, "issuer": format!("https://issuer.test/{name}"), "jwks": jwks});
    let answer = call(
        server,
        ADMIN,
        "POST",
        "/podid/v1/clusters",
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(answer.status, 200, "registering {name}: {answer:?}");
}

/// (association id, ARN) of a new association in `cluster`, made by the unscoped admin.
async fn associate(server: &Server, cluster: &str, service_account: &str) -> (String, String) {
    let out = eks(server, ADMIN)
        .create_pod_identity_association()
        .cluster_name(cluster)
        .namespace("default")
        .service_account(service_account)
        .role_arn(ROLE)
        .send()
        .await
        .unwrap();
    let a = out.association().unwrap();
    (
        a.association_id().unwrap().to_owned(),
        a.association_arn().unwrap().to_owned(),
    )
}

/// Every operation of the router called by `BLUE_ADMIN` (and `BLUE_NODE` for
/// the credential call) on `cluster`, on an association made for it: the
/// (operation, answer) pairs, and the association's id and ARN.
async fn every_operation(
    server: &Server,
    cluster: &str,
) -> (Vec<(Operation, Answer)>, String, String) {
    let (id, arn) = associate(server, cluster, &format!("target-{cluster}")).await;
    let client = eks(server, BLUE_ADMIN);
    let mut out = vec![
        (
            Operation::CreatePodIdentityAssociation,
            sdk(client
                .create_pod_identity_association()
                .cluster_name(cluster)
                .namespace("default")
                .service_account(format!("new-{cluster}"))
                .role_arn(ROLE)
                .send()
                .await),
        ),
        (
            Operation::DescribePodIdentityAssociation,
            sdk(client
                .describe_pod_identity_association()
                .cluster_name(cluster)
                .association_id(&id)
                .send()
                .await),
        ),
        (
            Operation::ListPodIdentityAssociations,
            sdk(client
                .list_pod_identity_associations()
                .cluster_name(cluster)
                .namespace("default")
                .send()
                .await),
        ),
        (
            Operation::UpdatePodIdentityAssociation,
            sdk(client
                .update_pod_identity_association()
                .cluster_name(cluster)
                .association_id(&id)
                .role_arn(format!("{ROLE}-2"))
                .send()
                .await),
        ),
        (
            Operation::TagResource,
            sdk(client
                .tag_resource()
                .resource_arn(&arn)
                .tags("team", "blue")
                .send()
                .await),
        ),
        (
            Operation::ListTagsForResource,
            sdk(client
                .list_tags_for_resource()
                .resource_arn(&arn)
                .send()
                .await),
        ),
        (
            Operation::UntagResource,
            sdk(client
                .untag_resource()
                .resource_arn(&arn)
                .tag_keys("team")
                .tag_keys("other")
                .send()
                .await),
        ),
        (
            Operation::DeletePodIdentityAssociation,
            sdk(client
                .delete_pod_identity_association()
                .cluster_name(cluster)
                .association_id(&id)
                .send()
                .await),
        ),
        (
            Operation::AssumeRoleForPodIdentity,
            sdk(eks_auth(server, BLUE_NODE)
                .assume_role_for_pod_identity()
                .cluster_name(cluster)
                .token("not-a-jwt")
                .send()
                .await),
        ),
    ];
    let registration = json!({"name": cluster, "issuer": "https://issuer.test/again", "jwks": serde_json::from_str::<Value>(TEST_JWKS).unwrap()});
    let raw = [
        (
            Operation::RegisterCluster,
            "POST",
            "/podid/v1/clusters".to_owned(),
            registration.to_string(),
        ),
        (
            Operation::DescribeCluster,
            "GET",
            format!("/podid/v1/clusters/{cluster}"),
            String::new(),
        ),
        (
            Operation::UpdateCluster,
            "PATCH",
            format!("/podid/v1/clusters/{cluster}"),
            json!({"audience": "pods.eks.amazonaws.com"}).to_string(),
        ),
        (
            Operation::DeregisterCluster,
            "DELETE",
            format!("/podid/v1/clusters/{cluster}"),
            String::new(),
        ),
        (
            Operation::ListAuditEvents,
            "GET",
            format!("/podid/v1/audit?cluster={cluster}"),
            String::new(),
        ),
        (
            Operation::ListAssociationChanges,
            "GET",
            format!("/podid/v1/clusters/{cluster}/changes?after=0"),
            String::new(),
        ),
    ];
    for (operation, method, target, body) in raw {
        out.push((
            operation,
            call(server, BLUE_ADMIN, method, &target, body.as_bytes()).await,
        ));
    }
    (out, id, arn)
}

/// A key scoped to blue is refused green on every operation the router has
/// (AccessDeniedException, naming neither secret, changing nothing), and is
/// answered for blue; listing every cluster or the whole audit trail is
/// refused to it.
#[tokio::test]
async fn a_key_scoped_to_blue_is_refused_green_on_every_operation() {
    let keys = entry(ADMIN, "admin", "")
        + &entry(BLUE_ADMIN, "admin", r#"clusters = ["blue"]"#)
        + &entry(BLUE_NODE, "node", r#"clusters = ["blue"]"#);
    let server = start(&keys, &[]);
    register(&server, "blue").await;
    register(&server, "green").await;
    // One association each stays (deregistering is then refused for being in use).
    associate(&server, "blue", "stays").await;
    associate(&server, "green", "stays").await;

    let (blue, _, _) = every_operation(&server, "blue").await;
    let (green, green_id, green_arn) = every_operation(&server, "green").await;
    let listed: BTreeSet<&str> = green.iter().map(|(op, _)| op.name()).collect();
    let mut all: BTreeSet<&str> = Operation::ALL.iter().map(|op| op.name()).collect();
    all.remove("ListClusters"); // bound to no cluster: below
    assert_eq!(
        listed, all,
        "the test calls every operation but ListClusters"
    );

    let denied = "key BLUEADMIN is scoped to clusters and may not act on cluster 'green'";
    for (operation, answer) in &green {
        let expected = if *operation == Operation::AssumeRoleForPodIdentity {
            "key BLUENODE is scoped to clusters and may not act on cluster 'green'"
        } else {
            denied
        };
        assert_eq!(
            (answer.kind.as_str(), answer.message.as_str()),
            ("AccessDeniedException", expected),
            "{operation:?}: {answer:?}"
        );
        assert!(
            answer.status == 403 || answer.status == 0,
            "{operation:?}: {answer:?}"
        );
        for (_, secret) in [ADMIN, BLUE_ADMIN, BLUE_NODE] {
            assert!(!answer.message.contains(secret));
        }
    }
    // For blue, each operation is answered as the operation answers.
    for (operation, answer) in &blue {
        let kind = match operation {
            Operation::AssumeRoleForPodIdentity => "InvalidTokenException",
            Operation::RegisterCluster | Operation::DeregisterCluster => "ResourceInUseException",
            _ => "",
        };
        assert_eq!(answer.kind, kind, "{operation:?}: {answer:?}");
    }
    // Green is as it was: its association unchanged and untagged, the cluster there.
    let admin = eks(&server, ADMIN);
    let green_association = admin
        .describe_pod_identity_association()
        .cluster_name("green")
        .association_id(&green_id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        green_association.association().unwrap().role_arn(),
        Some(ROLE)
    );
    let tags = admin
        .list_tags_for_resource()
        .resource_arn(&green_arn)
        .send()
        .await
        .unwrap();
    assert!(tags.tags().is_none_or(|t| t.is_empty()), "{tags:?}");
    let listed = admin
        .list_pod_identity_associations()
        .cluster_name("green")
        .send()
        .await
        .unwrap();
    assert_eq!(
        listed.associations().len(),
        2,
        "no association created or deleted in green"
    );

    // Bound to no cluster: refused to a scoped key, answered to the unscoped one.
    let every = "key BLUEADMIN is scoped to clusters and may not act on every cluster: name one of its clusters";
    for target in ["/podid/v1/clusters", "/podid/v1/audit"] {
        let answer = call(&server, BLUE_ADMIN, "GET", target, b"").await;
        assert_eq!(
            (answer.status, answer.kind.as_str(), answer.message.as_str()),
            (403, "AccessDeniedException", every),
            "{target}"
        );
        assert_eq!(
            call(&server, ADMIN, "GET", target, b"").await.status,
            200,
            "{target}"
        );
    }
    // A cluster name percent-encoded in the path is the same cluster.
    let encoded = call(
        &server,
        BLUE_ADMIN,
        "GET",
        "/podid/v1/clusters/gr%65en",
        b"",
    )
    .await;
    assert_eq!((encoded.status, encoded.message.as_str()), (403, denied));
    server.process.kill();
}

/// Whether `key` is answered (200 to ListClusters), and the error otherwise.
async fn accepted(server: &Server, key: (&str, &str)) -> Result<(), Answer> {
    let answer = call(server, key, "GET", "/podid/v1/clusters", b"").await;
    if answer.status == 200 {
        Ok(())
    } else {
        Err(answer)
    }
}

/// Polls (bounded by 10 s) until `key`'s acceptance is `want`; the time it took.
async fn until_accepted(server: &Server, key: (&str, &str), want: bool) -> Duration {
    let started = Instant::now();
    loop {
        let got = accepted(server, key).await;
        if got.is_ok() == want {
            if let Err(refused) = got {
                assert_eq!(
                    (
                        refused.status,
                        refused.kind.as_str(),
                        refused.message.as_str()
                    ),
                    (
                        403,
                        "UnrecognizedClientException",
                        "The security token included in the request is invalid."
                    )
                );
            }
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{} still {} after 10 s",
            key.0,
            if want { "refused" } else { "accepted" }
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls (bounded by 10 s) the server's stderr until it holds `text`.
async fn until_logged(server: &Server, text: &str) -> String {
    let started = Instant::now();
    loop {
        let log = server.process.stderr();
        if log.contains(text) {
            return log;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no '{text}' in the log after 10 s:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Without a restart: an added key is accepted and a removed one refused
/// within 2 s; a broken or missing file keeps the keys in service and the log
/// says why, quoting no secret.
#[tokio::test]
async fn keys_file_changes_take_effect_without_a_restart() {
    let admin = entry(ADMIN, "admin", "");
    let server = start(&admin, &[]);
    assert!(accepted(&server, ADMIN).await.is_ok());
    assert!(accepted(&server, NEW_KEY).await.is_err());

    write_keys(
        &server.keys,
        &(admin.clone() + &entry(NEW_KEY, "admin", "")),
    );
    let took = until_accepted(&server, NEW_KEY, true).await;
    assert!(took < Duration::from_secs(2), "an added key took {took:?}");

    write_keys(&server.keys, &admin);
    let took = until_accepted(&server, NEW_KEY, false).await;
    assert!(took < Duration::from_secs(2), "a removed key took {took:?}");
    eprintln!("removed key refused after {took:?}");

    // A file that does not parse, holding a secret: the keys stay, the log says why.
    let leaked = "must-not-appear-in-any-log-0123";
    let broken = format!("{admin}[[key]]\naccess_key_id = \"BROKEN\"\nsecret_access_key = \"{leaked}\"\nrole = \"root\"\n");
    write_keys(&server.keys, &broken);
    let log = until_logged(
        &server,
        "keys file not reloaded (file changed); the previous keys stay in service",
    )
    .await;
    assert!(log.contains("unknown variant `root`"), "{log}");
    assert!(!log.contains(leaked), "{log}");
    assert!(accepted(&server, ADMIN).await.is_ok());
    // A missing file too.
    std::fs::remove_file(&server.keys).unwrap();
    until_logged(&server, "No such file or directory").await;
    assert!(accepted(&server, ADMIN).await.is_ok());

    write_keys(&server.keys, &(admin + &entry(NEW_KEY, "admin", "")));
    let took = until_accepted(&server, NEW_KEY, true).await;
    assert!(
        took < Duration::from_secs(2),
        "a repaired file took {took:?}"
    );
    server.process.kill();
}

/// With polling off (`--keys-reload-interval 0`), a change waits for SIGHUP,
/// and SIGHUP reloads at once (the process goes on serving).
#[tokio::test]
async fn sighup_reloads_the_keys_file_at_once() {
    let admin = entry(ADMIN, "admin", "");
    let server = start(
        &(admin.clone() + &entry(NEW_KEY, "admin", "")),
        &["--keys-reload-interval", "0"],
    );
    assert!(accepted(&server, NEW_KEY).await.is_ok());
    write_keys(&server.keys, &admin);
    // Not polled: still accepted.
    assert!(accepted(&server, NEW_KEY).await.is_ok());

    let status = std::process::Command::new("kill")
        .args(["-HUP", &server.process.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let took = until_accepted(&server, NEW_KEY, false).await;
    assert!(took < Duration::from_secs(1), "SIGHUP took {took:?}");
    eprintln!("SIGHUP: removed key refused after {took:?}");
    until_logged(&server, "keys file reloaded (SIGHUP)").await;
    assert!(accepted(&server, ADMIN).await.is_ok());
    server.process.kill();
}
