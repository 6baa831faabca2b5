//! One suite of store tests, written once against `dyn AssociationStore` and
//! run on every backend: a SQLite file, SQLite `:memory:` and PostgreSQL.
//!
//! PostgreSQL tests use the database `PODID_TEST_POSTGRES_URL` names (see
//! `tests/setup-postgres.sh`), each test in a fresh schema of its own so they
//! can run in parallel. Without the variable they are skipped, except under
//! `CI`, where they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use podid_api::association::Tags;
use podid_api::cluster::{Cluster, KeySource};
use podid_api::EpochMillis;
use podid_store::{
    AssociationStore, IdempotencyKey, ListQuery, Page, PostgresStore, SqliteStore, StoreError,
    StoredAssociation, Written,
};
use serde_json::json;

// ---------------------------------------------------------------- fixture

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    SqliteFile,
    SqliteMemory,
    Postgres,
}

enum Handle {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PostgresStore>),
}

struct Fixture {
    kind: Kind,
    handle: Handle,
    /// The SQLite file, or the PostgreSQL URL with the test's schema.
    location: String,
    /// PostgreSQL: the server URL and the test's schema, dropped at the end.
    pg_schema: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique() -> u64 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

fn postgres_url() -> Option<String> {
    match std::env::var("PODID_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!(
            "PODID_TEST_POSTGRES_URL is not set but CI is: PostgreSQL tests must not be skipped in CI \
             (run crates/podid-store/tests/setup-postgres.sh and export the URL it prints)"
        ),
        _ => None,
    }
}

impl Fixture {
    /// A fresh, empty store of `kind`; `None` when PostgreSQL tests are skipped.
    async fn new(kind: Kind) -> Option<Fixture> {
        match kind {
            Kind::SqliteFile => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("podid.db").to_str().unwrap().to_owned();
                let store = SqliteStore::open(&path).await.unwrap();
                Some(Fixture {
                    kind,
                    handle: Handle::Sqlite(Arc::new(store)),
                    location: path,
                    pg_schema: None,
                    _dir: Some(dir),
                })
            }
            Kind::SqliteMemory => {
                let store = SqliteStore::open(":memory:").await.unwrap();
                Some(Fixture {
                    kind,
                    handle: Handle::Sqlite(Arc::new(store)),
                    location: ":memory:".into(),
                    pg_schema: None,
                    _dir: None,
                })
            }
            Kind::Postgres => {
                let Some(base) = postgres_url() else {
                    println!("PostgreSQL tests skipped: PODID_TEST_POSTGRES_URL is not set");
                    return None;
                };
                let nanos = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos();
                let schema = format!(
                    "t_{}_{}_{}",
                    std::process::id(),
                    nanos % 1_000_000_000,
                    unique()
                );
                let admin = sqlx::PgPool::connect(&base).await.unwrap();
                sqlx::query(&format!("CREATE SCHEMA {schema}"))
                    .execute(&admin)
                    .await
                    .unwrap();
                admin.close().await;
                let sep = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
                let store = PostgresStore::connect(&url).await.unwrap();
                Some(Fixture {
                    kind,
                    handle: Handle::Postgres(Arc::new(store)),
                    location: url,
                    pg_schema: Some((base, schema)),
                    _dir: None,
                })
            }
        }
    }

    /// The store, with a [`cluster`] of each name registered.
    async fn store_with(&self, clusters: &[&str]) -> Arc<dyn AssociationStore> {
        let s = self.store();
        for name in clusters {
            s.insert_cluster(&cluster(name)).await.unwrap();
        }
        s
    }

    fn store(&self) -> Arc<dyn AssociationStore> {
        match &self.handle {
            Handle::Sqlite(s) => s.clone(),
            Handle::Postgres(s) => s.clone(),
        }
    }

    async fn close(&self) {
        match &self.handle {
            Handle::Sqlite(s) => s.close().await,
            Handle::Postgres(s) => s.close().await,
        }
    }

    /// Closes the store and opens the same database again.
    async fn reopen(&mut self) {
        self.close().await;
        self.handle = match self.kind {
            Kind::SqliteFile => {
                Handle::Sqlite(Arc::new(SqliteStore::open(&self.location).await.unwrap()))
            }
            Kind::Postgres => Handle::Postgres(Arc::new(
                PostgresStore::connect(&self.location).await.unwrap(),
            )),
            Kind::SqliteMemory => panic!("an in-memory database cannot be reopened"),
        };
    }

    /// Runs raw SQL on the database behind the store's back (not on `:memory:`).
    async fn raw(&self, sql: &str) {
        match self.kind {
            Kind::SqliteFile => {
                let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", self.location))
                    .await
                    .unwrap();
                sqlx::query(sql).execute(&pool).await.unwrap();
                pool.close().await;
            }
            Kind::Postgres => {
                let pool = sqlx::PgPool::connect(&self.location).await.unwrap();
                sqlx::query(sql).execute(&pool).await.unwrap();
                pool.close().await;
            }
            Kind::SqliteMemory => panic!("an in-memory database has no second connection"),
        }
    }

    async fn finish(self) {
        self.close().await;
        if let Some((base, schema)) = &self.pg_schema {
            let admin = sqlx::PgPool::connect(base).await.unwrap();
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
        }
    }
}

/// Runs each suite function on each backend (a module per backend; PostgreSQL's
/// tests return at once when they are skipped).
/// Tests under `persistent:` need a database that outlives the store, so they
/// are not generated for `:memory:`.
macro_rules! suite {
    ($($name:ident),* $(,)? ; persistent: $($durable:ident),* $(,)?) => {
        suite!(@backend sqlite_file, SqliteFile, $($name,)* $($durable),*);
        suite!(@backend sqlite_memory, SqliteMemory, $($name),*);
        suite!(@backend postgres, Postgres, $($name,)* $($durable),*);
    };
    (@backend $module:ident, $kind:ident, $($name:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(mut f) = super::Fixture::new(super::Kind::$kind).await else { return };
                    super::$name(&mut f).await;
                    f.finish().await;
                }
            )*
        }
    };
}

/// Asserts that `$result` matches `$pattern` (and its guard), showing it otherwise.
macro_rules! assert_matches {
    ($result:expr, $pattern:pat $(if $guard:expr)? $(,)?) => {
        match $result {
            $pattern $(if $guard)? => {}
            other => panic!("expected {}, got {other:?}", stringify!($pattern)),
        }
    };
}

suite! {
    clusters,
    create_and_read,
    create_requires_cluster,
    duplicate_association,
    idempotent_create,
    replay_after_delete,
    update_association,
    update_idempotency,
    tag_updates,
    delete_association,
    list_pagination,
    delete_cluster,
    concurrent_distinct_creates,
    concurrent_same_service_account,
    concurrent_same_token,
    concurrent_tag_updates,
    concurrent_force_delete_and_creates,
    audit_log,
    audit_changes,
    audit_prune,
    changes_of_each_write,
    changes_paging,
    changes_prune_and_reset,
    node_identity_columns,
    concurrent_writes_followed,
    overview_order_and_filters,
    overview_scope,
    overview_paging,
    overview_paging_while_rows_change,
    audit_of_association,
    audit_pages_both_ways,
    association_counts;
    persistent: reopen_keeps_data, corrupt_rows_and_stale_tokens, audit_rows_of_before_changes,
    failed_change_rolls_back, migration_from_0003,
}

#[path = "store_suite/overview.rs"]
mod overview;
use overview::{
    audit_of_association, overview_order_and_filters, overview_paging,
    overview_paging_while_rows_change, overview_scope,
};

#[path = "store_suite/console.rs"]
mod console;
use console::{association_counts, audit_pages_both_ways};

#[path = "store_suite/changes.rs"]
mod changes;
use changes::{
    changes_of_each_write, changes_paging, changes_prune_and_reset, concurrent_writes_followed,
    failed_change_rolls_back, migration_from_0003, node_identity_columns,
};

// ---------------------------------------------------------------- builders

fn cluster(name: &str) -> Cluster {
    Cluster {
        name: name.to_owned(),
        issuer: format!("https://oidc.example.com/{name}"),
        audience: "pods.eks.amazonaws.com".into(),
        cluster_arn: format!("arn:aws:eks:us-east-1:111122223333:cluster/{name}"),
        key_source: KeySource::Inline,
        jwks_uri: None,
        jwks: json!({"keys": [{"kty": "RSA", "kid": "k1", "n": "abc", "e": "AQAB"}]}),
        agent_identity: podid_api::cluster::AgentIdentity::Key,
        agent_service_account: podid_api::cluster::DEFAULT_AGENT_SERVICE_ACCOUNT.to_owned(),
        node_binding: false,
        token_review: None,
        created_at: EpochMillis(1_700_000_000_123),
        modified_at: EpochMillis(1_700_000_000_123),
    }
}

fn new_id() -> String {
    format!("a-{:017}", unique())
}

fn assoc(cluster: &str, namespace: &str, service_account: &str) -> StoredAssociation {
    StoredAssociation {
        id: new_id(),
        cluster: cluster.to_owned(),
        namespace: namespace.to_owned(),
        service_account: service_account.to_owned(),
        role_arn: "arn:aws:iam::111122223333:role/app".into(),
        target_role_arn: None,
        external_id: format!("ext-{}", unique()),
        disable_session_tags: false,
        policy: None,
        tags: Tags::new(),
        created_at: EpochMillis(1_700_000_100_000),
        modified_at: EpochMillis(1_700_000_100_000),
    }
}

fn key(token: &str, operation: &str, digest: &str) -> IdempotencyKey {
    IdempotencyKey {
        token: token.into(),
        operation: operation.into(),
        request_digest: digest.into(),
    }
}

/// What a create or update answers: `association`, written now or earlier (`replayed`).
fn written(association: StoredAssociation, replayed: bool) -> Written {
    Written {
        association,
        replayed,
    }
}

fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn query(cluster: &str, limit: u32) -> ListQuery {
    ListQuery {
        cluster: cluster.into(),
        limit,
        ..ListQuery::default()
    }
}

async fn create(s: &dyn AssociationStore, a: &StoredAssociation) -> StoredAssociation {
    let w = s.create_association(a, None).await.unwrap();
    assert!(!w.replayed);
    w.association
}

/// Every item a query lists, page by page.
async fn list_all(s: &dyn AssociationStore, q: &ListQuery) -> (Vec<StoredAssociation>, usize) {
    let mut q = q.clone();
    let mut all = Vec::new();
    let mut pages = 0;
    loop {
        let Page { items, next } = s.list_associations(&q).await.unwrap();
        pages += 1;
        assert!(items.len() <= q.limit.max(1) as usize);
        all.extend(items);
        match next {
            Some(n) => q.after = Some(n),
            None => return (all, pages),
        }
        assert!(pages < 10_000, "pagination does not end");
    }
}

/// The first page of `cluster`'s associations, at most `limit` long.
async fn items(s: &dyn AssociationStore, cluster: &str, limit: u32) -> Vec<StoredAssociation> {
    s.list_associations(&query(cluster, limit))
        .await
        .unwrap()
        .items
}

/// Starts `task(store, i)` for each `i` in `0..n`, all at once.
fn spawn_each<T, F>(
    s: &Arc<dyn AssociationStore>,
    n: u32,
    task: impl Fn(Arc<dyn AssociationStore>, u32) -> F,
) -> Vec<tokio::task::JoinHandle<T>>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    (0..n).map(|i| tokio::spawn(task(s.clone(), i))).collect()
}

/// Creates `a` with the idempotency token `k`.
async fn create_keyed(
    s: &dyn AssociationStore,
    a: &StoredAssociation,
    k: &IdempotencyKey,
) -> Written {
    s.create_association(a, Some(k)).await.unwrap()
}

/// Updates to `a` from `expected_modified_at` with the idempotency token `k`.
async fn update_keyed(
    s: &dyn AssociationStore,
    a: &StoredAssociation,
    expected_modified_at: EpochMillis,
    k: &IdempotencyKey,
) -> Result<Written, StoreError> {
    s.update_association(a, expected_modified_at, Some(k)).await
}

/// The association `id` of `cluster`, which must exist.
async fn stored(s: &dyn AssociationStore, cluster: &str, id: &str) -> StoredAssociation {
    s.get_association(cluster, id).await.unwrap().unwrap()
}

/// Whether `result` reports damaged stored data.
fn corrupt<T>(result: Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::Corrupt { .. }))
}

/// An unexpected error and its source, for a panic message.
fn describe(e: &StoreError) -> String {
    format!("{e:?} ({:?})", std::error::Error::source(e))
}

fn ids(items: &[StoredAssociation]) -> Vec<String> {
    items.iter().map(|a| a.id.clone()).collect()
}

// ---------------------------------------------------------------- the suite

async fn clusters(f: &mut Fixture) {
    let s = f.store();
    s.ping().await.unwrap();
    assert!(s.list_clusters().await.unwrap().is_empty());

    let b = cluster("b-cluster");
    let mut a = cluster("a-cluster");
    a.key_source = KeySource::Uri;
    a.jwks_uri = Some("https://oidc.example.com/keys".into());
    a.jwks = json!({"keys": [], "nested": {"x": [1, 2.5, null, "ü"]}});
    s.insert_cluster(&b).await.unwrap();
    s.insert_cluster(&a).await.unwrap();
    assert_eq!(s.get_cluster("a-cluster").await.unwrap(), Some(a.clone()));
    assert_eq!(s.get_cluster("b-cluster").await.unwrap(), Some(b.clone()));
    assert_eq!(s.get_cluster("c-cluster").await.unwrap(), None);
    assert_eq!(s.list_clusters().await.unwrap(), vec![a.clone(), b.clone()]);

    let mut again = cluster("b-cluster");
    again.issuer = "https://other".into();
    assert_matches!(
        s.insert_cluster(&again).await,
        Err(StoreError::ClusterExists(name)) if name == "b-cluster"
    );
    assert_eq!(s.get_cluster("b-cluster").await.unwrap(), Some(b.clone()));

    let mut changed = b.clone();
    changed.issuer = "https://new-issuer".into();
    changed.key_source = KeySource::Discovery;
    changed.jwks_uri = Some("https://new-issuer/keys".into());
    changed.jwks = json!({"keys": [{"kid": "k2"}]});
    changed.modified_at = EpochMillis(1_800_000_000_000);
    changed.created_at = EpochMillis(1); // ignored: creation time is kept
    s.update_cluster(&changed, b.modified_at).await.unwrap();
    // A second writer that read the old version is refused and writes nothing.
    let mut stale = b.clone();
    stale.audience = "stale".into();
    assert!(matches!(
        s.update_cluster(&stale, b.modified_at).await,
        Err(StoreError::Conflict)
    ));
    let stored = s.get_cluster("b-cluster").await.unwrap().unwrap();
    assert_eq!(
        stored,
        Cluster {
            created_at: b.created_at,
            ..changed
        }
    );

    assert_matches!(
        s.update_cluster(&cluster("nope"), EpochMillis(0)).await,
        Err(StoreError::ClusterNotFound(name)) if name == "nope"
    );
    assert_eq!(s.list_clusters().await.unwrap().len(), 2);
}

async fn create_and_read(f: &mut Fixture) {
    let s = f.store_with(&["c1", "c2"]).await;

    let plain = assoc("c1", "default", "app");
    let Written {
        association,
        replayed,
    } = s.create_association(&plain, None).await.unwrap();
    assert!(!replayed);
    assert_eq!(association, plain);

    let mut full = assoc("c1", "kube-system", "ünïcode-sa");
    full.target_role_arn = Some("arn:aws:iam::444455556666:role/target".into());
    full.disable_session_tags = true;
    full.policy = Some(r#"{"Version":"2012-10-17","Statement":[]}"#.into());
    full.tags = tags(&[("team", "payments"), ("empty", ""), ("ключ", "значение")]);
    assert_eq!(create(&*s, &full).await, full);

    assert_eq!(
        s.get_association("c1", &plain.id).await.unwrap(),
        Some(plain.clone())
    );
    assert_eq!(
        s.get_association("c1", &full.id).await.unwrap(),
        Some(full.clone())
    );
    assert_eq!(s.get_association("c2", &plain.id).await.unwrap(), None);
    assert_eq!(
        s.get_association("c1", "a-00000000000000000")
            .await
            .unwrap(),
        None
    );

    assert_eq!(
        s.find_association("c1", "default", "app").await.unwrap(),
        Some(plain.clone())
    );
    assert_eq!(
        s.find_association("c1", "kube-system", "ünïcode-sa")
            .await
            .unwrap(),
        Some(full.clone())
    );
    assert_eq!(
        s.find_association("c1", "default", "other").await.unwrap(),
        None
    );
    assert_eq!(
        s.find_association("c1", "other", "app").await.unwrap(),
        None
    );
    assert_eq!(
        s.find_association("c2", "default", "app").await.unwrap(),
        None
    );
}

async fn create_requires_cluster(f: &mut Fixture) {
    let s = f.store();
    let a = assoc("ghost", "default", "app");
    assert_matches!(
        s.create_association(&a, None).await,
        Err(StoreError::ClusterNotFound(name)) if name == "ghost"
    );
    assert_matches!(
        s.create_association(&a, Some(&key("t", "create", "d")))
            .await,
        Err(StoreError::ClusterNotFound(_))
    );
    // Nothing was written: once the cluster exists, the same create (and token) works.
    s.insert_cluster(&cluster("ghost")).await.unwrap();
    assert!(items(&*s, "ghost", 10).await.is_empty());
    let w = create_keyed(&*s, &a, &key("t", "create", "d")).await;
    assert!(!w.replayed);
}

async fn duplicate_association(f: &mut Fixture) {
    let s = f.store_with(&["c1", "c2"]).await;
    let first = create(&*s, &assoc("c1", "ns", "sa")).await;

    let dup = assoc("c1", "ns", "sa");
    assert_matches!(
        s.create_association(&dup, None).await,
        Err(StoreError::DuplicateAssociation {
            cluster,
            namespace,
            service_account,
            existing_id,
        }) if (cluster.as_str(), namespace.as_str(), service_account.as_str()) == ("c1", "ns", "sa")
            && existing_id == first.id
    );
    // A new token does not get around it either.
    assert_matches!(
        s.create_association(&dup, Some(&key("fresh", "create", "d"))).await,
        Err(StoreError::DuplicateAssociation { existing_id, .. }) if existing_id == first.id
    );
    assert_eq!(s.get_association("c1", &dup.id).await.unwrap(), None);

    // Any other member of the triple differing is a different mapping.
    create(&*s, &assoc("c1", "ns", "sa2")).await;
    create(&*s, &assoc("c1", "ns2", "sa")).await;
    create(&*s, &assoc("c2", "ns", "sa")).await;
    assert_eq!(items(&*s, "c1", 10).await.len(), 3);

    // The refused create's token was not recorded.
    let w = create_keyed(&*s, &assoc("c1", "ns3", "sa"), &key("fresh", "create", "d")).await;
    assert!(!w.replayed);
}

async fn idempotent_create(f: &mut Fixture) {
    let s = f.store_with(&["c1", "c2"]).await;
    let k = key("token-1", "create", "digest-1");

    let original = assoc("c1", "ns", "sa");
    let w = create_keyed(&*s, &original, &k).await;
    assert_eq!(w, written(original.clone(), false));

    // The retry carries freshly generated id and external id: the first answer comes back.
    let retry = assoc("c1", "ns", "sa");
    let w = create_keyed(&*s, &retry, &k).await;
    assert_eq!(w, written(original.clone(), true));
    assert_eq!(s.get_association("c1", &retry.id).await.unwrap(), None);

    // The replay shows the association as it now stands.
    let tagged = s
        .update_tags("c1", &original.id, &tags(&[("k", "v")]), &[])
        .await
        .unwrap();
    let w = create_keyed(&*s, &retry, &k).await;
    assert_eq!(w, written(tagged, true));

    // The same token with another request is refused.
    for other in [
        key("token-1", "create", "digest-2"),
        key("token-1", "update", "digest-1"),
    ] {
        assert_matches!(
            s.create_association(&assoc("c1", "ns", "other-sa"), Some(&other))
                .await,
            Err(StoreError::IdempotencyMismatch)
        );
    }
    assert_eq!(
        s.find_association("c1", "ns", "other-sa").await.unwrap(),
        None
    );

    // Tokens are scoped to the cluster.
    let elsewhere = assoc("c2", "ns", "sa");
    let w = create_keyed(&*s, &elsewhere, &k).await;
    assert_eq!(w, written(elsewhere, false));
}

async fn replay_after_delete(f: &mut Fixture) {
    let s = f.store_with(&["c1"]).await;
    let k = key("token", "create", "digest");
    let first = assoc("c1", "ns", "sa");
    assert!(!create_keyed(&*s, &first, &k).await.replayed);
    s.delete_association("c1", &first.id).await.unwrap();

    // The token went with the association: the same request creates anew.
    let second = assoc("c1", "ns", "sa");
    let w = create_keyed(&*s, &second, &k).await;
    assert_eq!(w, written(second.clone(), false));
    // ... and the token now stands for the new association.
    let w = create_keyed(&*s, &assoc("c1", "ns", "sa"), &k).await;
    assert_eq!(w, written(second, true));
}

async fn update_association(f: &mut Fixture) {
    let s = f.store_with(&["c1", "c2"]).await;
    let mut original = assoc("c1", "ns", "sa");
    original.tags = tags(&[("a", "1")]);
    let original = create(&*s, &original).await;

    let mut change = original.clone();
    change.role_arn = "arn:aws:iam::111122223333:role/new".into();
    change.target_role_arn = Some("arn:aws:iam::444455556666:role/target".into());
    change.disable_session_tags = true;
    change.policy = Some("{}".into());
    change.modified_at = EpochMillis(1_800_000_000_000);
    // Fields update does not write:
    change.namespace = "changed".into();
    change.service_account = "changed".into();
    change.external_id = "changed".into();
    change.tags = Tags::new();
    change.created_at = EpochMillis(5);

    let expected = StoredAssociation {
        role_arn: change.role_arn.clone(),
        target_role_arn: change.target_role_arn.clone(),
        disable_session_tags: true,
        policy: change.policy.clone(),
        modified_at: change.modified_at,
        ..original.clone()
    };
    let w = s
        .update_association(&change, original.modified_at, None)
        .await
        .unwrap();
    // Another writer holding the version it read before is refused.
    let mut stale = original.clone();
    stale.role_arn = "arn:aws:iam::111122223333:role/stale".into();
    assert!(matches!(
        s.update_association(&stale, original.modified_at, None)
            .await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(w, written(expected.clone(), false));
    assert_eq!(
        s.get_association("c1", &original.id).await.unwrap(),
        Some(expected.clone())
    );
    assert_eq!(
        s.find_association("c1", "ns", "sa").await.unwrap(),
        Some(expected.clone())
    );

    // Clearing the optional fields.
    let mut clear = expected.clone();
    clear.target_role_arn = None;
    clear.policy = None;
    clear.disable_session_tags = false;
    clear.modified_at = EpochMillis(1_800_000_000_001);
    assert_eq!(
        s.update_association(&clear, expected.modified_at, None)
            .await
            .unwrap()
            .association,
        clear
    );

    for (cluster, id) in [
        ("c1", "a-00000000000000000"),
        ("c2", original.id.as_str()),
        ("ghost", original.id.as_str()),
    ] {
        let missing = StoredAssociation {
            cluster: cluster.into(),
            id: id.into(),
            ..clear.clone()
        };
        assert_matches!(
            s.update_association(&missing, clear.modified_at, None).await,
            Err(StoreError::AssociationNotFound { cluster: c, id: i })
                if (c.as_str(), i.as_str()) == (cluster, id)
        );
    }
    assert_eq!(
        s.get_association("c1", &original.id).await.unwrap(),
        Some(clear)
    );
}

async fn update_idempotency(f: &mut Fixture) {
    let s = f.store_with(&["c1"]).await;
    let one = create(&*s, &assoc("c1", "ns", "one")).await;
    let two = create(&*s, &assoc("c1", "ns", "two")).await;
    let k = key("upd", "update", "d1");

    let change = StoredAssociation {
        role_arn: "arn:aws:iam::111122223333:role/first".into(),
        modified_at: EpochMillis(1_800_000_000_000),
        ..one.clone()
    };
    let first = update_keyed(&*s, &change, one.modified_at, &k)
        .await
        .unwrap();
    assert!(!first.replayed);
    assert_eq!(first.association.role_arn, change.role_arn);

    // A replay writes nothing and answers with the association as it stands.
    let mut again = change.clone();
    again.role_arn = "arn:aws:iam::111122223333:role/not-written".into();
    again.modified_at = EpochMillis(1_900_000_000_000);
    let replay = update_keyed(&*s, &again, one.modified_at, &k)
        .await
        .unwrap();
    assert_eq!(replay, written(first.association.clone(), true));
    assert_eq!(
        s.get_association("c1", &one.id).await.unwrap(),
        Some(first.association.clone())
    );

    // Other request, other association, or another operation's token: refused.
    assert_matches!(
        update_keyed(
            &*s,
            &again,
            first.association.modified_at,
            &key("upd", "update", "d2")
        )
        .await,
        Err(StoreError::IdempotencyMismatch)
    );
    let on_two = StoredAssociation {
        role_arn: "arn:aws:iam::111122223333:role/x".into(),
        ..two.clone()
    };
    assert_matches!(
        update_keyed(&*s, &on_two, two.modified_at, &k).await,
        Err(StoreError::IdempotencyMismatch)
    );
    assert_eq!(
        s.get_association("c1", &two.id).await.unwrap(),
        Some(two.clone())
    );
    let created_with = key("made", "create", "dc");
    create_with_token(&*s, &assoc("c1", "ns", "three"), &created_with).await;
    assert_matches!(
        update_keyed(&*s, &on_two, two.modified_at, &key("made", "update", "dc")).await,
        Err(StoreError::IdempotencyMismatch)
    );
    // A missing association with a new token: not found, and the token stays unused.
    let ghost = StoredAssociation {
        id: "a-00000000000000000".into(),
        ..two.clone()
    };
    assert_matches!(
        update_keyed(&*s, &ghost, two.modified_at, &key("new", "update", "dn")).await,
        Err(StoreError::AssociationNotFound { .. })
    );
    let w = update_keyed(
        &*s,
        &on_two,
        two.modified_at,
        &key("new", "update", "d-two"),
    )
    .await
    .unwrap();
    assert!(!w.replayed);
    assert_eq!(w.association.role_arn, on_two.role_arn);
}

async fn create_with_token(
    s: &dyn AssociationStore,
    a: &StoredAssociation,
    k: &IdempotencyKey,
) -> StoredAssociation {
    let w = create_keyed(s, a, k).await;
    assert!(!w.replayed);
    w.association
}

async fn tag_updates(f: &mut Fixture) {
    let s = f.store_with(&["c1"]).await;
    let a = create(&*s, &assoc("c1", "ns", "sa")).await;

    let t = s
        .update_tags("c1", &a.id, &tags(&[("a", "1"), ("b", "2")]), &[])
        .await
        .unwrap();
    assert_eq!(t.tags, tags(&[("a", "1"), ("b", "2")]));
    assert_eq!(
        t.modified_at, a.modified_at,
        "tags do not change modified_at"
    );
    assert_eq!(
        s.get_association("c1", &a.id).await.unwrap(),
        Some(t.clone())
    );

    // Removal comes first, then additions overwrite; unknown keys are ignored.
    let t = s
        .update_tags(
            "c1",
            &a.id,
            &tags(&[("a", "new"), ("c", "3")]),
            &["a".into(), "b".into(), "zzz".into()],
        )
        .await
        .unwrap();
    assert_eq!(t.tags, tags(&[("a", "new"), ("c", "3")]));

    // Up to 50 in all.
    let many: Tags = (0..48)
        .map(|i| (format!("k{i:02}"), format!("v{i}")))
        .collect();
    let t = s.update_tags("c1", &a.id, &many, &[]).await.unwrap();
    assert_eq!(t.tags.len(), 50);
    let before = stored(&*s, "c1", &a.id).await;
    assert_matches!(
        s.update_tags("c1", &a.id, &tags(&[("one-more", "x")]), &[]).await,
        Err(StoreError::TooManyTags(n)) if n == 51
    );
    // A refused change writes nothing, not even its removals.
    assert_matches!(
        s.update_tags("c1", &a.id, &tags(&[("x1", ""), ("x2", "")]), &["a".into()]).await,
        Err(StoreError::TooManyTags(n)) if n == 51
    );
    assert_eq!(s.get_association("c1", &a.id).await.unwrap(), Some(before));
    // Swapping one for another at the limit is fine.
    let t = s
        .update_tags("c1", &a.id, &tags(&[("swap", "in")]), &["a".into()])
        .await
        .unwrap();
    assert_eq!(t.tags.len(), 50);
    assert!(t.tags.contains_key("swap") && !t.tags.contains_key("a"));

    // Update leaves tags alone.
    let mut change = t.clone();
    change.role_arn = "arn:aws:iam::111122223333:role/other".into();
    change.tags = Tags::new();
    assert_eq!(
        s.update_association(&change, t.modified_at, None)
            .await
            .unwrap()
            .association
            .tags,
        t.tags
    );

    // Removing everything.
    let keys: Vec<String> = t.tags.keys().cloned().collect();
    assert!(s
        .update_tags("c1", &a.id, &Tags::new(), &keys)
        .await
        .unwrap()
        .tags
        .is_empty());
    assert!(stored(&*s, "c1", &a.id).await.tags.is_empty());

    assert_matches!(
        s.update_tags("c1", "a-00000000000000000", &tags(&[("a", "1")]), &[])
            .await,
        Err(StoreError::AssociationNotFound { .. })
    );
    assert_matches!(
        s.update_tags("other", &a.id, &tags(&[("a", "1")]), &[])
            .await,
        Err(StoreError::AssociationNotFound { .. })
    );
}

async fn delete_association(f: &mut Fixture) {
    let s = f.store_with(&["c1", "c2"]).await;
    let mut a = assoc("c1", "ns", "sa");
    a.tags = tags(&[("k", "v")]);
    let a = create(&*s, &a).await;
    let keep = create(&*s, &assoc("c1", "ns", "keep")).await;

    assert_matches!(
        s.delete_association("c2", &a.id).await,
        Err(StoreError::AssociationNotFound { cluster, id })
            if (cluster.as_str(), id.as_str()) == ("c2", a.id.as_str())
    );
    assert_eq!(s.delete_association("c1", &a.id).await.unwrap(), a);
    assert_eq!(s.get_association("c1", &a.id).await.unwrap(), None);
    assert_eq!(s.find_association("c1", "ns", "sa").await.unwrap(), None);
    assert_matches!(
        s.delete_association("c1", &a.id).await,
        Err(StoreError::AssociationNotFound { .. })
    );
    assert_eq!(ids(&items(&*s, "c1", 10).await), vec![keep.id.clone()]);

    // The service account is free again.
    let again = create(&*s, &assoc("c1", "ns", "sa")).await;
    assert_eq!(ids(&items(&*s, "c1", 10).await), vec![keep.id, again.id]);
}

async fn list_pagination(f: &mut Fixture) {
    let s = f.store_with(&["big", "small", "empty"]).await;

    let mut created = Vec::new();
    for i in 0..250 {
        let a = create(
            &*s,
            &assoc("big", &format!("ns{}", i % 5), &format!("sa{}", i / 5)),
        )
        .await;
        created.push(a);
        if i % 60 == 0 {
            create(&*s, &assoc("small", "ns0", &format!("sa{i}"))).await;
        }
    }
    // Gaps from deletions do not disturb the order.
    for i in [0, 17, 100, 249] {
        s.delete_association("big", &created[i].id).await.unwrap();
    }
    let live: Vec<StoredAssociation> = created
        .iter()
        .enumerate()
        .filter(|(i, _)| ![0, 17, 100, 249].contains(i))
        .map(|(_, a)| a.clone())
        .collect();
    assert_eq!(live.len(), 246);

    let page = s.list_associations(&query("big", 100)).await.unwrap();
    assert_eq!(page.items.len(), 100);
    assert!(page.next.is_some());
    assert_eq!(page.items, live[..100]);

    for limit in [1, 7, 100, 245, 246, 247, 1000] {
        let (all, pages) = list_all(&*s, &query("big", limit)).await;
        assert_eq!(ids(&all), ids(&live), "limit {limit}");
        assert_eq!(
            pages,
            246_usize.div_ceil(limit as usize).max(1),
            "limit {limit}"
        );
    }
    // A limit of 0 is taken as 1.
    let page = s.list_associations(&query("big", 0)).await.unwrap();
    assert_eq!(page.items.len(), 1);

    // Filters, paged.
    let matching = |keep: fn(&StoredAssociation) -> bool| -> Vec<StoredAssociation> {
        live.iter().filter(|a| keep(a)).cloned().collect()
    };
    let ns1 = ListQuery {
        namespace: Some("ns1".into()),
        ..query("big", 10)
    };
    let (all, pages) = list_all(&*s, &ns1).await;
    let expected = matching(|a| a.namespace == "ns1");
    assert_eq!(expected.len(), 50);
    assert_eq!(all, expected);
    assert_eq!(pages, 5);

    let sa3 = ListQuery {
        service_account: Some("sa3".into()),
        ..query("big", 2)
    };
    let (all, _) = list_all(&*s, &sa3).await;
    let expected = matching(|a| a.service_account == "sa3");
    assert_eq!(expected.len(), 4, "one of sa3's five was deleted");
    assert_eq!(all, expected);

    let both = ListQuery {
        namespace: Some("ns3".into()),
        service_account: Some("sa3".into()),
        ..query("big", 1)
    };
    let page = s.list_associations(&both).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].namespace, "ns3");
    assert_eq!(page.items[0].service_account, "sa3");
    assert_eq!(page.next, None);
    let none = ListQuery {
        namespace: Some("ns3".into()),
        service_account: Some("sa-none".into()),
        ..query("big", 10)
    };
    assert_eq!(
        s.list_associations(&none).await.unwrap(),
        Page {
            items: vec![],
            next: None
        }
    );

    // Other clusters are not mixed in.
    let (small, _) = list_all(&*s, &query("small", 2)).await;
    assert_eq!(small.len(), 5);
    assert!(small.iter().all(|a| a.cluster == "small"));
    assert_eq!(
        s.list_associations(&query("empty", 10)).await.unwrap(),
        Page {
            items: vec![],
            next: None
        }
    );
    assert_eq!(
        s.list_associations(&query("unknown", 10)).await.unwrap(),
        Page {
            items: vec![],
            next: None
        }
    );

    // A position past the end gives an empty last page; new associations come last.
    let page = s.list_associations(&query("big", 300)).await.unwrap();
    assert_eq!(page.next, None);
    let later = create(&*s, &assoc("big", "ns9", "late")).await;
    let (all, _) = list_all(&*s, &query("big", 50)).await;
    assert_eq!(all.last(), Some(&later));
    let tail = s
        .list_associations(&ListQuery {
            after: Some(i64::MAX - 1),
            ..query("big", 10)
        })
        .await
        .unwrap();
    assert_eq!(
        tail,
        Page {
            items: vec![],
            next: None
        }
    );
}

async fn delete_cluster(f: &mut Fixture) {
    let s = f.store();
    assert_matches!(
        s.delete_cluster("ghost", false).await,
        Err(StoreError::ClusterNotFound(name)) if name == "ghost"
    );
    assert_matches!(
        s.delete_cluster("ghost", true).await,
        Err(StoreError::ClusterNotFound(_))
    );

    let c1 = cluster("c1");
    s.insert_cluster(&c1).await.unwrap();
    s.insert_cluster(&cluster("c2")).await.unwrap();
    let k = key("tok", "create", "dig");
    let a = create_with_token(&*s, &assoc("c1", "ns", "a"), &k).await;
    create(&*s, &assoc("c1", "ns", "b")).await;
    let other = create_with_token(&*s, &assoc("c2", "ns", "a"), &k).await;

    assert_matches!(
        s.delete_cluster("c1", false).await,
        Err(StoreError::ClusterInUse { name, associations })
            if (name.as_str(), associations) == ("c1", 2)
    );
    assert_eq!(s.get_cluster("c1").await.unwrap(), Some(c1.clone()));
    assert_eq!(items(&*s, "c1", 10).await.len(), 2);

    assert_eq!(s.delete_cluster("c1", true).await.unwrap(), c1);
    assert_eq!(s.get_cluster("c1").await.unwrap(), None);
    assert_eq!(s.get_association("c1", &a.id).await.unwrap(), None);
    assert_eq!(s.find_association("c1", "ns", "a").await.unwrap(), None);
    assert!(items(&*s, "c1", 10).await.is_empty());
    // The other cluster is untouched.
    assert_eq!(
        s.get_association("c2", &other.id).await.unwrap(),
        Some(other.clone())
    );
    let w = create_keyed(&*s, &assoc("c2", "ns", "a"), &k).await;
    assert_eq!(w, written(other, true));

    // Registered again, the cluster starts empty: its tokens went too.
    s.insert_cluster(&c1).await.unwrap();
    assert!(items(&*s, "c1", 10).await.is_empty());
    let fresh = assoc("c1", "ns", "a");
    let w = create_keyed(&*s, &fresh, &k).await;
    assert_eq!(w, written(fresh, false));

    // An empty cluster goes without force.
    s.insert_cluster(&cluster("c3")).await.unwrap();
    assert_eq!(s.delete_cluster("c3", false).await.unwrap().name, "c3");
    assert_eq!(s.list_clusters().await.unwrap().len(), 2);
}

async fn concurrent_distinct_creates(f: &mut Fixture) {
    let s = f.store_with(&["c1"]).await;
    let tasks = spawn_each(&s, 200, |s, i| async move {
        let a = assoc("c1", &format!("ns{}", i % 7), &format!("sa-{i}"));
        let k = key(&format!("tok-{i}"), "create", "d");
        let w = s.create_association(&a, (i % 2 == 0).then_some(&k)).await;
        (a, w)
    });
    let mut made = HashSet::new();
    for t in tasks {
        let (a, w) = t.await.unwrap();
        match w {
            Ok(w) => {
                assert!(!w.replayed);
                assert_eq!(w.association, a);
                made.insert(a.id);
            }
            Err(e) => panic!("concurrent create failed: {}", describe(&e)),
        }
    }
    assert_eq!(made.len(), 200);
    let (all, _) = list_all(&*s, &query("c1", 100)).await;
    assert_eq!(all.len(), 200);
    assert_eq!(
        all.iter().map(|a| a.id.clone()).collect::<HashSet<_>>(),
        made
    );
}

async fn concurrent_same_service_account(f: &mut Fixture) {
    let s = f.store_with(&["c1"]).await;
    let tasks = spawn_each(&s, 20, |s, _| async move {
        s.create_association(&assoc("c1", "ns", "same"), None).await
    });
    let mut winners = Vec::new();
    let mut duplicates = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(w) => winners.push(w.association),
            Err(StoreError::DuplicateAssociation { existing_id, .. }) => {
                duplicates.push(existing_id)
            }
            Err(e) => panic!("unexpected error: {}", describe(&e)),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one create wins");
    assert_eq!(duplicates.len(), 19);
    assert!(duplicates.iter().all(|id| *id == winners[0].id));
    assert_eq!(items(&*s, "c1", 100).await, winners);
}

async fn concurrent_same_token(f: &mut Fixture) {
    let s = f.store_with(&["c1"]).await;
    let tasks = spawn_each(&s, 10, |s, _| async move {
        s.create_association(
            &assoc("c1", "ns", "sa"),
            Some(&key("shared", "create", "same")),
        )
        .await
    });
    let mut results = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(w) => results.push(w),
            Err(e) => panic!("retries with one token must all succeed: {}", describe(&e)),
        }
    }
    assert_eq!(results.iter().filter(|w| !w.replayed).count(), 1);
    let first = &results[0].association;
    assert!(results.iter().all(|w| w.association == *first));
    assert_eq!(items(&*s, "c1", 100).await, vec![first.clone()]);
}

async fn concurrent_tag_updates(f: &mut Fixture) {
    let s = f.store_with(&["c1"]).await;
    let a = create(&*s, &assoc("c1", "ns", "sa")).await;
    // `n` updates at once, each adding its own tag `{prefix}{i}`.
    let add_each = |prefix: &'static str, n| {
        spawn_each(&s, n, |s, i| {
            let id = a.id.clone();
            async move {
                let tag = tags(&[(&format!("{prefix}{i}"), "v")]);
                s.update_tags("c1", &id, &tag, &[]).await
            }
        })
    };
    let tasks = add_each("k", 40);
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // No update was lost.
    assert_eq!(stored(&*s, "c1", &a.id).await.tags.len(), 40);

    // Racing past the limit: exactly the ones that fit get in.
    let tasks = add_each("more", 20);
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => {}
            Err(StoreError::TooManyTags(51)) => refused += 1,
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(refused, 10);
    assert_eq!(stored(&*s, "c1", &a.id).await.tags.len(), 50);
}

async fn concurrent_force_delete_and_creates(f: &mut Fixture) {
    let s = f.store_with(&["doomed"]).await;
    for i in 0..5 {
        create(&*s, &assoc("doomed", "ns", &format!("early-{i}"))).await;
    }
    let creates = spawn_each(&s, 50, |s, i| async move {
        s.create_association(&assoc("doomed", "ns", &format!("sa-{i}")), None)
            .await
    });
    let delete = {
        let s = s.clone();
        tokio::spawn(async move { s.delete_cluster("doomed", true).await })
    };
    for t in creates {
        match t.await.unwrap() {
            Ok(_) | Err(StoreError::ClusterNotFound(_)) => {}
            Err(e) => panic!("unexpected error: {}", describe(&e)),
        }
    }
    delete.await.unwrap().unwrap();
    // Whatever got in before the deregistration went with it, and nothing after it.
    assert_eq!(s.get_cluster("doomed").await.unwrap(), None);
    s.insert_cluster(&cluster("doomed")).await.unwrap();
    assert!(items(&*s, "doomed", 100).await.is_empty());
}

async fn reopen_keeps_data(f: &mut Fixture) {
    let c = cluster("c1");
    let (a, b, k) = {
        let s = f.store();
        s.insert_cluster(&c).await.unwrap();
        let k = key("tok", "create", "dig");
        let mut a = assoc("c1", "ns", "a");
        a.tags = tags(&[("k", "v")]);
        let a = create_with_token(&*s, &a, &k).await;
        let b = create(&*s, &assoc("c1", "ns", "b")).await;
        (a, b, k)
    };
    f.reopen().await;
    let s = f.store();
    assert_eq!(s.list_clusters().await.unwrap(), vec![c]);
    assert_eq!(
        s.get_association("c1", &a.id).await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(items(&*s, "c1", 10).await, vec![a.clone(), b.clone()]);
    let w = create_keyed(&*s, &assoc("c1", "ns", "a"), &k).await;
    assert_eq!(w, written(a.clone(), true));
    // Positions continue after the reopen.
    let later = create(&*s, &assoc("c1", "ns", "c")).await;
    assert_eq!(items(&*s, "c1", 10).await, vec![a, b, later]);
    // And once more (migrations already applied).
    f.reopen().await;
    assert_eq!(items(&*f.store(), "c1", 10).await.len(), 3);
}

async fn corrupt_rows_and_stale_tokens(f: &mut Fixture) {
    let s = f.store_with(&["c1"]).await;
    let a = create(&*s, &assoc("c1", "ns", "sa")).await;

    // A token left pointing at a missing association counts as unused.
    f.raw(
        "INSERT INTO idempotency_tokens (cluster, token, operation, request_digest, association_id, created_at) \
         VALUES ('c1', 'stale', 'create', 'd', 'a-gone0000000000000', 0)",
    )
    .await;
    let fresh = assoc("c1", "ns", "fresh");
    let w = create_keyed(&*s, &fresh, &key("stale", "create", "d")).await;
    assert_eq!(w, written(fresh.clone(), false));
    let w = create_keyed(
        &*s,
        &assoc("c1", "ns", "fresh"),
        &key("stale", "create", "d"),
    )
    .await;
    assert_eq!(w, written(fresh, true));

    f.raw(&format!(
        "UPDATE associations SET tags = '{{not json' WHERE id = '{}'",
        a.id
    ))
    .await;
    let s = f.store();
    assert!(corrupt(s.get_association("c1", &a.id).await));
    assert!(corrupt(s.find_association("c1", "ns", "sa").await));
    assert!(corrupt(s.list_associations(&query("c1", 10)).await));
    assert!(corrupt(s.update_tags("c1", &a.id, &Tags::new(), &[]).await));
    f.raw(&format!(
        "UPDATE associations SET tags = '[\"list\"]' WHERE id = '{}'",
        a.id
    ))
    .await;
    assert!(corrupt(s.get_association("c1", &a.id).await));
    // Deleting it is refused with the damage reported, and deletes nothing.
    assert!(corrupt(s.delete_association("c1", &a.id).await));
    assert!(corrupt(s.get_association("c1", &a.id).await));

    f.raw("UPDATE clusters SET jwks = 'nope' WHERE name = 'c1'")
        .await;
    assert!(corrupt(s.get_cluster("c1").await));
    assert!(corrupt(s.list_clusters().await));
    f.raw("UPDATE clusters SET jwks = '{}', key_source = 'carrier-pigeon' WHERE name = 'c1'")
        .await;
    assert!(corrupt(s.get_cluster("c1").await));
}

async fn audit_changes(f: &mut Fixture) {
    use podid_api::audit::AuditKind;
    use podid_api::audit::AuditOutcome::Issued;
    use podid_store::AuditQuery;
    let s = f.store();
    // Changes and decisions interleaved in one batch.
    let events: Vec<_> = (0..12)
        .map(|i| {
            if i % 3 == 0 {
                change_event(i)
            } else {
                audit_event(i, "blue", "a", Issued)
            }
        })
        .collect();
    s.record_audit(&events).await.unwrap();
    let list = |kind| AuditQuery {
        kind,
        limit: 100,
        ..Default::default()
    };
    let changes = s.list_audit(&list(Some(AuditKind::Change))).await.unwrap();
    let mut read: Vec<_> = changes.events.clone();
    for e in &mut read {
        e.seq = 0;
    }
    let want: Vec<_> = [9, 6, 3, 0].iter().map(|&i| change_event(i)).collect();
    assert_eq!(
        read, want,
        "a change's kind, action and fields come back as written"
    );
    let credentials = s
        .list_audit(&list(Some(AuditKind::Credential)))
        .await
        .unwrap();
    assert_eq!(credentials.events.len(), 8);
    assert!(credentials
        .events
        .iter()
        .all(|e| e.kind == AuditKind::Credential && e.action.is_none() && e.before.is_none()));
    assert_eq!(s.list_audit(&list(None)).await.unwrap().events.len(), 12);
}

async fn audit_prune(f: &mut Fixture) {
    use podid_api::audit::AuditOutcome::Issued;
    use podid_store::AuditQuery;
    let s = f.store();
    // Times 1_000_000 .. 1_000_049, written newest first so seq and time disagree.
    let events: Vec<_> = (0..50)
        .rev()
        .map(|i| audit_event(i, "blue", "a", Issued))
        .collect();
    s.record_audit(&events).await.unwrap();
    // At most 15 per call, only those strictly older than the cut, oldest first.
    let cut = EpochMillis(1_000_040);
    assert_eq!(s.prune_audit(cut, 15).await.unwrap(), 15);
    let left = |page: podid_store::AuditPage| {
        let mut times: Vec<i64> = page.events.iter().map(|e| e.time.0 - 1_000_000).collect();
        times.sort_unstable();
        times
    };
    let all = AuditQuery {
        limit: 100,
        ..Default::default()
    };
    assert_eq!(
        left(s.list_audit(&all).await.unwrap()),
        (15..50).collect::<Vec<_>>()
    );
    assert_eq!(s.prune_audit(cut, 15).await.unwrap(), 15);
    assert_eq!(s.prune_audit(cut, 15).await.unwrap(), 10);
    assert_eq!(s.prune_audit(cut, 15).await.unwrap(), 0);
    assert_eq!(
        left(s.list_audit(&all).await.unwrap()),
        (40..50).collect::<Vec<_>>()
    );
}

/// Rows written before the change columns existed read as credential
/// events; damaged change fields are reported, not guessed.
async fn audit_rows_of_before_changes(f: &mut Fixture) {
    use podid_api::audit::AuditKind;
    use podid_store::AuditQuery;
    let s = f.store();
    f.raw(
        "INSERT INTO audit_events (time, request_id, caller, cluster, outcome) \
         VALUES (5, 'old-row', 'NODEKEY', 'blue', 'issued')",
    )
    .await;
    let all = AuditQuery {
        limit: 10,
        ..Default::default()
    };
    let page = s.list_audit(&all).await.unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].kind, AuditKind::Credential);
    assert_eq!(page.events[0].request_id, "old-row");
    f.raw("UPDATE audit_events SET kind = 'change', before_state = '{not json'")
        .await;
    assert!(corrupt(s.list_audit(&all).await));
    f.raw("UPDATE audit_events SET kind = 'gossip', before_state = NULL")
        .await;
    assert!(corrupt(s.list_audit(&all).await));
}

// ---------------------------------------------------------------- open()

#[tokio::test]
async fn open_by_url() {
    let s = podid_store::open("sqlite::memory:").await.unwrap();
    s.ping().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested-ok.db");
    let s = podid_store::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    s.insert_cluster(&cluster("c1")).await.unwrap();
    assert!(path.exists());
    // The file is in WAL mode (a property of the file, seen by any connection).
    let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    raw.close().await;
    assert!(matches!(
        podid_store::open("mysql://x").await,
        Err(StoreError::InvalidUrl(_))
    ));
    if let Some(url) = postgres_url() {
        podid_store::open(&url).await.unwrap().ping().await.unwrap();
    } else {
        println!("PostgreSQL part of open_by_url skipped: PODID_TEST_POSTGRES_URL is not set");
    }
}

fn audit_event(
    i: i64,
    cluster: &str,
    ns: &str,
    outcome: podid_api::audit::AuditOutcome,
) -> podid_api::audit::AuditEvent {
    use podid_api::audit::{AuditEvent, AuditKind, AuditOutcome};
    let mut e = AuditEvent::new(
        AuditKind::Credential,
        EpochMillis(1_000_000 + i),
        &format!("req-{i}"),
        "NODEKEY",
        cluster.into(),
        outcome,
    );
    e.namespace = Some(ns.into());
    e.service_account = Some("sa".into());
    e.pod_name = Some(format!("pod-{i}"));
    e.pod_uid = Some(format!("uid-{i}"));
    e.association_id = (outcome == AuditOutcome::Issued).then(|| "a-0123456789abcdefg".into());
    e.error_code = (outcome != AuditOutcome::Issued).then(|| "InvalidTokenException".into());
    e
}

/// A change event: `UpdatePodIdentityAssociation` of the role, by `ADMINKEY`.
fn change_event(i: i64) -> podid_api::audit::AuditEvent {
    use podid_api::audit::{AuditEvent, AuditKind, AuditOutcome, AuditState};
    let mut e = AuditEvent::new(
        AuditKind::Change,
        EpochMillis(1_000_000 + i),
        &format!("change-{i}"),
        "ADMINKEY",
        "blue".into(),
        AuditOutcome::Succeeded,
    );
    e.action = Some("UpdatePodIdentityAssociation".into());
    e.association_id = Some("a-0123456789abcdefg".into());
    e.before = Some(AuditState {
        role_arn: Some("arn:aws:iam::111122223333:role/old".into()),
        tag_keys: Some(vec!["team".into(), "env".into()]),
        ..Default::default()
    });
    e.after = Some(AuditState {
        role_arn: Some(format!("arn:aws:iam::111122223333:role/new-{i}")),
        ..Default::default()
    });
    e
}

async fn audit_log(f: &mut Fixture) {
    use podid_api::audit::AuditOutcome::{Denied, Issued};
    use podid_store::AuditQuery;
    let s = f.store();
    s.record_audit(&[]).await.unwrap();
    let events: Vec<_> = (0..30)
        .map(|i| {
            audit_event(
                i,
                if i % 3 == 0 { "green" } else { "blue" },
                if i % 2 == 0 { "a" } else { "b" },
                if i % 5 == 0 { Denied } else { Issued },
            )
        })
        .collect();
    s.record_audit(&events[..10]).await.unwrap();
    s.record_audit(&events[10..]).await.unwrap();

    // Newest first, paged without loss or repetition.
    let mut seen = Vec::new();
    let mut q = AuditQuery {
        limit: 7,
        ..Default::default()
    };
    loop {
        let page = s.list_audit(&q).await.unwrap();
        seen.extend(page.events.iter().map(|e| e.request_id.clone()));
        match page.next {
            Some(before) => q.before = Some(before),
            None => break,
        }
    }
    let expected: Vec<String> = (0..30).rev().map(|i| format!("req-{i}")).collect();
    assert_eq!(seen, expected);

    let page = s
        .list_audit(&AuditQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let first = &page.events[0];
    assert_eq!(first.request_id, "req-29");
    let mut stored = first.clone();
    stored.seq = 0;
    assert_eq!(stored, events[29]);

    let filtered = s
        .list_audit(&AuditQuery {
            cluster: Some("blue".into()),
            namespace: Some("a".into()),
            outcome: Some(Issued),
            since: Some(EpochMillis(1_000_010)),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let want: Vec<String> = (10..30)
        .rev()
        .filter(|i| i % 3 != 0 && i % 2 == 0 && i % 5 != 0)
        .map(|i| format!("req-{i}"))
        .collect();
    assert_eq!(
        filtered
            .events
            .iter()
            .map(|e| e.request_id.clone())
            .collect::<Vec<_>>(),
        want
    );
    assert!(filtered.next.is_none());
}
