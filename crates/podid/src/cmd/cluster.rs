//! `podid cluster …`: register, list, describe, update and deregister
//! clusters.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use podid_api::cluster::{
    Cluster, ClusterResponse, ListClustersResponse, RegisterClusterRequest, UpdateClusterRequest,
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
    /// Change a cluster's issuer, audience, ARN or keys.
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
}

impl ClusterSettings {
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
            // TODO(issue 14, server helper): --agent-identity, --node-binding, --token-review-*.
            ..UpdateClusterRequest::default()
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
                        c.cluster_arn.clone(),
                    ]
                })
                .collect();
            print_table(
                &["NAME", "ISSUER", "AUDIENCE", "KEYS", "CLUSTER ARN"],
                &rows,
            );
            Ok(())
        }
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
