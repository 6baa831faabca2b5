//! What the SQLite and PostgreSQL stores share: value conversions, and the
//! [`AssociationStore`](crate::AssociationStore) implementation itself, written
//! once as a macro over the sqlx database type.
//!
//! The SQL is the same for both databases (`$n` placeholders work in SQLite
//! too); only the row-lock clauses differ, which SQLite neither has nor needs
//! because its writes are serialised (see `sqlite.rs`).

use std::time::{SystemTime, UNIX_EPOCH};

use podid_api::association::Tags;
use podid_api::cluster::KeySource;

use crate::StoreError;

/// At most this many tags on an association.
pub(crate) const MAX_TAGS: usize = 50;

/// How often a write is tried when a concurrent writer won a unique
/// constraint race (PostgreSQL only; SQLite writes never race).
pub(crate) const MAX_ATTEMPTS: usize = 3;

/// Audit events written per `INSERT` (12 parameters each: well under
/// SQLite's and PostgreSQL's limits on bound parameters).
pub(crate) const AUDIT_ROWS_PER_INSERT: usize = 100;

/// The columns of `associations`, in the order [`association_from_row`] reads them.
macro_rules! association_columns {
    () => {
        "seq, id, cluster, namespace, service_account, role_arn, target_role_arn, external_id, \
         disable_session_tags, policy, tags, created_at, modified_at"
    };
}
pub(crate) use association_columns;

/// The columns of `clusters`.
macro_rules! cluster_columns {
    () => {
        "name, issuer, audience, cluster_arn, key_source, jwks_uri, jwks, created_at, modified_at"
    };
}
pub(crate) use cluster_columns;

/// Milliseconds since the epoch, now.
pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Tags as stored: a JSON object.
pub(crate) fn encode_tags(tags: &Tags) -> Result<String, StoreError> {
    serde_json::to_string(tags).map_err(|e| StoreError::Corrupt(format!("cannot encode tags: {e}")))
}

/// Tags read back.
pub(crate) fn decode_tags(id: &str, text: &str) -> Result<Tags, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("tags of association '{id}': {e}")))
}

/// A JWKS document as stored.
pub(crate) fn encode_jwks(jwks: &serde_json::Value) -> Result<String, StoreError> {
    serde_json::to_string(jwks).map_err(|e| StoreError::Corrupt(format!("cannot encode JWKS: {e}")))
}

/// A JWKS document read back.
pub(crate) fn decode_jwks(cluster: &str, text: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("JWKS of cluster '{cluster}': {e}")))
}

/// A key source read back.
pub(crate) fn decode_key_source(cluster: &str, text: &str) -> Result<KeySource, StoreError> {
    KeySource::parse(text).ok_or_else(|| {
        StoreError::Corrupt(format!(
            "key source of cluster '{cluster}': unknown '{text}'"
        ))
    })
}

/// Whether a database error is a unique (or primary key) violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// `current` without `remove`, then with `add` added or overwritten; refused
/// past [`MAX_TAGS`].
pub(crate) fn merge_tags(
    current: &Tags,
    add: &Tags,
    remove: &[String],
) -> Result<Tags, StoreError> {
    let mut merged = current.clone();
    for key in remove {
        merged.remove(key);
    }
    for (key, value) in add {
        merged.insert(key.clone(), value.clone());
    }
    if merged.len() > MAX_TAGS {
        return Err(StoreError::TooManyTags(merged.len()));
    }
    Ok(merged)
}

/// Implements [`AssociationStore`](crate::AssociationStore) for `$store`, whose
/// database is `$db`. The store provides
/// `fn read_pool(&self) -> &sqlx::Pool<$db>` (for plain reads) and
/// `async fn begin_write(&self) -> Result<sqlx::Transaction<'static, $db>, sqlx::Error>`
/// (for every write). `$for_update` and `$for_key_share` are the row-lock
/// clauses appended to selects that precede a write in the same transaction.
macro_rules! association_store_impl {
    (
        store: $store:ty,
        db: $db:ty,
        for_update: $for_update:literal,
        for_key_share: $for_key_share:literal $(,)?
    ) => {
        type Row = <$db as sqlx::Database>::Row;
        type Tx = sqlx::Transaction<'static, $db>;

        fn cluster_from_row(row: &Row) -> Result<podid_api::cluster::Cluster, $crate::StoreError> {
            use sqlx::Row as _;
            let name: String = row.try_get("name")?;
            let key_source: String = row.try_get("key_source")?;
            let jwks: String = row.try_get("jwks")?;
            Ok(podid_api::cluster::Cluster {
                issuer: row.try_get("issuer")?,
                audience: row.try_get("audience")?,
                cluster_arn: row.try_get("cluster_arn")?,
                key_source: $crate::common::decode_key_source(&name, &key_source)?,
                jwks_uri: row.try_get("jwks_uri")?,
                jwks: $crate::common::decode_jwks(&name, &jwks)?,
                created_at: podid_api::EpochMillis(row.try_get("created_at")?),
                modified_at: podid_api::EpochMillis(row.try_get("modified_at")?),
                name,
            })
        }

        /// The association and its list position.
        fn association_from_row(row: &Row) -> Result<(i64, $crate::StoredAssociation), $crate::StoreError> {
            use sqlx::Row as _;
            let seq: i64 = row.try_get("seq")?;
            let id: String = row.try_get("id")?;
            let tags: String = row.try_get("tags")?;
            Ok((
                seq,
                $crate::StoredAssociation {
                    tags: $crate::common::decode_tags(&id, &tags)?,
                    id,
                    cluster: row.try_get("cluster")?,
                    namespace: row.try_get("namespace")?,
                    service_account: row.try_get("service_account")?,
                    role_arn: row.try_get("role_arn")?,
                    target_role_arn: row.try_get("target_role_arn")?,
                    external_id: row.try_get("external_id")?,
                    disable_session_tags: row.try_get("disable_session_tags")?,
                    policy: row.try_get("policy")?,
                    created_at: podid_api::EpochMillis(row.try_get("created_at")?),
                    modified_at: podid_api::EpochMillis(row.try_get("modified_at")?),
                },
            ))
        }

        /// The association `id` of `cluster`, read within `tx`.
        async fn association_in_tx(
            tx: &mut Tx,
            cluster: &str,
            id: &str,
            lock: bool,
        ) -> Result<Option<$crate::StoredAssociation>, $crate::StoreError> {
            const PLAIN: &str = concat!(
                "SELECT ",
                $crate::common::association_columns!(),
                " FROM associations WHERE cluster = $1 AND id = $2"
            );
            const LOCKED: &str = concat!(
                "SELECT ",
                $crate::common::association_columns!(),
                " FROM associations WHERE cluster = $1 AND id = $2",
                $for_update
            );
            let row = sqlx::query(if lock { LOCKED } else { PLAIN })
                .bind(cluster)
                .bind(id)
                .fetch_optional(&mut **tx)
                .await?;
            row.map(|r| association_from_row(&r).map(|(_, a)| a)).transpose()
        }

        /// Looks up an idempotency token. `Ok(Some)` is a replay; `Ok(None)`
        /// means the token is unused (a token whose association is gone is
        /// deleted and counts as unused); a token used for another request is
        /// [`StoreError::IdempotencyMismatch`]. With `expected_id`, the token
        /// must also have been used on that association.
        async fn check_token(
            tx: &mut Tx,
            cluster: &str,
            key: &$crate::IdempotencyKey,
            expected_id: Option<&str>,
        ) -> Result<Option<$crate::Written>, $crate::StoreError> {
            use sqlx::Row as _;
            let row = sqlx::query(concat!(
                "SELECT operation, request_digest, association_id FROM idempotency_tokens ",
                "WHERE cluster = $1 AND token = $2",
                $for_update
            ))
            .bind(cluster)
            .bind(&key.token)
            .fetch_optional(&mut **tx)
            .await?;
            let Some(row) = row else { return Ok(None) };
            let operation: String = row.try_get("operation")?;
            let digest: String = row.try_get("request_digest")?;
            let association_id: String = row.try_get("association_id")?;
            if operation != key.operation
                || digest != key.request_digest
                || expected_id.is_some_and(|id| id != association_id)
            {
                return Err($crate::StoreError::IdempotencyMismatch);
            }
            match association_in_tx(tx, cluster, &association_id, false).await? {
                Some(association) => Ok(Some($crate::Written { association, replayed: true })),
                None => {
                    sqlx::query("DELETE FROM idempotency_tokens WHERE cluster = $1 AND token = $2")
                        .bind(cluster)
                        .bind(&key.token)
                        .execute(&mut **tx)
                        .await?;
                    Ok(None)
                }
            }
        }

        async fn insert_token(
            tx: &mut Tx,
            cluster: &str,
            key: &$crate::IdempotencyKey,
            association_id: &str,
        ) -> Result<(), $crate::StoreError> {
            sqlx::query(
                "INSERT INTO idempotency_tokens \
                 (cluster, token, operation, request_digest, association_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(cluster)
            .bind(&key.token)
            .bind(&key.operation)
            .bind(&key.request_digest)
            .bind(association_id)
            .bind($crate::common::now_millis())
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        /// The id of the association holding (cluster, namespace, service account).
        async fn existing_id<'e, E>(
            executor: E,
            cluster: &str,
            namespace: &str,
            service_account: &str,
        ) -> Result<Option<String>, $crate::StoreError>
        where
            E: sqlx::Executor<'e, Database = $db>,
        {
            use sqlx::Row as _;
            let row = sqlx::query(
                "SELECT id FROM associations WHERE cluster = $1 AND namespace = $2 AND service_account = $3",
            )
            .bind(cluster)
            .bind(namespace)
            .bind(service_account)
            .fetch_optional(executor)
            .await?;
            Ok(row.map(|r| r.try_get::<String, _>("id")).transpose()?)
        }

        fn duplicate(a: &$crate::StoredAssociation, existing_id: String) -> $crate::StoreError {
            $crate::StoreError::DuplicateAssociation {
                cluster: a.cluster.clone(),
                namespace: a.namespace.clone(),
                service_account: a.service_account.clone(),
                existing_id,
            }
        }

        impl $store {
            async fn create_once(
                &self,
                a: &$crate::StoredAssociation,
                idempotency: Option<&$crate::IdempotencyKey>,
            ) -> Result<$crate::Written, $crate::StoreError> {
                let mut tx = self.begin_write().await?;
                // The share lock makes a concurrent forced deregistration wait
                // for this create (and this create see its outcome).
                let cluster = sqlx::query(concat!("SELECT name FROM clusters WHERE name = $1", $for_key_share))
                    .bind(&a.cluster)
                    .fetch_optional(&mut *tx)
                    .await?;
                if cluster.is_none() {
                    return Err($crate::StoreError::ClusterNotFound(a.cluster.clone()));
                }
                if let Some(key) = idempotency {
                    if let Some(replay) = check_token(&mut tx, &a.cluster, key, None).await? {
                        tx.commit().await?;
                        return Ok(replay);
                    }
                }
                if let Some(existing) = existing_id(&mut *tx, &a.cluster, &a.namespace, &a.service_account).await? {
                    // At READ COMMITTED (PostgreSQL) the holder may have been
                    // committed, with this very token, after the token was
                    // looked up: look again so a retry is answered as a replay.
                    if let Some(key) = idempotency {
                        if let Some(replay) = check_token(&mut tx, &a.cluster, key, None).await? {
                            tx.commit().await?;
                            return Ok(replay);
                        }
                    }
                    return Err(duplicate(a, existing));
                }
                sqlx::query(
                    "INSERT INTO associations (id, cluster, namespace, service_account, role_arn, \
                     target_role_arn, external_id, disable_session_tags, policy, tags, created_at, modified_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(&a.id)
                .bind(&a.cluster)
                .bind(&a.namespace)
                .bind(&a.service_account)
                .bind(&a.role_arn)
                .bind(&a.target_role_arn)
                .bind(&a.external_id)
                .bind(a.disable_session_tags)
                .bind(&a.policy)
                .bind($crate::common::encode_tags(&a.tags)?)
                .bind(a.created_at.0)
                .bind(a.modified_at.0)
                .execute(&mut *tx)
                .await?;
                if let Some(key) = idempotency {
                    insert_token(&mut tx, &a.cluster, key, &a.id).await?;
                }
                let stored = association_in_tx(&mut tx, &a.cluster, &a.id, false).await?.ok_or_else(|| {
                    $crate::StoreError::Corrupt(format!("association '{}' vanished while created", a.id))
                })?;
                tx.commit().await?;
                Ok($crate::Written { association: stored, replayed: false })
            }

            async fn update_once(
                &self,
                a: &$crate::StoredAssociation,
                expected_modified_at: podid_api::EpochMillis,
                idempotency: Option<&$crate::IdempotencyKey>,
            ) -> Result<$crate::Written, $crate::StoreError> {
                let mut tx = self.begin_write().await?;
                if let Some(key) = idempotency {
                    if let Some(replay) = check_token(&mut tx, &a.cluster, key, Some(&a.id)).await? {
                        tx.commit().await?;
                        return Ok(replay);
                    }
                }
                match association_in_tx(&mut tx, &a.cluster, &a.id, true).await? {
                    None => {
                        return Err($crate::StoreError::AssociationNotFound {
                            cluster: a.cluster.clone(),
                            id: a.id.clone(),
                        })
                    }
                    // Someone else changed it since the caller read it.
                    Some(current) if current.modified_at != expected_modified_at => {
                        return Err($crate::StoreError::Conflict)
                    }
                    Some(_) => {}
                }
                sqlx::query(
                    "UPDATE associations SET role_arn = $3, target_role_arn = $4, \
                     disable_session_tags = $5, policy = $6, modified_at = $7 \
                     WHERE cluster = $1 AND id = $2",
                )
                .bind(&a.cluster)
                .bind(&a.id)
                .bind(&a.role_arn)
                .bind(&a.target_role_arn)
                .bind(a.disable_session_tags)
                .bind(&a.policy)
                .bind(a.modified_at.0)
                .execute(&mut *tx)
                .await?;
                if let Some(key) = idempotency {
                    insert_token(&mut tx, &a.cluster, key, &a.id).await?;
                }
                let stored = association_in_tx(&mut tx, &a.cluster, &a.id, false).await?.ok_or_else(|| {
                    $crate::StoreError::Corrupt(format!("association '{}' vanished while updated", a.id))
                })?;
                tx.commit().await?;
                Ok($crate::Written { association: stored, replayed: false })
            }
        }

        #[async_trait::async_trait]
        impl $crate::AssociationStore for $store {
            async fn ping(&self) -> Result<(), $crate::StoreError> {
                sqlx::query("SELECT 1").execute(self.read_pool()).await?;
                Ok(())
            }

            async fn insert_cluster(&self, c: &podid_api::cluster::Cluster) -> Result<(), $crate::StoreError> {
                let mut tx = self.begin_write().await?;
                let result = sqlx::query(concat!(
                    "INSERT INTO clusters (",
                    $crate::common::cluster_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                ))
                .bind(&c.name)
                .bind(&c.issuer)
                .bind(&c.audience)
                .bind(&c.cluster_arn)
                .bind(c.key_source.as_str())
                .bind(&c.jwks_uri)
                .bind($crate::common::encode_jwks(&c.jwks)?)
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
                let done = sqlx::query(
                    "UPDATE clusters SET issuer = $2, audience = $3, cluster_arn = $4, key_source = $5, \
                     jwks_uri = $6, jwks = $7, modified_at = $8 WHERE name = $1 AND modified_at = $9",
                )
                .bind(&c.name)
                .bind(&c.issuer)
                .bind(&c.audience)
                .bind(&c.cluster_arn)
                .bind(c.key_source.as_str())
                .bind(&c.jwks_uri)
                .bind($crate::common::encode_jwks(&c.jwks)?)
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
                let row = sqlx::query(concat!(
                    "SELECT ",
                    $crate::common::association_columns!(),
                    " FROM associations WHERE cluster = $1 AND id = $2"
                ))
                .bind(cluster)
                .bind(id)
                .fetch_optional(self.read_pool())
                .await?;
                row.map(|r| association_from_row(&r).map(|(_, a)| a)).transpose()
            }

            async fn find_association(
                &self,
                cluster: &str,
                namespace: &str,
                service_account: &str,
            ) -> Result<Option<$crate::StoredAssociation>, $crate::StoreError> {
                let row = sqlx::query(concat!(
                    "SELECT ",
                    $crate::common::association_columns!(),
                    " FROM associations WHERE cluster = $1 AND namespace = $2 AND service_account = $3"
                ))
                .bind(cluster)
                .bind(namespace)
                .bind(service_account)
                .fetch_optional(self.read_pool())
                .await?;
                row.map(|r| association_from_row(&r).map(|(_, a)| a)).transpose()
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
                let Some(mut current) = association_in_tx(&mut tx, cluster, id, true).await? else {
                    return Err($crate::StoreError::AssociationNotFound { cluster: cluster.to_owned(), id: id.to_owned() });
                };
                let merged = $crate::common::merge_tags(&current.tags, add, remove)?;
                sqlx::query("UPDATE associations SET tags = $3 WHERE cluster = $1 AND id = $2")
                    .bind(cluster)
                    .bind(id)
                    .bind($crate::common::encode_tags(&merged)?)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                current.tags = merged;
                Ok(current)
            }

            async fn record_audit(&self, events: &[podid_api::audit::AuditEvent]) -> Result<(), $crate::StoreError> {
                if events.is_empty() {
                    return Ok(());
                }
                let mut tx = self.begin_write().await?;
                // Many rows per statement: each statement is a round trip to
                // the database (for SQLite, to its connection's thread).
                for chunk in events.chunks($crate::common::AUDIT_ROWS_PER_INSERT) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO audit_events (time, request_id, caller, cluster, namespace, service_account, \
                         pod_name, pod_uid, association_id, role_arn, outcome, error_code) ",
                    );
                    insert.push_values(chunk, |mut row, e| {
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
                            .push_bind(&e.error_code);
                    });
                    insert.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn list_audit(&self, q: &$crate::AuditQuery) -> Result<$crate::AuditPage, $crate::StoreError> {
                use sqlx::Row as _;
                let mut sql = String::from(
                    "SELECT seq, time, request_id, caller, cluster, namespace, service_account, pod_name, pod_uid, \
                     association_id, role_arn, outcome, error_code FROM audit_events WHERE 1 = 1",
                );
                let mut n = 0;
                let mut next = |column: &str, op: &str, sql: &mut String| {
                    n += 1;
                    sql.push_str(&format!(" AND {column} {op} ${n}"));
                };
                if q.cluster.is_some() { next("cluster", "=", &mut sql); }
                if q.namespace.is_some() { next("namespace", "=", &mut sql); }
                if q.service_account.is_some() { next("service_account", "=", &mut sql); }
                if q.outcome.is_some() { next("outcome", "=", &mut sql); }
                if q.since.is_some() { next("time", ">=", &mut sql); }
                if q.before.is_some() { next("seq", "<", &mut sql); }
                n += 1;
                sql.push_str(&format!(" ORDER BY seq DESC LIMIT ${n}"));
                let mut query = sqlx::query(&sql);
                if let Some(v) = &q.cluster { query = query.bind(v); }
                if let Some(v) = &q.namespace { query = query.bind(v); }
                if let Some(v) = &q.service_account { query = query.bind(v); }
                if let Some(v) = q.outcome { query = query.bind(v.as_str()); }
                if let Some(v) = q.since { query = query.bind(v.0); }
                if let Some(v) = q.before { query = query.bind(v); }
                let limit = q.limit.max(1);
                let rows = query.bind(i64::from(limit) + 1).fetch_all(self.read_pool()).await?;
                let more = rows.len() > limit as usize;
                let mut events = Vec::with_capacity(rows.len().min(limit as usize));
                for row in rows.iter().take(limit as usize) {
                    let outcome: String = row.try_get("outcome")?;
                    let seq: i64 = row.try_get("seq")?;
                    events.push(podid_api::audit::AuditEvent {
                        seq,
                        time: podid_api::EpochMillis(row.try_get("time")?),
                        request_id: row.try_get("request_id")?,
                        caller: row.try_get("caller")?,
                        cluster: row.try_get("cluster")?,
                        namespace: row.try_get("namespace")?,
                        service_account: row.try_get("service_account")?,
                        pod_name: row.try_get("pod_name")?,
                        pod_uid: row.try_get("pod_uid")?,
                        association_id: row.try_get("association_id")?,
                        role_arn: row.try_get("role_arn")?,
                        outcome: podid_api::audit::AuditOutcome::parse(&outcome)
                            .ok_or_else(|| $crate::StoreError::Corrupt(format!("audit event {seq}: outcome '{outcome}'")))?,
                        error_code: row.try_get("error_code")?,
                    });
                }
                let next = if more { events.last().map(|e| e.seq) } else { None };
                Ok($crate::AuditPage { events, next })
            }
        }
    };
}
pub(crate) use association_store_impl;

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn merge_removes_before_adding() {
        let current = tags(&[("a", "1"), ("b", "2")]);
        let merged = merge_tags(
            &current,
            &tags(&[("a", "9"), ("c", "3")]),
            &["a".into(), "b".into()],
        );
        assert_eq!(merged.ok(), Some(tags(&[("a", "9"), ("c", "3")])));
    }

    #[test]
    fn merge_refuses_past_the_limit() {
        let current: Tags = (0..50).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(matches!(
            merge_tags(&current, &tags(&[("x", "")]), &[]),
            Err(StoreError::TooManyTags(51))
        ));
        assert!(merge_tags(&current, &tags(&[("x", "")]), &["k0".into()]).is_ok());
    }

    #[test]
    fn corrupt_json_is_an_error() {
        assert!(matches!(
            decode_tags("a-1", "{not json"),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            decode_tags("a-1", "[1]"),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(decode_jwks("c", ""), Err(StoreError::Corrupt(_))));
        assert!(matches!(
            decode_key_source("c", "magic"),
            Err(StoreError::Corrupt(_))
        ));
    }
}
