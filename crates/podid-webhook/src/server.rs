//! The HTTPS server: `POST /mutate` (AdmissionReview v1), `GET /healthz`,
//! `GET /readyz` (200 once a certificate is loaded), `GET /metrics`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::BodyExt;
use podid_listen::{CertStore, ListenLimits};

use crate::lookup::{AssociationCache, AssociationLookup};
use crate::metrics::{AdmissionResult, LookupResult, WebhookMetrics};
use crate::mutate::MutationSettings;
use crate::review::{parse_review, Admission, AdmissionReviewResponse, PodAdmission};
use crate::WebhookError;

/// The largest AdmissionReview accepted: 3 MiB, the apiserver's own request limit.
pub const DEFAULT_MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// How the webhook behaves.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// What is injected.
    pub mutation: MutationSettings,
    /// Bound on one association lookup; past it the pod is admitted unchanged
    /// with a warning. Keep it well under the webhook's `timeoutSeconds`.
    pub lookup_timeout: Duration,
    /// How long a positive answer is reused (negative answers never are).
    pub positive_ttl: Duration,
    /// Most service accounts whose positive answer is kept.
    pub cache_capacity: usize,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// How often the certificate files are checked for changes.
    pub reload_interval: Duration,
    /// The listener's connection cap, size limit and deadlines.
    pub limits: ListenLimits,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            mutation: MutationSettings::default(),
            lookup_timeout: Duration::from_millis(1500),
            positive_ttl: Duration::from_secs(30),
            cache_capacity: 10_000,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            reload_interval: Duration::from_secs(2),
            limits: ListenLimits::webhook(),
        }
    }
}

/// The webhook: lookup, cache, settings, metrics and certificates.
///
/// The webhook never refuses a pod: when podid's server cannot be reached or
/// answers with an error, the pod is admitted unchanged within the lookup
/// timeout, with a `warnings` entry saying pod identity was not injected and
/// why. Only a request that is not an AdmissionReview v1 gets an HTTP error
/// (400, 408, 413), with a JSON body `{"code","message"}`.
pub struct Webhook {
    lookup: Arc<dyn AssociationLookup>,
    cache: AssociationCache,
    settings: WebhookSettings,
    metrics: Arc<WebhookMetrics>,
    certs: Arc<CertStore>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("lookup", &self.lookup.describe())
            .field("settings", &self.settings)
            .field("certs", &self.certs)
            .finish()
    }
}

impl Webhook {
    /// Assembles a webhook.
    pub fn new(
        lookup: Arc<dyn AssociationLookup>,
        certs: Arc<CertStore>,
        settings: WebhookSettings,
        metrics: Arc<WebhookMetrics>,
    ) -> Self {
        let cache = AssociationCache::new(settings.positive_ttl, settings.cache_capacity);
        Webhook {
            lookup,
            cache,
            settings,
            metrics,
            certs,
        }
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<WebhookMetrics> {
        &self.metrics
    }

    /// The certificate store.
    pub fn certs(&self) -> &Arc<CertStore> {
        &self.certs
    }

    /// Answers one AdmissionReview body, counting it in the metrics.
    /// `Err` only for a body that is not an AdmissionReview v1 (HTTP 400).
    pub async fn admit(&self, body: &[u8]) -> Result<AdmissionReviewResponse, WebhookError> {
        let started = Instant::now();
        let (answer, result) = match parse_review(body) {
            Err(e) => {
                tracing::warn!(error = %e, "refused a malformed AdmissionReview");
                (Err(e), AdmissionResult::Error)
            }
            Ok(review) => {
                let uid = review.uid().to_owned();
                match review.admission() {
                    Admission::Ignore(why) => {
                        tracing::debug!(%uid, why, "allowed unchanged");
                        (
                            Ok(AdmissionReviewResponse::allow(&uid, None, Vec::new())),
                            AdmissionResult::Skipped,
                        )
                    }
                    Admission::Undecodable(reason) => {
                        tracing::warn!(%uid, %reason, "pod not readable; allowed unchanged");
                        let warning = not_injected(&reason);
                        (
                            Ok(AdmissionReviewResponse::allow(&uid, None, vec![warning])),
                            AdmissionResult::Error,
                        )
                    }
                    Admission::Pod(pod) => {
                        let (response, result) = self.admit_pod(&uid, &pod).await;
                        (Ok(response), result)
                    }
                }
            }
        };
        self.metrics
            .admission(result, started.elapsed().as_secs_f64());
        answer
    }

    async fn admit_pod(
        &self,
        uid: &str,
        pod: &PodAdmission,
    ) -> (AdmissionReviewResponse, AdmissionResult) {
        match self
            .has_association(&pod.namespace, &pod.service_account)
            .await
        {
            Ok(found) => {
                let mutation = pod.mutation(found, &self.settings.mutation);
                let result = if mutation.is_empty() {
                    AdmissionResult::Skipped
                } else {
                    AdmissionResult::Mutated
                };
                if result == AdmissionResult::Mutated {
                    tracing::info!(
                        %uid,
                        pod = %pod.display_name(),
                        service_account = %pod.service_account,
                        token_expiration = mutation.token_expiration,
                        windows = mutation.windows,
                        "pod identity injected"
                    );
                } else {
                    tracing::debug!(%uid, pod = %pod.display_name(), association = found, "pod unchanged");
                }
                (
                    AdmissionReviewResponse::allow(uid, Some(&mutation.patch), mutation.warnings),
                    result,
                )
            }
            Err(e) => {
                tracing::warn!(
                    %uid,
                    pod = %pod.display_name(),
                    service_account = %pod.service_account,
                    error = %e,
                    "association lookup failed; pod admitted without pod identity"
                );
                let reason = match &e {
                    WebhookError::Unreachable { reason, .. } => {
                        format!("podid server unreachable ({reason})")
                    }
                    other => other.to_string(),
                };
                (
                    AdmissionReviewResponse::allow(uid, None, vec![not_injected(&reason)]),
                    AdmissionResult::Error,
                )
            }
        }
    }

    /// Whether (namespace, service account) has an association: a fresh
    /// cached positive (not with a lookup that follows changes), else the
    /// lookup, bounded by the lookup timeout.
    async fn has_association(
        &self,
        namespace: &str,
        service_account: &str,
    ) -> Result<bool, WebhookError> {
        let cache = !self.lookup.follows_changes();
        if cache
            && self
                .cache
                .is_fresh(namespace, service_account, Instant::now())
        {
            self.metrics.lookup(LookupResult::Cached);
            return Ok(true);
        }
        let started = Instant::now();
        let timeout = self.settings.lookup_timeout;
        let answer = tokio::time::timeout(timeout, self.lookup.lookup(namespace, service_account))
            .await
            .unwrap_or_else(|_| {
                Err(WebhookError::Unreachable {
                    endpoint: self.lookup.describe(),
                    reason: format!("no answer within {} ms", timeout.as_millis()),
                    source: None,
                })
            });
        let result = match &answer {
            Ok(a) if a.found && !a.asked_server => LookupResult::Followed,
            Ok(a) if a.found => {
                if cache {
                    self.cache
                        .remember(namespace, service_account, Instant::now());
                }
                LookupResult::Found
            }
            Ok(_) => LookupResult::NotFound,
            Err(WebhookError::Unreachable { .. }) => LookupResult::Unreachable,
            Err(_) => LookupResult::Error,
        };
        if result != LookupResult::Followed {
            self.metrics
                .lookup_latency
                .observe(started.elapsed().as_secs_f64());
        }
        self.metrics.lookup(result);
        answer.map(|a| a.found)
    }
}

/// The warning returned when pod identity could not be injected.
fn not_injected(reason: &str) -> String {
    // The apiserver may truncate warnings over 256 characters.
    let mut text = format!("podid: AWS pod identity was not injected: {reason}");
    if text.len() > 250 {
        let mut cut = 247;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

/// Builds the HTTP routes.
pub fn router(webhook: Arc<Webhook>) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|request: Request| async move {
            error(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("no route for {}", request.uri().path()),
            )
        })
        .method_not_allowed_fallback(|request: Request| async move {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                &format!(
                    "{} is not allowed on {}",
                    request.method(),
                    request.uri().path()
                ),
            )
        })
        .with_state(webhook)
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({ "code": code, "message": message })),
    )
        .into_response()
}

async fn mutate(State(webhook): State<Arc<Webhook>>, request: Request) -> Response {
    let limit = webhook.settings.max_body_bytes;
    let body = http_body_util::Limited::new(request.into_body(), limit);
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            webhook.metrics.admission(AdmissionResult::Error, 0.0);
            if podid_listen::is_body_timeout(&*e) {
                tracing::info!("a request body was not complete by its read deadline");
                return error(
                    StatusCode::REQUEST_TIMEOUT,
                    "RequestTimeout",
                    "the AdmissionReview was not received within the body read timeout",
                );
            }
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "RequestTooLarge",
                    &format!("the AdmissionReview is larger than {limit} bytes"),
                );
            }
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidAdmissionReview",
                &format!("cannot read the body: {e}"),
            );
        }
    };
    match webhook.admit(&bytes).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => error(
            StatusCode::BAD_REQUEST,
            "InvalidAdmissionReview",
            &e.to_string(),
        ),
    }
}

async fn readyz(State(webhook): State<Arc<Webhook>>) -> Response {
    if webhook.certs.is_loaded() {
        (StatusCode::OK, "ok").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no TLS certificate loaded").into_response()
    }
}

async fn metrics(State(webhook): State<Arc<Webhook>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        webhook.metrics.encode(),
    )
        .into_response()
}

/// Loads the certificate, binds `addr`, reports the bound address through
/// `on_bound` (port 0 works) and serves HTTPS (HTTP/1.1 and HTTP/2) under
/// the settings' listener limits until `shutdown` resolves, then drains
/// in-flight requests. The certificate files are polled every
/// `reload_interval` meanwhile. A certificate that cannot be loaded at start
/// is logged and the server runs unready (handshakes fail, `/readyz` would
/// say 503) until the files hold a usable pair.
pub async fn serve(
    webhook: Arc<Webhook>,
    addr: SocketAddr,
    on_bound: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()>,
) -> Result<(), WebhookError> {
    let certs = webhook.certs.clone();
    certs.initial_load(webhook.metrics.as_ref());
    let tls = podid_listen::TlsAcceptor::from(certs.server_config()?);
    let watcher = tokio::spawn(
        certs
            .clone()
            .watch(webhook.settings.reload_interval, webhook.metrics.clone()),
    );
    let _stop_watching = AbortOnDrop(watcher);

    let (listener, bound) = podid_listen::bind(addr)
        .await
        .map_err(|source| WebhookError::Bind { addr, source })?;
    on_bound(bound);
    let limits = webhook.settings.limits.clone();
    let app = podid_listen::tower_service(router(webhook));
    podid_listen::serve(listener, limits, Some(tls), app, shutdown).await?;
    Ok(())
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
