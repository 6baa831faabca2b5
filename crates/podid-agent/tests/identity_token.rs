//! The agent's token identity (`--identity-token-file`), against real
//! processes: a `podid agent` with no AWS credentials at all, its token
//! minted as kubelet projects it (podid-system/podid-agent, audience podid, a
//! node name). Against a recording EKS Auth stand-in: the header it sends.
//! Against `podid server` with a cluster whose agents use token identity
//! (node binding on): credentials, the feed, and a rewritten token file used
//! at the next call. Needs `target/debug/podid` (`cargo build -p podid`).
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::time::{Duration, Instant};

use podid_test_support::fleet::{
    associate, delete_association, AgentProcess, AgentProof, FleetCluster,
};
use podid_test_support::sts_broker::StsBroker;
use podid_test_support::tls::write_atomically;
use podid_test_support::wait::eventually;
use podid_test_support::{podid_binary, skip_or_fail, FakeEksAuthServer, FakeEksAuthSettings};

const ROLE: &str = "arn:aws:iam::111122223333:role/token-role";

fn built() -> bool {
    let built = podid_binary().exists();
    if !built {
        skip_or_fail("target/debug/podid is not built (cargo build -p podid)");
    }
    built
}

/// Writes `token` to `path` as kubelet does (a new file renamed into place).
fn project(path: &Path, token: &str) {
    write_atomically(path, token.as_bytes()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_gets_the_token_as_a_bearer_and_the_rewritten_one_next() {
    if !built() {
        return;
    }
    let fake = FakeEksAuthServer::start(FakeEksAuthSettings::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    project(&file, "agent.token.one\n");
    let agent = AgentProcess::start(
        "c1",
        &fake.url,
        AgentProof::TokenFile(&file),
        &["--follow-changes", "false"],
    )
    .unwrap();
    let pod = |name: &str| podid_test_support::pod_token(name, 3600);
    let (status, body) = agent.ask(&pod("p1")).await;
    assert_eq!(status, 200, "{body} {}", agent.stderr());
    project(&file, "agent.token.two");
    let (status, body) = agent.ask(&pod("p2")).await;
    assert_eq!(status, 200, "{body}");
    let seen: Vec<String> = fake.seen().into_iter().map(|c| c.authorization).collect();
    assert_eq!(seen, ["Bearer agent.token.one", "Bearer agent.token.two"]);
    let readyz = agent.readyz().await;
    assert!(readyz.get("changeFeed").is_none(), "not followed: {readyz}");
    // The file gone: a new pod gets 503, and the broker is not asked.
    std::fs::remove_file(&file).unwrap();
    let (status, body) = agent.ask(&pod("p3")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["message"], "the agent cannot read its identity token");
    assert_eq!(fake.seen().len(), 2);
    assert!(!agent.stderr().contains("agent.token"), "never logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_with_its_token_and_no_aws_keys_gets_credentials_and_follows_the_feed() {
    if !built() {
        return;
    }
    let broker = StsBroker::start(&[]).unwrap();
    let cluster = FleetCluster::register(&broker, "tok", "token", &[]).unwrap();
    let id = associate(&broker.endpoint(), "tok", ("ns", "sa"), ROLE).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    project(&file, &cluster.agent_token("node-a"));
    let agent =
        AgentProcess::start("tok", &broker.endpoint(), AgentProof::TokenFile(&file), &[]).unwrap();
    let pod = |name: &str, node: &str| cluster.pod_token("ns", "sa", name, Some(node));
    let (status, body) = agent.ask(&pod("a1", "node-a")).await;
    assert_eq!(status, 200, "{body} {}", agent.stderr());
    // Node binding: the server knows this agent as node-a.
    let (status, body) = agent.ask(&pod("b1", "node-b")).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "AccessDeniedException");
    // The feed takes the same token.
    eventually(Duration::from_secs(30), "the feed to connect", || async {
        agent.readyz().await["changeFeed"]["connected"] == true
    })
    .await;
    // Kubelet rotates the token (here: the agent's pod moved to node-b): the next call carries it.
    let moved = cluster.agent_token("node-b");
    project(&file, &moved);
    let b2 = pod("b2", "node-b");
    let (status, body) = agent.ask(&b2).await;
    assert_eq!(status, 200, "the rewritten token was used: {body}");
    let (status, _) = agent.ask(&pod("a2", "node-a")).await;
    assert_eq!(status, 403);
    // Revocation reaches a token agent through its feed too (b2 is held).
    let hits = "podid_agent_cache_lookups_total{result=\"hit\"}";
    let held = agent.metric(hits).await;
    assert_eq!(agent.ask(&b2).await.0, 200);
    assert_eq!(agent.metric(hits).await, held + 1.0);
    let started = Instant::now();
    delete_association(&broker.endpoint(), "tok", &id).await;
    eventually(Duration::from_secs(10), "b2 refused", || async {
        agent.ask(&b2).await.0 == 404
    })
    .await;
    println!("token agent: revoked after {:?}", started.elapsed());
    let deletes = "podid_agent_feed_changes_total{kind=\"delete\"}";
    assert_eq!(agent.metric(deletes).await, 1.0);
    let signature = moved.rsplit('.').next().unwrap();
    assert!(
        !agent.stderr().contains(signature),
        "the token is never logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_file_that_cannot_be_used_stops_the_agent_at_start() {
    if !built() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let empty = dir.path().join("empty");
    project(&empty, "\n");
    for (file, says) in [
        (&missing, "cannot read the token file"),
        (&empty, "is empty"),
    ] {
        let proof = AgentProof::TokenFile(file);
        let err = AgentProcess::start("c1", "http://127.0.0.1:9", proof, &[]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("exited before printing"), "{text}");
        assert!(text.contains(says), "{says}: {text}");
    }
}
