//! The row conversions and transaction steps of the stores, written once as a macro.

/// Row conversions and the steps a write takes inside its transaction (idempotency
/// tokens, duplicates, one attempt of a create or an update), for `$store` on `$db`.
macro_rules! association_store_steps {
    (
        store: $store:ty,
        db: $db:ty,
        for_update: $for_update:literal,
        for_key_share: $for_key_share:literal,
        change_lock: $change_lock:expr $(,)?
    ) => {
        type Row = <$db as sqlx::Database>::Row;
        type Tx = sqlx::Transaction<'static, $db>;
        type Query<'q> = sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>;

        fn cluster_from_row(row: &Row) -> Result<podid_api::cluster::Cluster, $crate::StoreError> {
            use sqlx::Row as _;
            let name: String = row.try_get("name")?;
            let key_source: String = row.try_get("key_source")?;
            let jwks: String = row.try_get("jwks")?;
            let agent_identity: String = row.try_get("agent_identity")?;
            let token_review_url: Option<String> = row.try_get("token_review_url")?;
            let token_review_ca: Option<String> = row.try_get("token_review_ca")?;
            let token_review_token: Option<String> = row.try_get("token_review_token")?;
            Ok(podid_api::cluster::Cluster {
                issuer: row.try_get("issuer")?,
                audience: row.try_get("audience")?,
                cluster_arn: row.try_get("cluster_arn")?,
                key_source: $crate::common::decode_key_source(&name, &key_source)?,
                jwks_uri: row.try_get("jwks_uri")?,
                jwks: $crate::common::decode_jwks(&name, &jwks)?,
                agent_identity: $crate::common::decode_agent_identity(&name, &agent_identity)?,
                agent_service_account: row.try_get("agent_service_account")?,
                node_binding: row.try_get("node_binding")?,
                token_review: token_review_url.map(|api_server_url| {
                    podid_api::cluster::TokenReviewSettings {
                        api_server_url,
                        ca_pem: token_review_ca,
                        token: token_review_token.map(podid_api::Secret::new),
                    }
                }),
                created_at: podid_api::EpochMillis(row.try_get("created_at")?),
                modified_at: podid_api::EpochMillis(row.try_get("modified_at")?),
                name,
            })
        }

        /// `query` with the cluster's name and settings bound to `$1`…`$13`, in the order of
        /// [`cluster_columns`](crate::common::cluster_columns).
        fn bind_cluster<'q>(
            query: Query<'q>,
            c: &'q podid_api::cluster::Cluster,
        ) -> Result<Query<'q>, $crate::StoreError> {
            let review = c.token_review.as_ref();
            Ok(query
                .bind(&c.name)
                .bind(&c.issuer)
                .bind(&c.audience)
                .bind(&c.cluster_arn)
                .bind(c.key_source.as_str())
                .bind(&c.jwks_uri)
                .bind($crate::common::encode_jwks(&c.jwks)?)
                .bind(c.agent_identity.as_str())
                .bind(&c.agent_service_account)
                .bind(c.node_binding)
                .bind(review.map(|r| r.api_server_url.as_str()))
                .bind(review.and_then(|r| r.ca_pem.as_deref()))
                .bind(review.and_then(|r| r.token.as_ref()).map(|t| t.expose())))
        }

        /// Appends the feed's change of `kind` on `cluster` (and association `a`) to the
        /// transaction, last before its commit: on PostgreSQL the advisory lock it takes
        /// first is held until the commit, so positions increase in commit order.
        async fn record_change(
            tx: &mut Tx,
            cluster: &str,
            kind: podid_api::changes::ChangeKind,
            a: Option<&$crate::StoredAssociation>,
        ) -> Result<(), $crate::StoreError> {
            const CHANGE_LOCK: Option<&str> = $change_lock;
            if let Some(lock) = CHANGE_LOCK {
                sqlx::query(lock).execute(&mut **tx).await?;
            }
            sqlx::query(
                "INSERT INTO association_changes \
                 (cluster, kind, association_id, namespace, service_account, time) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(cluster)
            .bind(kind.as_str())
            .bind(a.map(|a| a.id.as_str()))
            .bind(a.map(|a| a.namespace.as_str()))
            .bind(a.map(|a| a.service_account.as_str()))
            .bind($crate::common::now_millis())
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        /// `query` with the settings an update may change bound next: role ARN, target
        /// role ARN, whether session tags are left off, policy.
        fn bind_settings<'q>(query: Query<'q>, a: &'q $crate::StoredAssociation) -> Query<'q> {
            query
                .bind(&a.role_arn)
                .bind(&a.target_role_arn)
                .bind(a.disable_session_tags)
                .bind(&a.policy)
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

        /// The association a query of [`association_columns`](crate::common::association_columns)
        /// yields on `executor`, if any.
        async fn fetch_association<'q, 'c, E>(
            query: Query<'q>,
            executor: E,
        ) -> Result<Option<$crate::StoredAssociation>, $crate::StoreError>
        where
            E: 'q + sqlx::Executor<'c, Database = $db>,
            'c: 'q,
        {
            let row = query.fetch_optional(executor).await?;
            row.map(|r| association_from_row(&r).map(|(_, a)| a)).transpose()
        }

        /// The association `id` of `cluster`, read on `executor`; with `lock`, locked
        /// for the rest of the transaction.
        async fn association_by_id<'c, E>(
            executor: E,
            cluster: &str,
            id: &str,
            lock: bool,
        ) -> Result<Option<$crate::StoredAssociation>, $crate::StoreError>
        where
            E: sqlx::Executor<'c, Database = $db>,
        {
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
            let query = sqlx::query(if lock { LOCKED } else { PLAIN }).bind(cluster).bind(id);
            fetch_association(query, executor).await
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
            match association_by_id(&mut **tx, cluster, &association_id, false).await? {
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

        /// The end of a create or update: records the idempotency token, reads the association
        /// back as written, appends its change and commits.
        async fn finish_write(
            mut tx: Tx,
            a: &$crate::StoredAssociation,
            idempotency: Option<&$crate::IdempotencyKey>,
            kind: podid_api::changes::ChangeKind,
        ) -> Result<$crate::Written, $crate::StoreError> {
            if let Some(key) = idempotency {
                insert_token(&mut tx, &a.cluster, key, &a.id).await?;
            }
            let stored = association_by_id(&mut *tx, &a.cluster, &a.id, false)
                .await?
                .ok_or_else(|| {
                    $crate::StoreError::corrupt(format!(
                        "association '{}' vanished while written ({})",
                        a.id,
                        kind.as_str()
                    ))
                })?;
            record_change(&mut tx, &a.cluster, kind, Some(&stored)).await?;
            tx.commit().await?;
            Ok($crate::Written { association: stored, replayed: false })
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
                let insert = sqlx::query(
                    "INSERT INTO associations (id, cluster, namespace, service_account, external_id, \
                     role_arn, target_role_arn, disable_session_tags, policy, tags, created_at, modified_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(&a.id)
                .bind(&a.cluster)
                .bind(&a.namespace)
                .bind(&a.service_account)
                .bind(&a.external_id);
                bind_settings(insert, a)
                    .bind($crate::common::encode_tags(&a.tags)?)
                    .bind(a.created_at.0)
                    .bind(a.modified_at.0)
                    .execute(&mut *tx)
                    .await?;
                finish_write(tx, a, idempotency, podid_api::changes::ChangeKind::Create).await
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
                match association_by_id(&mut *tx, &a.cluster, &a.id, true).await? {
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
                let update = sqlx::query(
                    "UPDATE associations SET role_arn = $3, target_role_arn = $4, \
                     disable_session_tags = $5, policy = $6, modified_at = $7 \
                     WHERE cluster = $1 AND id = $2",
                )
                .bind(&a.cluster)
                .bind(&a.id);
                bind_settings(update, a)
                    .bind(a.modified_at.0)
                    .execute(&mut *tx)
                    .await?;
                finish_write(tx, a, idempotency, podid_api::changes::ChangeKind::Update).await
            }
        }
    };
}
pub(crate) use association_store_steps;
