//! The agent's listeners: container credentials on each bind host (plain
//! hyper, allocation-light hot path), probes on localhost, metrics; each
//! accepted and bounded by `podid_listen` (connection cap, deadlines, sizes).

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use podid_listen::{ListenLimits, RequestBody};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::cache::{PodCredentialCache, Refusal, Served, Step};
use crate::follow::{ChangeFollower, FeedStatus};
use crate::host::HostGuard;
use crate::metrics::AgentMetrics;
use crate::podcheck::{PodCheck, PodCheckSettings};
use crate::policy::CachePolicy;
use crate::ratelimit::{ClientBucket, ClientLimit, ClientLimiter, GcraLimiter};
use crate::response::error_body;
use crate::upstream::CredentialSource;
use crate::AgentError;
use podid_api::clock::Clock;

/// The path SDKs ask.
pub const CREDENTIALS_PATH: &str = "/v1/credentials";

/// How often the pod check lists the kubelet's pods when no pod asked meanwhile.
const POD_CHECK_PROBE: Duration = Duration::from_secs(10);

/// Where and how the agent serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// Addresses of the credential listeners (169.254.170.23 and fd00:ec2::23 on EKS).
    /// Each that cannot be bound is logged and skipped; at least one must bind.
    pub bind_hosts: Vec<IpAddr>,
    /// Port of the credential listeners (0: any free port).
    pub port: u16,
    /// Address of the probe server (`/healthz`, `/readyz`).
    pub probe_address: IpAddr,
    /// Port of the probe server.
    pub probe_port: u16,
    /// Address of the metrics server (`/metrics`); 127.0.0.1 unless told otherwise.
    pub metrics_address: IpAddr,
    /// Port of the metrics server.
    pub metrics_port: u16,
    /// Requests per second each credential listener accepts (token bucket,
    /// burst of one second's worth); 0 = unlimited.
    pub rate_limit: u32,
    /// The per-client (source address) request limit, checked first; off
    /// here, on in the executables (`ClientLimit::default()`, docs/agent.md).
    pub client_limit: ClientLimit,
    /// The cache's size and timing.
    pub cache: CachePolicy,
    /// Each credential listener's connection cap, header size limit and
    /// deadlines (head, body, idle); its drain timeout is the agent's at shutdown.
    pub limits: ListenLimits,
    /// Serve and refresh only pods the node's kubelet runs (`podcheck`); off when `None`.
    pub pod_check: Option<PodCheckSettings>,
}

impl Default for AgentConfig {
    /// The stock agent's addresses and ports.
    fn default() -> Self {
        AgentConfig {
            bind_hosts: vec![
                IpAddr::V4(Ipv4Addr::new(169, 254, 170, 23)),
                IpAddr::V6(std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23)),
            ],
            port: 80,
            probe_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            probe_port: 2703,
            metrics_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            metrics_port: 2705,
            rate_limit: 0,
            client_limit: ClientLimit::OFF,
            cache: CachePolicy::default(),
            limits: ListenLimits::agent(),
            pod_check: None,
        }
    }
}

/// A bound agent, ready to serve.
pub struct Agent {
    config: AgentConfig,
    credential_listeners: Vec<TcpListener>,
    credential_addrs: Vec<SocketAddr>,
    probe_listener: TcpListener,
    probe_addr: SocketAddr,
    metrics_listener: TcpListener,
    metrics_addr: SocketAddr,
    cache: Arc<PodCredentialCache>,
    metrics: Arc<AgentMetrics>,
    /// The change feed's follower, when on.
    follower: Option<ChangeFollower>,
    /// The pod check, when on.
    pods: Option<Arc<PodCheck>>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("credential_addrs", &self.credential_addrs)
            .field("probe_addr", &self.probe_addr)
            .field("metrics_addr", &self.metrics_addr)
            .finish_non_exhaustive()
    }
}

async fn bind_one(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), AgentError> {
    podid_listen::bind(addr)
        .await
        .map_err(|source| AgentError::Bind { addr, source })
}

impl Agent {
    /// Binds every listener. A credential bind host that cannot be bound (no
    /// such address on the node, no IPv6) is logged and skipped; none bound,
    /// the probe or metrics port taken, or limits that cannot be enforced, is
    /// an error.
    pub async fn bind(
        config: AgentConfig,
        source: Arc<dyn CredentialSource>,
        clock: Arc<dyn Clock>,
    ) -> Result<Agent, AgentError> {
        config.limits.validate()?;
        let mut hosts = config.bind_hosts.clone();
        let mut seen = std::collections::HashSet::new();
        hosts.retain(|h| seen.insert(*h));
        if let Some(host) = hosts
            .iter()
            .find(|h| h.is_unspecified() || h.is_multicast())
        {
            return Err(AgentError::BindHostNotSingle { host: *host });
        }
        let mut credential_listeners = Vec::new();
        let mut credential_addrs = Vec::new();
        let mut failures = Vec::new();
        for host in &hosts {
            let addr = SocketAddr::new(*host, config.port);
            match bind_one(addr).await {
                Ok((listener, bound)) => {
                    credential_listeners.push(listener);
                    credential_addrs.push(bound);
                }
                Err(AgentError::Bind { addr, source }) => {
                    tracing::warn!(%addr, error = %source, "cannot listen on this bind host; skipped");
                    failures.push(format!("{addr}: {source}"));
                }
                Err(e) => return Err(e),
            }
        }
        if credential_listeners.is_empty() {
            return Err(AgentError::NoListener {
                tried: if failures.is_empty() {
                    "no bind hosts given".to_owned()
                } else {
                    failures.join("; ")
                },
            });
        }
        let (probe_listener, probe_addr) =
            bind_one(SocketAddr::new(config.probe_address, config.probe_port)).await?;
        let (metrics_listener, metrics_addr) =
            bind_one(SocketAddr::new(config.metrics_address, config.metrics_port)).await?;
        let metrics = Arc::new(AgentMetrics::new());
        let pods = match &config.pod_check {
            Some(settings) => Some(
                PodCheck::new(settings, metrics.clone())
                    .map_err(|e| AgentError::PodCheck(Box::new(e)))?,
            ),
            None => None,
        };
        let cache = match &pods {
            Some(pods) => PodCredentialCache::with_pod_check(
                config.cache.clone(),
                source,
                clock,
                metrics.clone(),
                pods.clone(),
            ),
            None => PodCredentialCache::new(config.cache.clone(), source, clock, metrics.clone()),
        };
        Ok(Agent {
            config,
            credential_listeners,
            credential_addrs,
            probe_listener,
            probe_addr,
            metrics_listener,
            metrics_addr,
            cache,
            metrics,
            follower: None,
            pods,
        })
    }

    /// Follows the cluster's change feed while serving (`follow` module).
    pub fn follow_changes(&mut self, follower: ChangeFollower) {
        self.follower = Some(follower);
    }

    /// The bound credential listeners.
    pub fn credential_addrs(&self) -> &[SocketAddr] {
        &self.credential_addrs
    }

    /// The bound probe server.
    pub fn probe_addr(&self) -> SocketAddr {
        self.probe_addr
    }

    /// The bound metrics server.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// The credential cache.
    pub fn cache(&self) -> &Arc<PodCredentialCache> {
        &self.cache
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<AgentMetrics> {
        &self.metrics
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight
    /// requests finish (up to the drain timeout) and returns.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AgentError> {
        let Agent {
            config,
            credential_listeners,
            probe_listener,
            metrics_listener,
            cache,
            metrics,
            follower,
            pods,
            ..
        } = self;
        let guard = HostGuard::new(self.credential_addrs.iter().map(SocketAddr::ip));
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = Arc::new(ListenerState {
            cache: cache.clone(),
            metrics: metrics.clone(),
            guard,
            feed: follower.as_ref().map(ChangeFollower::status),
            pods: pods.clone(),
        });
        let mut tasks = JoinSet::new();
        let clients = ClientLimiter::new(config.client_limit);
        for listener in credential_listeners {
            let (shared, limiter, clients) = (
                shared.clone(),
                GcraLimiter::per_second(config.rate_limit).map(Arc::new),
                clients.clone(),
            );
            let make_service = move |peer: SocketAddr| CredentialService {
                client: client_bucket(clients.as_ref(), &shared.metrics, peer),
                shared: shared.clone(),
                limiter: limiter.clone(),
                peer,
            };
            let stop = wait_for_stop(stop_rx.clone());
            let limits = config.limits.clone();
            tasks.spawn(async move {
                podid_listen::serve(listener, limits, None, make_service, stop).await
            });
        }
        let probes = axum::Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .fallback(not_found)
            .with_state(shared.clone());
        let metrics_router = axum::Router::new()
            .route("/metrics", get(metrics_text))
            .fallback(not_found)
            .with_state(shared.clone());
        for (listener, router) in [(probe_listener, probes), (metrics_listener, metrics_router)] {
            let stop = wait_for_stop(stop_rx.clone());
            let service = podid_listen::tower_service(router);
            tasks.spawn(async move {
                podid_listen::serve(listener, ListenLimits::local(), None, service, stop).await
            });
        }
        let maintenance = tokio::spawn(cache.clone().run_maintenance());
        // Keeps /readyz on the kubelet's state while no pod asks.
        let probing = pods.map(|p| tokio::spawn(p.run_probe(POD_CHECK_PROBE)));
        let following = follower.map(|f| tokio::spawn(f.run(cache.clone(), metrics.clone())));

        shutdown.await;
        tracing::info!("shutting down: draining in-flight requests");
        let _ = stop_tx.send(true);
        maintenance.abort();
        if let Some(probing) = probing {
            probing.abort();
        }
        if let Some(following) = following {
            following.abort();
        }
        // Each listener cuts what is left at its drain timeout; this bounds a stuck one.
        let bound = config.limits.drain_timeout + Duration::from_secs(1);
        let drained = tokio::time::timeout(bound, async {
            while let Some(result) = tasks.join_next().await {
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "a listener failed"),
                    Err(e) if e.is_panic() => tracing::error!("a listener task panicked"),
                    Err(_) => {}
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(timeout = ?bound, "listeners still draining were stopped");
            tasks.shutdown().await;
        }
        Ok(())
    }
}

async fn wait_for_stop(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

struct ListenerState {
    cache: Arc<PodCredentialCache>,
    metrics: Arc<AgentMetrics>,
    guard: HostGuard,
    /// The change feed's status, when followed.
    feed: Option<Arc<FeedStatus>>,
    /// The pod check, when on.
    pods: Option<Arc<PodCheck>>,
}

type Body = Full<Bytes>;

/// `peer`'s bucket under the per-client limit `clients` (once per connection).
fn client_bucket(
    clients: Option<&Arc<ClientLimiter>>,
    metrics: &AgentMetrics,
    peer: SocketAddr,
) -> Option<ClientBucket> {
    let (bucket, lookup) = clients?.bucket(peer.ip());
    metrics
        .rate_limit_clients
        .set(i64::try_from(lookup.tracked).unwrap_or(i64::MAX));
    Some(bucket)
}

/// Serves one credential connection. A cached answer is produced
/// synchronously in `call`, so the hot path allocates no future and clones
/// no `Arc`.
struct CredentialService {
    shared: Arc<ListenerState>,
    limiter: Option<Arc<GcraLimiter>>,
    /// The client's share of the per-client limit, if on.
    client: Option<ClientBucket>,
    /// The client's address.
    peer: SocketAddr,
}

enum AnswerFuture {
    Ready(Option<Response<Body>>),
    Pending(Pin<Box<dyn Future<Output = Response<Body>> + Send>>),
}

impl Future for AnswerFuture {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            AnswerFuture::Ready(response) => {
                Poll::Ready(Ok(response.take().unwrap_or_else(|| {
                    json_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "InternalServerException",
                        "polled twice",
                    )
                })))
            }
            AnswerFuture::Pending(future) => future.as_mut().poll(cx).map(Ok),
        }
    }
}

const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

fn json_response(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, APPLICATION_JSON);
    response
}

fn json_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json_response(status, error_body(code, message))
}

fn refusal_response(refusal: &Refusal) -> Response<Body> {
    match refusal {
        Refusal::Token(rejection) => json_error(
            StatusCode::BAD_REQUEST,
            rejection.code(),
            &rejection.message(),
        ),
        Refusal::Upstream(e) => {
            let status =
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            json_error(status, &e.code, &e.message)
        }
    }
}

impl ListenerState {
    fn answer(&self, result: Result<Served, Refusal>) -> Response<Body> {
        let response = match result {
            Ok(served) => json_response(StatusCode::OK, served.body),
            Err(refusal) => {
                if let Refusal::Upstream(e) = &refusal {
                    tracing::info!(status = e.status, code = %e.code, "no credentials for a pod");
                }
                refusal_response(&refusal)
            }
        };
        self.metrics.request(response.status().as_u16());
        response
    }

    fn refuse(&self, status: StatusCode, code: &str, message: &str) -> Response<Body> {
        self.metrics.request(status.as_u16());
        json_error(status, code, message)
    }
}

impl hyper::service::Service<Request<RequestBody>> for CredentialService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = AnswerFuture;

    fn call(&self, request: Request<RequestBody>) -> AnswerFuture {
        let shared = &self.shared;
        if self.client.as_ref().is_some_and(|c| !c.try_acquire()) {
            shared.metrics.client_rate_limited.inc();
            return AnswerFuture::Ready(Some(shared.refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "this client's request rate limit was exceeded; retry later",
            )));
        }
        if let Some(limiter) = &self.limiter {
            if !limiter.try_acquire() {
                shared.metrics.rate_limited.inc();
                return AnswerFuture::Ready(Some(shared.refuse(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    "the agent's request rate limit was exceeded; retry later",
                )));
            }
        }
        if request.uri().path() != CREDENTIALS_PATH {
            return AnswerFuture::Ready(Some(shared.refuse(
                StatusCode::NOT_FOUND,
                "NotFound",
                "no such path",
            )));
        }
        if request.method() != Method::GET {
            let mut response = shared.refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "only GET is allowed here",
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET"));
            return AnswerFuture::Ready(Some(response));
        }
        let host = match request.headers().get(HOST) {
            Some(value) => value.to_str().ok(),
            None => request.uri().authority().map(|a| a.as_str()),
        };
        if !host.is_some_and(|h| shared.guard.allows(h)) {
            tracing::debug!(peer = %self.peer, "refused a request naming another host");
            return AnswerFuture::Ready(Some(shared.refuse(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "call the agent through its own address (the Host header names another host)",
            )));
        }
        let token = request
            .headers()
            .get(AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or("\u{0}"))
            .unwrap_or("");
        match shared.cache.try_get(token) {
            Step::Done(result) => AnswerFuture::Ready(Some(shared.answer(result))),
            Step::Fetch(pending) => {
                let shared = shared.clone();
                let token = token.to_owned();
                AnswerFuture::Pending(Box::pin(async move {
                    let result = shared.cache.finish(&token, pending).await;
                    shared.answer(result)
                }))
            }
        }
    }
}

async fn healthz() -> impl IntoResponse {
    ([(CONTENT_TYPE, APPLICATION_JSON)], r#"{"status":"ok"}"#)
}

async fn readyz(State(shared): State<Arc<ListenerState>>) -> impl IntoResponse {
    let upstream_up = shared.cache.upstream_healthy();
    // Fail-closed with the kubelet down refuses every pod: not ready (docs/agent.md, "Pod check").
    let healthy = upstream_up && shared.pods.as_ref().is_none_or(|p| p.ready());
    let mut body = serde_json::json!({
        "status": if healthy { "ready" } else { "degraded" },
        "upstream": if upstream_up { "up" } else { "down" },
        "consecutiveUpstreamFailures": shared.cache.consecutive_upstream_failures(),
        "cachedEntries": shared.cache.len(),
    });
    // Said, but readiness does not depend on it (docs/agent.md, "Change feed").
    if let Some(feed) = &shared.feed {
        body["changeFeed"] = feed.detail();
    }
    if let Some(pods) = &shared.pods {
        body["podCheck"] = pods.detail();
    }
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, [(CONTENT_TYPE, APPLICATION_JSON)], body.to_string())
}

async fn metrics_text(State(shared): State<Arc<ListenerState>>) -> impl IntoResponse {
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        [(CONTENT_TYPE, APPLICATION_JSON)],
        error_body("NotFound", "no such path"),
    )
}
