//! The audit trail: events queued on the request path, written in batches by
//! one background task; and `GET /podid/v1/audit`.

use std::sync::Arc;
use std::time::Duration;

use podid_api::audit::AuditEvent;
use podid_store::{AssociationStore, StoreError};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::authz::{Operation, Principal};
use crate::wire::{answer, error_chain, query_pairs, store_error, SubjectFilter};

/// Where the writer puts batches: the store, or a test's stand-in.
#[async_trait::async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Appends `events` in one transaction.
    async fn write(&self, events: &[AuditEvent]) -> Result<(), StoreError>;
}

#[async_trait::async_trait]
impl AuditStore for Arc<dyn AssociationStore> {
    async fn write(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        self.record_audit(events).await
    }
}

/// Sizes and times of the audit trail's queue and writer.
#[derive(Debug, Clone)]
pub struct AuditLimits {
    /// Events queued at most before callers wait.
    pub queue: usize,
    /// Events written per transaction at most.
    pub batch: usize,
    /// How long the writer lets events gather after the first of a batch:
    /// one transaction (and one flush) for everything that arrives meanwhile.
    pub linger: Duration,
    /// How long a caller waits for room in a full queue before its event is
    /// dropped (and counted, and logged).
    pub enqueue_timeout: Duration,
    /// Retries of a failed batch before its events are dropped (and
    /// counted, and logged one by one).
    pub retries: u32,
    /// Wait before the first retry; it doubles for each next one.
    pub backoff: Duration,
}

impl Default for AuditLimits {
    /// A queue of 10,000, batches of 500 gathered for 50 ms, callers waiting
    /// 1 s for room, 3 retries after 200, 400 and 800 ms.
    fn default() -> Self {
        AuditLimits {
            queue: 10_000,
            batch: 500,
            linger: Duration::from_millis(50),
            enqueue_timeout: Duration::from_secs(1),
            retries: 3,
            backoff: Duration::from_millis(200),
        }
    }
}

/// Moves queued events into `batch`, up to `max`.
fn drain(rx: &mut mpsc::Receiver<AuditEvent>, batch: &mut Vec<AuditEvent>, max: usize) {
    while batch.len() < max {
        match rx.try_recv() {
            Ok(e) => batch.push(e),
            Err(_) => break,
        }
    }
}

/// Logs an event that will not be stored, with its fields (none is secret),
/// so that the decision survives in the log.
fn log_lost(event: &AuditEvent, why: &str) {
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
    tracing::error!(
        request_id = %event.request_id,
        time_ms = event.time.0,
        caller = %event.caller,
        cluster = %event.cluster,
        namespace = %or_dash(&event.namespace),
        service_account = %or_dash(&event.service_account),
        pod = %or_dash(&event.pod_name),
        pod_uid = %or_dash(&event.pod_uid),
        association_id = %or_dash(&event.association_id),
        role_arn = %or_dash(&event.role_arn),
        outcome = event.outcome.as_str(),
        error_code = %or_dash(&event.error_code),
        "{why}"
    );
}

/// Writes one batch, retrying with a doubling back-off; when every attempt
/// failed, its events are counted in `dropped` and logged one by one.
async fn write_batch(
    store: &dyn AuditStore,
    batch: &[AuditEvent],
    limits: &AuditLimits,
    dropped: &Counter,
) {
    let mut backoff = limits.backoff;
    let mut attempt = 0;
    loop {
        let Err(e) = store.write(batch).await else {
            return;
        };
        if attempt < limits.retries {
            attempt += 1;
            tracing::warn!(
                error = %error_chain(&e),
                attempt,
                retry_in_ms = backoff.as_millis() as u64,
                "audit write failed; retrying"
            );
            tokio::time::sleep(backoff).await;
            backoff *= 2;
            continue;
        }
        dropped.inc_by(batch.len() as u64);
        tracing::error!(
            error = %error_chain(&e),
            attempts = attempt + 1,
            events = batch.len(),
            "audit write failed after every retry: events lost"
        );
        for event in batch {
            log_lost(event, "audit event lost (store failed)");
        }
        return;
    }
}

/// Where the broker records its decisions.
#[derive(Clone, Debug)]
pub struct AuditSink {
    tx: mpsc::Sender<AuditEvent>,
    dropped: Counter,
    enqueue_timeout: Duration,
}

impl AuditSink {
    /// Starts the writer with [`AuditLimits::default`]. It ends, after
    /// writing what is queued, once every sink is dropped; await the handle
    /// at shutdown. Lost events are counted in `dropped`.
    pub fn start(store: impl AuditStore, dropped: Counter) -> (AuditSink, JoinHandle<()>) {
        Self::start_with(store, dropped, AuditLimits::default())
    }

    /// [`AuditSink::start`] with other limits.
    pub fn start_with(
        store: impl AuditStore,
        dropped: Counter,
        limits: AuditLimits,
    ) -> (AuditSink, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<AuditEvent>(limits.queue.max(1));
        let sink = AuditSink {
            tx,
            dropped: dropped.clone(),
            enqueue_timeout: limits.enqueue_timeout,
        };
        let writer = tokio::spawn(async move {
            let max = limits.batch.max(1);
            let mut batch = Vec::with_capacity(max);
            while let Some(first) = rx.recv().await {
                batch.push(first);
                drain(&mut rx, &mut batch, max);
                // A small batch waits a moment for more: one transaction (and
                // one flush) for what arrives meanwhile. A backlog is written
                // at once.
                if batch.len() < max && !rx.is_closed() {
                    tokio::time::sleep(limits.linger).await;
                    drain(&mut rx, &mut batch, max);
                }
                write_batch(&store, &batch, &limits, &dropped).await;
                batch.clear();
            }
        });
        (sink, writer)
    }

    /// Queues an event; when the queue stays full for the enqueue timeout,
    /// the event is dropped, counted and logged.
    pub async fn record(&self, event: AuditEvent) {
        if let Err(e) = self.tx.send_timeout(event, self.enqueue_timeout).await {
            self.dropped.inc();
            log_lost(&e.into_inner(), "audit queue full: event dropped");
        }
    }
}

/// `GET /podid/v1/audit?cluster&namespace&serviceAccount&outcome&since&maxResults&nextToken`:
/// the audit trail, newest first. `since` is epoch seconds.
pub async fn list(
    axum::extract::State(state): axum::extract::State<crate::SharedState>,
    axum::Extension(principal): axum::Extension<Principal>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> axum::response::Response {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use podid_api::{validate, ApiError};

    answer(Operation::ListAuditEvents, &principal, async {
        let mut query = podid_store::AuditQuery {
            limit: 100,
            ..Default::default()
        };
        let mut subject = SubjectFilter::default();
        let bad = |what: &str, v: &str| {
            ApiError::invalid_parameter(format!(
                "{what} '{}' is invalid",
                podid_api::arn::printable(v)
            ))
        };
        for (key, value) in query_pairs(&raw) {
            match key.as_str() {
                "cluster" => {
                    validate::cluster_name(&value)?;
                    query.cluster = Some(value);
                }
                "outcome" => {
                    query.outcome = Some(
                        podid_api::audit::AuditOutcome::parse(&value)
                            .ok_or_else(|| bad("outcome (issued, denied or failed)", &value))?,
                    );
                }
                "since" => {
                    let secs: f64 = value
                        .parse()
                        .map_err(|_| bad("since (epoch seconds)", &value))?;
                    if !secs.is_finite() {
                        return Err(bad("since (epoch seconds)", &value));
                    }
                    query.since = Some(podid_api::EpochMillis((secs * 1000.0) as i64));
                }
                "maxResults" => {
                    let n: i64 = value.parse().map_err(|_| bad("maxResults", &value))?;
                    validate::max_results(n)?;
                    query.limit = n as u32;
                }
                "nextToken" => {
                    let decoded = URL_SAFE_NO_PAD
                        .decode(&value)
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .and_then(|s| s.strip_prefix("audit:").and_then(|n| n.parse::<i64>().ok()))
                        .ok_or_else(|| bad("nextToken", &value))?;
                    query.before = Some(decoded);
                }
                _ => subject.take(&key, value)?,
            }
        }
        query.namespace = subject.namespace;
        query.service_account = subject.service_account;
        let page = state.store.list_audit(&query).await.map_err(store_error)?;
        Ok(podid_api::audit::ListAuditResponse {
            events: page.events,
            next_token: page
                .next
                .map(|n| URL_SAFE_NO_PAD.encode(format!("audit:{n}"))),
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;

    use podid_api::audit::AuditOutcome;
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
        AuditEvent {
            seq: 0,
            time: EpochMillis(1_795_940_897_061),
            request_id: format!("req-{n}"),
            caller: "PODIDNODE".into(),
            cluster: "blue".into(),
            namespace: Some("default".into()),
            service_account: Some("boto3".into()),
            pod_name: Some(format!("pod-{n}")),
            pod_uid: Some(format!("uid-{n}")),
            association_id: Some("a-0123456789abcdefg".into()),
            role_arn: Some("arn:aws:iam::111122223333:role/r".into()),
            outcome: AuditOutcome::Failed,
            error_code: Some("ServiceUnavailableException".into()),
        }
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
    fn assert_logged_as_lost(line: &serde_json::Value, n: u32) {
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
        assert_eq!(line["outcome"], "failed");
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

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_drops_the_event_after_a_second_counts_and_logs_it() {
        let (log, _guard) = Captured::start();
        let metrics = ServerMetrics::new();
        let store = TestStore::new(0, true);
        let limits = AuditLimits {
            queue: 1,
            ..AuditLimits::default()
        };
        let (sink, writer) =
            AuditSink::start_with(store.clone(), metrics.broker.audit_dropped.clone(), limits);
        sink.record(event(1)).await;
        tokio::time::timeout(Duration::from_secs(10), store.entered.notified())
            .await
            .expect("the writer never wrote the first event");
        // The writer holds event 1; event 2 fills the queue of one.
        sink.record(event(2)).await;
        let started = Instant::now();
        sink.record(event(3)).await;
        // docs/broker.md: callers wait up to a second, then the event is dropped.
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        assert_eq!(
            dropped_total(&metrics),
            "podid_broker_audit_dropped_total 1"
        );

        store.gate.as_ref().unwrap().add_permits(100);
        close(sink, writer).await;
        assert_eq!(store.written(), ["req-1", "req-2"]);
        assert_eq!(
            dropped_total(&metrics),
            "podid_broker_audit_dropped_total 1"
        );
        let dropped = log.lines("audit queue full: event dropped");
        assert_eq!(dropped.len(), 1, "{dropped:?}");
        assert_logged_as_lost(&dropped[0], 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_store_is_retried_with_a_doubling_back_off() {
        let (log, _guard) = Captured::start();
        let metrics = ServerMetrics::new();
        let store = TestStore::new(2, false);
        let (sink, writer) = AuditSink::start(store.clone(), metrics.broker.audit_dropped.clone());
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
        let (sink, writer) = AuditSink::start(store.clone(), metrics.broker.audit_dropped.clone());
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
        assert_logged_as_lost(&lost[0], 1);
        assert_logged_as_lost(&lost[1], 2);
    }
}
