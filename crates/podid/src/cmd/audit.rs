//! `podid audit …`: reads the audit trail (the broker's decisions and the
//! changes to associations and clusters).

use anyhow::bail;
use clap::Subcommand;
use podid_api::audit::{AuditEvent, AuditKind, AuditState, ListAuditResponse};

use super::connection::{format_time, print_json, print_table, Connection, OutputFormat};

/// `podid audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List the audit trail, newest first: the broker's decisions
    /// (`credential`) and changes to associations and clusters (`change`).
    List {
        #[command(flatten)]
        conn: Connection,
        /// Only this kind: credential or change.
        #[arg(long)]
        kind: Option<String>,
        /// Only this cluster.
        #[arg(long)]
        cluster_name: Option<String>,
        /// Only this namespace.
        #[arg(long)]
        namespace: Option<String>,
        /// Only this service account.
        #[arg(long)]
        service_account: Option<String>,
        /// Only this outcome: issued, succeeded (changes), denied or failed.
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
        kind,
        cluster_name,
        namespace,
        service_account,
        outcome,
        since,
        limit,
    } = cmd;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut query: Vec<(&str, String)> = Vec::new();
    if let Some(v) = kind {
        if AuditKind::parse(&v).is_none() {
            bail!("--kind '{v}': use credential or change");
        }
        query.push(("kind", v));
    }
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
            let rows: Vec<Vec<String>> = events.iter().map(table_row).collect();
            print_table(
                &[
                    "TIME",
                    "KIND",
                    "OUTCOME",
                    "CLUSTER",
                    "WHAT",
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

/// One event as a table row; WHAT is the pod for a decision, the operation
/// and the changed fields for a change.
fn table_row(e: &AuditEvent) -> Vec<String> {
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let what = match e.kind {
        AuditKind::Credential => format!(
            "{}/{} {}",
            dash(&e.namespace),
            dash(&e.service_account),
            dash(&e.pod_name)
        ),
        AuditKind::Change => {
            let changes = changed_fields(e.before.as_ref(), e.after.as_ref());
            format!("{} {changes}", dash(&e.action))
                .trim_end()
                .to_owned()
        }
    };
    vec![
        format_time(e.time.seconds()),
        e.kind.as_str().to_owned(),
        e.outcome.as_str().to_owned(),
        e.cluster.clone(),
        what,
        dash(&e.association_id),
        dash(&e.error_code),
        e.caller.clone(),
    ]
}

/// `field: before -> after` for each field a change touched.
fn changed_fields(before: Option<&AuditState>, after: Option<&AuditState>) -> String {
    let object = |s: Option<&AuditState>| match s.map(serde_json::to_value) {
        Some(Ok(serde_json::Value::Object(map))) => map,
        _ => serde_json::Map::new(),
    };
    let (old, new) = (object(before), object(after));
    let mut fields: Vec<&String> = old.keys().chain(new.keys()).collect();
    fields.sort();
    fields.dedup();
    let show = |v: Option<&serde_json::Value>| match v {
        None => "-".to_owned(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    fields
        .iter()
        .map(|f| format!("{f}: {} -> {}", show(old.get(*f)), show(new.get(*f))))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::{changed_fields, parse_since};
    use podid_api::audit::AuditState;

    #[test]
    fn changes_read_as_field_before_and_after() {
        let before = AuditState {
            role_arn: Some("arn:aws:iam::111122223333:role/a".into()),
            tag_keys: Some(vec!["team".into()]),
            ..Default::default()
        };
        let after = AuditState {
            role_arn: Some("arn:aws:iam::111122223333:role/b".into()),
            ..Default::default()
        };
        assert_eq!(
            changed_fields(Some(&before), Some(&after)),
            "roleArn: arn:aws:iam::111122223333:role/a -> arn:aws:iam::111122223333:role/b; \
             tagKeys: [\"team\"] -> -"
        );
        assert_eq!(changed_fields(None, None), "");
    }

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
