//! `podid audit …`: reads the broker's audit trail.

use anyhow::bail;
use clap::Subcommand;
use podid_api::audit::ListAuditResponse;

use super::connection::{format_time, print_json, print_table, Connection, OutputFormat};

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
pub async fn run(cmd: AuditCommand) -> anyhow::Result<()> {
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
    let events = conn
        .all_pages(
            "/podid/v1/audit",
            &query,
            limit,
            |page: ListAuditResponse| (page.events, page.next_token),
        )
        .await?;
    match conn.output {
        OutputFormat::Json => print_json(&ListAuditResponse {
            events,
            next_token: None,
        }),
        OutputFormat::Table => {
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
mod tests {
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
