//! Revocation through the change feed, against real processes: `podid
//! server` (an `StsBroker`, its broker asking a fake STS; more servers on the
//! same SQLite file where a test cuts one off) and `podid agent` processes
//! following the cluster's feed with their default settings. Needs
//! `target/debug/podid` (`cargo build -p podid`) or `PODID_BIN`.
//!
//! The oracle is the promise: a deleted association's pods get 404
//! `ResourceNotFoundException` from every agent within 2 s; an updated role
//! is what the next credentials are issued for (the fake STS says which role
//! each key was issued for); an agent cut off during a delete drops the entry
//! once it reconnects; a position pruned meanwhile makes it revalidate.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use podid_test_support::fleet::{
    associate, delete_association, update_role, AgentProcess, AgentProof, FleetCluster,
};
use podid_test_support::relay::Relay;
use podid_test_support::sts_broker::{StsBroker, BROKER_KEY};
use podid_test_support::wait::eventually;
use podid_test_support::{podid_binary, skip_or_fail, PodidServerLaunch, PodidServerProcess};
use serde_json::Value;

const CLUSTER: &str = "feed";
const NAMESPACE: &str = "ns";
const ROLE: &str = "arn:aws:iam::111122223333:role/feed-role";
const NEW_ROLE: &str = "arn:aws:iam::111122223333:role/feed-role-2";
/// The promise.
const PROMISED: Duration = Duration::from_secs(2);
/// What a reconnect may take: the follower's longest back-off (5 s), a
/// server start and a loaded 2-core machine's margin.
const RECONNECT: Duration = Duration::from_secs(30);

/// A server with [`CLUSTER`] (agents sign with the node key) and its key.
struct World {
    broker: StsBroker,
    cluster: FleetCluster,
}

impl World {
    /// `None` (said, or failed under CI) when the binary is not built.
    fn start(server_args: &[&str]) -> Option<World> {
        if !podid_binary().exists() {
            skip_or_fail("target/debug/podid is not built (cargo build -p podid)");
            return None;
        }
        let broker = StsBroker::start(server_args).unwrap();
        let cluster = FleetCluster::register(&broker, CLUSTER, "key", &[]).unwrap();
        Some(World { broker, cluster })
    }

    fn endpoint(&self) -> String {
        self.broker.endpoint()
    }

    /// Associates `ns/{service_account}` with [`ROLE`].
    async fn associate(&self, service_account: &str) -> String {
        associate(
            &self.endpoint(),
            CLUSTER,
            (NAMESPACE, service_account),
            ROLE,
        )
        .await
    }

    /// A token of pod `pod` of `ns/{service_account}`.
    fn token(&self, service_account: &str, pod: &str) -> String {
        self.cluster
            .pod_token(NAMESPACE, service_account, pod, Some("node-1"))
    }

    /// Another `podid server` on the same database (and fake STS), with `args`.
    fn second_server(&self, args: &[&str]) -> PodidServerProcess {
        let dir = self.broker.dir();
        PodidServerLaunch::new(podid_binary())
            .args([
                "--database-url",
                &format!("sqlite://{}", dir.join("podid.db").display()),
                "--keys-file",
                &dir.join("keys.toml").display().to_string(),
                "--sts-endpoint",
                &self.broker.sts.url,
            ])
            .args(args)
            .aws_test_key(&BROKER_KEY)
            .env_remove("PODID_DATABASE_URL")
            .start()
            .unwrap()
    }

    /// The role the fake STS issued the key `access_key_id` for.
    fn role_of(&self, access_key_id: &str) -> Option<String> {
        let n: usize = access_key_id.strip_prefix("ASIAFAKESTS")?.parse().ok()?;
        let requests = self.broker.sts.requests();
        Some(requests.get(n.checked_sub(1)?)?.role_arn.clone())
    }
}

/// An agent of [`CLUSTER`] asking `endpoint` with the node key, default settings.
fn agent(endpoint: &str) -> AgentProcess {
    AgentProcess::start(CLUSTER, endpoint, AgentProof::NodeKey, &[]).unwrap()
}

/// Waits until the agent's `/readyz` says its feed is `connected` (with a
/// position) or not; `/readyz`'s `changeFeed` then.
async fn feed(agent: &AgentProcess, connected: bool) -> Value {
    eventually(RECONNECT, "the agent's change feed state", || async {
        let feed = agent.readyz().await["changeFeed"].clone();
        feed["connected"] == connected && (!connected || feed["position"].is_i64())
    })
    .await;
    agent.readyz().await["changeFeed"].clone()
}

/// Asks until `agent` answers 404 `ResourceNotFoundException` for `token`
/// (200 meanwhile), bounded by [`RECONNECT`].
async fn until_gone(agent: &AgentProcess, token: &str) {
    let started = Instant::now();
    loop {
        let (status, body) = agent.ask(token).await;
        if status == 404 {
            assert_eq!(body["code"], "ResourceNotFoundException", "{body}");
            return;
        }
        assert_eq!(status, 200, "{body}");
        assert!(
            started.elapsed() < RECONNECT,
            "still served after {RECONNECT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_association_stops_its_pods_at_every_agent_within_2_s() {
    let Some(world) = World::start(&[]) else {
        return;
    };
    let id = world.associate("sa").await;
    let agents: Vec<AgentProcess> = (0..3).map(|_| agent(&world.endpoint())).collect();
    // Each agent serves a pod of its own and the pod every agent serves.
    let pods: Vec<Vec<String>> = (0..agents.len())
        .map(|i| {
            vec![
                world.token("sa", &format!("pod-{i}")),
                world.token("sa", "pod-all"),
            ]
        })
        .collect();
    for (agent, tokens) in agents.iter().zip(&pods) {
        for token in tokens {
            let (status, body) = agent.ask(token).await;
            assert_eq!(status, 200, "{body}");
        }
        feed(agent, true).await;
    }
    let started = Instant::now();
    delete_association(&world.endpoint(), CLUSTER, &id).await;
    // Round-robin over what is still served; each agent's time is its last pod's.
    let mut waiting: Vec<(usize, &String)> = pods
        .iter()
        .enumerate()
        .flat_map(|(i, tokens)| tokens.iter().map(move |t| (i, t)))
        .collect();
    let mut gone_at = vec![Duration::ZERO; agents.len()];
    while !waiting.is_empty() {
        let mut still = Vec::new();
        for (i, token) in waiting {
            let (status, body) = agents[i].ask(token).await;
            match status {
                404 => {
                    assert_eq!(body["code"], "ResourceNotFoundException", "{body}");
                    gone_at[i] = gone_at[i].max(started.elapsed());
                }
                200 => still.push((i, token)),
                other => panic!("agent {i} answered {other}: {body}"),
            }
        }
        waiting = still;
        assert!(
            started.elapsed() < RECONNECT,
            "agents still serving after {RECONNECT:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let worst = gone_at.iter().max().copied().unwrap_or_default();
    println!("revocation: per agent {gone_at:?}, worst {worst:?} (promised {PROMISED:?})");
    assert!(worst < PROMISED, "the worst agent took {worst:?}");
    for agent in &agents {
        assert_eq!(
            agent
                .metric("podid_agent_feed_changes_total{kind=\"delete\"}")
                .await,
            1.0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_updated_role_is_what_the_next_credentials_are_for() {
    let Some(world) = World::start(&[]) else {
        return;
    };
    let id = world.associate("sa").await;
    let agent = agent(&world.endpoint());
    let token = world.token("sa", "pod-1");
    let (status, body) = agent.ask(&token).await;
    assert_eq!(status, 200, "{body}");
    let first = body["AccessKeyId"].as_str().unwrap().to_owned();
    assert_eq!(world.role_of(&first).as_deref(), Some(ROLE));
    feed(&agent, true).await;
    let started = Instant::now();
    update_role(&world.endpoint(), CLUSTER, &id, NEW_ROLE).await;
    loop {
        let (status, body) = agent.ask(&token).await;
        assert_eq!(status, 200, "{body}");
        let key = body["AccessKeyId"].as_str().unwrap();
        if world.role_of(key).as_deref() == Some(NEW_ROLE) {
            break;
        }
        assert_eq!(key, first, "until the change, the cached credentials");
        assert!(started.elapsed() < RECONNECT, "still the old role");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = started.elapsed();
    println!("role update: the new role's credentials after {took:?}");
    assert!(took < PROMISED, "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_cut_off_during_a_delete_drops_the_entry_once_reconnected() {
    let Some(world) = World::start(&[]) else {
        return;
    };
    let id = world.associate("sa").await;
    // The agent's server: another process on the same database, behind a relay.
    let server = world.second_server(&[]);
    let relay = Relay::start(Some(server.addr)).await.unwrap();
    let agent = agent(&relay.url());
    let token = world.token("sa", "pod-1");
    assert_eq!(agent.ask(&token).await.0, 200);
    feed(&agent, true).await;
    // Cut: no new connections, and the server (with the long poll) gone.
    relay.point_to(None);
    server.kill();
    let down = feed(&agent, false).await;
    assert!(down["error"].is_string(), "{down}");
    delete_association(&world.endpoint(), CLUSTER, &id).await;
    let (status, body) = agent.ask(&token).await;
    assert_eq!(
        status, 200,
        "cut off, it still serves what it holds: {body}"
    );
    // Back: a new server process on the same database.
    let server = world.second_server(&[]);
    let back = Instant::now();
    relay.point_to(Some(server.addr));
    until_gone(&agent, &token).await;
    println!(
        "cut off: the entry gone {:?} after the server came back",
        back.elapsed()
    );
    assert!(agent.metric("podid_agent_feed_reconnects_total").await >= 1.0);
    assert_eq!(
        agent
            .metric("podid_agent_feed_changes_total{kind=\"delete\"}")
            .await,
        1.0,
        "caught up from its position"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_pruned_while_cut_off_makes_the_agent_revalidate() {
    let Some(world) = World::start(&[]) else {
        return;
    };
    let deleted = world.associate("sa").await;
    world.associate("sb").await;
    let server = world.second_server(&["--change-retention", "1s"]);
    let relay = Relay::start(Some(server.addr)).await.unwrap();
    let agent = agent(&relay.url());
    // The first pod's broker call starts the follower and waits for its first
    // position: nothing is held then, so nothing is revalidated.
    let (gone, kept) = (world.token("sa", "pod-a"), world.token("sb", "pod-b"));
    assert_eq!(agent.ask(&gone).await.0, 200);
    let position = feed(&agent, true).await["position"].as_i64().unwrap();
    let (status, before) = agent.ask(&kept).await;
    assert_eq!(status, 200, "{before}");
    let revalidations = "podid_agent_feed_revalidations_total";
    assert_eq!(agent.metric(revalidations).await, 0.0);
    relay.point_to(None);
    server.kill();
    feed(&agent, false).await;
    delete_association(&world.endpoint(), CLUSTER, &deleted).await;
    // A server pruning changes older than 1 s: the agent's position falls behind the mark.
    let server = world.second_server(&["--change-retention", "1s"]);
    let after = format!("/podid/v1/clusters/{CLUSTER}/changes?after={position}");
    eventually(RECONNECT, "the agent's position to be pruned", || async {
        let key = (
            podid_test_support::ADMIN.access_key_id,
            podid_test_support::ADMIN.secret_access_key,
        );
        let answer =
            podid_test_support::signed::signed_call(&server.endpoint, key, "GET", &after, b"")
                .await;
        answer.body["reset"] == true
    })
    .await;
    relay.point_to(Some(server.addr));
    eventually(RECONNECT, "a revalidation", || async {
        agent.metric(revalidations).await == 1.0
    })
    .await;
    let (status, body) = agent.ask(&gone).await;
    assert_eq!(status, 404, "the broker refused it at revalidation: {body}");
    let (status, after) = agent.ask(&kept).await;
    assert_eq!(status, 200, "{after}");
    assert_ne!(
        after["AccessKeyId"], before["AccessKeyId"],
        "asked again at revalidation"
    );
    assert_eq!(
        agent
            .metric("podid_agent_feed_changes_total{kind=\"delete\"}")
            .await,
        0.0,
        "it never saw the delete itself"
    );
}
