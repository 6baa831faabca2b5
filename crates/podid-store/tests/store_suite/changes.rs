//! The change feed (each write's change, order, paging, pruning and reset), the
//! columns of migration 0004 (agent identity, node binding, TokenReview, audit
//! nodes) and the migration of a database written at 0003.

use std::borrow::Cow;

use podid_api::changes::{ChangeKind, ChangesResponse};
use podid_api::cluster::{AgentIdentity, Cluster, TokenReviewSettings};
use podid_api::{EpochMillis, Secret};
use podid_store::{AssociationStore, StoreError};

use super::{
    assoc, cluster, corrupt, create, create_keyed, key, tags, update_keyed, Fixture, Kind,
};

/// Now, as the store stamps changes.
fn now() -> EpochMillis {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    EpochMillis(i64::try_from(since.as_millis()).unwrap())
}

/// The whole feed of `cluster` after `after`, page by page of `limit`.
async fn follow(
    s: &dyn AssociationStore,
    cluster: &str,
    after: i64,
    limit: u32,
) -> ChangesResponse {
    let mut all = Vec::new();
    let mut position = after;
    loop {
        let page = s
            .association_changes(cluster, Some(position), limit)
            .await
            .unwrap();
        assert!(!page.reset, "unexpected reset after {position}: {page:?}");
        assert!(page.changes.len() <= limit as usize);
        let full = page.changes.len() == limit as usize;
        position = page.position;
        all.extend(page.changes);
        if !full {
            return ChangesResponse {
                changes: all,
                position,
                reset: false,
            };
        }
    }
}

/// The feed's end as a follower without a position is told.
async fn end(s: &dyn AssociationStore, cluster: &str) -> i64 {
    let answer = s.association_changes(cluster, None, 500).await.unwrap();
    assert!(answer.changes.is_empty() && !answer.reset, "{answer:?}");
    answer.position
}

/// One answer of up to 500 changes after `after`.
async fn ask(s: &dyn AssociationStore, cluster: &str, after: i64) -> ChangesResponse {
    s.association_changes(cluster, Some(after), 500)
        .await
        .unwrap()
}

/// An answer without changes.
fn empty(position: i64, reset: bool) -> ChangesResponse {
    ChangesResponse {
        changes: vec![],
        position,
        reset,
    }
}

/// The ten newest audit events.
async fn newest_audit(s: &dyn AssociationStore) -> podid_store::AuditPage {
    let newest = podid_store::AuditQuery {
        limit: 10,
        ..Default::default()
    };
    s.list_audit(&newest).await.unwrap()
}

/// (kind, association id) of each change.
fn kinds(answer: &ChangesResponse) -> Vec<(ChangeKind, Option<String>)> {
    answer
        .changes
        .iter()
        .map(|c| (c.kind, c.association_id.clone()))
        .collect()
}

/// Each write appends its one change, in order, with the association's
/// subject; failed writes and replays append none; other clusters' changes
/// are not shown.
pub(super) async fn changes_of_each_write(f: &mut Fixture) {
    let s = f.store_with(&["blue", "green"]).await;
    let start = end(&*s, "blue").await;
    let before = now();
    let a = create(&*s, &assoc("blue", "ns", "app")).await;
    let other = create(&*s, &assoc("green", "ns", "app")).await;
    let k = key("t1", "update", "d1");
    let mut changed = a.clone();
    changed.role_arn = "arn:aws:iam::111122223333:role/new".into();
    changed.modified_at = EpochMillis(a.modified_at.0 + 1);
    let w = update_keyed(&*s, &changed, a.modified_at, &k)
        .await
        .unwrap();
    assert!(!w.replayed);
    // A replay of the same update writes nothing.
    let again = update_keyed(&*s, &changed, a.modified_at, &k)
        .await
        .unwrap();
    assert!(again.replayed);
    s.update_tags("blue", &a.id, &tags(&[("team", "x")]), &[])
        .await
        .unwrap();
    s.update_tags("blue", &a.id, &tags(&[]), &["team".into()])
        .await
        .unwrap();

    // Refused writes leave no change.
    assert!(s
        .create_association(&assoc("blue", "ns", "app"), None)
        .await
        .is_err());
    assert!(s
        .create_association(&assoc("nope", "ns", "x"), None)
        .await
        .is_err());
    assert!(s
        .update_association(&changed, a.modified_at, None)
        .await
        .is_err());
    let too_many: podid_api::association::Tags =
        (0..51).map(|i| (format!("k{i}"), String::new())).collect();
    assert!(s.update_tags("blue", &a.id, &too_many, &[]).await.is_err());
    assert!(s
        .delete_association("blue", "a-00000000000000000")
        .await
        .is_err());
    assert!(matches!(
        s.delete_cluster("blue", false).await,
        Err(StoreError::ClusterInUse { .. })
    ));

    s.delete_association("blue", &a.id).await.unwrap();
    let mut c = s.get_cluster("blue").await.unwrap().unwrap();
    let read = c.modified_at;
    c.audience = "other".into();
    c.modified_at = EpochMillis(read.0 + 1);
    s.update_cluster(&c, read).await.unwrap();
    assert!(s.update_cluster(&c, read).await.is_err());
    let b = create(&*s, &assoc("blue", "ns", "b")).await;
    s.delete_cluster("blue", true).await.unwrap();

    let feed = follow(&*s, "blue", start, 500).await;
    let id = |x: &str| Some(x.to_owned());
    assert_eq!(
        kinds(&feed),
        vec![
            (ChangeKind::Create, id(&a.id)),
            (ChangeKind::Update, id(&a.id)),
            (ChangeKind::Update, id(&a.id)),
            (ChangeKind::Update, id(&a.id)),
            (ChangeKind::Delete, id(&a.id)),
            (ChangeKind::ClusterUpdate, None),
            (ChangeKind::Create, id(&b.id)),
            (ChangeKind::ClusterDelete, None),
        ]
    );
    let positions: Vec<i64> = feed.changes.iter().map(|c| c.position).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert!(positions[0] > start);
    assert_eq!(feed.position, end(&*s, "blue").await);
    for change in &feed.changes {
        assert!(
            change.time.0 >= before.0 && change.time.0 <= now().0,
            "{change:?}"
        );
        let subject = change.association_id.is_some();
        assert_eq!(change.namespace.is_some(), subject, "{change:?}");
        assert_eq!(change.service_account.is_some(), subject, "{change:?}");
    }
    assert_eq!(feed.changes[0].namespace.as_deref(), Some("ns"));
    assert_eq!(feed.changes[0].service_account.as_deref(), Some("app"));
    assert_eq!(feed.changes[6].service_account.as_deref(), Some("b"));

    // Green's one change sits between blue's first two.
    let green = follow(&*s, "green", start, 500).await;
    assert_eq!(kinds(&green), vec![(ChangeKind::Create, id(&other.id))]);
    assert!(green.changes[0].position > positions[0] && green.changes[0].position < positions[1]);
    // A replayed create writes nothing either.
    let k = key("t2", "create", "d2");
    let fresh = assoc("green", "ns", "fresh");
    create_keyed(&*s, &fresh, &k).await;
    let at = end(&*s, "green").await;
    assert!(create_keyed(&*s, &fresh, &k).await.replayed);
    assert_eq!(end(&*s, "green").await, at);
}

/// Oldest first, `limit` at a time, each page continuing after the last; the
/// answer without a position and the one at the end carry none.
pub(super) async fn changes_paging(f: &mut Fixture) {
    let s = f.store_with(&["blue", "green"]).await;
    let start = end(&*s, "blue").await;
    let mut made = Vec::new();
    for i in 0..7 {
        made.push(
            create(&*s, &assoc("blue", "ns", &format!("sa-{i}")))
                .await
                .id,
        );
        create(&*s, &assoc("green", "ns", &format!("sa-{i}"))).await;
    }
    let first = s.association_changes("blue", Some(start), 3).await.unwrap();
    assert_eq!(first.changes.len(), 3);
    assert_eq!(first.position, first.changes[2].position);
    let feed = follow(&*s, "blue", start, 3).await;
    let ids: Vec<String> = feed
        .changes
        .iter()
        .map(|c| c.association_id.clone().unwrap())
        .collect();
    assert_eq!(ids, made);
    // The last of blue's pages ends at the feed's end (green's last change).
    let last = end(&*s, "blue").await;
    assert_eq!(feed.position, last);
    assert!(feed.changes[6].position < last);
    let at_end = ask(&*s, "blue", last).await;
    assert_eq!(at_end, empty(last, false));
    // A limit of 0 is one; past 500 is 500.
    let one = s.association_changes("blue", Some(start), 0).await.unwrap();
    assert_eq!(one.changes.len(), 1);
    // Beyond the end: another database's position.
    let beyond = ask(&*s, "blue", last + 1000).await;
    assert_eq!(beyond, empty(last, true));
    // An unknown cluster has an empty feed at the same end.
    assert_eq!(end(&*s, "nope").await, last);
}

/// Pruning removes old changes and remembers how far it went: a follower
/// behind that is told to start over; one at or after it goes on.
pub(super) async fn changes_prune_and_reset(f: &mut Fixture) {
    let s = f.store_with(&["blue"]).await;
    let start = end(&*s, "blue").await;
    assert_eq!(s.prune_changes(now()).await.unwrap(), 0);
    for i in 0..3 {
        create(&*s, &assoc("blue", "ns", &format!("sa-{i}"))).await;
    }
    let last = end(&*s, "blue").await;
    assert_eq!(s.prune_changes(EpochMillis(0)).await.unwrap(), 0);
    assert_eq!(follow(&*s, "blue", start, 500).await.changes.len(), 3);
    let future = EpochMillis(now().0 + 3_600_000);
    assert_eq!(s.prune_changes(future).await.unwrap(), 3);
    assert_eq!(s.prune_changes(future).await.unwrap(), 0);
    // The end stays where it was though every row is gone.
    assert_eq!(end(&*s, "blue").await, last);
    let behind = ask(&*s, "blue", start).await;
    assert_eq!(behind, empty(last, true));
    let caught_up = ask(&*s, "blue", last).await;
    assert!(!caught_up.reset && caught_up.changes.is_empty());
    let next = create(&*s, &assoc("blue", "ns", "after")).await;
    let feed = follow(&*s, "blue", last, 500).await;
    assert_eq!(kinds(&feed), vec![(ChangeKind::Create, Some(next.id))]);
}

/// The new cluster columns read back as written, the TokenReview token
/// included (it is only never serialised); node fields of audit events too.
pub(super) async fn node_identity_columns(f: &mut Fixture) {
    let s = f.store();
    let mut c = cluster("tok");
    c.agent_identity = AgentIdentity::Token;
    c.agent_service_account = "kube-system/agent".into();
    c.node_binding = true;
    c.token_review = Some(TokenReviewSettings {
        api_server_url: "https://10.0.0.1:6443".into(),
        ca_pem: Some("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into()),
        token: Some(Secret::new("review-token-xyz")),
    });
    s.insert_cluster(&c).await.unwrap();
    s.insert_cluster(&cluster("plain")).await.unwrap();
    let got = s.get_cluster("tok").await.unwrap().unwrap();
    assert_eq!(got, c);
    assert_eq!(
        got.token_review
            .as_ref()
            .and_then(|r| r.token.as_ref())
            .map(Secret::expose),
        Some("review-token-xyz")
    );
    assert_eq!(
        s.get_cluster("plain").await.unwrap(),
        Some(cluster("plain"))
    );
    assert_eq!(s.list_clusters().await.unwrap()[1], c);

    // Updated: no CA, a new token; then TokenReview off and back to keys.
    let mut next = c.clone();
    next.token_review = Some(TokenReviewSettings {
        api_server_url: "https://api.example.com".into(),
        ca_pem: None,
        token: Some(Secret::new("second")),
    });
    next.modified_at = EpochMillis(c.modified_at.0 + 1);
    s.update_cluster(&next, c.modified_at).await.unwrap();
    assert_eq!(s.get_cluster("tok").await.unwrap(), Some(next.clone()));
    let mut off = Cluster {
        agent_identity: AgentIdentity::Key,
        node_binding: false,
        token_review: None,
        ..next.clone()
    };
    off.modified_at = EpochMillis(next.modified_at.0 + 1);
    s.update_cluster(&off, next.modified_at).await.unwrap();
    assert_eq!(s.get_cluster("tok").await.unwrap(), Some(off));

    // Audit events keep the pod token's node and the agent's.
    use podid_api::audit::{AuditEvent, AuditKind, AuditOutcome};
    let mut e = AuditEvent::new(
        AuditKind::Credential,
        EpochMillis(5),
        "req-node",
        "sa:podid-system/podid-agent",
        "tok".into(),
        AuditOutcome::Denied,
    );
    e.node_name = Some("node-a".into());
    e.caller_node = Some("node-b".into());
    s.record_audit(&[e.clone()]).await.unwrap();
    let page = newest_audit(&*s).await;
    let mut stored = page.events[0].clone();
    stored.seq = 0;
    assert_eq!(stored, e);
}

/// A write whose change cannot be appended is undone whole (one transaction);
/// a damaged kind is reported, not guessed.
pub(super) async fn failed_change_rolls_back(f: &mut Fixture) {
    let s = f.store_with(&["blue"]).await;
    let kept = create(&*s, &assoc("blue", "ns", "kept")).await;
    let start = end(&*s, "blue").await;
    match f.kind {
        Kind::Postgres => {
            f.raw(
                "CREATE FUNCTION refuse_change() RETURNS trigger AS $$ BEGIN \
                 IF NEW.namespace = 'boom' THEN RAISE EXCEPTION 'refused'; END IF; \
                 RETURN NEW; END $$ LANGUAGE plpgsql",
            )
            .await;
            f.raw(
                "CREATE TRIGGER refuse BEFORE INSERT ON association_changes \
                 FOR EACH ROW EXECUTE FUNCTION refuse_change()",
            )
            .await;
        }
        _ => {
            f.raw(
                "CREATE TRIGGER refuse BEFORE INSERT ON association_changes \
                 WHEN NEW.namespace = 'boom' BEGIN SELECT RAISE(ABORT, 'refused'); END",
            )
            .await;
        }
    }
    f.raw("UPDATE associations SET namespace = 'boom'").await;
    let boom = assoc("blue", "boom", "sa");
    assert!(matches!(
        s.create_association(&boom, None).await,
        Err(StoreError::Database(_))
    ));
    assert_eq!(s.get_association("blue", &boom.id).await.unwrap(), None);
    assert!(s
        .update_tags("blue", &kept.id, &tags(&[("k", "v")]), &[])
        .await
        .is_err());
    assert!(s.delete_association("blue", &kept.id).await.is_err());
    let still = s.get_association("blue", &kept.id).await.unwrap().unwrap();
    assert!(still.tags.is_empty());
    assert_eq!(follow(&*s, "blue", start, 500).await.changes, vec![]);
    assert_eq!(end(&*s, "blue").await, start);

    f.raw("UPDATE association_changes SET kind = 'gossip'")
        .await;
    assert!(corrupt(s.association_changes("blue", Some(0), 10).await));
}

/// A follower polling while many writers write sees every change exactly once:
/// no position becomes visible before a lower one (commit order).
pub(super) async fn concurrent_writes_followed(f: &mut Fixture) {
    let s = f.store_with(&["blue"]).await;
    let start = end(&*s, "blue").await;
    let writers = super::spawn_each(&s, 8, |s, i| async move {
        let mut ids = Vec::new();
        for j in 0..5 {
            let a = super::assoc("blue", "ns", &format!("sa-{i}-{j}"));
            ids.push(s.create_association(&a, None).await.unwrap().association.id);
        }
        ids
    });
    let mut seen = Vec::new();
    let mut position = start;
    // Small pages while the writers write, then what is left once they are done.
    loop {
        let done = writers.iter().all(|w| w.is_finished());
        let page = if done {
            follow(&*s, "blue", position, 7).await
        } else {
            s.association_changes("blue", Some(position), 7)
                .await
                .unwrap()
        };
        assert!(!page.reset);
        position = page.position;
        seen.extend(page.changes.into_iter().map(|c| c.association_id.unwrap()));
        if done {
            break;
        }
        tokio::task::yield_now().await;
    }
    let mut made = Vec::new();
    for w in writers {
        made.extend(w.await.unwrap());
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), seen.len(), "a change was seen twice");
    made.sort();
    assert_eq!(sorted, made);
}

/// A database written at migration 0003 opens at 0004 with its clusters as
/// key-identity clusters (default service account, no node binding, no
/// TokenReview), its audit rows without nodes, and an empty feed at 0.
pub(super) async fn migration_from_0003(f: &mut Fixture) {
    f.close().await;
    match f.kind {
        Kind::SqliteFile => {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", f.location));
            }
        }
        Kind::Postgres => {
            let (_, schema) = f.pg_schema.clone().unwrap();
            f.raw(&format!("DROP SCHEMA {schema} CASCADE")).await;
            f.raw(&format!("CREATE SCHEMA {schema}")).await;
        }
        Kind::SqliteMemory => unreachable!("persistent only"),
    }
    let dir = match f.kind {
        Kind::Postgres => "postgres",
        _ => "sqlite",
    };
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(dir);
    let mut upto3 = sqlx::migrate::Migrator::new(path).await.unwrap();
    upto3.migrations = Cow::Owned(
        upto3
            .migrations
            .iter()
            .filter(|m| m.version <= 3)
            .cloned()
            .collect(),
    );
    assert_eq!(upto3.migrations.len(), 3);
    match f.kind {
        Kind::Postgres => {
            let pool = sqlx::PgPool::connect(&f.location).await.unwrap();
            upto3.run(&pool).await.unwrap();
            pool.close().await;
        }
        _ => {
            let url = format!("sqlite://{}?mode=rwc", f.location);
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            upto3.run(&pool).await.unwrap();
            pool.close().await;
        }
    }
    f.raw(
        "INSERT INTO clusters (name, issuer, audience, cluster_arn, key_source, jwks_uri, jwks, \
         created_at, modified_at) VALUES ('old', 'https://oidc.example.com/old', \
         'pods.eks.amazonaws.com', 'arn:aws:eks:us-east-1:111122223333:cluster/old', 'inline', \
         NULL, '{\"keys\": [{\"kty\": \"RSA\", \"kid\": \"k1\", \"n\": \"abc\", \"e\": \"AQAB\"}]}', \
         1700000000123, 1700000000123)",
    )
    .await;
    f.raw(
        "INSERT INTO audit_events (time, request_id, caller, cluster, outcome) \
         VALUES (5, 'old-row', 'NODEKEY', 'old', 'issued')",
    )
    .await;
    f.reopen().await;
    let s = f.store();
    assert_eq!(s.get_cluster("old").await.unwrap(), Some(cluster("old")));
    let page = newest_audit(&*s).await;
    assert_eq!(page.events[0].node_name, None);
    assert_eq!(page.events[0].caller_node, None);
    assert_eq!(end(&*s, "old").await, 0);
    let a = create(&*s, &assoc("old", "ns", "sa")).await;
    let feed = follow(&*s, "old", 0, 500).await;
    assert_eq!(kinds(&feed), vec![(ChangeKind::Create, Some(a.id))]);
}
