//! Agent identity and node binding against a real `podid server` (built with
//! `cargo build -p podid`) whose broker asks a fake STS: clusters registered
//! with the `podid` CLI (`--agent-identity token`, `--node-binding false`),
//! agents calling `AssumeRoleForPodIdentity` with `Authorization: Bearer` and
//! their own service-account token (podid-system/podid-agent, audience podid,
//! a node name), pod tokens naming their node, all minted with
//! `podid_token::dev`. Expected messages are the literals of docs/api.md.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use podid_test_support::fake_sts::FAKE_STS_SECRET_ACCESS_KEY;
use podid_test_support::sigv4::Signer;
use podid_test_support::sts_broker::{StsBroker, CLUSTER, NAMESPACE, ROLE_ARN, SERVICE_ACCOUNT};
use podid_test_support::tokens::now_secs;
use podid_test_support::wait::eventually;
use podid_test_support::{TestKey, ADMIN, NODE};
use podid_token::dev::{DevAlgorithm, ProjectedToken, SigningKey};
use serde_json::{json, Value};

/// The cluster whose agents prove their node (node binding on by default).
const BOUND: &str = "nodes";
/// A token cluster registered with `--node-binding false`.
const LOOSE: &str = "loose";
const ISSUER: &str = "https://oidc.nodes.test";

struct World {
    broker: StsBroker,
    key: SigningKey,
    http: reqwest::Client,
}

impl World {
    /// A server (via [`StsBroker`]: key cluster [`CLUSTER`]) plus the token
    /// clusters [`BOUND`] and [`LOOSE`] (registered through the CLI), each
    /// with an association of `ns/sa`.
    async fn start() -> World {
        let broker = StsBroker::start(&[]).unwrap();
        let key = SigningKey::generate(DevAlgorithm::Rs256, "nodes-1").unwrap();
        let jwks = broker.dir().join("nodes-jwks.json");
        std::fs::write(&jwks, key.jwks().to_string()).unwrap();
        let jwks = jwks.display().to_string();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let world = World { broker, key, http };
        for (name, extra) in [(BOUND, vec![]), (LOOSE, vec!["--node-binding", "false"])] {
            let mut args = vec![
                "cluster",
                "register",
                "--name",
                name,
                "--issuer",
                ISSUER,
                "--jwks-file",
                &jwks,
                "--agent-identity",
                "token",
            ];
            args.extend(extra);
            world.broker.cli(&args).unwrap();
            let association = json!({
                "namespace": NAMESPACE,
                "serviceAccount": SERVICE_ACCOUNT,
                "roleArn": ROLE_ARN,
            });
            let path = format!("/clusters/{name}/pod-identity-associations");
            let (status, _, body) = world.admin("POST", &path, Some(&association)).await;
            assert_eq!(status, 200, "{body}");
        }
        world
    }

    /// An agent's token on `node`, as kubelet projects it for the agent's pod.
    fn agent(&self, node: &str) -> ProjectedToken {
        let mut t = ProjectedToken::new(ISSUER, "podid-system", "podid-agent", now_secs() - 10);
        t.audience = vec!["podid".into()];
        t.node_name = Some(node.into());
        t.pod_name = format!("podid-agent-{node}");
        t.expires_in_secs = 3600;
        t
    }

    /// A token of pod `pod` of `ns/sa` on `node` (none: no node claim).
    fn pod(&self, pod: &str, node: Option<&str>) -> String {
        let mut t = ProjectedToken::new(ISSUER, NAMESPACE, SERVICE_ACCOUNT, now_secs() - 10);
        t.pod_name = pod.into();
        t.pod_uid = format!("uid-{pod}");
        t.node_name = node.map(str::to_owned);
        t.sign(&self.key)
    }

    /// `POST /clusters/{cluster}/assume-role-for-pod-identity` with a bearer agent token.
    async fn assume(&self, cluster: &str, agent: &str, pod: &str) -> (u16, String, Value) {
        let url = format!(
            "{}/clusters/{cluster}/assume-role-for-pod-identity",
            self.broker.endpoint()
        );
        let answer = self
            .http
            .post(url)
            .bearer_auth(agent)
            .json(&json!({ "token": pod }))
            .send()
            .await
            .unwrap();
        answered(answer).await
    }

    /// `method path` with a JSON `body` (none: empty), signed by `key` for
    /// `service` with aws-sigv4.
    async fn signed(
        &self,
        key: &TestKey,
        service: &'static str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let url = format!("{}{path}", self.broker.endpoint());
        let body = body.map(Value::to_string).unwrap_or_default();
        let json = [("content-type", "application/json")];
        let headers: &[(&str, &str)] = if body.is_empty() { &[] } else { &json };
        let mut request = self
            .http
            .request(method.parse().unwrap(), &url)
            .body(body.clone());
        for (name, value) in headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .chain(
                Signer::now(key, service)
                    .headers(method, &url, headers, body.as_bytes())
                    .unwrap(),
            )
        {
            request = request.header(name, value);
        }
        request.send().await.unwrap()
    }

    /// An `eks` call signed by the admin key: status, error type, JSON body.
    async fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, String, Value) {
        answered(self.signed(&ADMIN, "eks", method, path, body).await).await
    }

    /// The credential events of `cluster`, newest first.
    async fn credential_events(&self, cluster: &str) -> Vec<Value> {
        let path = format!("/podid/v1/audit?cluster={cluster}&kind=credential");
        let (status, _, page) = self.admin("GET", &path, None).await;
        assert_eq!(status, 200, "{page}");
        page["events"].as_array().unwrap().clone()
    }

    /// Waits (bounded) for the credential event of pod `pod` in `cluster`
    /// with `outcome`.
    async fn event_of(&self, cluster: &str, pod: &str, outcome: &str) -> Value {
        let found = std::sync::Mutex::new(None);
        eventually(Duration::from_secs(30), "the audit event", || {
            let found = &found;
            async move {
                let event = self
                    .credential_events(cluster)
                    .await
                    .into_iter()
                    .find(|e| e["podName"] == pod && e["outcome"] == outcome);
                let seen = event.is_some();
                *found.lock().unwrap() = event;
                seen
            }
        })
        .await;
        found.into_inner().unwrap().unwrap()
    }

    /// `podid_server_refusals_total{reason="AccessDeniedException"}`.
    async fn access_denied_count(&self) -> u64 {
        let metrics = self.signed(&ADMIN, "eks", "GET", "/metrics", None).await;
        let text = metrics.text().await.unwrap();
        text.lines()
            .find_map(|l| {
                l.strip_prefix("podid_server_refusals_total{reason=\"AccessDeniedException\"} ")
            })
            .map_or(0, |n| n.trim().parse().unwrap())
    }
}

/// Status, AWS error type and JSON body of an answer.
async fn answered(answer: reqwest::Response) -> (u16, String, Value) {
    let status = answer.status().as_u16();
    let kind = answer
        .headers()
        .get("x-amzn-errortype")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = answer.json().await.unwrap_or(Value::Null);
    (status, kind, body)
}

/// Asserts a 403 AccessDeniedException whose message contains `reason`
/// and not the token.
fn assert_denied(answer: &(u16, String, Value), reason: &str, token: &str) {
    let (status, kind, body) = answer;
    assert_eq!(
        (*status, kind.as_str()),
        (403, "AccessDeniedException"),
        "{body}"
    );
    assert_eq!(body["__type"], "AccessDeniedException");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(reason), "{message:?} lacks {reason:?}");
    assert!(!message.contains(token) && !body.to_string().contains(token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_token_works_only_through_its_own_node_agent() {
    let world = World::start().await;
    let node_a = world.agent("node-a").sign(&world.key);
    let node_b = world.agent("node-b").sign(&world.key);

    // node-a's agent, node-a's pod: credentials from STS.
    let pod = world.pod("web-1", Some("node-a"));
    let (status, kind, body) = world.assume(BOUND, &node_a, &pod).await;
    assert_eq!((status, kind.as_str()), (200, ""), "{body}");
    assert_eq!(
        body["credentials"]["secretAccessKey"],
        FAKE_STS_SECRET_ACCESS_KEY
    );
    assert_eq!(body["subject"]["namespace"], NAMESPACE);
    assert_eq!(body["subject"]["serviceAccount"], SERVICE_ACCOUNT);
    assert!(world
        .broker
        .sts
        .requests()
        .iter()
        .any(|r| r.role_arn == ROLE_ARN));

    // The same pod token through node-b's agent.
    let refused = world.assume(BOUND, &node_b, &pod).await;
    assert_denied(
        &refused,
        "the pod's token names node node-a but the agent runs on node node-b",
        &pod,
    );
    // A pod token without a node name, even through node-a's agent.
    let nodeless = world.pod("web-2", None);
    let refused = world.assume(BOUND, &node_a, &nodeless).await;
    assert_denied(&refused, "the pod's token names no node", &nodeless);

    // Audit rows name the pod's node and the agent's.
    let issued = world.event_of(BOUND, "web-1", "issued").await;
    let denied = world.event_of(BOUND, "web-1", "denied").await;
    for (event, caller_node) in [(&issued, "node-a"), (&denied, "node-b")] {
        assert_eq!(event["nodeName"], "node-a", "{event}");
        assert_eq!(event["callerNode"], caller_node, "{event}");
        assert_eq!(event["caller"], "sa:podid-system/podid-agent", "{event}");
    }
    assert_eq!(denied["errorCode"], "AccessDeniedException");
    let nodeless_event = world.event_of(BOUND, "web-2", "denied").await;
    assert!(nodeless_event.get("nodeName").is_none_or(Value::is_null));
    assert_eq!(nodeless_event["callerNode"], "node-a");
    assert_eq!(nodeless_event["outcome"], "denied");

    // Node binding off: node-b's agent gets node-a's pod its credentials, audited.
    let pod = world.pod("batch-1", Some("node-a"));
    let (status, _, body) = world.assume(LOOSE, &node_b, &pod).await;
    assert_eq!(status, 200, "{body}");
    let event = world.event_of(LOOSE, "batch-1", "issued").await;
    assert_eq!(
        (&event["nodeName"], &event["callerNode"], &event["outcome"]),
        (&json!("node-a"), &json!("node-b"), &json!("issued"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_tokens_are_refused_with_their_reason() {
    let world = World::start().await;
    let pod = world.pod("api-1", Some("node-a"));
    let before = world.access_denied_count().await;
    let mut refusals = 0;

    let mut cases: Vec<(&str, String)> = Vec::new();
    let mut t = world.agent("node-a");
    t.audience = vec!["pods.eks.amazonaws.com".into()];
    cases.push((
        "the agent token's audience does not include podid",
        t.sign(&world.key),
    ));
    let mut t = world.agent("node-a");
    t.namespace = "default".into();
    cases.push((
        "the token of service account default/podid-agent is not the agent service account \
         of cluster nodes (podid-system/podid-agent)",
        t.sign(&world.key),
    ));
    let mut t = world.agent("node-a");
    t.issued_at = now_secs() - 7200;
    cases.push((
        "the agent token for cluster nodes has expired",
        t.sign(&world.key),
    ));
    let other = SigningKey::generate(DevAlgorithm::Rs256, "other-1").unwrap();
    cases.push((
        "the agent token's signature does not verify with the keys of cluster nodes",
        world.agent("node-a").sign(&other),
    ));
    let mut t = world.agent("node-a");
    t.node_name = None;
    cases.push((
        "the agent token names no node (kubernetes.io.node.name)",
        t.sign(&world.key),
    ));
    for (reason, token) in &cases {
        assert_denied(&world.assume(BOUND, token, &pod).await, reason, token);
        refusals += 1;
    }

    // A valid agent token anywhere but the credential call and the feed.
    let agent = world.agent("node-a").sign(&world.key);
    let url = format!(
        "{}/clusters/{BOUND}/pod-identity-associations",
        world.broker.endpoint()
    );
    let answer = answered(
        world
            .http
            .get(url)
            .bearer_auth(&agent)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_denied(
        &answer,
        "agent tokens (Authorization: Bearer) are accepted only by",
        &agent,
    );
    refusals += 1;

    // The change feed takes the agent token of its own cluster.
    let feed = |cluster: &str| {
        let url = format!(
            "{}/podid/v1/clusters/{cluster}/changes",
            world.broker.endpoint()
        );
        world.http.get(url).bearer_auth(&agent).send()
    };
    let (status, _, body) = answered(feed(BOUND).await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["position"].is_i64(), "{body}");

    // A key cluster refuses agent tokens, on both routes.
    let key_identity =
        "cluster sts-failures authenticates its agents by SigV4 key (agentIdentity key)";
    assert_denied(
        &world.assume(CLUSTER, &agent, &pod).await,
        key_identity,
        &agent,
    );
    assert_denied(
        &answered(feed(CLUSTER).await.unwrap()).await,
        key_identity,
        &agent,
    );
    refusals += 2;

    // A token cluster refuses the node's SigV4 key.
    let node_key = |cluster: &str, token: String| {
        let path = format!("/clusters/{cluster}/assume-role-for-pod-identity");
        let world = &world;
        async move {
            let body = json!({ "token": token });
            answered(
                world
                    .signed(&NODE, "eks-auth", "POST", &path, Some(&body))
                    .await,
            )
            .await
        }
    };
    let refused = node_key(BOUND, pod.clone()).await;
    assert_denied(
        &refused,
        "cluster nodes authenticates its agents by service-account token",
        &pod,
    );
    assert_eq!(
        refused.2["message"],
        "cluster nodes authenticates its agents by service-account token"
    );
    refusals += 1;
    // The key cluster still serves the node key.
    let (status, _, body) = node_key(CLUSTER, world.broker.token("legacy-1")).await;
    assert_eq!(status, 200, "{body}");

    assert_eq!(world.access_denied_count().await - before, refusals);
    let mut world = world;
    let log = world.broker.stop().unwrap();
    assert!(log.contains("agent token refused"), "{log}");
    for (_, token) in &cases {
        assert!(!log.contains(token.as_str()), "a token in the server's log");
    }
    assert!(!log.contains(&agent) && !log.contains(&pod));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_keeps_and_checks_agent_settings() {
    let world = World::start().await;
    let signed = |method: &'static str, path: &'static str, body: Value| {
        let world = &world;
        async move {
            let body = (!body.is_null()).then_some(body);
            world.admin(method, path, body.as_ref()).await
        }
    };
    let jwks = world.key.jwks();
    let register = |name: &str, extra: Value| {
        let mut body = json!({"name": name, "issuer": ISSUER, "jwks": jwks});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        signed("POST", "/podid/v1/clusters", body)
    };
    let invalid = |answer: (u16, String, Value), reason: &str| {
        assert_eq!(
            (answer.0, answer.1.as_str()),
            (400, "InvalidParameterException"),
            "{}",
            answer.2
        );
        let message = answer.2["message"].as_str().unwrap().to_owned();
        assert!(message.contains(reason), "{message:?} lacks {reason:?}");
    };

    // The CLI's registrations, as the API shows them.
    let (_, _, bound) = signed("GET", "/podid/v1/clusters/nodes", Value::Null).await;
    assert_eq!(bound["cluster"]["agentIdentity"], "token");
    assert_eq!(
        bound["cluster"]["agentServiceAccount"],
        "podid-system/podid-agent"
    );
    assert_eq!(bound["cluster"]["nodeBinding"], true);
    let (_, _, loose) = signed("GET", "/podid/v1/clusters/loose", Value::Null).await;
    assert_eq!(loose["cluster"]["nodeBinding"], false);
    let (_, _, key) = signed("GET", "/podid/v1/clusters/sts-failures", Value::Null).await;
    assert_eq!(
        (
            &key["cluster"]["agentIdentity"],
            &key["cluster"]["nodeBinding"]
        ),
        (&json!("key"), &json!(false))
    );

    // The CLI shows them: a table and JSON.
    let table = world
        .broker
        .cli(&["cluster", "describe", "--name", BOUND])
        .unwrap();
    let table = String::from_utf8(table.stdout).unwrap();
    let (head, row) = table.split_once('\n').unwrap();
    assert!(
        head.contains("AGENTS") && head.contains("NODE BINDING"),
        "{table}"
    );
    assert!(
        row.contains("token podid-system/podid-agent") && row.contains(" on "),
        "{table}"
    );
    let listed = world
        .broker
        .cli(&["cluster", "list", "-o", "json"])
        .unwrap();
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let loose = listed["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == LOOSE)
        .unwrap();
    assert_eq!(
        (&loose["agentIdentity"], &loose["nodeBinding"]),
        (&json!("token"), &json!(false))
    );

    invalid(
        register("k1", json!({"nodeBinding": true})).await,
        "nodeBinding true needs agentIdentity token",
    );
    invalid(
        register(
            "k2",
            json!({"agentIdentity": "token", "agentServiceAccount": "podid-agent"}),
        )
        .await,
        "agentServiceAccount 'podid-agent' must be namespace/name",
    );
    invalid(
        register("k3", json!({"agentServiceAccount": "Kube_System/agent"})).await,
        "agentServiceAccount 'Kube_System/agent' has a bad namespace",
    );
    // Not a value of the enum: the body does not parse.
    let (status, kind, _) = register("k4", json!({"agentIdentity": "certificate"})).await;
    assert_eq!((status, kind.as_str()), (400, "InvalidRequestException"));
    let (status, _, _) = signed("GET", "/podid/v1/clusters/k1", Value::Null).await;
    assert_eq!(status, 404, "a refused registration registers nothing");

    // Switching the key cluster to token identity turns node binding on.
    let (status, _, body) = signed(
        "PATCH",
        "/podid/v1/clusters/sts-failures",
        json!({"agentIdentity": "token", "agentServiceAccount": "ops/node-agent"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cluster"]["agentIdentity"], "token");
    assert_eq!(body["cluster"]["agentServiceAccount"], "ops/node-agent");
    assert_eq!(body["cluster"]["nodeBinding"], true);
    invalid(
        signed(
            "PATCH",
            "/podid/v1/clusters/loose",
            json!({"agentIdentity": "key", "nodeBinding": true}),
        )
        .await,
        "nodeBinding true needs agentIdentity token",
    );

    // The change audit records the settings.
    let found = std::sync::Mutex::new(None);
    eventually(Duration::from_secs(30), "the UpdateCluster event", || {
        let found = &found;
        let page = signed(
            "GET",
            "/podid/v1/audit?cluster=sts-failures&kind=change",
            Value::Null,
        );
        async move {
            let (_, _, page) = page.await;
            let event = page["events"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["action"] == "UpdateCluster")
                .cloned();
            let seen = event.is_some();
            *found.lock().unwrap() = event;
            seen
        }
    })
    .await;
    let update = found.into_inner().unwrap().unwrap();
    assert_eq!(
        update["before"],
        json!({"agentIdentity": "key", "agentServiceAccount": "podid-system/podid-agent", "nodeBinding": false})
    );
    assert_eq!(
        update["after"],
        json!({"agentIdentity": "token", "agentServiceAccount": "ops/node-agent", "nodeBinding": true})
    );
}
