//! Does a service account have an association? Asked of podid's server
//! (`ListPodIdentityAssociations`, `maxResults=1`), with a short cache of positive answers;
//! or answered from the associations followed on the change feed (`crate::follow`).

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use lru::LruCache;
use podid_client::{segment, ApiClient, CaBundle, ClientError};
use serde::Deserialize;

use crate::WebhookError;

/// Answers whether a service account of the webhook's cluster has an association.
#[async_trait::async_trait]
pub trait AssociationLookup: Send + Sync {
    /// `Ok(true)` when (cluster, `namespace`, `service_account`) has an
    /// association; `Err(WebhookError::Unreachable)` when the server cannot
    /// be reached, `Err(WebhookError::Server)` when it answers with an error.
    async fn has_association(
        &self,
        namespace: &str,
        service_account: &str,
    ) -> Result<bool, WebhookError>;

    /// Where the answers come from, for messages.
    fn describe(&self) -> String;

    /// [`AssociationLookup::has_association`], saying whether the answer
    /// needed a request to the server.
    async fn lookup(&self, namespace: &str, service_account: &str) -> Result<Answer, WebhookError> {
        let found = self.has_association(namespace, service_account).await?;
        Ok(Answer {
            found,
            asked_server: true,
        })
    }

    /// Whether the answers follow the server's changes as they happen, so a
    /// positive answer must not be cached in front of them (a deletion would
    /// be missed for the cache's lifetime).
    fn follows_changes(&self) -> bool {
        false
    }
}

/// One lookup's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The service account has an association.
    pub found: bool,
    /// A request to podid's server was needed (false: answered from the followed set).
    pub asked_server: bool,
}

/// Where podid's server is and how to call it.
#[derive(Clone)]
pub struct ServerAccess {
    /// e.g. `https://podid.example:8443`.
    pub endpoint: String,
    /// The cluster's name in podid.
    pub cluster: String,
    /// The region in request signatures.
    pub region: String,
    /// A SigV4 key (a `reader` key is enough); unsigned without.
    pub credentials: Option<Credentials>,
    /// A private CA trusted besides the built-in roots.
    pub ca: Option<CaBundle>,
}

impl std::fmt::Debug for ServerAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerAccess")
            .field("endpoint", &self.endpoint)
            .field("cluster", &self.cluster)
            .field("region", &self.region)
            .field("signed", &self.credentials.is_some())
            .field("ca", &self.ca.is_some())
            .finish()
    }
}

impl ServerAccess {
    /// A client of the server whose calls (connection included) are bounded by `timeout`.
    pub fn client(&self, timeout: Duration) -> Result<ApiClient, WebhookError> {
        if self.cluster.is_empty() {
            return Err(WebhookError::EmptyCluster);
        }
        ApiClient::builder(&self.endpoint)
            .region(&self.region)
            .credentials(self.credentials.clone())
            .connect_timeout(timeout)
            .timeout(timeout)
            .ca(self.ca.clone())
            .build()
            .map_err(|e| WebhookError::Client(Box::new(e)))
    }
}

/// A client error as the webhook reports it: unreachable, or the server's error.
pub(crate) fn from_client(e: ClientError, what: &str) -> WebhookError {
    match e {
        ClientError::Api {
            status,
            code,
            message,
            ..
        } => WebhookError::Server {
            status,
            code,
            message,
        },
        ClientError::Transport {
            endpoint,
            reason,
            source,
        } => WebhookError::Unreachable {
            endpoint: endpoint.clone(),
            reason: reason.clone(),
            source: Some(Box::new(ClientError::Transport {
                endpoint,
                reason,
                source,
            })),
        },
        ClientError::Decode(e) => WebhookError::Server {
            status: 200,
            code: "UnexpectedAnswer".into(),
            message: format!("not a {what} answer: {e}"),
        },
        e => WebhookError::Client(Box::new(e)),
    }
}

/// Asks podid's association API over HTTP with [`podid_client::ApiClient`],
/// signing with SigV4 when it has credentials — a `reader` key is enough —
/// and with one short timeout over the whole call, because it runs inside an
/// admission call.
#[derive(Debug)]
pub struct HttpLookup {
    client: ApiClient,
    cluster: String,
}

#[derive(Deserialize)]
struct ListResponse {
    associations: Vec<serde_json::Value>,
}

impl HttpLookup {
    /// A lookup for `cluster` at `endpoint` (e.g. `https://podid.example:8080`).
    /// `timeout` bounds one whole call, connection included; keep it well
    /// under the webhook configuration's `timeoutSeconds`.
    pub fn new(
        endpoint: &str,
        cluster: &str,
        region: &str,
        credentials: Option<Credentials>,
        timeout: Duration,
    ) -> Result<Self, WebhookError> {
        HttpLookup::with_ca(endpoint, cluster, region, credentials, timeout, None)
    }

    /// [`HttpLookup::new`] trusting `ca` besides the built-in roots, for an
    /// `https://` endpoint whose certificate a private CA signed (`--ca-file`).
    pub fn with_ca(
        endpoint: &str,
        cluster: &str,
        region: &str,
        credentials: Option<Credentials>,
        timeout: Duration,
        ca: Option<CaBundle>,
    ) -> Result<Self, WebhookError> {
        HttpLookup::at(
            &ServerAccess {
                endpoint: endpoint.to_owned(),
                cluster: cluster.to_owned(),
                region: region.to_owned(),
                credentials,
                ca,
            },
            timeout,
        )
    }

    /// A lookup at `access`, each call bounded by `timeout`.
    pub fn at(access: &ServerAccess, timeout: Duration) -> Result<Self, WebhookError> {
        Ok(HttpLookup {
            client: access.client(timeout)?,
            cluster: access.cluster.clone(),
        })
    }

    /// The client, bounded by the lookup timeout.
    pub(crate) fn client(&self) -> &ApiClient {
        &self.client
    }
}

#[async_trait::async_trait]
impl AssociationLookup for HttpLookup {
    async fn has_association(
        &self,
        namespace: &str,
        service_account: &str,
    ) -> Result<bool, WebhookError> {
        let path = format!(
            "/clusters/{}/pod-identity-associations",
            segment(&self.cluster)
        );
        let query = [
            ("namespace", namespace.to_owned()),
            ("serviceAccount", service_account.to_owned()),
            ("maxResults", "1".to_owned()),
        ];
        self.client
            .call::<ListResponse>(reqwest::Method::GET, &path, &query, None)
            .await
            .map(|list| !list.associations.is_empty())
            .map_err(|e| from_client(e, "ListPodIdentityAssociations"))
    }

    fn describe(&self) -> String {
        self.client.endpoint().to_string()
    }
}

/// Remembers positive answers for `ttl`, at most `capacity` of them, dropping the least
/// recently used first (`lru`). Time is passed in, so the policy is tested without waiting.
///
/// A negative answer is never cached, so the admission of a pod created right after a
/// successful `CreatePodIdentityAssociation` reads through to the server and sees it. The
/// only effect of a stale positive is that a pod created within `ttl` after its association
/// was deleted is still injected, and the broker then refuses its credential requests: the
/// same outcome as for a pod created just before the deletion.
pub struct AssociationCache {
    ttl: Duration,
    entries: Mutex<LruCache<(String, String), Instant>>,
}

impl std::fmt::Debug for AssociationCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssociationCache")
            .field("ttl", &self.ttl)
            .field("capacity", &self.lock().cap())
            .field("len", &self.len())
            .finish()
    }
}

impl AssociationCache {
    /// A cache keeping positives for `ttl` (zero disables it), at most
    /// `capacity` service accounts.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        AssociationCache {
            ttl,
            entries: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<(String, String), Instant>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a positive answer for (`namespace`, `service_account`) is still fresh at `now`.
    pub fn is_fresh(&self, namespace: &str, service_account: &str, now: Instant) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let mut entries = self.lock();
        let key = (namespace.to_owned(), service_account.to_owned());
        match entries.get(&key) {
            Some(stored) if now.saturating_duration_since(*stored) < self.ttl => true,
            Some(_) => {
                entries.pop(&key);
                false
            }
            None => false,
        }
    }

    /// Records a positive answer received at `now`.
    pub fn remember(&self, namespace: &str, service_account: &str, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        // At capacity, `put` drops the least recently used entry.
        self.lock()
            .put((namespace.to_owned(), service_account.to_owned()), now);
    }

    /// Number of stored answers.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positives_expire_and_negatives_are_never_stored() {
        let cache = AssociationCache::new(Duration::from_secs(30), 100);
        let t0 = Instant::now();
        assert!(!cache.is_fresh("ns", "sa", t0));
        cache.remember("ns", "sa", t0);
        assert!(cache.is_fresh("ns", "sa", t0 + Duration::from_secs(29)));
        assert!(!cache.is_fresh("ns", "other", t0));
        assert!(!cache.is_fresh("ns", "sa", t0 + Duration::from_secs(30)));
        assert!(cache.is_empty(), "expired entries are dropped");
    }

    #[test]
    fn zero_ttl_disables_the_cache_and_capacity_is_bounded() {
        let off = AssociationCache::new(Duration::ZERO, 10);
        off.remember("ns", "sa", Instant::now());
        assert!(!off.is_fresh("ns", "sa", Instant::now()));
        let small = AssociationCache::new(Duration::from_secs(30), 3);
        let t0 = Instant::now();
        for i in 0..10 {
            small.remember("ns", &format!("sa{i}"), t0);
            assert!(small.len() <= 3);
        }
        assert!(small.is_fresh("ns", "sa9", t0));
        // sa7 is read: sa8 is now the least recently used, and goes.
        assert!(small.is_fresh("ns", "sa7", t0));
        small.remember("ns", "new", t0);
        assert!(!small.is_fresh("ns", "sa8", t0));
        assert!(small.is_fresh("ns", "sa7", t0) && small.is_fresh("ns", "new", t0));
        // Remembering a stored answer again evicts nothing.
        small.remember("ns", "new", t0);
        assert_eq!(small.len(), 3);
    }

    #[test]
    fn endpoints_are_checked() {
        assert!(
            HttpLookup::new("not a url", "c", "us-east-1", None, Duration::from_secs(1)).is_err()
        );
        assert!(
            HttpLookup::new("ftp://x", "c", "us-east-1", None, Duration::from_secs(1)).is_err()
        );
        assert!(HttpLookup::new(
            "http://127.0.0.1:1",
            "",
            "us-east-1",
            None,
            Duration::from_secs(1)
        )
        .is_err());
        assert!(HttpLookup::new(
            "http://127.0.0.1:1",
            "c",
            "us-east-1",
            None,
            Duration::from_secs(1)
        )
        .is_ok());
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
    }
}
