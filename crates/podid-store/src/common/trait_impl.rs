//! The [`AssociationStore`](crate::AssociationStore) trait implementation, written once as a macro.

/// `impl AssociationStore for $store`, over the steps [`association_store_steps`](super::steps::association_store_steps) defines.
macro_rules! association_store_trait {
    (
        store: $store:ty,
        db: $db:ty,
        for_update: $for_update:literal,
        for_key_share: $for_key_share:literal,
        change_lock: $change_lock:expr $(,)?
    ) => {
        #[async_trait::async_trait]
        impl $crate::AssociationStore for $store {
            async fn ping(&self) -> Result<(), $crate::StoreError> {
                sqlx::query("SELECT 1").execute(self.read_pool()).await?;
                Ok(())
            }

            async fn insert_cluster(&self, c: &podid_api::cluster::Cluster) -> Result<(), $crate::StoreError> {
                let mut tx = self.begin_write().await?;
                let insert = sqlx::query(concat!(
                    "INSERT INTO clusters (",
                    $crate::common::cluster_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
                ));
                let result = bind_cluster(insert, c)?
                    .bind(c.created_at.0)
                    .bind(c.modified_at.0)
                    .execute(&mut *tx)
                    .await;
                match result {
                    Ok(_) => {}
                    Err(e) if $crate::common::is_unique_violation(&e) => {
                        return Err($crate::StoreError::ClusterExists(c.name.clone()));
                    }
                    Err(e) => return Err(e.into()),
                }
                tx.commit().await?;
                Ok(())
            }

            async fn get_cluster(&self, name: &str) -> Result<Option<podid_api::cluster::Cluster>, $crate::StoreError> {
                let row = sqlx::query(concat!("SELECT ", $crate::common::cluster_columns!(), " FROM clusters WHERE name = $1"))
                    .bind(name)
                    .fetch_optional(self.read_pool())
                    .await?;
                row.map(|r| cluster_from_row(&r)).transpose()
            }

            async fn list_clusters(&self) -> Result<Vec<podid_api::cluster::Cluster>, $crate::StoreError> {
                let rows = sqlx::query(concat!("SELECT ", $crate::common::cluster_columns!(), " FROM clusters ORDER BY name"))
                    .fetch_all(self.read_pool())
                    .await?;
                rows.iter().map(cluster_from_row).collect()
            }

            async fn update_cluster(
                &self,
                c: &podid_api::cluster::Cluster,
                expected_modified_at: podid_api::EpochMillis,
            ) -> Result<(), $crate::StoreError> {
                let mut tx = self.begin_write().await?;
                let update = sqlx::query(
                    "UPDATE clusters SET issuer = $2, audience = $3, cluster_arn = $4, key_source = $5, \
                     jwks_uri = $6, jwks = $7, agent_identity = $8, agent_service_account = $9, \
                     node_binding = $10, token_review_url = $11, token_review_ca = $12, \
                     token_review_token = $13, modified_at = $14 WHERE name = $1 AND modified_at = $15",
                );
                let done = bind_cluster(update, c)?
                    .bind(c.modified_at.0)
                    .bind(expected_modified_at.0)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    let exists = sqlx::query("SELECT 1 FROM clusters WHERE name = $1")
                        .bind(&c.name)
                        .fetch_optional(&mut *tx)
                        .await?
                        .is_some();
                    return Err(if exists {
                        $crate::StoreError::Conflict
                    } else {
                        $crate::StoreError::ClusterNotFound(c.name.clone())
                    });
                }
                record_change(&mut tx, &c.name, podid_api::changes::ChangeKind::ClusterUpdate, None).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn delete_cluster(&self, name: &str, force: bool) -> Result<podid_api::cluster::Cluster, $crate::StoreError> {
                use sqlx::Row as _;
                let mut tx = self.begin_write().await?;
                // The exclusive lock waits for creates in flight and keeps new
                // ones out until this transaction ends.
                let row = sqlx::query(concat!(
                    "SELECT ",
                    $crate::common::cluster_columns!(),
                    " FROM clusters WHERE name = $1",
                    $for_update
                ))
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    return Err($crate::StoreError::ClusterNotFound(name.to_owned()));
                };
                let cluster = cluster_from_row(&row)?;
                let count: i64 = sqlx::query("SELECT COUNT(*) AS n FROM associations WHERE cluster = $1")
                    .bind(name)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get("n")?;
                if count > 0 && !force {
                    return Err($crate::StoreError::ClusterInUse {
                        name: name.to_owned(),
                        associations: u64::try_from(count).unwrap_or(0),
                    });
                }
                for sql in [
                    "DELETE FROM idempotency_tokens WHERE cluster = $1",
                    "DELETE FROM associations WHERE cluster = $1",
                    "DELETE FROM clusters WHERE name = $1",
                ] {
                    sqlx::query(sql).bind(name).execute(&mut *tx).await?;
                }
                record_change(&mut tx, name, podid_api::changes::ChangeKind::ClusterDelete, None).await?;
                tx.commit().await?;
                Ok(cluster)
            }

            async fn create_association(
                &self,
                a: &$crate::StoredAssociation,
                idempotency: Option<&$crate::IdempotencyKey>,
            ) -> Result<$crate::Written, $crate::StoreError> {
                let mut attempt = 1;
                loop {
                    match self.create_once(a, idempotency).await {
                        // A concurrent create committed the same service account
                        // (or token) after this one looked: look again, and the
                        // checks above give the answer that transaction's
                        // outcome calls for.
                        Err($crate::StoreError::Database(e)) if $crate::common::is_unique_violation(&e) => {
                            tracing::debug!(attempt, error = %e, "create raced another writer");
                            if attempt >= $crate::common::MAX_ATTEMPTS {
                                return match existing_id(self.read_pool(), &a.cluster, &a.namespace, &a.service_account).await? {
                                    Some(existing) => Err(duplicate(a, existing)),
                                    None => Err($crate::StoreError::Database(e)),
                                };
                            }
                            attempt += 1;
                        }
                        result => return result,
                    }
                }
            }

            async fn get_association(
                &self,
                cluster: &str,
                id: &str,
            ) -> Result<Option<$crate::StoredAssociation>, $crate::StoreError> {
                association_by_id(self.read_pool(), cluster, id, false).await
            }

            async fn find_association(
                &self,
                cluster: &str,
                namespace: &str,
                service_account: &str,
            ) -> Result<Option<$crate::StoredAssociation>, $crate::StoreError> {
                let query = sqlx::query(concat!(
                    "SELECT ",
                    $crate::common::association_columns!(),
                    " FROM associations WHERE cluster = $1 AND namespace = $2 AND service_account = $3"
                ))
                .bind(cluster)
                .bind(namespace)
                .bind(service_account);
                fetch_association(query, self.read_pool()).await
            }

            async fn list_associations(&self, q: &$crate::ListQuery) -> Result<$crate::Page, $crate::StoreError> {
                let mut sql = String::from(concat!(
                    "SELECT ",
                    $crate::common::association_columns!(),
                    " FROM associations WHERE cluster = $1"
                ));
                let mut n = 1;
                if q.namespace.is_some() {
                    n += 1;
                    sql.push_str(&format!(" AND namespace = ${n}"));
                }
                if q.service_account.is_some() {
                    n += 1;
                    sql.push_str(&format!(" AND service_account = ${n}"));
                }
                if q.after.is_some() {
                    n += 1;
                    sql.push_str(&format!(" AND seq > ${n}"));
                }
                sql.push_str(&format!(" ORDER BY seq LIMIT ${}", n + 1));
                let limit = q.limit.max(1);
                let mut query = sqlx::query(&sql).bind(&q.cluster);
                if let Some(namespace) = &q.namespace {
                    query = query.bind(namespace);
                }
                if let Some(service_account) = &q.service_account {
                    query = query.bind(service_account);
                }
                if let Some(after) = q.after {
                    query = query.bind(after);
                }
                let rows = query.bind(i64::from(limit) + 1).fetch_all(self.read_pool()).await?;
                let more = rows.len() > limit as usize;
                let mut items = Vec::with_capacity(rows.len().min(limit as usize));
                let mut last = None;
                for row in rows.iter().take(limit as usize) {
                    let (seq, association) = association_from_row(row)?;
                    last = Some(seq);
                    items.push(association);
                }
                Ok($crate::Page { items, next: if more { last } else { None } })
            }

            async fn list_all_associations(
                &self,
                q: &$crate::OverviewQuery,
            ) -> Result<$crate::OverviewPage, $crate::StoreError> {
                self.overview_page(q).await
            }

            async fn update_association(
                &self,
                a: &$crate::StoredAssociation,
                expected_modified_at: podid_api::EpochMillis,
                idempotency: Option<&$crate::IdempotencyKey>,
            ) -> Result<$crate::Written, $crate::StoreError> {
                let mut attempt = 1;
                loop {
                    match self.update_once(a, expected_modified_at, idempotency).await {
                        // Two updates with one new token raced to record it:
                        // look again, now as a replay or a mismatch.
                        Err($crate::StoreError::Database(e))
                            if $crate::common::is_unique_violation(&e) && attempt < $crate::common::MAX_ATTEMPTS =>
                        {
                            tracing::debug!(attempt, error = %e, "update raced another writer");
                            attempt += 1;
                        }
                        result => return result,
                    }
                }
            }

            async fn delete_association(&self, cluster: &str, id: &str) -> Result<$crate::StoredAssociation, $crate::StoreError> {
                let mut tx = self.begin_write().await?;
                let row = sqlx::query(concat!(
                    "DELETE FROM associations WHERE cluster = $1 AND id = $2 RETURNING ",
                    $crate::common::association_columns!()
                ))
                .bind(cluster)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    return Err($crate::StoreError::AssociationNotFound { cluster: cluster.to_owned(), id: id.to_owned() });
                };
                let (_, deleted) = association_from_row(&row)?;
                sqlx::query("DELETE FROM idempotency_tokens WHERE cluster = $1 AND association_id = $2")
                    .bind(cluster)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                record_change(&mut tx, cluster, podid_api::changes::ChangeKind::Delete, Some(&deleted)).await?;
                tx.commit().await?;
                Ok(deleted)
            }

            async fn update_tags(
                &self,
                cluster: &str,
                id: &str,
                add: &podid_api::association::Tags,
                remove: &[String],
            ) -> Result<$crate::StoredAssociation, $crate::StoreError> {
                let mut tx = self.begin_write().await?;
                let Some(mut current) = association_by_id(&mut *tx, cluster, id, true).await? else {
                    return Err($crate::StoreError::AssociationNotFound { cluster: cluster.to_owned(), id: id.to_owned() });
                };
                let merged = $crate::common::merge_tags(&current.tags, add, remove)?;
                sqlx::query("UPDATE associations SET tags = $3 WHERE cluster = $1 AND id = $2")
                    .bind(cluster)
                    .bind(id)
                    .bind($crate::common::encode_tags(&merged)?)
                    .execute(&mut *tx)
                    .await?;
                record_change(&mut tx, cluster, podid_api::changes::ChangeKind::Update, Some(&current)).await?;
                tx.commit().await?;
                current.tags = merged;
                Ok(current)
            }

            async fn record_audit(&self, events: &[podid_api::audit::AuditEvent]) -> Result<(), $crate::StoreError> {
                if events.is_empty() {
                    return Ok(());
                }
                let states = events
                    .iter()
                    .map(|e| Ok((
                        $crate::common::encode_audit_state(&e.before)?,
                        $crate::common::encode_audit_state(&e.after)?,
                    )))
                    .collect::<Result<Vec<_>, $crate::StoreError>>()?;
                let mut tx = self.begin_write().await?;
                // Many rows per statement: each statement is a round trip to
                // the database (for SQLite, to its connection's thread).
                for (chunk, states) in events
                    .chunks($crate::common::AUDIT_ROWS_PER_INSERT)
                    .zip(states.chunks($crate::common::AUDIT_ROWS_PER_INSERT))
                {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO audit_events (time, request_id, caller, cluster, namespace, service_account, \
                         pod_name, pod_uid, association_id, role_arn, outcome, error_code, kind, action, \
                         before_state, after_state, node_name, caller_node) ",
                    );
                    insert.push_values(chunk.iter().zip(states), |mut row, (e, (before, after))| {
                        row.push_bind(e.time.0)
                            .push_bind(&e.request_id)
                            .push_bind(&e.caller)
                            .push_bind(&e.cluster)
                            .push_bind(&e.namespace)
                            .push_bind(&e.service_account)
                            .push_bind(&e.pod_name)
                            .push_bind(&e.pod_uid)
                            .push_bind(&e.association_id)
                            .push_bind(&e.role_arn)
                            .push_bind(e.outcome.as_str())
                            .push_bind(&e.error_code)
                            .push_bind(e.kind.as_str())
                            .push_bind(&e.action)
                            .push_bind(before)
                            .push_bind(after)
                            .push_bind(&e.node_name)
                            .push_bind(&e.caller_node);
                    });
                    insert.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn list_audit(&self, q: &$crate::AuditQuery) -> Result<$crate::AuditPage, $crate::StoreError> {
                self.audit_page(q).await
            }

            async fn count_associations(
                &self,
                scope: Option<&[String]>,
            ) -> Result<std::collections::BTreeMap<String, u64>, $crate::StoreError> {
                self.association_counts(scope).await
            }

            async fn association_changes(
                &self,
                cluster: &str,
                after: Option<i64>,
                limit: u32,
            ) -> Result<podid_api::changes::ChangesResponse, $crate::StoreError> {
                self.changes_after(cluster, after, limit).await
            }

            async fn prune_changes(&self, before: podid_api::EpochMillis) -> Result<u64, $crate::StoreError> {
                self.prune_changes_before(before).await
            }

            async fn prune_audit(
                &self,
                older_than: podid_api::EpochMillis,
                max_rows: u32,
            ) -> Result<u64, $crate::StoreError> {
                // Oldest first through the time index, a bounded number per
                // transaction, so a large backlog never holds the write lock long.
                let mut tx = self.begin_write().await?;
                let done = sqlx::query(
                    "DELETE FROM audit_events WHERE seq IN \
                     (SELECT seq FROM audit_events WHERE time < $1 ORDER BY time LIMIT $2)",
                )
                .bind(older_than.0)
                .bind(i64::from(max_rows.max(1)))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(done.rows_affected())
            }
        }
    };
}
pub(crate) use association_store_trait;
