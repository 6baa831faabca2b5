//! The audit trail: events are queued on the request path and written in
//! batches by one background task, so issuing credentials never waits for a
//! disk flush per request.

use std::sync::Arc;
use std::time::Duration;

use podid_api::audit::AuditEvent;
use podid_store::AssociationStore;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::http_api::error_chain;

/// Events queued at most before callers wait.
const QUEUE: usize = 10_000;
/// Events written per transaction at most.
const BATCH: usize = 500;
/// How long a caller waits for room in a full queue before the event is
/// dropped (and counted, and logged).
const ENQUEUE_TIMEOUT: Duration = Duration::from_secs(1);

/// Where the broker records its decisions.
#[derive(Clone, Debug)]
pub struct AuditSink {
    tx: mpsc::Sender<AuditEvent>,
    dropped: prometheus_client::metrics::counter::Counter,
}

impl AuditSink {
    /// Starts the writer. It ends, after writing what is queued, once every
    /// sink is dropped; await the handle at shutdown.
    pub fn start(
        store: Arc<dyn AssociationStore>,
        dropped: prometheus_client::metrics::counter::Counter,
    ) -> (AuditSink, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<AuditEvent>(QUEUE);
        let writer = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while let Some(first) = rx.recv().await {
                batch.push(first);
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(e) => batch.push(e),
                        Err(_) => break,
                    }
                }
                // A failed batch is retried a few times; after that it is
                // logged (without secrets: events hold none) and dropped.
                let mut attempt = 0;
                loop {
                    match store.record_audit(&batch).await {
                        Ok(()) => break,
                        Err(e) if attempt < 3 => {
                            attempt += 1;
                            tracing::warn!(error = %error_chain(&e), attempt, "audit write failed; retrying");
                            tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                        }
                        Err(e) => {
                            tracing::error!(error = %error_chain(&e), events = batch.len(), "audit events lost");
                            break;
                        }
                    }
                }
                batch.clear();
            }
        });
        (AuditSink { tx, dropped }, writer)
    }

    /// Queues an event.
    pub async fn record(&self, event: AuditEvent) {
        if let Err(e) = self.tx.send_timeout(event, ENQUEUE_TIMEOUT).await {
            self.dropped.inc();
            let event = e.into_inner();
            tracing::error!(request_id = %event.request_id, cluster = %event.cluster, "audit queue full: event dropped");
        }
    }
}
