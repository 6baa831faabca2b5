//! The overview of every cluster's associations (the console's table): newest
//! first, substring filters taken literally, scope, keyset pages in both
//! directions that stay right while rows are added, changed and deleted; and
//! the audit list of one association.

use std::collections::HashSet;

use podid_api::audit::AuditOutcome;
use podid_api::EpochMillis;
use podid_store::{
    AssociationStore, AuditQuery, OverviewPage, OverviewPosition, OverviewQuery, StoredAssociation,
};

use super::{assoc, audit_event, create, ids, Fixture};

/// `assoc` modified (and created) at `at`, with `role`.
fn at(cluster: &str, ns: &str, sa: &str, at: i64, role: &str) -> StoredAssociation {
    let mut a = assoc(cluster, ns, sa);
    a.created_at = EpochMillis(at);
    a.modified_at = EpochMillis(at);
    a.role_arn = format!("arn:aws:iam::111122223333:role/{role}");
    a
}

fn q(limit: u32) -> OverviewQuery {
    OverviewQuery {
        limit,
        ..OverviewQuery::default()
    }
}

async fn page(s: &dyn AssociationStore, q: &OverviewQuery) -> OverviewPage {
    s.list_all_associations(q).await.unwrap()
}

/// The ids the query lists, first page only.
async fn listed(s: &dyn AssociationStore, q: &OverviewQuery) -> Vec<String> {
    ids(&page(s, q).await.items)
}

/// Every page forwards from the first: the ids of each.
async fn walk(s: &dyn AssociationStore, q: &OverviewQuery) -> Vec<Vec<String>> {
    let mut q = q.clone();
    q.position = None;
    let mut pages = Vec::new();
    loop {
        let p = page(s, &q).await;
        assert_eq!(
            p.prev.is_some(),
            !pages.is_empty(),
            "prev link of page {}",
            pages.len()
        );
        pages.push(ids(&p.items));
        match p.next {
            Some(next) => q.position = Some(next),
            None => return pages,
        }
        assert!(pages.len() < 1000, "paging does not end");
    }
}

/// Newest first across clusters; ties in `modified_at` by creation, newest first.
pub(super) async fn overview_order_and_filters(f: &mut Fixture) {
    let s = f.store_with(&["blue", "green", "blue-2"]).await;
    let a = create(&*s, &at("blue", "web", "front", 300, "app_1")).await;
    let b = create(&*s, &at("green", "web", "front", 100, "appX1")).await;
    let c = create(&*s, &at("blue-2", "ns%x", "api", 200, "App")).await;
    let d = create(&*s, &at("green", "nsabcx", "api-worker", 200, "other")).await;
    let mut e = at("blue", "jobs", "batch", 50, "base");
    e.target_role_arn = Some("arn:aws:iam::444455556666:role/app_1-target".into());
    let e = create(&*s, &e).await;
    assert_eq!(
        listed(&*s, &q(50)).await,
        ids(&[a.clone(), d.clone(), c.clone(), b.clone(), e.clone()])
    );

    let filtered =
        |cluster: Option<&str>, ns: Option<&str>, sa: Option<&str>, role: Option<&str>| {
            OverviewQuery {
                cluster: cluster.map(Into::into),
                namespace: ns.map(Into::into),
                service_account: sa.map(Into::into),
                role: role.map(Into::into),
                ..q(50)
            }
        };
    let cases: Vec<(OverviewQuery, Vec<&StoredAssociation>)> = vec![
        (filtered(Some("blue"), None, None, None), vec![&a, &c, &e]),
        (filtered(Some("blue-"), None, None, None), vec![&c]),
        (filtered(Some("lue"), Some("web"), None, None), vec![&a]),
        (filtered(None, None, Some("api"), None), vec![&d, &c]),
        (filtered(None, None, Some("front"), Some("appX")), vec![&b]),
        // `_` and `%` are characters, not LIKE wildcards.
        (filtered(None, None, None, Some("app_1")), vec![&a, &e]),
        (filtered(None, Some("s%x"), None, None), vec![&c]),
        (filtered(None, Some("%"), None, None), vec![&c]),
        (filtered(None, Some("_"), None, None), vec![]),
        // Case-sensitive, like the ARNs.
        (filtered(None, None, None, Some("role/App")), vec![&c]),
        (
            filtered(None, None, None, Some("role/app")),
            vec![&a, &b, &e],
        ),
        // The target role counts for the role filter.
        (filtered(None, None, None, Some("444455556666")), vec![&e]),
        (filtered(Some("green"), None, None, Some("app_1")), vec![]),
    ];
    for (query, want) in cases {
        let want: Vec<StoredAssociation> = want.into_iter().cloned().collect();
        assert_eq!(listed(&*s, &query).await, ids(&want), "{query:?}");
    }
    // Every field comes back as stored.
    let first = page(&*s, &filtered(None, None, None, Some("444455556666"))).await;
    assert_eq!(first.items, vec![e]);
    assert_eq!((first.next, first.prev), (None, None));
}

/// A scoped key's clusters only, with the filters on top; an empty scope lists nothing.
pub(super) async fn overview_scope(f: &mut Fixture) {
    let s = f.store_with(&["blue", "green", "red"]).await;
    let mut made = Vec::new();
    for (i, cluster) in ["blue", "green", "red", "blue", "green", "red"]
        .iter()
        .enumerate()
    {
        made.push(
            create(
                &*s,
                &at(cluster, "ns", &format!("sa{i}"), 1000 - i as i64, "app"),
            )
            .await,
        );
    }
    let scoped = |scope: &[&str]| OverviewQuery {
        scope: Some(scope.iter().map(|c| (*c).to_owned()).collect()),
        ..q(50)
    };
    let of = |clusters: &[&str]| -> Vec<String> {
        made.iter()
            .filter(|a| clusters.contains(&a.cluster.as_str()))
            .map(|a| a.id.clone())
            .collect()
    };
    assert_eq!(listed(&*s, &scoped(&["blue"])).await, of(&["blue"]));
    assert_eq!(
        listed(&*s, &scoped(&["red", "blue"])).await,
        of(&["blue", "red"])
    );
    assert_eq!(listed(&*s, &scoped(&["gone"])).await, Vec::<String>::new());
    assert_eq!(listed(&*s, &scoped(&[])).await, Vec::<String>::new());
    let filtered = OverviewQuery {
        cluster: Some("e".into()),
        ..scoped(&["blue", "red"])
    };
    assert_eq!(listed(&*s, &filtered).await, of(&["blue", "red"]));
    let filtered = OverviewQuery {
        cluster: Some("green".into()),
        ..scoped(&["blue", "red"])
    };
    assert_eq!(listed(&*s, &filtered).await, Vec::<String>::new());
    // Paging stays inside the scope.
    let pages = walk(
        &*s,
        &OverviewQuery {
            limit: 1,
            ..scoped(&["green"])
        },
    )
    .await;
    assert_eq!(pages.concat(), of(&["green"]));
}

/// Pages of every size, forwards and back, with ties in `modified_at`.
pub(super) async fn overview_paging(f: &mut Fixture) {
    let s = f.store_with(&["blue", "green"]).await;
    let mut made = Vec::new();
    for i in 0..23_i64 {
        let cluster = if i % 3 == 0 { "green" } else { "blue" };
        // Three rows share each time: the order among them is creation, newest first.
        made.push(
            create(
                &*s,
                &at(cluster, "ns", &format!("sa{i}"), 1000 + i / 3, "app"),
            )
            .await,
        );
    }
    let newest_first: Vec<String> = {
        let mut m = made.clone();
        m.sort_by_key(|a| std::cmp::Reverse(a.modified_at));
        // Stable sort keeps creation order among ties; reverse each tie group.
        let mut out: Vec<StoredAssociation> = Vec::new();
        for group in m.chunk_by(|x, y| x.modified_at == y.modified_at) {
            out.extend(group.iter().rev().cloned());
        }
        ids(&out)
    };
    for limit in [1, 2, 5, 22, 23, 24, 500, 10_000] {
        let pages = walk(&*s, &q(limit)).await;
        assert_eq!(pages.concat(), newest_first, "limit {limit}");
        assert_eq!(
            pages.len(),
            23_usize.div_ceil(limit.min(500) as usize),
            "limit {limit}"
        );
    }
    // Back from the last page: the same pages, previous links to the first.
    let mut query = q(5);
    let mut forward = Vec::new();
    let mut last = page(&*s, &query).await;
    forward.push(ids(&last.items));
    while let Some(next) = last.next {
        query.position = Some(next);
        last = page(&*s, &query).await;
        forward.push(ids(&last.items));
    }
    let mut backward = vec![ids(&last.items)];
    while let Some(prev) = last.prev {
        assert!(matches!(prev, OverviewPosition::Before(_)));
        query.position = Some(prev);
        last = page(&*s, &query).await;
        assert!(last.next.is_some(), "a previous page links on");
        backward.push(ids(&last.items));
    }
    backward.reverse();
    assert_eq!(backward, forward);
    // A position read back from its text token gives the same page.
    let second = page(&*s, &q(5)).await.next.unwrap();
    let parsed = OverviewPosition::parse(&second.encode()).unwrap();
    assert_eq!(
        listed(
            &*s,
            &OverviewQuery {
                position: Some(parsed),
                ..q(5)
            }
        )
        .await,
        forward[1]
    );
}

/// Rows added, changed and deleted between pages: the other rows are neither
/// repeated nor skipped; a changed row moves to the top.
pub(super) async fn overview_paging_while_rows_change(f: &mut Fixture) {
    let s = f.store_with(&["blue", "green"]).await;
    let mut made = Vec::new();
    for i in 0..20_i64 {
        let cluster = if i % 2 == 0 { "green" } else { "blue" };
        made.push(create(&*s, &at(cluster, "ns", &format!("sa{i}"), 1000 + i, "app")).await);
    }
    made.reverse(); // newest first
    let first = page(&*s, &q(5)).await;
    assert_eq!(ids(&first.items), ids(&made[..5]));

    // Between the pages: three newer rows, one row of page 3 changed (moves to
    // the top), one row of page 2 deleted.
    for i in 0..3 {
        create(&*s, &at("blue", "new", &format!("n{i}"), 5000 + i, "app")).await;
    }
    let mut changed = made[12].clone();
    changed.role_arn = "arn:aws:iam::111122223333:role/changed".into();
    changed.modified_at = EpochMillis(6000);
    s.update_association(&changed, made[12].modified_at, None)
        .await
        .unwrap();
    s.delete_association(&made[7].cluster, &made[7].id)
        .await
        .unwrap();

    let mut query = OverviewQuery {
        position: first.next,
        ..q(5)
    };
    let mut rest = Vec::new();
    loop {
        let p = page(&*s, &query).await;
        rest.extend(ids(&p.items));
        match p.next {
            Some(n) => query.position = Some(n),
            None => break,
        }
    }
    let want: Vec<String> = made[5..]
        .iter()
        .enumerate()
        .filter(|(i, _)| ![2, 7].contains(i))
        .map(|(_, a)| a.id.clone())
        .collect();
    assert_eq!(rest, want);
    let seen: HashSet<&String> = rest.iter().collect();
    assert_eq!(seen.len(), rest.len(), "no row twice");

    // The previous link from page 2 now shows what is newer: the three new rows,
    // the changed one on top, and page 1 as it was.
    let second = page(
        &*s,
        &OverviewQuery {
            position: first.next,
            ..q(5)
        },
    )
    .await;
    let back = page(
        &*s,
        &OverviewQuery {
            position: second.prev,
            ..q(50)
        },
    )
    .await;
    assert_eq!(back.items.len(), 4 + 5);
    assert_eq!(back.items[0].id, changed.id);
    assert_eq!(back.items[0].role_arn, changed.role_arn);
    assert_eq!(ids(&back.items[4..]), ids(&made[..5]));
    assert_eq!(back.prev, None);
}

/// The audit list of one association.
pub(super) async fn audit_of_association(f: &mut Fixture) {
    let s = f.store_with(&["blue"]).await;
    let mut events = Vec::new();
    for i in 0..6 {
        let mut e = audit_event(i, "blue", "ns", AuditOutcome::Issued);
        e.association_id = Some(
            if i % 2 == 0 {
                "a-00000000000000001"
            } else {
                "a-00000000000000002"
            }
            .into(),
        );
        events.push(e);
    }
    events.push(audit_event(6, "blue", "ns", AuditOutcome::Denied));
    s.record_audit(&events).await.unwrap();
    let list = s
        .list_audit(&AuditQuery {
            cluster: Some("blue".into()),
            association_id: Some("a-00000000000000001".into()),
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    let requests: Vec<&str> = list.events.iter().map(|e| e.request_id.as_str()).collect();
    assert_eq!(requests, ["req-4", "req-2"]);
    assert!(list.next.is_some());
}
