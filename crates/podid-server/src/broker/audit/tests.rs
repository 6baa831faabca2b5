//! The audit writer: queueing, batching, retries, loss accounting and the
//! fail-closed acknowledgements (paused clock, captured logs).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use podid_api::audit::{AuditKind, AuditOutcome};
use podid_api::EpochMillis;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use super::*;
use crate::metrics::ServerMetrics;

/// A store that fails its first `failures` writes, optionally holds each
/// write until released, and notes when each write came.
struct TestStore {
    failures: AtomicU32,
    gate: Option<Semaphore>,
    entered: Notify,
    attempts: Mutex<Vec<Instant>>,
    written: Mutex<Vec<String>>,
}

impl TestStore {
    fn new(failures: u32, gated: bool) -> Arc<TestStore> {
        Arc::new(TestStore {
            failures: AtomicU32::new(failures),
            gate: gated.then(|| Semaphore::new(0)),
            entered: Notify::new(),
            attempts: Mutex::new(Vec::new()),
            written: Mutex::new(Vec::new()),
        })
    }

    /// Milliseconds between consecutive writes.
    fn gaps_ms(&self) -> Vec<u128> {
        let at = self.attempts.lock().unwrap();
        at.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect()
    }

    fn written(&self) -> Vec<String> {
        self.written.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl AuditStore for Arc<TestStore> {
    async fn write(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        self.attempts.lock().unwrap().push(Instant::now());
        self.entered.notify_one();
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        let failing = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if failing.is_ok() {
            return Err(StoreError::Conflict);
        }
        let ids = events.iter().map(|e| e.request_id.clone());
        self.written.lock().unwrap().extend(ids);
        Ok(())
    }
}

fn event(n: u32) -> AuditEvent {
    let mut e = AuditEvent::new(
        AuditKind::Credential,
        EpochMillis(1_795_940_897_061),
        &format!("req-{n}"),
        "PODIDNODE",
        "blue".into(),
        AuditOutcome::Failed,
    );
    e.namespace = Some("default".into());
    e.service_account = Some("boto3".into());
    e.pod_name = Some(format!("pod-{n}"));
    e.pod_uid = Some(format!("uid-{n}"));
    e.association_id = Some("a-0123456789abcdefg".into());
    e.role_arn = Some("arn:aws:iam::111122223333:role/r".into());
    e.error_code = Some("ServiceUnavailableException".into());
    e
}

/// Log lines written while the guard lives (this thread), as JSON.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

impl Captured {
    fn start() -> (Captured, tracing::subscriber::DefaultGuard) {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(captured.clone())
            .finish();
        (
            captured.clone(),
            tracing::subscriber::set_default(subscriber),
        )
    }

    /// The `fields` of every line whose message is `message`.
    fn lines(&self, message: &str) -> Vec<serde_json::Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|l| l["fields"]["message"] == message)
            .map(|l| l["fields"].clone())
            .collect()
    }
}

/// The fields a lost event is logged with: all of its own but `seq`
/// (none is a secret), no more.
fn assert_logged_as_lost(line: &serde_json::Value, n: u32, outcome: &str) {
    let keys: BTreeSet<&str> = line
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let expected: BTreeSet<&str> = [
        "message",
        "request_id",
        "time_ms",
        "kind",
        "action",
        "before",
        "after",
        "caller",
        "cluster",
        "namespace",
        "service_account",
        "pod",
        "pod_uid",
        "association_id",
        "role_arn",
        "outcome",
        "error_code",
    ]
    .into();
    assert_eq!(keys, expected, "{line}");
    assert_eq!(line["request_id"], format!("req-{n}"));
    assert_eq!(line["pod"], format!("pod-{n}"));
    assert_eq!(line["cluster"], "blue");
    assert_eq!(line["outcome"], outcome);
    assert_eq!(line["kind"], "credential");
    assert_eq!(line["time_ms"], 1_795_940_897_061_i64);
}

/// The exported counter, read from the metrics exposition.
fn dropped_total(metrics: &ServerMetrics) -> String {
    metrics
        .encode()
        .lines()
        .find(|l| l.starts_with("podid_broker_audit_dropped_total "))
        .unwrap_or_default()
        .to_owned()
}

/// Drops the sink and waits (bounded) for the writer to finish.
async fn close(sink: AuditSink, writer: JoinHandle<()>) {
    drop(sink);
    tokio::time::timeout(Duration::from_secs(60), writer)
        .await
        .expect("the audit writer did not finish after its sinks were dropped")
        .unwrap();
}

/// A sink whose queue of one is full.
struct FullQueue {
    metrics: ServerMetrics,
    store: Arc<TestStore>,
    sink: AuditSink,
    writer: JoinHandle<()>,
}

impl FullQueue {
    /// Releases the store and closes the sink: events 1 and 2 are written,
    /// event 3 alone was dropped, counted, and logged as `message`.
    async fn assert_third_lost(self, log: &Captured, message: &str, outcome: &str) {
        self.store.gate.as_ref().unwrap().add_permits(100);
        close(self.sink, self.writer).await;
        assert_eq!(self.store.written(), ["req-1", "req-2"]);
        assert_eq!(
            dropped_total(&self.metrics),
            "podid_broker_audit_dropped_total 1"
        );
        let lost = log.lines(message);
        assert_eq!(lost.len(), 1, "{lost:?}");
        assert_logged_as_lost(&lost[0], 3, outcome);
    }
}

/// A sink of `mode` whose queue of one is full: the writer holds event 1
/// (its store gated) and event 2 fills the queue.
async fn full_queue(mode: AuditMode) -> FullQueue {
    let metrics = ServerMetrics::new();
    let store = TestStore::new(0, true);
    let limits = AuditLimits {
        queue: 1,
        ..AuditLimits::default()
    };
    let (sink, writer) = AuditSink::start_with(
        store.clone(),
        metrics.broker.audit_dropped.clone(),
        limits,
        mode,
    );
    sink.record(event(1)).await;
    tokio::time::timeout(Duration::from_secs(10), store.entered.notified())
        .await
        .expect("the writer never wrote the first event");
    sink.record(event(2)).await;
    FullQueue {
        metrics,
        store,
        sink,
        writer,
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_drops_the_event_after_5_ms_counts_and_logs_it() {
    let (log, _guard) = Captured::start();
    let full = full_queue(AuditMode::BestEffort).await;
    let started = Instant::now();
    full.sink.record(event(3)).await;
    // docs/broker.md: callers wait up to 5 ms, then the event is dropped.
    assert_eq!(started.elapsed(), Duration::from_millis(5));
    assert_eq!(
        dropped_total(&full.metrics),
        "podid_broker_audit_dropped_total 1"
    );
    full.assert_third_lost(&log, "audit queue full: event dropped", "failed")
        .await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_store_is_retried_with_a_doubling_back_off() {
    let (log, _guard) = Captured::start();
    let metrics = ServerMetrics::new();
    let store = TestStore::new(2, false);
    let (sink, writer) = AuditSink::start(
        store.clone(),
        metrics.broker.audit_dropped.clone(),
        AuditMode::BestEffort,
    );
    sink.record(event(1)).await;
    close(sink, writer).await;
    assert_eq!(store.written(), ["req-1"]);
    assert_eq!(store.gaps_ms(), [200, 400]);
    assert_eq!(
        dropped_total(&metrics),
        "podid_broker_audit_dropped_total 0"
    );
    let retries = log.lines("audit write failed; retrying");
    assert_eq!(retries.len(), 2, "{retries:?}");
    assert_eq!(retries[0]["error"], "the resource was changed concurrently");
    assert!(log.lines("audit event lost (store failed)").is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_store_failing_every_retry_loses_the_batch_counted_and_logged() {
    let (log, _guard) = Captured::start();
    let metrics = ServerMetrics::new();
    let store = TestStore::new(u32::MAX, false);
    let (sink, writer) = AuditSink::start(
        store.clone(),
        metrics.broker.audit_dropped.clone(),
        AuditMode::BestEffort,
    );
    sink.record(event(1)).await;
    sink.record(event(2)).await;
    close(sink, writer).await;
    // docs/broker.md: retried 3 times, after 0.2, 0.4 and 0.8 s.
    assert_eq!(store.gaps_ms(), [200, 400, 800]);
    assert!(store.written().is_empty());
    assert_eq!(
        dropped_total(&metrics),
        "podid_broker_audit_dropped_total 2"
    );
    let summary = log.lines("audit write failed after every retry: events lost");
    assert_eq!(summary.len(), 1, "{summary:?}");
    assert_eq!(summary[0]["events"], 2);
    assert_eq!(summary[0]["attempts"], 4);
    assert_eq!(summary[0]["error"], "the resource was changed concurrently");
    let lost = log.lines("audit event lost (store failed)");
    assert_eq!(lost.len(), 2, "{lost:?}");
    assert_logged_as_lost(&lost[0], 1, "failed");
    assert_logged_as_lost(&lost[1], 2, "failed");
}

/// An `issued` event of pod `n`.
fn issued(n: u32) -> AuditEvent {
    let mut e = event(n);
    e.outcome = AuditOutcome::Issued;
    e.error_code = None;
    e
}

fn fail_closed(store: &Arc<TestStore>, metrics: &ServerMetrics) -> (AuditSink, JoinHandle<()>) {
    AuditSink::start(
        store.clone(),
        metrics.broker.audit_dropped.clone(),
        AuditMode::FailClosed,
    )
}

#[tokio::test(start_paused = true)]
async fn fail_closed_answers_after_the_write_and_waiters_share_batches() {
    let metrics = ServerMetrics::new();
    let store = TestStore::new(0, true);
    let (sink, writer) = fail_closed(&store, &metrics);
    let first = tokio::spawn({
        let sink = sink.clone();
        async move { sink.record_issued(issued(0)).await }
    });
    tokio::time::timeout(Duration::from_secs(10), store.entered.notified())
        .await
        .expect("the writer never wrote the first event");
    // 49 more issuances queue while the first batch is being written.
    let started = Arc::new(AtomicU32::new(0));
    let rest: Vec<_> = (1..50)
        .map(|n| {
            let (sink, started) = (sink.clone(), started.clone());
            tokio::spawn(async move {
                started.fetch_add(1, Ordering::SeqCst);
                sink.record_issued(issued(n)).await
            })
        })
        .collect();
    podid_test_support::yield_until("the 49 issuances queued", || {
        started.load(Ordering::SeqCst) == 49
    })
    .await;
    tokio::task::yield_now().await;
    assert!(
        !first.is_finished() && rest.iter().all(|t| !t.is_finished()),
        "an issuance was answered before its event was written"
    );
    store.gate.as_ref().unwrap().add_permits(100);
    first.await.unwrap().unwrap();
    for task in rest {
        task.await.unwrap().unwrap();
    }
    // One write for the first, one for the 49 that queued meanwhile.
    assert_eq!(store.attempts.lock().unwrap().len(), 2);
    assert_eq!(store.written().len(), 50);
    close(sink, writer).await;
    assert_eq!(
        dropped_total(&metrics),
        "podid_broker_audit_dropped_total 0"
    );
}

#[tokio::test(start_paused = true)]
async fn fail_closed_refuses_at_once_when_the_write_fails_and_never_writes_it_later() {
    let (log, _guard) = Captured::start();
    let metrics = ServerMetrics::new();
    let store = TestStore::new(1, false);
    let (sink, writer) = fail_closed(&store, &metrics);
    // A refusal (nobody waits for it) and an issuance share the failing batch.
    sink.record(event(1)).await;
    let started = Instant::now();
    let refused = sink.record_issued(issued(2)).await.unwrap_err();
    assert_eq!(refused.kind, podid_api::ErrorKind::ServiceUnavailable);
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "refused without waiting for retries"
    );
    close(sink, writer).await;
    // The refusal's event is retried and written; the issuance's never is.
    assert_eq!(store.written(), ["req-1"]);
    assert_eq!(store.gaps_ms(), [200]);
    assert_eq!(
        dropped_total(&metrics),
        "podid_broker_audit_dropped_total 1"
    );
    let lost = log.lines("audit write failed: credentials refused (fail-closed)");
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_logged_as_lost(&lost[0], 2, "issued");
}

#[tokio::test(start_paused = true)]
async fn fail_closed_refuses_after_5_ms_when_the_queue_is_full() {
    let (log, _guard) = Captured::start();
    let full = full_queue(AuditMode::FailClosed).await;
    let started = Instant::now();
    let refused = full.sink.record_issued(issued(3)).await.unwrap_err();
    assert_eq!(refused.kind, podid_api::ErrorKind::ServiceUnavailable);
    assert_eq!(started.elapsed(), Duration::from_millis(5));
    let message = "audit queue full: event dropped, credentials refused (fail-closed)";
    full.assert_third_lost(&log, message, "issued").await;
}

#[tokio::test(start_paused = true)]
async fn fail_closed_gives_up_after_the_ack_timeout() {
    let metrics = ServerMetrics::new();
    let store = TestStore::new(0, true);
    let (sink, writer) = fail_closed(&store, &metrics);
    let started = Instant::now();
    let refused = sink.record_issued(issued(1)).await.unwrap_err();
    assert_eq!(refused.kind, podid_api::ErrorKind::ServiceUnavailable);
    // docs/broker.md: an issuance waits 2 s at most for its event's write.
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    store.gate.as_ref().unwrap().add_permits(100);
    close(sink, writer).await;
    // A write that was already under way completes (documented).
    assert_eq!(store.written(), ["req-1"]);
}

#[tokio::test(start_paused = true)]
async fn best_effort_issuances_never_wait_for_the_write() {
    let metrics = ServerMetrics::new();
    let store = TestStore::new(0, true);
    let (sink, writer) = AuditSink::start(
        store.clone(),
        metrics.broker.audit_dropped.clone(),
        AuditMode::BestEffort,
    );
    let started = Instant::now();
    sink.record_issued(issued(1)).await.unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO);
    store.gate.as_ref().unwrap().add_permits(100);
    close(sink, writer).await;
    assert_eq!(store.written(), ["req-1"]);
}
