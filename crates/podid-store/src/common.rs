//! What the SQLite and PostgreSQL stores share: value conversions, and the `AssociationStore`
//! implementation written once as a macro (same SQL; only the row-lock clauses differ).

use std::time::{SystemTime, UNIX_EPOCH};

use podid_api::association::Tags;
use podid_api::cluster::KeySource;

use crate::StoreError;

pub(crate) mod audit;
pub(crate) mod changes;
pub(crate) mod overview;
pub(crate) mod steps;
pub(crate) mod trait_impl;

/// At most this many tags on an association.
pub(crate) const MAX_TAGS: usize = 50;

/// How often a write is tried when a concurrent writer won a unique
/// constraint race (PostgreSQL only; SQLite writes never race).
pub(crate) const MAX_ATTEMPTS: usize = 3;

/// Audit events written per `INSERT` (18 parameters each: well under
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
        "name, issuer, audience, cluster_arn, key_source, jwks_uri, jwks, agent_identity, \
         agent_service_account, node_binding, token_review_url, token_review_ca, token_review_token, \
         created_at, modified_at"
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
    serde_json::to_string(tags).map_err(|e| StoreError::Corrupt {
        what: "cannot encode tags".into(),
        source: Some(e),
    })
}

/// Tags read back.
pub(crate) fn decode_tags(id: &str, text: &str) -> Result<Tags, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        what: format!("tags of association '{id}'"),
        source: Some(e),
    })
}

/// A JWKS document as stored.
pub(crate) fn encode_jwks(jwks: &serde_json::Value) -> Result<String, StoreError> {
    serde_json::to_string(jwks).map_err(|e| StoreError::Corrupt {
        what: "cannot encode JWKS".into(),
        source: Some(e),
    })
}

/// A JWKS document read back.
pub(crate) fn decode_jwks(cluster: &str, text: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        what: format!("JWKS of cluster '{cluster}'"),
        source: Some(e),
    })
}

/// A change's before or after fields as stored: a JSON object.
pub(crate) fn encode_audit_state(
    state: &Option<podid_api::audit::AuditState>,
) -> Result<Option<String>, StoreError> {
    state
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::Corrupt {
            what: "cannot encode an audit event's fields".into(),
            source: Some(e),
        })
}

/// A change's before or after fields read back.
pub(crate) fn decode_audit_state(
    seq: i64,
    text: Option<String>,
) -> Result<Option<podid_api::audit::AuditState>, StoreError> {
    text.map(|t| serde_json::from_str(&t))
        .transpose()
        .map_err(|e| StoreError::Corrupt {
            what: format!("audit event {seq}: changed fields"),
            source: Some(e),
        })
}

/// A key source read back.
pub(crate) fn decode_key_source(cluster: &str, text: &str) -> Result<KeySource, StoreError> {
    KeySource::parse(text).ok_or_else(|| {
        StoreError::corrupt(format!(
            "key source of cluster '{cluster}': unknown '{text}'"
        ))
    })
}

/// An agent identity read back.
pub(crate) fn decode_agent_identity(
    cluster: &str,
    text: &str,
) -> Result<podid_api::cluster::AgentIdentity, StoreError> {
    podid_api::cluster::AgentIdentity::parse(text).ok_or_else(|| {
        StoreError::corrupt(format!(
            "agent identity of cluster '{cluster}': unknown '{text}'"
        ))
    })
}

/// A change's kind read back.
pub(crate) fn decode_change_kind(
    position: i64,
    text: &str,
) -> Result<podid_api::changes::ChangeKind, StoreError> {
    podid_api::changes::ChangeKind::parse(text)
        .ok_or_else(|| StoreError::corrupt(format!("change {position}: unknown kind '{text}'")))
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
/// clauses appended to selects that precede a write in the same transaction;
/// `$change_lock` (an `Option<&str>`) is the statement run before a change of
/// the feed is appended, so that positions follow commit order; `$position` is
/// the substring-position function (see [`overview`]).
macro_rules! association_store_impl {
    (
        store: $store:ty,
        db: $db:ty,
        for_update: $for_update:literal,
        for_key_share: $for_key_share:literal,
        change_lock: $change_lock:expr,
        position: $position:literal $(,)?
    ) => {
        $crate::common::steps::association_store_steps! {
            store: $store,
            db: $db,
            for_update: $for_update,
            for_key_share: $for_key_share,
            change_lock: $change_lock,
        }
        $crate::common::changes::association_store_changes! {
            store: $store,
            db: $db,
        }
        $crate::common::overview::association_store_overview! {
            store: $store,
            db: $db,
            position: $position,
        }
        $crate::common::audit::association_store_audit! {
            store: $store,
            db: $db,
        }
        $crate::common::trait_impl::association_store_trait! {
            store: $store,
            db: $db,
            for_update: $for_update,
            for_key_share: $for_key_share,
            change_lock: $change_lock,
        }
    };
}
pub(crate) use association_store_impl;

#[cfg(test)]
mod tests;
