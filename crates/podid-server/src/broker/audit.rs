//! The audit trail: events queued on the request path, written in batches by
//! one background task; and `GET /podid/v1/audit`.

use std::sync::Arc;
use std::time::Duration;

use podid_api::audit::AuditEvent;
use podid_store::AssociationStore;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::authz::{Operation, Principal};
use crate::wire::{answer, error_chain, query_pairs, store_error, SubjectFilter};

/// Events queued at most before callers wait.
const QUEUE: usize = 10_000;
/// Events written per transaction at most.
const BATCH: usize = 500;
/// How long the writer lets events gather after the first of a batch: one
/// transaction (and one flush) for everything that arrives meanwhile.
const LINGER: Duration = Duration::from_millis(50);
/// How long a caller waits for room in a full queue before the event is
/// dropped (and counted, and logged).
const ENQUEUE_TIMEOUT: Duration = Duration::from_secs(1);

/// Moves queued events into `batch`, up to [`BATCH`].
fn drain(rx: &mut mpsc::Receiver<AuditEvent>, batch: &mut Vec<AuditEvent>) {
    while batch.len() < BATCH {
        match rx.try_recv() {
            Ok(e) => batch.push(e),
            Err(_) => break,
        }
    }
}

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
                drain(&mut rx, &mut batch);
                // A small batch waits a moment for more: one transaction (and
                // one flush) for what arrives meanwhile. A backlog is written
                // at once.
                if batch.len() < BATCH && !rx.is_closed() {
                    tokio::time::sleep(LINGER).await;
                    drain(&mut rx, &mut batch);
                }
                // A failed batch is retried a few times; after that it is
                // logged (without secrets: events hold none) and dropped.
                let mut attempt = 0;
                loop {
                    match store.record_audit(&batch).await {
                        Ok(()) => break,
                        Err(e) if attempt < 3 => {
                            attempt += 1;
                            tracing::warn!(
                                error = %error_chain(&e),
                                attempt,
                                "audit write failed; retrying"
                            );
                            tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                        }
                        Err(e) => {
                            tracing::error!(
                                error = %error_chain(&e),
                                events = batch.len(),
                                "audit events lost"
                            );
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
            tracing::error!(
                request_id = %event.request_id,
                cluster = %event.cluster,
                "audit queue full: event dropped"
            );
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
