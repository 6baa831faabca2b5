//! Several `podid agent` processes of one cluster in front of a `podid
//! server` (an [`StsBroker`]'s): the cluster registered with a key of the
//! test's own (so it mints pod and agent tokens), associations made and
//! changed through the signed API (`signed_call`), and agents started with the node key or
//! an identity token file, asked for credentials, `/readyz` and `/metrics`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use podid_token::dev::{DevAlgorithm, ProjectedToken, SigningKey};
use serde_json::{json, Value};

use crate::agent::{loopback_agent_args, AGENT_LISTENING, AGENT_METRICS, AGENT_PROBES};
use crate::keys::{aws_key_env, ADMIN, NODE};
use crate::podid::podid_binary;
use crate::process::ChildProcess;
use crate::signed::{signed_call, ApiAnswer};
use crate::sts_broker::StsBroker;
use crate::tokens::now_secs;
use crate::HarnessError;

/// A cluster registered by the test, with its signing key.
#[derive(Debug)]
pub struct FleetCluster {
    /// Its name.
    pub name: String,
    /// Its tokens' issuer.
    pub issuer: String,
    key: SigningKey,
}

impl FleetCluster {
    /// Registers `name` at `broker`'s server with a new RS256 key, its
    /// agents authenticating by `agent_identity` (`key` or `token`), and
    /// `extra` flags of `podid cluster register`.
    ///
    /// # Errors
    /// When the key cannot be made or the CLI fails.
    pub fn register(
        broker: &StsBroker,
        name: &str,
        agent_identity: &str,
        extra: &[&str],
    ) -> Result<FleetCluster, HarnessError> {
        let io = |what: &str, e: &dyn std::fmt::Display| HarnessError::Io {
            what: what.to_owned(),
            source: std::io::Error::other(e.to_string()),
        };
        let key = SigningKey::generate(DevAlgorithm::Rs256, &format!("{name}-1"))
            .map_err(|e| io("generating the cluster's key", &e))?;
        let jwks = broker.dir().join(format!("{name}-jwks.json"));
        std::fs::write(&jwks, key.jwks().to_string()).map_err(|e| io("writing the JWKS", &e))?;
        let issuer = format!("https://oidc.{name}.test");
        let jwks = jwks.display().to_string();
        let mut args = vec![
            "cluster",
            "register",
            "--name",
            name,
            "--issuer",
            &issuer,
            "--jwks-file",
            &jwks,
            "--agent-identity",
            agent_identity,
        ];
        args.extend(extra);
        broker.cli(&args)?;
        Ok(FleetCluster {
            name: name.to_owned(),
            issuer,
            key,
        })
    }

    /// A token of pod `pod` (uid `uid-{pod}`) of `namespace`/`service_account`
    /// on `node` (none: no node claim), valid a day, signed by the cluster's key.
    pub fn pod_token(
        &self,
        namespace: &str,
        service_account: &str,
        pod: &str,
        node: Option<&str>,
    ) -> String {
        let mut t = ProjectedToken::new(&self.issuer, namespace, service_account, now_secs() - 10);
        t.pod_name = pod.to_owned();
        t.pod_uid = format!("uid-{pod}");
        t.node_name = node.map(str::to_owned);
        t.sign(&self.key)
    }

    /// The agent's own token on `node`, as kubelet projects it for the
    /// default agent service account (podid-system/podid-agent, audience podid).
    pub fn agent_token(&self, node: &str) -> String {
        let mut t =
            ProjectedToken::new(&self.issuer, "podid-system", "podid-agent", now_secs() - 10);
        t.audience = vec!["podid".into()];
        t.node_name = Some(node.to_owned());
        t.pod_name = format!("podid-agent-{node}");
        t.expires_in_secs = 3600;
        t.sign(&self.key)
    }
}

/// The admin's signed call of `method path` with the JSON `body`.
async fn admin(endpoint: &str, method: &str, path: &str, body: &Value) -> ApiAnswer {
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let key = (ADMIN.access_key_id, ADMIN.secret_access_key);
    signed_call(endpoint, key, method, path, &body).await
}

/// Associates `namespace`/`service_account` of `cluster` with `role_arn`
/// at `endpoint`, as the admin; the association's id.
///
/// # Panics
/// When the server refuses.
pub async fn associate(
    endpoint: &str,
    cluster: &str,
    (namespace, service_account): (&str, &str),
    role_arn: &str,
) -> String {
    let body = json!({
        "namespace": namespace,
        "serviceAccount": service_account,
        "roleArn": role_arn,
    });
    let path = format!("/clusters/{cluster}/pod-identity-associations");
    let answer = admin(endpoint, "POST", &path, &body).await;
    assert_eq!(answer.status, 200, "create association: {answer:?}");
    answer.body["association"]["associationId"]
        .as_str()
        .expect("an association id")
        .to_owned()
}

/// Deletes association `id` of `cluster` at `endpoint`, as the admin.
///
/// # Panics
/// When the server refuses.
pub async fn delete_association(endpoint: &str, cluster: &str, id: &str) {
    let path = format!("/clusters/{cluster}/pod-identity-associations/{id}");
    let answer = admin(endpoint, "DELETE", &path, &Value::Null).await;
    assert_eq!(answer.status, 200, "delete association: {answer:?}");
}

/// Gives association `id` of `cluster` at `endpoint` the role `role_arn`, as the admin.
///
/// # Panics
/// When the server refuses.
pub async fn update_role(endpoint: &str, cluster: &str, id: &str, role_arn: &str) {
    let path = format!("/clusters/{cluster}/pod-identity-associations/{id}");
    let body = json!({ "roleArn": role_arn });
    let answer = admin(endpoint, "POST", &path, &body).await;
    assert_eq!(answer.status, 200, "update association: {answer:?}");
}

/// How an agent proves itself to the server.
#[derive(Debug, Clone, Copy)]
pub enum AgentProof<'a> {
    /// SigV4 with the node key ([`NODE`]).
    NodeKey,
    /// `--identity-token-file` with this file, and no AWS credentials at all.
    TokenFile(&'a Path),
}

/// A `podid agent` on 127.0.0.1 (port 0, per-client limit off), killed on drop.
#[derive(Debug)]
pub struct AgentProcess {
    process: ChildProcess,
    /// Its credential listener.
    pub addr: SocketAddr,
    /// Its probe listener.
    pub probes: SocketAddr,
    /// Its metrics listener.
    pub metrics: SocketAddr,
    http: reqwest::Client,
}

impl AgentProcess {
    /// Starts `podid agent` for `cluster` asking `endpoint`, proving itself
    /// by `proof`, with `extra` flags; waits (60 s at most) for its addresses.
    ///
    /// # Errors
    /// When it does not start or print its addresses in time.
    pub fn start(
        cluster: &str,
        endpoint: &str,
        proof: AgentProof<'_>,
        extra: &[&str],
    ) -> Result<AgentProcess, HarnessError> {
        let mut command = Command::new(podid_binary());
        command
            .arg("agent")
            .args(loopback_agent_args(cluster, endpoint))
            .args(["--client-rate-limit", "0"])
            .args(extra)
            .env("PODID_LOG", "info")
            .stdin(Stdio::null());
        // Only the node key, or no AWS credentials at all.
        for (name, value) in aws_key_env(NODE.access_key_id, NODE.secret_access_key) {
            let value = match proof {
                AgentProof::NodeKey => value,
                AgentProof::TokenFile(_) => {
                    value.filter(|_| !matches!(name, "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY"))
                }
            };
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        if let AgentProof::TokenFile(path) = proof {
            command.arg("--identity-token-file").arg(path);
        }
        let mut process = ChildProcess::spawn("podid agent", command, true)?;
        let lines = process.wait_for_lines(
            &[AGENT_LISTENING, AGENT_PROBES, AGENT_METRICS],
            Duration::from_secs(60),
        )?;
        let parse = |line: &String| {
            line.parse().map_err(|source| HarnessError::Address {
                what: "podid agent".into(),
                line: line.clone(),
                source,
            })
        };
        Ok(AgentProcess {
            addr: parse(&lines[0])?,
            probes: parse(&lines[1])?,
            metrics: parse(&lines[2])?,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
            process,
        })
    }

    /// Asks for credentials with `token`: the status and JSON body.
    pub async fn ask(&self, token: &str) -> (u16, Value) {
        let url = format!("http://{}/v1/credentials", self.addr);
        crate::agent::ask_credentials(&self.http, &url, token).await
    }

    /// `/readyz`'s JSON.
    ///
    /// # Panics
    /// When the agent does not answer.
    pub async fn readyz(&self) -> Value {
        let url = format!("http://{}/readyz", self.probes);
        let answer = self.http.get(url).send().await.expect("the agent answers");
        answer.json().await.unwrap_or(Value::Null)
    }

    /// The sum of the `/metrics` samples whose line starts with `name`.
    ///
    /// # Panics
    /// When the agent does not answer.
    pub async fn metric(&self, name: &str) -> f64 {
        let url = format!("http://{}/metrics", self.metrics);
        let text = self
            .http
            .get(url)
            .send()
            .await
            .expect("the agent answers")
            .text()
            .await
            .unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }
}
