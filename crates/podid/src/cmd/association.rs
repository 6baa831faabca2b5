//! `podid association …`: create, describe, list, update and delete pod
//! identity associations.

use std::collections::BTreeMap;

use anyhow::Context;
use clap::{Args, Subcommand};
use podid_api::association::{
    AssociationResponse, CreateAssociationRequest, ListAssociationsResponse,
    PodIdentityAssociation, UpdateAssociationRequest,
};
use podid_client::segment;
use reqwest::Method;

use super::connection::{format_time, print_json, print_table, Connection, OutputFormat};

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
        target: Target,
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
        target: Target,
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
        target: Target,
    },
}

/// The association a command acts on, and where the server is.
#[derive(Debug, Args)]
pub struct Target {
    #[command(flatten)]
    conn: Connection,
    /// The cluster.
    #[arg(long)]
    cluster_name: String,
    /// The association id (a-…).
    #[arg(long)]
    association_id: String,
}

impl Target {
    /// Sends `method` to the association, with a JSON body or none.
    async fn call(
        &self,
        method: Method,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<AssociationResponse> {
        let path = association_path(&self.cluster_name, Some(&self.association_id));
        self.conn.call(method, &path, &[], body).await
    }
}

/// `--tag KEY=VALUE` (the value may contain `=`).
fn parse_tag(s: &str) -> anyhow::Result<(String, String)> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| anyhow::anyhow!("'{s}' is not KEY=VALUE"))
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

fn print_association(output: OutputFormat, a: &PodIdentityAssociation) -> anyhow::Result<()> {
    match output {
        OutputFormat::Json => print_json(&AssociationResponse {
            association: a.clone(),
        }),
        OutputFormat::Table => {
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
pub async fn run(cmd: AssociationCommand) -> anyhow::Result<()> {
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
            let body = serde_json::to_value(&request)?;
            let path = association_path(&cluster_name, None);
            let out: AssociationResponse = conn.call(Method::POST, &path, &[], Some(body)).await?;
            print_association(conn.output, &out.association)
        }
        AssociationCommand::Describe { target } => {
            let out = target.call(Method::GET, None).await?;
            print_association(target.conn.output, &out.association)
        }
        AssociationCommand::List {
            conn,
            cluster_name,
            namespace,
            service_account,
        } => {
            let mut query: Vec<(&str, String)> = Vec::new();
            if let Some(ns) = namespace {
                query.push(("namespace", ns));
            }
            if let Some(sa) = service_account {
                query.push(("serviceAccount", sa));
            }
            let path = association_path(&cluster_name, None);
            let all = conn
                .all_pages(
                    &path,
                    &query,
                    usize::MAX,
                    |page: ListAssociationsResponse| (page.associations, page.next_token),
                )
                .await?;
            match conn.output {
                OutputFormat::Json => print_json(&ListAssociationsResponse {
                    associations: all,
                    next_token: None,
                }),
                OutputFormat::Table => {
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
            target,
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
            let out = target
                .call(Method::POST, Some(serde_json::to_value(&request)?))
                .await?;
            print_association(target.conn.output, &out.association)
        }
        AssociationCommand::Delete { target } => {
            let out = target.call(Method::DELETE, None).await?;
            match target.conn.output {
                OutputFormat::Json => print_json(&out),
                OutputFormat::Table => {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_parse() {
        assert_eq!(
            parse_tag("team=ml=x").unwrap(),
            ("team".into(), "ml=x".into())
        );
        assert!(parse_tag("nope").is_err());
    }
}
