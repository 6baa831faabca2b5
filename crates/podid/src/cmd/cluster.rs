//! `podid cluster …`: register, list, describe, update and deregister
//! clusters.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use podid_api::cluster::{
    AgentIdentity, Cluster, ClusterResponse, ListClustersResponse, RegisterClusterRequest,
    TokenReviewRequest, UpdateClusterRequest,
};
use podid_client::segment;
use reqwest::Method;

use super::connection::{print_json, print_table, Connection, OutputFormat};

/// `podid cluster …`
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Register a cluster: its token issuer and signing keys.
    Register(ClusterChange),
    /// List registered clusters.
    List {
        #[command(flatten)]
        conn: Connection,
    },
    /// Show one cluster.
    Describe {
        #[command(flatten)]
        conn: Connection,
        /// The cluster.
        #[arg(long)]
        name: String,
    },
    /// Change a cluster's issuer, audience, ARN, keys or agent settings.
    Update(ClusterChange),
    /// Deregister a cluster.
    Deregister {
        #[command(flatten)]
        conn: Connection,
        /// The cluster.
        #[arg(long)]
        name: String,
        /// Also delete the cluster's associations.
        #[arg(long)]
        force: bool,
    },
}

/// The cluster a registration or update names, and its settings.
#[derive(Debug, Args)]
pub struct ClusterChange {
    #[command(flatten)]
    conn: Connection,
    /// Cluster name, as associations name it.
    #[arg(long)]
    name: String,
    #[command(flatten)]
    settings: ClusterSettings,
}

/// Settings of a cluster registration.
#[derive(Debug, Args)]
pub struct ClusterSettings {
    /// The `iss` of the cluster's service-account tokens.
    #[arg(long)]
    issuer: Option<String>,
    /// Audience the broker accepts (default pods.eks.amazonaws.com).
    #[arg(long)]
    audience: Option<String>,
    /// Cluster ARN for the eks-cluster-arn session tag.
    #[arg(long)]
    cluster_arn: Option<String>,
    /// A JWKS file, read now and sent inline.
    #[arg(long, conflicts_with_all = ["jwks_uri", "discovery"])]
    jwks_file: Option<PathBuf>,
    /// A JWKS URL the server fetches.
    #[arg(long, conflicts_with = "discovery")]
    jwks_uri: Option<String>,
    /// Let the server find the keys through the issuer's OpenID discovery document.
    #[arg(long)]
    discovery: bool,
    /// How the cluster's agents authenticate: `key` (a SigV4 node key, the
    /// default) or `token` (their own service-account token, audience podid).
    #[arg(long, value_name = "key|token", value_parser = parse_agent_identity)]
    agent_identity: Option<AgentIdentity>,
    /// The agents' service account, NAMESPACE/NAME (default podid-system/podid-agent).
    #[arg(long, value_name = "NS/NAME")]
    agent_service_account: Option<String>,
    /// Serve a pod only through its own node's agent (token identity only;
    /// default true there).
    #[arg(long, value_name = "true|false")]
    node_binding: Option<bool>,
    /// Ask this API server (https://…) with TokenReview before issuing
    /// credentials for a pod token (a deleted pod's token is then refused).
    #[arg(long, value_name = "URL", requires = "token_review_token_file")]
    token_review_url: Option<String>,
    /// PEM file of the API server's CA (default: the system roots).
    #[arg(long, value_name = "FILE", requires = "token_review_url")]
    token_review_ca_file: Option<PathBuf>,
    /// File holding a bearer token that may create tokenreviews (ClusterRole
    /// system:auth-delegator); sent to the server, never shown again.
    #[arg(long, value_name = "FILE", requires = "token_review_url")]
    token_review_token_file: Option<PathBuf>,
    /// Stop asking the cluster's API server (update only).
    #[arg(long, conflicts_with = "token_review_url")]
    disable_token_review: bool,
}

/// Reads a file the user named, saying which on failure.
fn read_text(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn parse_agent_identity(value: &str) -> Result<AgentIdentity, String> {
    AgentIdentity::parse(value).ok_or_else(|| format!("'{value}' is not key or token"))
}

impl ClusterSettings {
    /// `tokenReview` from the flags (the CA and token files read now).
    fn token_review(&self) -> anyhow::Result<Option<TokenReviewRequest>> {
        let Some(url) = &self.token_review_url else {
            return Ok(None);
        };
        let token = match &self.token_review_token_file {
            Some(path) => Some(read_text(path)?.trim().to_owned()),
            None => None,
        };
        Ok(Some(TokenReviewRequest {
            api_server_url: Some(url.clone()),
            ca_pem: self
                .token_review_ca_file
                .as_deref()
                .map(read_text)
                .transpose()?,
            token,
        }))
    }

    fn jwks(&self) -> anyhow::Result<Option<serde_json::Value>> {
        let Some(path) = &self.jwks_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let doc = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        Ok(Some(doc))
    }

    /// The settings as the API's fields to change (the JWKS file read).
    fn request(&self) -> anyhow::Result<UpdateClusterRequest> {
        Ok(UpdateClusterRequest {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            cluster_arn: self.cluster_arn.clone(),
            jwks: self.jwks()?,
            jwks_uri: self.jwks_uri.clone(),
            discovery: self.discovery.then_some(true),
            agent_identity: self.agent_identity,
            agent_service_account: self.agent_service_account.clone(),
            node_binding: self.node_binding,
            token_review: self.token_review()?,
            disable_token_review: self.disable_token_review.then_some(true),
        })
    }
}

/// The registration of `name`: the settings' fields and the name.
fn registration(name: String, settings: UpdateClusterRequest) -> RegisterClusterRequest {
    RegisterClusterRequest {
        name: Some(name),
        issuer: settings.issuer,
        audience: settings.audience,
        cluster_arn: settings.cluster_arn,
        jwks: settings.jwks,
        jwks_uri: settings.jwks_uri,
        discovery: settings.discovery,
        agent_identity: settings.agent_identity,
        agent_service_account: settings.agent_service_account,
        node_binding: settings.node_binding,
        token_review: settings.token_review,
    }
}

fn print_clusters(output: OutputFormat, clusters: &[Cluster]) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json => print_json(&ListClustersResponse {
            clusters: clusters.to_vec(),
        }),
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = clusters
                .iter()
                .map(|c| {
                    let keys = c
                        .jwks
                        .get("keys")
                        .and_then(|k| k.as_array())
                        .map_or(0, Vec::len);
                    vec![
                        c.name.clone(),
                        c.issuer.clone(),
                        c.audience.clone(),
                        format!("{} ({keys} keys)", c.key_source.as_str()),
                        agents_column(c),
                        if c.node_binding { "on" } else { "off" }.to_owned(),
                        c.cluster_arn.clone(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "NAME",
                    "ISSUER",
                    "AUDIENCE",
                    "KEYS",
                    "AGENTS",
                    "NODE BINDING",
                    "CLUSTER ARN",
                ],
                &rows,
            );
            Ok(())
        }
    }
}

/// How the agents authenticate: `key`, or `token NS/NAME`.
fn agents_column(c: &Cluster) -> String {
    match c.agent_identity {
        AgentIdentity::Key => AgentIdentity::Key.as_str().to_owned(),
        AgentIdentity::Token => format!(
            "{} {}",
            AgentIdentity::Token.as_str(),
            c.agent_service_account
        ),
    }
}

fn print_cluster(output: OutputFormat, cluster: Cluster) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json => print_json(&ClusterResponse { cluster }),
        OutputFormat::Table => print_clusters(output, &[cluster]),
    }
}

fn cluster_path(name: &str) -> String {
    format!("/podid/v1/clusters/{}", segment(name))
}

/// Runs `podid cluster …`.
pub async fn run(cmd: ClusterCommand) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Register(ClusterChange {
            conn,
            name,
            settings,
        }) => {
            if settings.jwks_file.is_none() && settings.jwks_uri.is_none() && !settings.discovery {
                bail!("give the cluster's keys: --jwks-file, --jwks-uri or --discovery");
            }
            if settings.disable_token_review {
                bail!(
                    "--disable-token-review is for update: a new cluster asks no API server \
                     unless --token-review-url is given"
                );
            }
            let request = registration(name, settings.request()?);
            let body = serde_json::to_value(&request)?;
            let path = "/podid/v1/clusters";
            let out: ClusterResponse = conn.call(Method::POST, path, &[], Some(body)).await?;
            print_cluster(conn.output, out.cluster)
        }
        ClusterCommand::List { conn } => {
            let out: ListClustersResponse = conn
                .call(Method::GET, "/podid/v1/clusters", &[], None)
                .await?;
            print_clusters(conn.output, &out.clusters)
        }
        ClusterCommand::Describe { conn, name } => {
            let path = cluster_path(&name);
            let out: ClusterResponse = conn.call(Method::GET, &path, &[], None).await?;
            print_cluster(conn.output, out.cluster)
        }
        ClusterCommand::Update(ClusterChange {
            conn,
            name,
            settings,
        }) => {
            let body = serde_json::to_value(settings.request()?)?;
            let path = cluster_path(&name);
            let out: ClusterResponse = conn.call(Method::PATCH, &path, &[], Some(body)).await?;
            print_cluster(conn.output, out.cluster)
        }
        ClusterCommand::Deregister { conn, name, force } => {
            let query = if force {
                vec![("force", "true".to_owned())]
            } else {
                vec![]
            };
            let path = cluster_path(&name);
            let out: ClusterResponse = conn.call(Method::DELETE, &path, &query, None).await?;
            match conn.output {
                OutputFormat::Json => print_json(&out),
                OutputFormat::Table => {
                    println!("deregistered {}", out.cluster.name);
                    Ok(())
                }
            }
        }
    }
}
