//! The change feed's reads and its pruning, written once as a macro.

/// Inherent `changes_after` and `prune_changes_before` of `$store` on `$db`, which the
/// trait's `association_changes` and `prune_changes` call.
macro_rules! association_store_changes {
    (store: $store:ty, db: $db:ty $(,)?) => {
        /// A change as the feed shows it, from a row of the feed's query.
        fn change_from_row(
            row: &<$db as sqlx::Database>::Row,
            position: i64,
        ) -> Result<podid_api::changes::Change, $crate::StoreError> {
            use sqlx::Row as _;
            let kind: String = row.try_get("kind")?;
            Ok(podid_api::changes::Change {
                position,
                kind: $crate::common::decode_change_kind(position, &kind)?,
                time: podid_api::EpochMillis(row.try_get("time")?),
                association_id: row.try_get("association_id")?,
                namespace: row.try_get("namespace")?,
                service_account: row.try_get("service_account")?,
            })
        }

        impl $store {
            /// See [`AssociationStore::association_changes`](crate::AssociationStore::association_changes).
            async fn changes_after(
                &self,
                cluster: &str,
                after: Option<i64>,
                limit: u32,
            ) -> Result<podid_api::changes::ChangesResponse, $crate::StoreError> {
                use sqlx::Row as _;
                // One statement, so one snapshot: the pruned mark, the feed's end and the
                // cluster's next changes agree (a prune in between cannot hide changes).
                let limit = limit.clamp(1, podid_api::changes::MAX_CHANGES_PER_PAGE as u32);
                let rows = sqlx::query(
                    "SELECT w.position AS pruned, \
                     (SELECT MAX(position) FROM association_changes) AS last, \
                     c.position AS position, c.kind AS kind, c.time AS time, \
                     c.association_id AS association_id, c.namespace AS namespace, \
                     c.service_account AS service_account \
                     FROM association_changes_pruned w LEFT JOIN \
                     (SELECT position, kind, time, association_id, namespace, service_account \
                      FROM association_changes WHERE cluster = $1 AND position > $2 \
                      ORDER BY position LIMIT $3) c ON 1 = 1 \
                     WHERE w.id = 1 ORDER BY c.position",
                )
                .bind(cluster)
                .bind(after.unwrap_or(i64::MAX))
                .bind(i64::from(limit))
                .fetch_all(self.read_pool())
                .await?;
                let first = rows
                    .first()
                    .ok_or_else(|| $crate::StoreError::corrupt("the change feed's pruned mark is missing"))?;
                let pruned: i64 = first.try_get("pruned")?;
                let last: Option<i64> = first.try_get("last")?;
                let end = last.unwrap_or(0).max(pruned);
                let answer = |changes, position, reset| podid_api::changes::ChangesResponse {
                    changes,
                    position,
                    reset,
                };
                let Some(after) = after else {
                    return Ok(answer(Vec::new(), end, false));
                };
                // Behind what is kept, or ahead of this database's feed: start over.
                if after < pruned || after > end {
                    return Ok(answer(Vec::new(), end, true));
                }
                let mut changes = Vec::with_capacity(rows.len());
                for row in &rows {
                    if let Some(position) = row.try_get::<Option<i64>, _>("position")? {
                        changes.push(change_from_row(row, position)?);
                    }
                }
                // A full page continues after its last change; otherwise the whole
                // feed up to its end has been looked at.
                let position = match changes.last() {
                    Some(c) if changes.len() == limit as usize => c.position,
                    _ => end,
                };
                Ok(answer(changes, position, false))
            }

            /// See [`AssociationStore::prune_changes`](crate::AssociationStore::prune_changes).
            async fn prune_changes_before(
                &self,
                before: podid_api::EpochMillis,
            ) -> Result<u64, $crate::StoreError> {
                use sqlx::Row as _;
                let mut tx = self.begin_write().await?;
                // Everything up to the newest old change goes, so the mark is exact:
                // no change at or below it is left.
                let newest_old: Option<i64> = sqlx::query(
                    "SELECT MAX(position) AS p FROM association_changes WHERE time < $1",
                )
                .bind(before.0)
                .fetch_one(&mut *tx)
                .await?
                .try_get("p")?;
                let Some(mark) = newest_old else {
                    return Ok(0);
                };
                let done = sqlx::query("DELETE FROM association_changes WHERE position <= $1")
                    .bind(mark)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "UPDATE association_changes_pruned SET position = $1 WHERE id = 1 AND position < $1",
                )
                .bind(mark)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(done.rows_affected())
            }
        }
    };
}
pub(crate) use association_store_changes;
