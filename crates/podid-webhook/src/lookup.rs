//! Does a service account have an association? Asked of podid's server
//! (`ListPodIdentityAssociations` filtered by namespace and service account,
//! `maxResults=1`), with a short cache of positive answers.
//!
//! No race with a just-created association: a negative answer is never
//! cached, so the admission of a pod created right after a successful
//! `CreatePodIdentityAssociation` reads through to the server and sees it.
//! Positive answers are cached for a short time (30 s by default): the only
//! effect of a stale positive is that a pod created within that window after
//! its association was deleted is still injected, and its credential requests
//! are then refused by the broker — the same outcome as a pod created just
//! before the deletion.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use serde::Deserialize;

use crate::WebhookError;

/// Answers whether a service account of the webhook's cluster has an association.
#[async_trait::async_trait]
pub trait AssociationLookup: Send + Sync {
    /// `Ok(true)` when (cluster, `namespace`, `service_account`) has an
    /// association; `Err(WebhookError::Unreachable)` when the server cannot
    /// be reached, `Err(WebhookError::Server)` when it answers with an error.
    async fn has_association(&self, namespace: &str, service_account: &str) -> Result<bool, WebhookError>;

    /// Where the answers come from, for messages.
    fn describe(&self) -> String;
}

/// Asks podid's association API over HTTP, signing with SigV4 (service
/// `eks`) when it has credentials — a `reader` key is enough.
///
/// The signing mirrors the CLI's client (`crates/podid/src/client.rs`); this
/// one has its own short timeouts because it runs inside an admission call.
pub struct HttpLookup {
    endpoint: url::Url,
    cluster: String,
    region: String,
    credentials: Option<Credentials>,
    timeout: Duration,
    http: reqwest::Client,
}

impl std::fmt::Debug for HttpLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpLookup")
            .field("endpoint", &self.endpoint.as_str())
            .field("cluster", &self.cluster)
            .field("region", &self.region)
            .field("signed", &self.credentials.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
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
        let endpoint = url::Url::parse(endpoint)
            .map_err(|e| WebhookError::Config(format!("endpoint '{endpoint}' is not a URL: {e}")))?;
        if !matches!(endpoint.scheme(), "http" | "https") || endpoint.host_str().is_none() {
            return Err(WebhookError::Config(format!("endpoint '{endpoint}' is not an http(s) URL")));
        }
        if cluster.is_empty() {
            return Err(WebhookError::Config("the cluster name is empty".into()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| WebhookError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(HttpLookup { endpoint, cluster: cluster.to_owned(), region: region.to_owned(), credentials, timeout, http })
    }

    fn unreachable(&self, reason: impl Into<String>) -> WebhookError {
        WebhookError::Unreachable { endpoint: self.endpoint.to_string(), reason: reason.into() }
    }

    fn signed_headers(&self, url: &url::Url) -> Result<Vec<(String, String)>, WebhookError> {
        let Some(creds) = &self.credentials else { return Ok(Vec::new()) };
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        let headers = [("host".to_owned(), host)];
        let identity: Identity = creds.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("eks")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| WebhookError::Config(format!("cannot sign: {e}")))?
            .into();
        let signable = SignableRequest::new(
            "GET",
            url.as_str(),
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(&[]),
        )
        .map_err(|e| WebhookError::Config(format!("cannot sign: {e}")))?;
        let (instructions, _) =
            sign(signable, &params).map_err(|e| WebhookError::Config(format!("cannot sign: {e}")))?.into_parts();
        Ok(instructions.headers().map(|(k, v)| (k.to_owned(), v.to_owned())).collect())
    }
}

#[async_trait::async_trait]
impl AssociationLookup for HttpLookup {
    async fn has_association(&self, namespace: &str, service_account: &str) -> Result<bool, WebhookError> {
        let mut url = self.endpoint.clone();
        url.set_path(&format!(
            "{}/clusters/{}/pod-identity-associations",
            self.endpoint.path().trim_end_matches('/'),
            segment(&self.cluster)
        ));
        url.query_pairs_mut()
            .append_pair("namespace", namespace)
            .append_pair("serviceAccount", service_account)
            .append_pair("maxResults", "1");
        let mut request = self.http.get(url.clone());
        for (name, value) in self.signed_headers(&url)? {
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(|e| self.unreachable(transport_reason(e, self.timeout)))?;
        let status = response.status().as_u16();
        let error_type = response.headers().get("x-amzn-errortype").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = response.bytes().await.map_err(|e| self.unreachable(transport_reason(e, self.timeout)))?;
        if !(200..300).contains(&status) {
            let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let code = error_type
                .or_else(|| parsed.get("__type").and_then(|v| v.as_str()).map(str::to_owned))
                .unwrap_or_else(|| format!("HTTP{status}"));
            let message = parsed.get("message").and_then(|v| v.as_str()).unwrap_or("").to_owned();
            return Err(WebhookError::Server { status, code, message });
        }
        let list: ListResponse = serde_json::from_slice(&body).map_err(|e| WebhookError::Server {
            status,
            code: "UnexpectedAnswer".into(),
            message: format!("not a ListPodIdentityAssociations answer: {e}"),
        })?;
        Ok(!list.associations.is_empty())
    }

    fn describe(&self) -> String {
        self.endpoint.to_string()
    }
}

fn transport_reason(e: reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("no answer within {} ms", timeout.as_millis());
    }
    // The innermost cause says the most ("Connection refused (os error 111)").
    let mut innermost = None;
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        innermost = Some(s.to_string());
        source = s.source();
    }
    let prefix = if e.is_connect() { "cannot connect" } else { "transport error" };
    match innermost {
        Some(cause) => format!("{prefix}: {cause}"),
        None => format!("{prefix}: {}", e.without_url()),
    }
}

/// Percent-encodes one path segment.
fn segment(value: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    percent_encoding::utf8_percent_encode(value, SEGMENT).to_string()
}

/// Remembers positive answers for `ttl`; negative answers are never stored.
/// Time is passed in, so the policy is tested without waiting.
#[derive(Debug)]
pub struct AssociationCache {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<(String, String), Instant>>,
}

impl AssociationCache {
    /// A cache keeping positives for `ttl` (zero disables it), at most
    /// `capacity` service accounts.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        AssociationCache { ttl, capacity: capacity.max(1), entries: Mutex::new(HashMap::new()) }
    }

    /// Whether a positive answer for (`namespace`, `service_account`) is still fresh at `now`.
    pub fn is_fresh(&self, namespace: &str, service_account: &str, now: Instant) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let key = (namespace.to_owned(), service_account.to_owned());
        match entries.get(&key) {
            Some(stored) if now.saturating_duration_since(*stored) < self.ttl => true,
            Some(_) => {
                entries.remove(&key);
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
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity {
            let ttl = self.ttl;
            entries.retain(|_, stored| now.saturating_duration_since(*stored) < ttl);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert((namespace.to_owned(), service_account.to_owned()), now);
    }

    /// Number of stored answers.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
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
    }

    #[test]
    fn endpoints_are_checked() {
        assert!(HttpLookup::new("not a url", "c", "us-east-1", None, Duration::from_secs(1)).is_err());
        assert!(HttpLookup::new("ftp://x", "c", "us-east-1", None, Duration::from_secs(1)).is_err());
        assert!(HttpLookup::new("http://127.0.0.1:1", "", "us-east-1", None, Duration::from_secs(1)).is_err());
        assert!(HttpLookup::new("http://127.0.0.1:1", "c", "us-east-1", None, Duration::from_secs(1)).is_ok());
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
    }
}
