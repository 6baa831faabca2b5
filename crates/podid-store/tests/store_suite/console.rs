//! What the console's audit and clusters pages read: audit pages in both directions
//! under a cluster scope, and the association count of each cluster in one statement.

use std::collections::BTreeMap;

use podid_api::audit::{AuditKind, AuditOutcome};
use podid_store::{AssociationStore, AuditPage, AuditQuery};

use super::{assoc, audit_event, change_event, create, Fixture};

async fn audit(s: &dyn AssociationStore, q: &AuditQuery) -> AuditPage {
    s.list_audit(q).await.unwrap()
}

fn requests(p: &AuditPage) -> Vec<String> {
    p.events.iter().map(|e| e.request_id.clone()).collect()
}

/// The request ids `req-{i}` for `i` in `range`, newest (highest) first.
fn reqs(range: std::ops::RangeInclusive<i64>) -> Vec<String> {
    range.rev().map(|i| format!("req-{i}")).collect()
}

/// Audit pages: `next` goes older, `prev` (as `after`) comes back newer, both keep the
/// filters and the cluster scope; an empty scope lists nothing.
pub(super) async fn audit_pages_both_ways(f: &mut Fixture) {
    let s = f.store();
    let mut events = Vec::new();
    for i in 1..=12 {
        let cluster = if i % 3 == 0 { "green" } else { "blue" };
        let outcome = if i % 2 == 0 {
            AuditOutcome::Denied
        } else {
            AuditOutcome::Issued
        };
        events.push(audit_event(i, cluster, "ns", outcome));
    }
    events.push(audit_event(13, "red", "ns", AuditOutcome::Issued));
    s.record_audit(&events).await.unwrap();
    let page = |limit| AuditQuery {
        clusters: Some(vec!["blue".into(), "green".into()]),
        limit,
        ..AuditQuery::default()
    };

    // Scope blue+green: 12 events, 5 per page; red's never appears.
    let first = audit(&*s, &page(5)).await;
    assert_eq!(requests(&first), reqs(8..=12));
    assert_eq!(first.prev, None);
    let second = audit(
        &*s,
        &AuditQuery {
            before: first.next,
            ..page(5)
        },
    )
    .await;
    assert_eq!(requests(&second), reqs(3..=7));
    assert!(second.prev.is_some());
    let third = audit(
        &*s,
        &AuditQuery {
            before: second.next,
            ..page(5)
        },
    )
    .await;
    assert_eq!(requests(&third), reqs(1..=2));
    assert_eq!(third.next, None);
    // Back: the 5 events just newer than the third page, newest first, and on to the first.
    let back = audit(
        &*s,
        &AuditQuery {
            after: third.prev,
            ..page(5)
        },
    )
    .await;
    assert_eq!(requests(&back), reqs(3..=7));
    assert_eq!(back.next, second.next);
    let top = audit(
        &*s,
        &AuditQuery {
            after: back.prev,
            ..page(5)
        },
    )
    .await;
    assert_eq!(requests(&top), reqs(8..=12));
    assert_eq!(
        top.prev, None,
        "nothing in scope is newer than the first page"
    );
    assert_eq!(top.next, first.next);

    // Filters narrow within the scope and keep to it across pages.
    let denied = AuditQuery {
        outcome: Some(AuditOutcome::Denied),
        ..page(2)
    };
    let d1 = audit(&*s, &denied).await;
    assert_eq!(requests(&d1), ["req-12", "req-10"]);
    let d2 = audit(
        &*s,
        &AuditQuery {
            before: d1.next,
            ..denied.clone()
        },
    )
    .await;
    assert_eq!(requests(&d2), ["req-8", "req-6"]);
    let d0 = audit(
        &*s,
        &AuditQuery {
            after: d2.prev,
            ..denied.clone()
        },
    )
    .await;
    assert_eq!(requests(&d0), ["req-12", "req-10"]);
    assert_eq!(d0.prev, None);
    let green = audit(
        &*s,
        &AuditQuery {
            clusters: Some(vec!["green".into()]),
            ..page(50)
        },
    )
    .await;
    assert_eq!(requests(&green), ["req-12", "req-9", "req-6", "req-3"]);
    // A cluster filter outside the scope lists nothing.
    let outside = audit(
        &*s,
        &AuditQuery {
            cluster: Some("red".into()),
            ..page(50)
        },
    )
    .await;
    assert!(outside.events.is_empty());
    let none = audit(
        &*s,
        &AuditQuery {
            clusters: Some(Vec::new()),
            ..page(50)
        },
    )
    .await;
    assert!(none.events.is_empty() && none.next.is_none() && none.prev.is_none());

    // The kind filter with a scope: change events only.
    s.record_audit(&[change_event(14)]).await.unwrap();
    let changes = audit(
        &*s,
        &AuditQuery {
            kind: Some(AuditKind::Change),
            ..page(50)
        },
    )
    .await;
    assert_eq!(requests(&changes), ["change-14"]);
}

/// `count_associations`: one count per cluster with associations, only the scope's.
pub(super) async fn association_counts(f: &mut Fixture) {
    let s = f.store_with(&["blue", "green", "empty"]).await;
    for i in 0..7 {
        create(&*s, &assoc("blue", "ns", &format!("sa-{i}"))).await;
    }
    for i in 0..3 {
        create(&*s, &assoc("green", "ns", &format!("sa-{i}"))).await;
    }
    let all = s.count_associations(None).await.unwrap();
    let expected: BTreeMap<String, u64> = [("blue".to_owned(), 7), ("green".to_owned(), 3)].into();
    assert_eq!(all, expected);
    let scoped = s
        .count_associations(Some(&["green".to_owned(), "empty".to_owned()]))
        .await
        .unwrap();
    assert_eq!(scoped, BTreeMap::from([("green".to_owned(), 3)]));
    assert!(s.count_associations(Some(&[])).await.unwrap().is_empty());
    let gone = create(&*s, &assoc("blue", "ns", "sa-gone")).await;
    s.delete_association("blue", &gone.id).await.unwrap();
    assert_eq!(s.count_associations(None).await.unwrap()["blue"], 7);
}
