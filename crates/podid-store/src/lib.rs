//! podid's durable state (clusters, pod identity associations, idempotency tokens, audit
//! events, the change feed) behind one [`AssociationStore`] trait: embedded SQLite (default) or PostgreSQL.
#![forbid(unsafe_code)]

use std::sync::Arc;

use async_trait::async_trait;
use podid_api::association::Tags;
use podid_api::cluster::Cluster;
use podid_api::EpochMillis;

mod common;
mod overview;
mod postgres;
mod sqlite;

pub use overview::{
    OverviewCursor, OverviewPage, OverviewPosition, OverviewQuery, MAX_OVERVIEW_PAGE,
};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// An association as stored. Its ARN is not stored: the server derives it from
/// its partition, region and account, so a changed region cannot leave stale ARNs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAssociation {
    /// `a-` and 17 lowercase alphanumerics.
    pub id: String,
    /// The registered cluster.
    pub cluster: String,
    /// Kubernetes namespace.
    pub namespace: String,
    /// Kubernetes service account.
    pub service_account: String,
    /// The IAM role credentials are issued for.
    pub role_arn: String,
    /// The role chained into, if any.
    pub target_role_arn: Option<String>,
    /// The `sts:ExternalId` for the target role; generated at create, never changed.
    pub external_id: String,
    /// Whether session tags are left off.
    pub disable_session_tags: bool,
    /// Inline session policy.
    pub policy: Option<String>,
    /// Resource tags.
    pub tags: Tags,
    /// Creation time.
    pub created_at: EpochMillis,
    /// Last change of the association's settings (not of its tags).
    pub modified_at: EpochMillis,
}

/// An idempotency token presented with a create or update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// The client's `clientRequestToken`, scoped to the cluster.
    pub token: String,
    /// The operation the token was used for (`create`, `update`).
    pub operation: String,
    /// A digest of the request's meaningful content; the same token with a
    /// different digest is refused.
    pub request_digest: String,
}

/// The result of a create or update that may have been a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The association as it now stands.
    pub association: StoredAssociation,
    /// True when an earlier request with the same idempotency token was
    /// answered again and nothing was written.
    pub replayed: bool,
}

/// What to list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListQuery {
    /// The cluster.
    pub cluster: String,
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Only this service account.
    pub service_account: Option<String>,
    /// Continue after this position (from [`Page::next`]).
    pub after: Option<i64>,
    /// Page size, at least 1.
    pub limit: u32,
}

/// One page of associations in creation order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The associations.
    pub items: Vec<StoredAssociation>,
    /// Position to continue after, when more associations follow.
    pub next: Option<i64>,
}

/// What audit events to list, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditQuery {
    /// Only this cluster.
    pub cluster: Option<String>,
    /// Only this namespace.
    pub namespace: Option<String>,
    /// Only this service account.
    pub service_account: Option<String>,
    /// Only events of this association.
    pub association_id: Option<String>,
    /// Only events of these clusters (a key's scope); an empty list lists nothing.
    pub clusters: Option<Vec<String>>,
    /// Only this outcome.
    pub outcome: Option<podid_api::audit::AuditOutcome>,
    /// Only events of this kind.
    pub kind: Option<podid_api::audit::AuditKind>,
    /// Only events at or after this time.
    pub since: Option<EpochMillis>,
    /// Continue with events older than this position (from [`AuditPage::next`]).
    pub before: Option<i64>,
    /// Go back to the events newer than this position (from [`AuditPage::prev`]): the
    /// page holds the oldest of them, still newest first. Wins over `before`.
    pub after: Option<i64>,
    /// Page size, at least 1.
    pub limit: u32,
}

/// One page of audit events, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPage {
    /// The events.
    pub events: Vec<podid_api::audit::AuditEvent>,
    /// Position to continue before, when older events follow.
    pub next: Option<i64>,
    /// Position to go back from (as [`AuditQuery::after`]), when newer events precede
    /// this page; a first page (neither `before` nor `after`) has none.
    pub prev: Option<i64>,
}

/// Errors of the store. Domain outcomes (not found, conflicts) are variants of
/// their own so the server can map them to API errors; database failures keep
/// their source for the log, never for the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No cluster of that name is registered.
    #[error("cluster '{0}' is not registered")]
    ClusterNotFound(String),
    /// A cluster of that name is registered already.
    #[error("cluster '{0}' is already registered")]
    ClusterExists(String),
    /// The cluster still has associations and `force` was not given.
    #[error("cluster '{name}' still has {associations} pod identity associations")]
    ClusterInUse {
        /// The cluster.
        name: String,
        /// How many associations it has.
        associations: u64,
    },
    /// No association with that id in that cluster.
    #[error("association '{id}' not found in cluster '{cluster}'")]
    AssociationNotFound {
        /// The cluster.
        cluster: String,
        /// The association id.
        id: String,
    },
    /// Another association already maps this service account.
    #[error(
        "service account {namespace}/{service_account} in cluster '{cluster}' already has association '{existing_id}'"
    )]
    DuplicateAssociation {
        /// The cluster.
        cluster: String,
        /// The namespace.
        namespace: String,
        /// The service account.
        service_account: String,
        /// The association that holds the mapping.
        existing_id: String,
    },
    /// The idempotency token was used before with a different request.
    #[error("clientRequestToken was already used with a different request")]
    IdempotencyMismatch,
    /// The record changed since the caller read it; read again and retry.
    #[error("the resource was changed concurrently")]
    Conflict,
    /// Adding tags would exceed the limit.
    #[error("the resource would carry {0} tags, at most 50 are allowed")]
    TooManyTags(usize),
    /// The database URL is not understood.
    #[error("unsupported database URL '{0}': use sqlite:///path/to/podid.db or postgres://…")]
    InvalidUrl(String),
    /// A stored row could not be read back.
    #[error(
        "stored data is corrupt: {what}{}",
        source.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
    )]
    Corrupt {
        /// What is damaged.
        what: String,
        /// The JSON parser's complaint, if that is how it was found.
        #[source]
        source: Option<serde_json::Error>,
    },
    /// The database failed.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// Migrations failed.
    #[error("database migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// [`StoreError::Corrupt`] without a parser error.
    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        StoreError::Corrupt {
            what: what.into(),
            source: None,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(e)
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(e)
    }
}

/// podid's durable state. Every method is atomic: a failed or interrupted call
/// leaves nothing half-written, and a call that returned `Ok` is durable.
#[async_trait]
pub trait AssociationStore: Send + Sync + 'static {
    /// Answers when the database is reachable (readiness).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Registers a cluster; [`StoreError::ClusterExists`] if the name is taken.
    async fn insert_cluster(&self, cluster: &Cluster) -> Result<(), StoreError>;
    /// The cluster of that name.
    async fn get_cluster(&self, name: &str) -> Result<Option<Cluster>, StoreError>;
    /// Every cluster, by name.
    async fn list_clusters(&self) -> Result<Vec<Cluster>, StoreError>;
    /// Replaces a registered cluster's settings if it still has
    /// `expected_modified_at` ([`StoreError::Conflict`] otherwise, so concurrent
    /// partial updates cannot overwrite each other); [`StoreError::ClusterNotFound`] if absent.
    async fn update_cluster(
        &self,
        cluster: &Cluster,
        expected_modified_at: EpochMillis,
    ) -> Result<(), StoreError>;
    /// Deregisters a cluster. With associations left it fails with
    /// [`StoreError::ClusterInUse`] unless `force`, which deletes them too.
    async fn delete_cluster(&self, name: &str, force: bool) -> Result<Cluster, StoreError>;

    /// Creates an association. Fails with [`StoreError::ClusterNotFound`],
    /// [`StoreError::DuplicateAssociation`] or [`StoreError::IdempotencyMismatch`];
    /// a token seen before with the same digest returns the association it created.
    async fn create_association(
        &self,
        association: &StoredAssociation,
        idempotency: Option<&IdempotencyKey>,
    ) -> Result<Written, StoreError>;
    /// The association `id` of `cluster`.
    async fn get_association(
        &self,
        cluster: &str,
        id: &str,
    ) -> Result<Option<StoredAssociation>, StoreError>;
    /// The association of (cluster, namespace, service account), as the broker needs it.
    async fn find_association(
        &self,
        cluster: &str,
        namespace: &str,
        service_account: &str,
    ) -> Result<Option<StoredAssociation>, StoreError>;
    /// One page of a cluster's associations in creation order.
    async fn list_associations(&self, query: &ListQuery) -> Result<Page, StoreError>;
    /// One page of the associations of every cluster (or of the query's scope), newest
    /// `modified_at` first, with substring filters; pages are keyset positions, so rows
    /// added or changed meanwhile neither repeat nor skip the rows of other pages.
    async fn list_all_associations(
        &self,
        query: &OverviewQuery,
    ) -> Result<OverviewPage, StoreError>;
    /// Writes changed settings of an existing association (matched by cluster
    /// and id; namespace, service account, external id, tags and creation time
    /// are kept), if it still has `expected_modified_at` — else
    /// [`StoreError::Conflict`], and the caller reads again. Idempotency as for
    /// create (a replay is answered before the version is checked).
    async fn update_association(
        &self,
        association: &StoredAssociation,
        expected_modified_at: EpochMillis,
        idempotency: Option<&IdempotencyKey>,
    ) -> Result<Written, StoreError>;
    /// Deletes an association and its idempotency tokens, returning it as it was.
    async fn delete_association(
        &self,
        cluster: &str,
        id: &str,
    ) -> Result<StoredAssociation, StoreError>;
    /// Adds or overwrites `add` and removes `remove` in one step, refusing with
    /// [`StoreError::TooManyTags`] past 50. Tags do not change `modified_at`.
    async fn update_tags(
        &self,
        cluster: &str,
        id: &str,
        add: &Tags,
        remove: &[String],
    ) -> Result<StoredAssociation, StoreError>;

    /// Appends audit events in one transaction (the broker batches them).
    async fn record_audit(&self, events: &[podid_api::audit::AuditEvent])
        -> Result<(), StoreError>;
    /// Lists audit events, newest first.
    async fn list_audit(&self, query: &AuditQuery) -> Result<AuditPage, StoreError>;
    /// The number of associations of each cluster (of `scope`'s clusters only, when
    /// given), in one statement; clusters without associations are absent.
    async fn count_associations(
        &self,
        scope: Option<&[String]>,
    ) -> Result<std::collections::BTreeMap<String, u64>, StoreError>;
    /// The change feed of `cluster`. Without `after`: no changes, and the feed's end as
    /// the position to follow from. With `after`: the cluster's changes after it, oldest
    /// first, at most `limit` (1 to 500), and the position to ask from next; `reset`
    /// (and no changes) when `after` is below what pruning removed or beyond the feed's
    /// end (another database). Every association create, update (tags included) and
    /// delete and every cluster update and deregistration appends one change in its
    /// own transaction; positions increase in commit order, with gaps.
    async fn association_changes(
        &self,
        cluster: &str,
        after: Option<i64>,
        limit: u32,
    ) -> Result<podid_api::changes::ChangesResponse, StoreError>;
    /// Deletes the changes older than `before` (and any with a lower position),
    /// remembering the highest position deleted; returns how many it deleted.
    async fn prune_changes(&self, before: EpochMillis) -> Result<u64, StoreError>;
    /// Deletes at most `max_rows` of the oldest audit events older than
    /// `older_than`, in one short transaction; returns how many it deleted.
    async fn prune_audit(&self, older_than: EpochMillis, max_rows: u32) -> Result<u64, StoreError>;
}

/// Opens the store a database URL names and runs its migrations:
/// `sqlite:///abs/path.db`, `sqlite://relative.db`, `sqlite::memory:`, or
/// `postgres://…` / `postgresql://…`.
pub async fn open(url: &str) -> Result<Arc<dyn AssociationStore>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::connect(url).await?))
    } else if let Some(path) = sqlite_path(url) {
        Ok(Arc::new(SqliteStore::open(&path).await?))
    } else {
        Err(StoreError::InvalidUrl(url.to_owned()))
    }
}

/// The file a `sqlite:` URL names (`:memory:` for an in-memory database).
pub fn sqlite_path(url: &str) -> Option<String> {
    let rest = url.strip_prefix("sqlite:")?;
    let path = rest.strip_prefix("//").unwrap_or(rest);
    let path = path.split('?').next().unwrap_or("");
    (!path.is_empty()).then(|| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls() {
        assert_eq!(
            sqlite_path("sqlite:///var/lib/podid/podid.db").as_deref(),
            Some("/var/lib/podid/podid.db")
        );
        assert_eq!(
            sqlite_path("sqlite://podid.db").as_deref(),
            Some("podid.db")
        );
        assert_eq!(sqlite_path("sqlite::memory:").as_deref(), Some(":memory:"));
        assert_eq!(sqlite_path("sqlite://"), None);
        assert_eq!(sqlite_path("mysql://x"), None);
    }
}
