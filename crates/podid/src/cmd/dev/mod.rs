//! `podid dev`: DEVELOPMENT TOOLS — a stand-in cluster (signing key, JWKS, issuer)
//! and tokens shaped like projected service-account tokens. Never use these keys for real.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use podid_api::cluster::{
    ClusterResponse, RegisterClusterRequest, AGENT_AUDIENCE, DEFAULT_AGENT_SERVICE_ACCOUNT,
};
use podid_token::dev::{DevAlgorithm, ProjectedToken, SigningKey};
use serde::{Deserialize, Serialize};

use super::connection::Connection;

pub mod apiserver;
pub mod kubelet;
// The stand-ins share it; what one of them does not call yet is not dead.
#[allow(dead_code)]
pub mod pods_file;
mod stand_in;

/// `podid dev …`
#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// Create a local test cluster: signing key, JWKS, issuer; optionally register it.
    #[command(subcommand)]
    Cluster(DevClusterCommand),
    /// Mint a projected-style service-account token signed by a test cluster's key.
    Token(TokenArgs),
    /// STAND-IN for tests, not a Kubernetes API server: answers TokenReview
    /// (POST /apis/authentication.k8s.io/v1/tokenreviews) for tokens signed by a
    /// test cluster's key whose pod is in a PodList file.
    Apiserver(apiserver::ApiServerArgs),
    /// STAND-IN for tests, not a kubelet: answers GET /pods (the kubelet's pod
    /// listing) with a PodList file, to callers sending a token file's bearer token.
    Kubelet(kubelet::KubeletArgs),
}

/// `podid dev cluster …`
#[derive(Debug, Subcommand)]
pub enum DevClusterCommand {
    /// Write DIR/signing-key.pem, DIR/jwks.json and DIR/cluster.json.
    Create(CreateArgs),
}

/// Flags of `podid dev cluster create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Cluster name.
    #[arg(long)]
    name: String,
    /// Directory for the key material (created; an existing cluster there is kept).
    #[arg(long)]
    dir: PathBuf,
    /// Token issuer (default https://oidc.podid.test/NAME).
    #[arg(long)]
    issuer: Option<String>,
    /// Signing algorithm: RS256, ES256 or ES384.
    #[arg(long, default_value = "RS256")]
    alg: String,
    /// Also register the cluster with the server at --endpoint.
    #[arg(long)]
    register: bool,
    #[command(flatten)]
    conn: Connection,
}

/// Flags of `podid dev token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// A directory made by `podid dev cluster create`.
    #[arg(long)]
    cluster_dir: PathBuf,
    /// Namespace (with --agent: the agent's, podid-system).
    #[arg(long, required_unless_present = "agent")]
    namespace: Option<String>,
    /// Service account (with --agent: the agent's, podid-agent).
    #[arg(long, required_unless_present = "agent")]
    service_account: Option<String>,
    /// Pod name (default SERVICE_ACCOUNT-pod).
    #[arg(long)]
    pod_name: Option<String>,
    /// Pod uid (default random).
    #[arg(long)]
    pod_uid: Option<String>,
    /// Node name.
    #[arg(long, default_value = "node-1", conflicts_with = "no_node")]
    node_name: String,
    /// No `kubernetes.io.node` claim (a token of a Kubernetes older than 1.30, or a forgery).
    #[arg(long)]
    no_node: bool,
    /// An agent's identity token: the default agent service account
    /// (podid-system/podid-agent) and audience `podid`, unless given.
    #[arg(long)]
    agent: bool,
    /// Audience (default pods.eks.amazonaws.com; with --agent, podid).
    #[arg(long)]
    audience: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 86_400)]
    expires_in: i64,
    /// Issue time, epoch seconds (default now; set it to mint expired or future tokens).
    #[arg(long, allow_hyphen_values = true)]
    issued_at: Option<i64>,
}

/// What `podid dev cluster create` records about a test cluster.
#[derive(Debug, Serialize, Deserialize)]
pub struct DevCluster {
    name: String,
    issuer: String,
    alg: String,
    kid: String,
}

fn read_cluster(dir: &Path) -> anyhow::Result<(DevCluster, SigningKey)> {
    let meta: DevCluster = serde_json::from_str(
        &std::fs::read_to_string(dir.join("cluster.json")).with_context(|| {
            format!(
                "{} is not a test cluster directory (no cluster.json)",
                dir.display()
            )
        })?,
    )
    .context("cluster.json is not valid")?;
    let alg = DevAlgorithm::parse(&meta.alg).context("cluster.json names an unknown algorithm")?;
    let pem = std::fs::read_to_string(dir.join("signing-key.pem"))
        .context("cannot read signing-key.pem")?;
    let key = SigningKey::from_pkcs8_pem(&pem, alg, &meta.kid)
        .context("signing-key.pem is not a usable key")?;
    Ok((meta, key))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Runs `podid dev …`.
pub async fn run(cmd: DevCommand) -> anyhow::Result<()> {
    match cmd {
        DevCommand::Cluster(DevClusterCommand::Create(args)) => {
            podid_api::validate::cluster_name(&args.name)
                .map_err(|e| anyhow::anyhow!(e.message))?;
            std::fs::create_dir_all(&args.dir)
                .with_context(|| format!("cannot create {}", args.dir.display()))?;
            let (meta, key) = if args.dir.join("cluster.json").exists() {
                let (meta, key) = read_cluster(&args.dir)?;
                if meta.name != args.name {
                    bail!(
                        "{} already holds test cluster '{}'",
                        args.dir.display(),
                        meta.name
                    );
                }
                (meta, key)
            } else {
                let alg = DevAlgorithm::parse(&args.alg)
                    .context("--alg must be RS256, ES256 or ES384")?;
                let kid = format!("{}-{}", args.name, &uuid_like()[..8]);
                let key =
                    SigningKey::generate(alg, &kid).context("cannot generate a signing key")?;
                let meta = DevCluster {
                    name: args.name.clone(),
                    issuer: args
                        .issuer
                        .clone()
                        .unwrap_or_else(|| format!("https://oidc.podid.test/{}", args.name)),
                    alg: alg.as_str().to_owned(),
                    kid,
                };
                write_private(&args.dir.join("signing-key.pem"), &key.to_pkcs8_pem()?)?;
                std::fs::write(
                    args.dir.join("jwks.json"),
                    serde_json::to_string_pretty(&key.jwks())?,
                )?;
                std::fs::write(
                    args.dir.join("cluster.json"),
                    serde_json::to_string_pretty(&meta)?,
                )?;
                (meta, key)
            };
            eprintln!(
                "test cluster '{}' (DEVELOPMENT ONLY) in {}",
                meta.name,
                args.dir.display()
            );
            eprintln!("  issuer: {}", meta.issuer);
            eprintln!("  key:    {} ({})", meta.kid, meta.alg);
            if args.register {
                let client = args.conn.client().await?;
                let request = RegisterClusterRequest {
                    name: Some(meta.name.clone()),
                    issuer: Some(meta.issuer.clone()),
                    jwks: Some(key.jwks()),
                    ..Default::default()
                };
                let out: ClusterResponse = client
                    .call(
                        reqwest::Method::POST,
                        "/podid/v1/clusters",
                        &[],
                        Some(&serde_json::to_value(&request)?),
                    )
                    .await?;
                eprintln!("  registered as {}", out.cluster.cluster_arn);
            }
            println!("{}", serde_json::to_string(&meta)?);
            Ok(())
        }
        DevCommand::Apiserver(args) => apiserver::run(args).await,
        DevCommand::Kubelet(args) => kubelet::run(args).await,
        DevCommand::Token(args) => {
            let (meta, key) = read_cluster(&args.cluster_dir)?;
            let (agent_namespace, agent_account) = DEFAULT_AGENT_SERVICE_ACCOUNT
                .split_once('/')
                .unwrap_or(("podid-system", "podid-agent"));
            let (namespace, service_account) = match (args.namespace, args.service_account) {
                (Some(ns), Some(sa)) => (ns, sa),
                (ns, sa) if args.agent => (
                    ns.unwrap_or_else(|| agent_namespace.to_owned()),
                    sa.unwrap_or_else(|| agent_account.to_owned()),
                ),
                _ => bail!("give --namespace and --service-account (or --agent)"),
            };
            let mut token = ProjectedToken::new(
                meta.issuer,
                namespace,
                service_account,
                args.issued_at.unwrap_or_else(now),
            );
            if let Some(pod) = args.pod_name {
                token.pod_name = pod;
            }
            if let Some(uid) = args.pod_uid {
                token.pod_uid = uid;
            }
            token.node_name = (!args.no_node).then_some(args.node_name);
            if let Some(aud) = args.audience {
                token.audience = vec![aud];
            } else if args.agent {
                token.audience = vec![AGENT_AUDIENCE.to_owned()];
            }
            token.expires_in_secs = args.expires_in;
            println!("{}", token.sign(&key));
            Ok(())
        }
    }
}

fn uuid_like() -> String {
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}
