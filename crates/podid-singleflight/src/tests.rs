use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tokio::time::timeout;

use super::*;

const BOUND: Duration = Duration::from_secs(10);

type Flights = SingleFlight<&'static str, u32>;

#[tokio::test]
async fn concurrent_callers_share_one_run() {
    let flights = Flights::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Notify::new());
    let start = |runs: Arc<AtomicUsize>, gate: Arc<Notify>| {
        move || -> Result<_, ()> {
            Ok(async move {
                runs.fetch_add(1, Ordering::SeqCst);
                gate.notified().await;
                7
            })
        }
    };
    let first = flights.join_or_start(&"pod", start(runs.clone(), gate.clone()));
    let second = flights.join_or_start(&"pod", start(runs.clone(), gate.clone()));
    let (Joined::Started(a), Joined::Joined(b)) = (first, second) else {
        panic!("expected one started and one joined flight");
    };
    assert_eq!(flights.len(), 1);
    gate.notify_one();
    assert_eq!(timeout(BOUND, a.wait()).await.unwrap(), Some(7));
    assert_eq!(timeout(BOUND, b.wait()).await.unwrap(), Some(7));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_key_leaves_before_waiters_see_the_result() {
    let flights = Arc::new(Flights::new());
    let seen = flights.clone();
    let Joined::Started(flight) = flights.join_or_start(&"pod", || Ok::<_, ()>(async { 1 })) else {
        panic!("expected a started flight");
    };
    assert_eq!(timeout(BOUND, flight.wait()).await.unwrap(), Some(1));
    assert!(!seen.contains(&"pod"));
    // The next caller starts a new flight.
    assert!(matches!(
        flights.join_or_start(&"pod", || Ok::<_, ()>(async { 2 })),
        Joined::Started(_)
    ));
}

#[tokio::test]
async fn a_dropped_waiter_does_not_cancel_the_run() {
    let flights = Flights::new();
    let (done_tx, done_rx) = oneshot::channel();
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    let Joined::Started(flight) = flights.join_or_start(&"pod", move || {
        Ok::<_, ()>(async move {
            g.notified().await;
            let _ = done_tx.send(());
            3
        })
    }) else {
        panic!("expected a started flight");
    };
    drop(flight);
    gate.notify_one();
    timeout(BOUND, done_rx)
        .await
        .expect("the run finished")
        .unwrap();
}

#[tokio::test]
async fn a_panicking_run_gives_none_and_leaves_the_table() {
    let flights = Flights::new();
    let Joined::Started(flight) = flights.join_or_start(&"pod", || {
        Ok::<_, ()>(async {
            if true {
                panic!("the run failed");
            }
            0
        })
    }) else {
        panic!("expected a started flight");
    };
    assert_eq!(timeout(BOUND, flight.wait()).await.unwrap(), None);
    assert!(flights.is_empty());
}

#[tokio::test]
async fn a_declined_start_runs_nothing() {
    let flights = Flights::new();
    let joined = flights.join_or_start(&"pod", || Err::<std::future::Ready<u32>, _>("cached"));
    assert!(matches!(joined, Joined::Declined("cached")));
    assert!(flights.is_empty());
}

#[tokio::test]
async fn start_if_idle_skips_a_key_under_way() {
    let flights = Flights::new();
    let gate = Arc::new(Notify::new());
    let g = gate.clone();
    let first = flights.start_if_idle(&"pod", move || async move {
        g.notified().await;
        5
    });
    assert!(flights.start_if_idle(&"pod", || async { 6 }).is_none());
    assert!(flights.start_if_idle(&"other", || async { 8 }).is_some());
    gate.notify_one();
    assert_eq!(
        timeout(BOUND, first.unwrap().wait()).await.unwrap(),
        Some(5)
    );
}
