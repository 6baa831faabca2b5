//! The audit trail: events queued on the request path and written in batches
//! by one background task; in fail-closed mode an issuance waits for its
//! event's batch to be written. `GET /podid/v1/audit` is in [`list`], change
//! events in [`change`], the retention in [`retention`].

use std::sync::Arc;
use std::time::Duration;

use podid_api::audit::{AuditEvent, AuditOutcome};
use podid_api::{ApiError, ErrorKind};
use podid_store::{AssociationStore, StoreError};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::wire::error_chain;

pub(crate) mod change;
pub(crate) mod list;
pub(crate) mod retention;

pub use list::list;

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

/// What happens to credentials whose `issued` event cannot be recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuditMode {
    /// They are answered; the event is dropped, counted and logged.
    #[default]
    BestEffort,
    /// They are refused (`ServiceUnavailableException`) unless the event
    /// was written first.
    FailClosed,
}

impl AuditMode {
    /// The flag's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditMode::BestEffort => "best-effort",
            AuditMode::FailClosed => "fail-closed",
        }
    }

    /// Parses the flag's spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "best-effort" => Some(AuditMode::BestEffort),
            "fail-closed" => Some(AuditMode::FailClosed),
            _ => None,
        }
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
    /// A batch holding an event someone waits for is written at once.
    pub linger: Duration,
    /// How long a caller waits for room in a full queue before its event is
    /// dropped (and counted, and logged).
    pub enqueue_timeout: Duration,
    /// Retries of a failed batch before its events are dropped (and
    /// counted, and logged one by one).
    pub retries: u32,
    /// Wait before the first retry; it doubles for each next one.
    pub backoff: Duration,
    /// Fail-closed: how long an issuance waits for its event to be written.
    pub ack_timeout: Duration,
}

impl Default for AuditLimits {
    /// A queue of 10,000, batches of 500 gathered for 50 ms, callers waiting
    /// 5 ms for room, 3 retries after 200, 400 and 800 ms; fail-closed
    /// issuances wait 2 s at most for their event's write.
    fn default() -> Self {
        AuditLimits {
            queue: 10_000,
            batch: 500,
            linger: Duration::from_millis(50),
            enqueue_timeout: Duration::from_millis(5),
            retries: 3,
            backoff: Duration::from_millis(200),
            ack_timeout: Duration::from_secs(2),
        }
    }
}

/// One queued event, and whoever waits for it to be written.
#[derive(Debug)]
struct Queued {
    event: AuditEvent,
    ack: Option<oneshot::Sender<bool>>,
}

/// Moves queued events into `batch`, up to `max`.
fn drain(rx: &mut mpsc::Receiver<Queued>, batch: &mut Vec<Queued>, max: usize) {
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
    let state = |v: &Option<podid_api::audit::AuditState>| {
        v.as_ref()
            .and_then(|s| serde_json::to_string(s).ok())
            .unwrap_or_else(|| "-".to_owned())
    };
    tracing::error!(
        request_id = %event.request_id,
        time_ms = event.time.0,
        kind = event.kind.as_str(),
        action = %or_dash(&event.action),
        caller = %event.caller,
        cluster = %event.cluster,
        namespace = %or_dash(&event.namespace),
        service_account = %or_dash(&event.service_account),
        pod = %or_dash(&event.pod_name),
        pod_uid = %or_dash(&event.pod_uid),
        association_id = %or_dash(&event.association_id),
        role_arn = %or_dash(&event.role_arn),
        before = %state(&event.before),
        after = %state(&event.after),
        outcome = event.outcome.as_str(),
        error_code = %or_dash(&event.error_code),
        "{why}"
    );
}

/// Writes one batch, retrying with a doubling back-off. Whoever waits for
/// an event hears once: written, or not (after the first failure, when
/// that event leaves the batch: its credentials are refused, so it must
/// not be written later as issued). When every attempt failed, the rest is
/// counted in `dropped` and logged one by one.
async fn write_batch(
    store: &dyn AuditStore,
    batch: Vec<Queued>,
    limits: &AuditLimits,
    dropped: &Counter,
) {
    let (mut events, mut acks): (Vec<AuditEvent>, Vec<_>) =
        batch.into_iter().map(|q| (q.event, q.ack)).unzip();
    let mut backoff = limits.backoff;
    let mut attempt = 0;
    loop {
        let Err(e) = store.write(&events).await else {
            for ack in acks.into_iter().flatten() {
                let _ = ack.send(true);
            }
            return;
        };
        let waited_for = acks.iter().filter(|a| a.is_some()).count();
        if waited_for > 0 {
            let mut kept = Vec::with_capacity(events.len() - waited_for);
            for (event, ack) in events.drain(..).zip(acks.drain(..)) {
                match ack {
                    Some(ack) => {
                        let _ = ack.send(false);
                        log_lost(
                            &event,
                            "audit write failed: credentials refused (fail-closed)",
                        );
                    }
                    None => kept.push(event),
                }
            }
            dropped.inc_by(waited_for as u64);
            acks = kept.iter().map(|_| None).collect();
            events = kept;
            if events.is_empty() {
                tracing::error!(
                    error = %error_chain(&e),
                    events = waited_for,
                    "audit write failed: issuances waiting for it refused"
                );
                return;
            }
        }
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
        dropped.inc_by(events.len() as u64);
        tracing::error!(
            error = %error_chain(&e),
            attempts = attempt + 1,
            events = events.len(),
            "audit write failed after every retry: events lost"
        );
        for event in &events {
            log_lost(event, "audit event lost (store failed)");
        }
        return;
    }
}

/// Where decisions and changes are recorded.
#[derive(Clone, Debug)]
pub struct AuditSink {
    tx: mpsc::Sender<Queued>,
    dropped: Counter,
    enqueue_timeout: Duration,
    ack_timeout: Duration,
    mode: AuditMode,
}

impl AuditSink {
    /// Starts the writer with [`AuditLimits::default`]. It ends, after
    /// writing what is queued, once every sink is dropped; await the handle
    /// at shutdown. Lost events are counted in `dropped`.
    pub fn start(
        store: impl AuditStore,
        dropped: Counter,
        mode: AuditMode,
    ) -> (AuditSink, JoinHandle<()>) {
        Self::start_with(store, dropped, AuditLimits::default(), mode)
    }

    /// [`AuditSink::start`] with other limits.
    pub fn start_with(
        store: impl AuditStore,
        dropped: Counter,
        limits: AuditLimits,
        mode: AuditMode,
    ) -> (AuditSink, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Queued>(limits.queue.max(1));
        let sink = AuditSink {
            tx,
            dropped: dropped.clone(),
            enqueue_timeout: limits.enqueue_timeout,
            ack_timeout: limits.ack_timeout,
            mode,
        };
        let writer = tokio::spawn(async move {
            let max = limits.batch.max(1);
            let mut batch = Vec::with_capacity(max);
            while let Some(first) = rx.recv().await {
                batch.push(first);
                drain(&mut rx, &mut batch, max);
                // A small batch waits a moment for more: one transaction (and
                // one flush) for what arrives meanwhile. A backlog, or an
                // event an issuance waits for, is written at once (what
                // queues meanwhile forms the next batch).
                let waited_for = batch.iter().any(|q: &Queued| q.ack.is_some());
                if batch.len() < max && !rx.is_closed() && !waited_for {
                    tokio::time::sleep(limits.linger).await;
                    drain(&mut rx, &mut batch, max);
                }
                let full = std::mem::replace(&mut batch, Vec::with_capacity(max));
                write_batch(&store, full, &limits, &dropped).await;
            }
        });
        (sink, writer)
    }

    /// Queues `queued`, waiting at most the enqueue timeout for room; hands
    /// it back when it could not be queued.
    async fn enqueue(&self, queued: Queued) -> Result<(), Queued> {
        match self.tx.try_send(queued) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(q)) => Err(q),
            Err(mpsc::error::TrySendError::Full(q)) => self
                .tx
                .send_timeout(q, self.enqueue_timeout)
                .await
                .map_err(|e| e.into_inner()),
        }
    }

    /// Queues an event; when the queue stays full for the enqueue timeout,
    /// the event is dropped, counted and logged.
    pub async fn record(&self, event: AuditEvent) {
        if let Err(q) = self.enqueue(Queued { event, ack: None }).await {
            self.dropped.inc();
            log_lost(&q.event, "audit queue full: event dropped");
        }
    }

    /// Records the event of credentials about to be answered. Best-effort:
    /// as [`AuditSink::record`]. Fail-closed: returns once the event is
    /// written; when it cannot be queued, written, or confirmed within the
    /// ack timeout, `ServiceUnavailableException` (the caller gets no
    /// credentials).
    pub async fn record_issued(&self, event: AuditEvent) -> Result<(), ApiError> {
        if self.mode == AuditMode::BestEffort {
            self.record(event).await;
            return Ok(());
        }
        let refused = || {
            ApiError::new(
                ErrorKind::ServiceUnavailable,
                "Credentials could not be issued now: the audit trail cannot record them.",
            )
        };
        let (ack, written) = oneshot::channel();
        let queued = Queued {
            event,
            ack: Some(ack),
        };
        if let Err(q) = self.enqueue(queued).await {
            self.dropped.inc();
            log_lost(
                &q.event,
                "audit queue full: event dropped, credentials refused (fail-closed)",
            );
            return Err(refused());
        }
        match tokio::time::timeout(self.ack_timeout, written).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) | Ok(Err(_)) => Err(refused()),
            Err(_) => {
                tracing::error!(
                    wait_ms = self.ack_timeout.as_millis() as u64,
                    "audit write not confirmed in time: credentials refused (fail-closed); \
                     the event may still be written"
                );
                Err(refused())
            }
        }
    }
}

/// The outcome of a request that was answered with `error`.
pub(crate) fn outcome_of(error: &ApiError) -> AuditOutcome {
    match error.kind {
        ErrorKind::ServiceUnavailable
        | ErrorKind::Throttling
        | ErrorKind::InternalServer
        | ErrorKind::Server => AuditOutcome::Failed,
        _ => AuditOutcome::Denied,
    }
}

#[cfg(test)]
mod tests;
