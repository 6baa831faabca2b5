//! The command-line verbs: `podid association …`, `podid cluster …`,
//! `podid trust-policy`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use podid_api::association::{
    AssociationResponse, CreateAssociationRequest, ListAssociationsResponse,
    PodIdentityAssociation, UpdateAssociationRequest,
};
use podid_api::cluster::{
    Cluster, ClusterResponse, ListClustersResponse, RegisterClusterRequest, UpdateClusterRequest,
};
use reqwest::Method;
use serde::Serialize;

use podid_client::{segment, ApiClient};

/// How results are printed.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// The API's JSON, for scripts.
    Json,
}

/// Where the server is and how to print.
#[derive(Debug, Args)]
pub struct Connection {
    /// The podid server, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "PODID_ENDPOINT", global = true)]
    endpoint: Option<String>,
    /// Region used in request signatures.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1", global = true)]
    region: String,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table", global = true)]
    output: Output,
}

impl Connection {
    pub(crate) async fn client(&self) -> anyhow::Result<ApiClient> {
        let endpoint = self
            .endpoint
            .as_deref()
            .context("no server given: pass --endpoint URL or set PODID_ENDPOINT")?;
        Ok(ApiClient::from_environment(endpoint, &self.region).await?)
    }
}

/// `podid association …`
#[derive(Debug, Subcommand)]
pub enum AssociationCommand {
    /// Map a service account of a cluster to an IAM role.
    Create {
        #[command(flatten)]
        conn: Connection,
        /// The registered cluster.
        #[arg(long)]
        cluster_name: String,
        /// Kubernetes namespace.
        #[arg(long)]
        namespace: String,
        /// Kubernetes service account.
        #[arg(long)]
        service_account: String,
        /// IAM role the pods get credentials for.
        #[arg(long)]
        role_arn: String,
        /// Role to chain into with the first role's credentials.
        #[arg(long)]
        target_role_arn: Option<String>,
        /// Leave the session tags off the credentials.
        #[arg(long)]
        disable_session_tags: bool,
        /// Inline session policy (JSON, or @FILE); needs --disable-session-tags.
        #[arg(long)]
        policy: Option<String>,
        /// Tag as KEY=VALUE; repeatable.
        #[arg(long = "tag", value_parser = parse_tag)]
        tags: Vec<(String, String)>,
        /// Idempotency token.
        #[arg(long)]
        client_request_token: Option<String>,
    },
    /// Show one association.
    Describe {
        #[command(flatten)]
        conn: Connection,
        /// The cluster.
        #[arg(long)]
        cluster_name: String,
        /// The association id (a-…).
        #[arg(long)]
        association_id: String,
    },
    /// List a cluster's associations (every page).
    List {
        #[command(flatten)]
        conn: Connection,
        /// The cluster.
        #[arg(long)]
        cluster_name: String,
        /// Only this namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Only this service account.
        #[arg(long)]
        service_account: Option<String>,
    },
    /// Change an association's role, target role or session tags.
    Update {
        #[command(flatten)]
        conn: Connection,
        /// The cluster.
        #[arg(long)]
        cluster_name: String,
        /// The association id.
        #[arg(long)]
        association_id: String,
        /// New role.
        #[arg(long)]
        role_arn: Option<String>,
        /// New target role; "" removes it.
        #[arg(long)]
        target_role_arn: Option<String>,
        /// New session-tags setting.
        #[arg(long)]
        disable_session_tags: Option<bool>,
        /// New session policy (JSON or @FILE); "" removes it.
        #[arg(long)]
        policy: Option<String>,
        /// Idempotency token.
        #[arg(long)]
        client_request_token: Option<String>,
    },
    /// Delete an association; its pods lose their credentials at their next refresh.
    Delete {
        #[command(flatten)]
        conn: Connection,
        /// The cluster.
        #[arg(long)]
        cluster_name: String,
        /// The association id.
        #[arg(long)]
        association_id: String,
    },
}

/// `podid cluster …`
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Register a cluster: its token issuer and signing keys.
    Register {
        #[command(flatten)]
        conn: Connection,
        /// Cluster name, as associations name it.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        settings: ClusterSettings,
    },
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
    Update {
        #[command(flatten)]
        conn: Connection,
        /// The cluster.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        settings: ClusterSettings,
    },
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
}

/// `podid trust-policy`.
#[derive(Debug, Args)]
pub struct TrustPolicyArgs {
    /// The broker's principal: the IAM role or user podid's server runs as.
    #[arg(long)]
    broker_principal: String,
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("'{s}' is not KEY=VALUE"))
}

fn read_policy(value: Option<String>) -> anyhow::Result<Option<String>> {
    match value {
        Some(v) if v.starts_with('@') => {
            let path = &v[1..];
            Ok(Some(std::fs::read_to_string(path).with_context(|| {
                format!("cannot read policy file {path}")
            })?))
        }
        other => Ok(other),
    }
}

fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints rows as aligned columns under a header.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

fn print_association(output: Output, a: &PodIdentityAssociation) -> anyhow::Result<()> {
    match output {
        Output::Json => print_json(&AssociationResponse {
            association: a.clone(),
        }),
        Output::Table => {
            let tags = a
                .tags
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            let rows = [
                ("ASSOCIATION ID", a.association_id.clone()),
                ("ASSOCIATION ARN", a.association_arn.clone()),
                ("CLUSTER", a.cluster_name.clone()),
                ("NAMESPACE", a.namespace.clone()),
                ("SERVICE ACCOUNT", a.service_account.clone()),
                ("ROLE ARN", a.role_arn.clone()),
                (
                    "TARGET ROLE ARN",
                    a.target_role_arn.clone().unwrap_or_else(|| "-".into()),
                ),
                (
                    "EXTERNAL ID",
                    a.external_id.clone().unwrap_or_else(|| "-".into()),
                ),
                (
                    "SESSION TAGS",
                    if a.disable_session_tags {
                        "disabled"
                    } else {
                        "enabled"
                    }
                    .into(),
                ),
                ("POLICY", a.policy.clone().unwrap_or_else(|| "-".into())),
                ("TAGS", if tags.is_empty() { "-".into() } else { tags }),
                ("CREATED", format_time(a.created_at.seconds())),
                ("MODIFIED", format_time(a.modified_at.seconds())),
            ];
            for (k, v) in rows {
                println!("{k:<16} {v}");
            }
            Ok(())
        }
    }
}

fn format_time(seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| seconds.to_string())
}

fn association_path(cluster: &str, id: Option<&str>) -> String {
    match id {
        Some(id) => format!(
            "/clusters/{}/pod-identity-associations/{}",
            segment(cluster),
            segment(id)
        ),
        None => format!("/clusters/{}/pod-identity-associations", segment(cluster)),
    }
}

/// Runs `podid association …`.
pub async fn association(cmd: AssociationCommand) -> anyhow::Result<()> {
    match cmd {
        AssociationCommand::Create {
            conn,
            cluster_name,
            namespace,
            service_account,
            role_arn,
            target_role_arn,
            disable_session_tags,
            policy,
            tags,
            client_request_token,
        } => {
            let request = CreateAssociationRequest {
                namespace: Some(namespace),
                service_account: Some(service_account),
                role_arn: Some(role_arn),
                client_request_token,
                tags: (!tags.is_empty()).then(|| tags.into_iter().collect::<BTreeMap<_, _>>()),
                disable_session_tags: disable_session_tags.then_some(true),
                target_role_arn,
                policy: read_policy(policy)?,
            };
            let client = conn.client().await?;
            let body = serde_json::to_value(&request)?;
            let out: AssociationResponse = client
                .call(
                    Method::POST,
                    &association_path(&cluster_name, None),
                    &[],
                    Some(&body),
                )
                .await?;
            print_association(conn.output, &out.association)
        }
        AssociationCommand::Describe {
            conn,
            cluster_name,
            association_id,
        } => {
            let client = conn.client().await?;
            let out: AssociationResponse = client
                .call(
                    Method::GET,
                    &association_path(&cluster_name, Some(&association_id)),
                    &[],
                    None,
                )
                .await?;
            print_association(conn.output, &out.association)
        }
        AssociationCommand::List {
            conn,
            cluster_name,
            namespace,
            service_account,
        } => {
            let client = conn.client().await?;
            let mut all = Vec::new();
            let mut next: Option<String> = None;
            loop {
                let mut query: Vec<(&str, String)> = vec![("maxResults", "100".to_owned())];
                if let Some(ns) = &namespace {
                    query.push(("namespace", ns.clone()));
                }
                if let Some(sa) = &service_account {
                    query.push(("serviceAccount", sa.clone()));
                }
                if let Some(token) = &next {
                    query.push(("nextToken", token.clone()));
                }
                let page: ListAssociationsResponse = client
                    .call(
                        Method::GET,
                        &association_path(&cluster_name, None),
                        &query,
                        None,
                    )
                    .await?;
                all.extend(page.associations);
                match page.next_token {
                    Some(token) => next = Some(token),
                    None => break,
                }
            }
            match conn.output {
                Output::Json => print_json(&ListAssociationsResponse {
                    associations: all,
                    next_token: None,
                }),
                Output::Table => {
                    let rows: Vec<Vec<String>> = all
                        .iter()
                        .map(|s| {
                            vec![
                                s.association_id.clone(),
                                s.cluster_name.clone(),
                                s.namespace.clone(),
                                s.service_account.clone(),
                            ]
                        })
                        .collect();
                    print_table(
                        &["ASSOCIATION ID", "CLUSTER", "NAMESPACE", "SERVICE ACCOUNT"],
                        &rows,
                    );
                    Ok(())
                }
            }
        }
        AssociationCommand::Update {
            conn,
            cluster_name,
            association_id,
            role_arn,
            target_role_arn,
            disable_session_tags,
            policy,
            client_request_token,
        } => {
            let request = UpdateAssociationRequest {
                role_arn,
                client_request_token,
                disable_session_tags,
                target_role_arn,
                policy: read_policy(policy)?,
            };
            let client = conn.client().await?;
            let body = serde_json::to_value(&request)?;
            let out: AssociationResponse = client
                .call(
                    Method::POST,
                    &association_path(&cluster_name, Some(&association_id)),
                    &[],
                    Some(&body),
                )
                .await?;
            print_association(conn.output, &out.association)
        }
        AssociationCommand::Delete {
            conn,
            cluster_name,
            association_id,
        } => {
            let client = conn.client().await?;
            let out: AssociationResponse = client
                .call(
                    Method::DELETE,
                    &association_path(&cluster_name, Some(&association_id)),
                    &[],
                    None,
                )
                .await?;
            match conn.output {
                Output::Json => print_json(&out),
                Output::Table => {
                    println!(
                        "deleted {} ({}/{})",
                        out.association.association_id,
                        out.association.namespace,
                        out.association.service_account
                    );
                    Ok(())
                }
            }
        }
    }
}

fn print_clusters(output: Output, clusters: &[Cluster]) -> anyhow::Result<()> {
    match output {
        Output::Json => print_json(&ListClustersResponse {
            clusters: clusters.to_vec(),
        }),
        Output::Table => {
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

fn print_cluster(output: Output, cluster: Cluster) -> anyhow::Result<()> {
    match output {
        Output::Json => print_json(&ClusterResponse { cluster }),
        Output::Table => print_clusters(output, &[cluster]),
    }
}

/// Runs `podid cluster …`.
pub async fn cluster(cmd: ClusterCommand) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Register {
            conn,
            name,
            settings,
        } => {
            if settings.jwks_file.is_none() && settings.jwks_uri.is_none() && !settings.discovery {
                bail!("give the cluster's keys: --jwks-file, --jwks-uri or --discovery");
            }
            let request = RegisterClusterRequest {
                name: Some(name),
                issuer: settings.issuer.clone(),
                audience: settings.audience.clone(),
                cluster_arn: settings.cluster_arn.clone(),
                jwks: settings.jwks()?,
                jwks_uri: settings.jwks_uri.clone(),
                discovery: settings.discovery.then_some(true),
            };
            let client = conn.client().await?;
            let out: ClusterResponse = client
                .call(
                    Method::POST,
                    "/podid/v1/clusters",
                    &[],
                    Some(&serde_json::to_value(&request)?),
                )
                .await?;
            print_cluster(conn.output, out.cluster)
        }
        ClusterCommand::List { conn } => {
            let client = conn.client().await?;
            let out: ListClustersResponse = client
                .call(Method::GET, "/podid/v1/clusters", &[], None)
                .await?;
            print_clusters(conn.output, &out.clusters)
        }
        ClusterCommand::Describe { conn, name } => {
            let client = conn.client().await?;
            let out: ClusterResponse = client
                .call(
                    Method::GET,
                    &format!("/podid/v1/clusters/{}", segment(&name)),
                    &[],
                    None,
                )
                .await?;
            print_cluster(conn.output, out.cluster)
        }
        ClusterCommand::Update {
            conn,
            name,
            settings,
        } => {
            let request = UpdateClusterRequest {
                issuer: settings.issuer.clone(),
                audience: settings.audience.clone(),
                cluster_arn: settings.cluster_arn.clone(),
                jwks: settings.jwks()?,
                jwks_uri: settings.jwks_uri.clone(),
                discovery: settings.discovery.then_some(true),
            };
            let client = conn.client().await?;
            let out: ClusterResponse = client
                .call(
                    Method::PATCH,
                    &format!("/podid/v1/clusters/{}", segment(&name)),
                    &[],
                    Some(&serde_json::to_value(&request)?),
                )
                .await?;
            print_cluster(conn.output, out.cluster)
        }
        ClusterCommand::Deregister { conn, name, force } => {
            let client = conn.client().await?;
            let query = if force {
                vec![("force", "true".to_owned())]
            } else {
                vec![]
            };
            let out: ClusterResponse = client
                .call(
                    Method::DELETE,
                    &format!("/podid/v1/clusters/{}", segment(&name)),
                    &query,
                    None,
                )
                .await?;
            match conn.output {
                Output::Json => print_json(&out),
                Output::Table => {
                    println!("deregistered {}", out.cluster.name);
                    Ok(())
                }
            }
        }
    }
}

/// The trust policy a target role needs: the broker may assume it and tag the
/// session. Printed once; it never changes as clusters come and go.
pub fn trust_policy_document(broker_principal: &str) -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "PodidBroker",
            "Effect": "Allow",
            "Principal": {"AWS": broker_principal},
            "Action": ["sts:AssumeRole", "sts:TagSession"]
        }]
    })
}

/// Runs `podid trust-policy`.
pub fn trust_policy(args: &TrustPolicyArgs) -> anyhow::Result<()> {
    let p = &args.broker_principal;
    let ok = p.starts_with("arn:")
        && (p.contains(":iam::") || p.contains(":sts::"))
        && p.split(':').count() == 6;
    if !ok {
        bail!("--broker-principal must be an IAM role or user ARN, e.g. arn:aws:iam::123456789012:role/podid-broker");
    }
    print_json(&trust_policy_document(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_policy_names_the_broker_and_both_actions() {
        let doc = trust_policy_document("arn:aws:iam::123456789012:role/podid-broker");
        assert_eq!(
            doc["Statement"][0]["Principal"]["AWS"],
            "arn:aws:iam::123456789012:role/podid-broker"
        );
        assert_eq!(
            doc["Statement"][0]["Action"],
            serde_json::json!(["sts:AssumeRole", "sts:TagSession"])
        );
    }

    #[test]
    fn tags_parse() {
        assert_eq!(
            parse_tag("team=ml=x").unwrap(),
            ("team".into(), "ml=x".into())
        );
        assert!(parse_tag("nope").is_err());
    }
}

/// `podid audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List the broker's decisions, newest first.
    List {
        #[command(flatten)]
        conn: Connection,
        /// Only this cluster.
        #[arg(long)]
        cluster_name: Option<String>,
        /// Only this namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Only this service account.
        #[arg(long)]
        service_account: Option<String>,
        /// Only this outcome: issued, denied or failed.
        #[arg(long)]
        outcome: Option<String>,
        /// Only events since: a duration back from now (30s, 15m, 2h, 7d),
        /// an RFC 3339 time, or epoch seconds.
        #[arg(long)]
        since: Option<String>,
        /// At most this many events (newest first).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// Parses `--since`: `15m`-style durations back from now, RFC 3339, or epoch seconds.
pub fn parse_since(value: &str, now: i64) -> anyhow::Result<i64> {
    if let Ok(secs) = value.parse::<i64>() {
        return Ok(secs);
    }
    if let Some((digits, unit)) = value.char_indices().last().map(|(i, c)| (&value[..i], c)) {
        if let Ok(n) = digits.parse::<i64>() {
            let mult = match unit {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                _ => bail!("--since '{value}': unknown unit '{unit}' (use s, m, h or d)"),
            };
            return Ok(now - n * mult);
        }
    }
    let t = time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            anyhow::anyhow!(
                "--since '{value}' is not a duration (15m), an RFC 3339 time or epoch seconds"
            )
        })?;
    Ok(t.unix_timestamp())
}

/// Runs `podid audit …`.
pub async fn audit(cmd: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::List {
        conn,
        cluster_name,
        namespace,
        service_account,
        outcome,
        since,
        limit,
    } = cmd;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut query: Vec<(&str, String)> = Vec::new();
    if let Some(v) = cluster_name {
        query.push(("cluster", v));
    }
    if let Some(v) = namespace {
        query.push(("namespace", v));
    }
    if let Some(v) = service_account {
        query.push(("serviceAccount", v));
    }
    if let Some(v) = outcome {
        query.push(("outcome", v));
    }
    if let Some(v) = since {
        query.push(("since", parse_since(&v, now)?.to_string()));
    }
    let client = conn.client().await?;
    let mut events = Vec::new();
    let mut next: Option<String> = None;
    while events.len() < limit {
        let mut q = query.clone();
        q.push(("maxResults", (limit - events.len()).min(100).to_string()));
        if let Some(t) = &next {
            q.push(("nextToken", t.clone()));
        }
        let page: podid_api::audit::ListAuditResponse = client
            .call(Method::GET, "/podid/v1/audit", &q, None)
            .await?;
        events.extend(page.events);
        match page.next_token {
            Some(t) => next = Some(t),
            None => break,
        }
    }
    match conn.output {
        Output::Json => print_json(&podid_api::audit::ListAuditResponse {
            events,
            next_token: None,
        }),
        Output::Table => {
            let rows: Vec<Vec<String>> = events
                .iter()
                .map(|e| {
                    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                    vec![
                        format_time(e.time.seconds()),
                        e.outcome.as_str().to_owned(),
                        e.cluster.clone(),
                        format!("{}/{}", dash(&e.namespace), dash(&e.service_account)),
                        dash(&e.pod_name),
                        dash(&e.association_id),
                        dash(&e.error_code),
                        e.caller.clone(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "TIME",
                    "OUTCOME",
                    "CLUSTER",
                    "SERVICE ACCOUNT",
                    "POD",
                    "ASSOCIATION",
                    "ERROR",
                    "CALLER",
                ],
                &rows,
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod since_tests {
    use super::parse_since;

    #[test]
    fn durations_times_and_epochs() {
        assert_eq!(parse_since("1700000000", 0).unwrap(), 1_700_000_000);
        assert_eq!(parse_since("15m", 10_000).unwrap(), 10_000 - 900);
        assert_eq!(parse_since("2d", 200_000).unwrap(), 200_000 - 172_800);
        assert_eq!(
            parse_since("2026-11-29T00:00:00Z", 0).unwrap(),
            1_795_910_400
        );
        assert!(parse_since("5y", 0).is_err());
        assert!(parse_since("yesterday", 0).is_err());
    }
}
