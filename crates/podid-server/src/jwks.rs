//! Fetching a cluster's token-signing keys from a URL or by OpenID discovery.

use std::time::Duration;

use async_trait::async_trait;

/// The largest JWKS or discovery document accepted.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Why a key document could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The request failed (DNS, connect, TLS, timeout).
    #[error("could not fetch {url}: {reason}")]
    Request {
        /// The URL.
        url: String,
        /// What failed, without response bodies.
        reason: String,
    },
    /// The server answered with an error status.
    #[error("{url} answered HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// The answer is not a JSON document of the expected shape.
    #[error("{url} did not return {expected}")]
    Shape {
        /// The URL.
        url: String,
        /// What was expected.
        expected: &'static str,
    },
}

/// Fetches JSON documents over HTTP(S): the seam tests replace.
#[async_trait]
pub trait DocumentFetcher: Send + Sync + 'static {
    /// GETs `url` and parses its body as JSON.
    async fn fetch_json(&self, url: &str) -> Result<serde_json::Value, FetchError>;
}

/// The production fetcher: reqwest with rustls, a 5 s timeout and a size cap.
#[derive(Debug, Clone)]
pub struct HttpFetcher {
    client: reqwest::Client,
}

impl HttpFetcher {
    /// A fetcher with a 5 s timeout that follows up to 3 redirects.
    pub fn new() -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(2))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()?;
        Ok(HttpFetcher { client })
    }
}

#[async_trait]
impl DocumentFetcher for HttpFetcher {
    async fn fetch_json(&self, url: &str) -> Result<serde_json::Value, FetchError> {
        let request_error = |e: reqwest::Error| FetchError::Request {
            url: url.to_owned(),
            reason: if e.is_timeout() {
                "timed out".to_owned()
            } else {
                e.without_url().to_string()
            },
        };
        let mut response = self.client.get(url).send().await.map_err(request_error)?;
        if !response.status().is_success() {
            return Err(FetchError::Status {
                url: url.to_owned(),
                status: response.status().as_u16(),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(request_error)? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(FetchError::Shape {
                    url: url.to_owned(),
                    expected: "a document under 1 MiB",
                });
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|_| FetchError::Shape {
            url: url.to_owned(),
            expected: "JSON",
        })
    }
}

/// Resolves the JWKS URL of an issuer from `{issuer}/.well-known/openid-configuration`.
pub async fn discover_jwks_uri(
    fetcher: &dyn DocumentFetcher,
    issuer: &str,
) -> Result<String, FetchError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let doc = fetcher.fetch_json(&url).await?;
    doc.get("jwks_uri")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .ok_or(FetchError::Shape {
            url,
            expected: "an OpenID configuration with a jwks_uri",
        })
}

/// Lets the token verifier refresh a cluster's keys through a [`DocumentFetcher`].
pub struct VerifierFetcher(pub std::sync::Arc<dyn DocumentFetcher>);

#[async_trait]
impl podid_token::JwksFetcher for VerifierFetcher {
    async fn fetch_jwks(
        &self,
        uri: &str,
    ) -> Result<serde_json::Value, podid_token::JwksFetchError> {
        self.0
            .fetch_json(uri)
            .await
            .map_err(podid_token::JwksFetchError::failed)
    }
}
