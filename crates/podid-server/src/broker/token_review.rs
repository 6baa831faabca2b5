//! `TokenReview` at the broker: before issuing, a cluster that registered its API server
//! is asked whether it still authenticates the pod's token (a deleted pod's token is
//! refused even when its signature verifies). Answers are kept per token digest for a
//! short time; concurrent asks for one token share one call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::TokenReview;
use podid_api::cluster::{Cluster, TokenReviewSettings};
use podid_api::{ApiError, ErrorKind};
use podid_singleflight::{Joined, SingleFlight};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use sha2::{Digest, Sha256};

use crate::metrics::TokenReviewLabels;

/// How long a review answer is kept unless told otherwise (`--token-review-cache-secs`).
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(10);

/// Most review answers kept.
pub const MAX_CACHED_REVIEWS: usize = 10_000;

/// Bound on one review call, connection included.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(2);

/// Bound on establishing the connection to the API server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The largest review answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The path of `TokenReview` creation on an API server.
pub const TOKEN_REVIEWS_PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";

/// What the API server said of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Authenticated as this user.
    Authenticated {
        /// `status.user.username`.
        username: String,
    },
    /// Not authenticated; the API server's reason (for the log only).
    Refused(String),
}

/// Why no verdict could be had (not cached: the next call asks again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable(pub String);

type Answer = Result<Verdict, Unavailable>;

struct Cached {
    at: Instant,
    verdict: Verdict,
}

/// Asks clusters' API servers with `TokenReview`, caching answers per token digest.
pub struct TokenReviewer {
    ttl: Duration,
    entries: Mutex<HashMap<[u8; 32], Cached>>,
    flights: SingleFlight<[u8; 32], Answer>,
    /// One HTTPS client per cluster, rebuilt when the cluster changes.
    clients: Mutex<HashMap<String, (i64, reqwest::Client)>>,
    reviews: Family<TokenReviewLabels, Counter>,
}

impl std::fmt::Debug for TokenReviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewer")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The cache key: the cluster, its version (a settings change forgets the answers) and the token.
fn digest(cluster: &Cluster, token: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(cluster.name.as_bytes());
    hash.update([0]);
    hash.update(cluster.modified_at.0.to_be_bytes());
    hash.update(token.as_bytes());
    hash.finalize().into()
}

/// What the broker answers when the API server does not authenticate the token.
pub fn refused() -> ApiError {
    ApiError::new(
        ErrorKind::AccessDenied,
        "the cluster's API server does not authenticate this token",
    )
}

/// What the broker answers when no verdict could be had (fail closed).
pub fn unavailable(cluster: &str, why: &Unavailable) -> ApiError {
    ApiError::new(
        ErrorKind::ServiceUnavailable,
        format!(
            "cannot ask cluster {cluster}'s API server whether it authenticates the token: {}",
            why.0
        ),
    )
}

impl TokenReviewer {
    /// Keeps answers for `ttl` (`Duration::ZERO`: asks every time), counting
    /// reviews in `reviews` (`podid_token_reviews_total{result}`).
    pub fn new(ttl: Duration, reviews: Family<TokenReviewLabels, Counter>) -> Self {
        TokenReviewer {
            ttl,
            entries: Mutex::new(HashMap::new()),
            flights: SingleFlight::new(),
            clients: Mutex::new(HashMap::new()),
            reviews,
        }
    }

    fn count(&self, result: &str) {
        self.reviews
            .get_or_create(&TokenReviewLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    /// Checks `token` with `cluster`'s API server (when it set one): `Ok` when it
    /// authenticates the token as `username`.
    ///
    /// # Errors
    /// 403 AccessDeniedException when not authenticated (or as another user);
    /// 503 ServiceUnavailableException when the API server cannot be asked.
    pub async fn check(
        self: &Arc<Self>,
        cluster: &Cluster,
        token: &str,
        username: &str,
    ) -> Result<(), ApiError> {
        let Some(settings) = &cluster.token_review else {
            return Ok(());
        };
        let verdict = self
            .verdict(cluster, settings, token)
            .await
            .map_err(|why| {
                tracing::warn!(
                    cluster = %cluster.name,
                    api_server = %settings.api_server_url,
                    reason = %why.0,
                    "TokenReview failed"
                );
                unavailable(&cluster.name, &why)
            })?;
        match verdict {
            Verdict::Authenticated { username: user } if user == username => Ok(()),
            Verdict::Authenticated { username: user } => {
                tracing::info!(
                    cluster = %cluster.name,
                    reviewed_as = %podid_api::arn::printable(&user),
                    expected = %username,
                    "TokenReview authenticated the token as another user"
                );
                Err(refused())
            }
            Verdict::Refused(reason) => {
                tracing::info!(
                    cluster = %cluster.name,
                    reason = %podid_api::arn::printable(&reason),
                    "TokenReview: not authenticated"
                );
                Err(refused())
            }
        }
    }

    /// The cached verdict, or the one the API server gives now (one call per token at a time).
    async fn verdict(
        self: &Arc<Self>,
        cluster: &Cluster,
        settings: &TokenReviewSettings,
        token: &str,
    ) -> Answer {
        let key = digest(cluster, token);
        if let Some(hit) = self.lookup(&key) {
            self.count("cached");
            return Ok(hit);
        }
        let client = self.client(cluster, settings)?;
        let joined = self.flights.join_or_start(&key, || {
            if let Some(hit) = self.lookup(&key) {
                return Err(hit);
            }
            let reviewer = self.clone();
            let request = ReviewCall {
                client,
                url: format!(
                    "{}{TOKEN_REVIEWS_PATH}",
                    settings.api_server_url.trim_end_matches('/')
                ),
                credential: settings.token.clone(),
                token: token.to_owned(),
                audience: cluster.audience.clone(),
            };
            Ok(async move {
                let answer = request.send().await;
                reviewer.count(match &answer {
                    Ok(Verdict::Authenticated { .. }) => "authenticated",
                    Ok(Verdict::Refused(_)) => "unauthenticated",
                    Err(_) => "failed",
                });
                if let Ok(verdict) = &answer {
                    reviewer.insert(key, verdict.clone());
                }
                answer
            })
        });
        let flight = match joined {
            Joined::Started(flight) | Joined::Joined(flight) => flight,
            Joined::Declined(hit) => {
                self.count("cached");
                return Ok(hit);
            }
        };
        flight.wait().await.unwrap_or_else(|| {
            Err(Unavailable(
                "the review task ended without an answer".into(),
            ))
        })
    }

    fn lookup(&self, key: &[u8; 32]) -> Option<Verdict> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = lock(&self.entries);
        entries
            .get(key)
            .filter(|c| c.at.elapsed() < self.ttl)
            .map(|c| c.verdict.clone())
    }

    fn insert(&self, key: [u8; 32], verdict: Verdict) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = lock(&self.entries);
        if entries.len() >= MAX_CACHED_REVIEWS && !entries.contains_key(&key) {
            entries.retain(|_, c| c.at.elapsed() < self.ttl);
            if entries.len() >= MAX_CACHED_REVIEWS {
                // Still full: drop the oldest answer.
                if let Some(oldest) = entries.iter().min_by_key(|(_, c)| c.at).map(|(k, _)| *k) {
                    entries.remove(&oldest);
                }
            }
        }
        entries.insert(
            key,
            Cached {
                at: Instant::now(),
                verdict,
            },
        );
    }

    /// The cluster's client (its CA trusted), built once per cluster version.
    fn client(
        &self,
        cluster: &Cluster,
        settings: &TokenReviewSettings,
    ) -> Result<reqwest::Client, Unavailable> {
        let mut clients = lock(&self.clients);
        if let Some((version, client)) = clients.get(&cluster.name) {
            if *version == cluster.modified_at.0 {
                return Ok(client.clone());
            }
        }
        let client = build_client(settings.ca_pem.as_deref())?;
        if clients.len() >= MAX_CACHED_REVIEWS {
            clients.clear();
        }
        clients.insert(
            cluster.name.clone(),
            (cluster.modified_at.0, client.clone()),
        );
        Ok(client)
    }
}

/// An HTTPS client for one API server: its CA only when given (else the system
/// roots), bounded times, no redirects.
///
/// # Errors
/// When the CA is not PEM certificates or the client cannot be built.
pub fn build_client(ca_pem: Option<&str>) -> Result<reqwest::Client, Unavailable> {
    let mut builder = reqwest::Client::builder()
        .timeout(REVIEW_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .https_only(true);
    if let Some(pem) = ca_pem {
        let certificates = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|_| Unavailable("the cluster's API server CA is not PEM".into()))?;
        if certificates.is_empty() {
            return Err(Unavailable(
                "the cluster's API server CA holds no certificate".into(),
            ));
        }
        builder = builder.tls_built_in_root_certs(false);
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder
        .build()
        .map_err(|e| Unavailable(format!("cannot build the HTTPS client: {}", describe(&e))))
}

/// A reqwest error and its causes, without the URL.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".to_owned();
    }
    crate::wire::error_chain(e)
}

/// One review, sent from its own task.
struct ReviewCall {
    client: reqwest::Client,
    url: String,
    credential: Option<podid_api::Secret>,
    token: String,
    audience: String,
}

impl ReviewCall {
    async fn send(self) -> Answer {
        let body = serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": self.token, "audiences": [self.audience]},
        });
        let mut request = self.client.post(&self.url).json(&body);
        if let Some(credential) = &self.credential {
            request = request.bearer_auth(credential.expose());
        }
        let failed = |e: reqwest::Error| Unavailable(describe(&e.without_url()));
        let mut response = request.send().await.map_err(failed)?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(Unavailable(format!(
                "the API server refused podid's review credential (HTTP {}): check the \
                 cluster's tokenReview token and that it may create tokenreviews",
                status.as_u16()
            )));
        }
        if !status.is_success() {
            return Err(Unavailable(format!(
                "the API server answered HTTP {}",
                status.as_u16()
            )));
        }
        let mut answer = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if answer.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(Unavailable(format!(
                    "the API server's answer is larger than {MAX_ANSWER_BYTES} bytes"
                )));
            }
            answer.extend_from_slice(&chunk);
        }
        let review: TokenReview = serde_json::from_slice(&answer)
            .map_err(|_| Unavailable("the API server's answer is not a TokenReview".into()))?;
        Ok(verdict_of(&review))
    }
}

/// The verdict a `TokenReview` answer carries.
pub fn verdict_of(review: &TokenReview) -> Verdict {
    let status = review.status.as_ref();
    let authenticated = status.and_then(|s| s.authenticated).unwrap_or(false);
    let username = status
        .and_then(|s| s.user.as_ref())
        .and_then(|u| u.username.clone());
    match (authenticated, username) {
        (true, Some(username)) => Verdict::Authenticated { username },
        (true, None) => Verdict::Refused("authenticated, but no user named".into()),
        (false, _) => Verdict::Refused(
            status
                .and_then(|s| s.error.clone())
                .unwrap_or_else(|| "not authenticated".into())
                .chars()
                .take(300)
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests;
