//! The audit trail's pages (newest first, both directions, a cluster scope) and the
//! association count per cluster, written once as a macro.

/// Inherent `audit_page` and `association_counts` of `$store` on `$db`, which the
/// trait's `list_audit` and `count_associations` call.
macro_rules! association_store_audit {
    (store: $store:ty, db: $db:ty $(,)?) => {
        impl $store {
            /// See [`AssociationStore::list_audit`](crate::AssociationStore::list_audit).
            async fn audit_page(
                &self,
                q: &$crate::AuditQuery,
            ) -> Result<$crate::AuditPage, $crate::StoreError> {
                if q.clusters.as_ref().is_some_and(|c| c.is_empty()) {
                    return Ok($crate::AuditPage { events: Vec::new(), next: None, prev: None });
                }
                let limit = q.limit.max(1) as usize;
                // Newest first; an `after` page is read upwards from its position, then turned.
                let (older, anchor) = match q.after {
                    Some(after) => (false, Some(after)),
                    None => (true, q.before),
                };
                let rows = self.audit_rows(q, older, anchor, limit + 1).await?;
                let more = rows.len() > limit;
                let mut events = Vec::with_capacity(limit.min(rows.len()));
                for row in rows.iter().take(limit) {
                    events.push(Self::audit_event_of(row)?);
                }
                if !older {
                    events.reverse();
                }
                let newest = events.first().map(|e| e.seq).or(anchor);
                let oldest = events.last().map(|e| e.seq).or(anchor);
                // The far side's "more" came with this read; the near side is asked for one row.
                let (next, prev) = if older {
                    let prev = match newest {
                        Some(s) if anchor.is_some() && !self.audit_rows(q, false, Some(s), 1).await?.is_empty() => Some(s),
                        _ => None,
                    };
                    (if more { oldest } else { None }, prev)
                } else {
                    let next = match oldest {
                        Some(s) if !self.audit_rows(q, true, Some(s), 1).await?.is_empty() => Some(s),
                        _ => None,
                    };
                    (next, if more { newest } else { None })
                };
                Ok($crate::AuditPage { events, next, prev })
            }

            /// At most `take` events matching `q`'s filters, older (descending) or newer
            /// (ascending) than the position `anchor`.
            async fn audit_rows(
                &self,
                q: &$crate::AuditQuery,
                older: bool,
                anchor: Option<i64>,
                take: usize,
            ) -> Result<Vec<<$db as sqlx::Database>::Row>, $crate::StoreError> {
                let mut sql = String::from(
                    "SELECT seq, time, request_id, caller, cluster, namespace, service_account, pod_name, pod_uid, \
                     association_id, role_arn, outcome, error_code, kind, action, before_state, after_state, \
                     node_name, caller_node FROM audit_events WHERE 1 = 1",
                );
                let mut n = 0;
                let mut param = || {
                    n += 1;
                    format!("${n}")
                };
                if let Some(clusters) = &q.clusters {
                    let list: Vec<String> = clusters.iter().map(|_| param()).collect();
                    sql.push_str(&format!(" AND cluster IN ({})", list.join(", ")));
                }
                let filters = [
                    ("cluster", "=", q.cluster.is_some()),
                    ("namespace", "=", q.namespace.is_some()),
                    ("service_account", "=", q.service_account.is_some()),
                    ("association_id", "=", q.association_id.is_some()),
                    ("outcome", "=", q.outcome.is_some()),
                    ("kind", "=", q.kind.is_some()),
                    ("time", ">=", q.since.is_some()),
                    ("seq", if older { "<" } else { ">" }, anchor.is_some()),
                ];
                for (column, op, given) in filters {
                    if given {
                        sql.push_str(&format!(" AND {column} {op} {}", param()));
                    }
                }
                let order = if older { "DESC" } else { "ASC" };
                sql.push_str(&format!(" ORDER BY seq {order} LIMIT {}", param()));
                let mut query = sqlx::query(&sql);
                for cluster in q.clusters.iter().flatten() {
                    query = query.bind(cluster);
                }
                for v in [&q.cluster, &q.namespace, &q.service_account, &q.association_id].into_iter().flatten() {
                    query = query.bind(v);
                }
                if let Some(v) = q.outcome {
                    query = query.bind(v.as_str());
                }
                if let Some(v) = q.kind {
                    query = query.bind(v.as_str());
                }
                if let Some(v) = q.since {
                    query = query.bind(v.0);
                }
                if let Some(v) = anchor {
                    query = query.bind(v);
                }
                let take = i64::try_from(take).unwrap_or(i64::MAX);
                Ok(query.bind(take).fetch_all(self.read_pool()).await?)
            }

            /// One row of `audit_events` as an event.
            fn audit_event_of(
                row: &<$db as sqlx::Database>::Row,
            ) -> Result<podid_api::audit::AuditEvent, $crate::StoreError> {
                use sqlx::Row as _;
                let outcome: String = row.try_get("outcome")?;
                let kind: String = row.try_get("kind")?;
                let seq: i64 = row.try_get("seq")?;
                Ok(podid_api::audit::AuditEvent {
                    seq,
                    kind: podid_api::audit::AuditKind::parse(&kind)
                        .ok_or_else(|| $crate::StoreError::corrupt(format!("audit event {seq}: kind '{kind}'")))?,
                    action: row.try_get("action")?,
                    time: podid_api::EpochMillis(row.try_get("time")?),
                    request_id: row.try_get("request_id")?,
                    caller: row.try_get("caller")?,
                    cluster: row.try_get("cluster")?,
                    namespace: row.try_get("namespace")?,
                    service_account: row.try_get("service_account")?,
                    pod_name: row.try_get("pod_name")?,
                    pod_uid: row.try_get("pod_uid")?,
                    node_name: row.try_get("node_name")?,
                    caller_node: row.try_get("caller_node")?,
                    association_id: row.try_get("association_id")?,
                    role_arn: row.try_get("role_arn")?,
                    before: $crate::common::decode_audit_state(seq, row.try_get("before_state")?)?,
                    after: $crate::common::decode_audit_state(seq, row.try_get("after_state")?)?,
                    outcome: podid_api::audit::AuditOutcome::parse(&outcome)
                        .ok_or_else(|| $crate::StoreError::corrupt(format!("audit event {seq}: outcome '{outcome}'")))?,
                    error_code: row.try_get("error_code")?,
                })
            }

            /// See [`AssociationStore::count_associations`](crate::AssociationStore::count_associations).
            async fn association_counts(
                &self,
                scope: Option<&[String]>,
            ) -> Result<std::collections::BTreeMap<String, u64>, $crate::StoreError> {
                use sqlx::Row as _;
                let mut sql = String::from("SELECT cluster, COUNT(*) AS n FROM associations");
                if let Some(scope) = scope {
                    if scope.is_empty() {
                        return Ok(std::collections::BTreeMap::new());
                    }
                    let list: Vec<String> = (1..=scope.len()).map(|i| format!("${i}")).collect();
                    sql.push_str(&format!(" WHERE cluster IN ({})", list.join(", ")));
                }
                sql.push_str(" GROUP BY cluster");
                let mut query = sqlx::query(&sql);
                for cluster in scope.into_iter().flatten() {
                    query = query.bind(cluster);
                }
                let mut counts = std::collections::BTreeMap::new();
                for row in query.fetch_all(self.read_pool()).await? {
                    let n: i64 = row.try_get("n")?;
                    counts.insert(row.try_get("cluster")?, u64::try_from(n).unwrap_or(0));
                }
                Ok(counts)
            }
        }
    };
}
pub(crate) use association_store_audit;
