//! Fetching a cluster's token-signing keys from a URL or by OpenID discovery: https only (unless
//! the server allows http for local trials), redirects that stay on https, and errors that tell
//! the caller nothing of what the URL answered (the detail goes to the server's log).

pub mod refresh;

use std::time::Duration;

use async_trait::async_trait;
use podid_api::{validate, ApiError};

/// The largest JWKS or discovery document accepted.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// The most redirects a fetch follows.
pub const MAX_REDIRECTS: usize = 3;

/// Why a key document could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The URL is not `https://` and the server does not allow http (`--allow-http-jwks`).
    #[error("{url} is not an https:// URL (http is allowed only with --allow-http-jwks)")]
    NotHttps {
        /// The URL.
        url: String,
    },
    /// The request failed (DNS, connect, TLS, timeout, a refused redirect).
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

/// How keys are fetched: which schemes, which extra CAs.
#[derive(Debug, Clone, Default)]
pub struct FetchPolicy {
    /// Fetch `http://` URLs too (local trials; `--allow-http-jwks`). A redirect from https to
    /// http is refused either way.
    pub allow_http: bool,
    /// CA certificates (PEM) trusted besides the system roots (`--jwks-ca-file`).
    pub extra_roots_pem: Option<Vec<u8>>,
}

/// Whether `next`, reached by a redirect from the chain `previous` (first: the URL asked for),
/// may be followed: at most [`MAX_REDIRECTS`], and never from https to anything else nor to
/// http when http is not allowed.
fn redirect_allowed(
    previous: &[url::Url],
    next: &url::Url,
    allow_http: bool,
) -> Result<(), &'static str> {
    if previous.len() > MAX_REDIRECTS {
        return Err("too many redirects");
    }
    let started_https = previous.first().is_some_and(|u| u.scheme() == "https");
    match next.scheme() {
        "https" => Ok(()),
        "http" if allow_http && !started_https => Ok(()),
        _ => Err("a redirect away from https:// was refused"),
    }
}

/// Whether `url` may be fetched at all under this policy (https, or http when allowed).
pub fn check_scheme(url: &str, allow_http: bool) -> Result<(), FetchError> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("https") => Ok(()),
        Some("http") if allow_http => Ok(()),
        _ => Err(FetchError::NotHttps {
            url: url.to_owned(),
        }),
    }
}

/// The production fetcher: reqwest with rustls, a 5 s timeout, a size cap, https only unless
/// allowed, and extra CAs.
#[derive(Debug, Clone)]
pub struct HttpFetcher {
    client: reqwest::Client,
    allow_http: bool,
}

impl HttpFetcher {
    /// A fetcher under `policy`, with a 5 s timeout, following up to [`MAX_REDIRECTS`] redirects
    /// that stay on https.
    ///
    /// # Errors
    /// When the extra CAs are not PEM certificates, or the client cannot be built.
    pub fn new(policy: &FetchPolicy) -> Result<Self, reqwest::Error> {
        let allow_http = policy.allow_http;
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            match redirect_allowed(attempt.previous(), attempt.url(), allow_http) {
                Ok(()) => attempt.follow(),
                Err(why) => attempt.error(why),
            }
        });
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(2))
            .redirect(redirects);
        if let Some(pem) = &policy.extra_roots_pem {
            for certificate in reqwest::Certificate::from_pem_bundle(pem)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        Ok(HttpFetcher {
            client: builder.build()?,
            allow_http,
        })
    }
}

/// A reqwest error's text and its causes (a refused redirect says why there), without the URL.
fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".to_owned();
    }
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[async_trait]
impl DocumentFetcher for HttpFetcher {
    async fn fetch_json(&self, url: &str) -> Result<serde_json::Value, FetchError> {
        check_scheme(url, self.allow_http)?;
        let request_error = |e: reqwest::Error| FetchError::Request {
            url: url.to_owned(),
            reason: describe(e),
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
        .filter(|uri| validate::url("jwks_uri", uri).is_ok())
        .map(str::to_owned)
        .ok_or(FetchError::Shape {
            url,
            expected: "an OpenID configuration with a jwks_uri URL",
        })
}

/// Fetches the JWKS at `url` and checks it is one ([`validate::jwks`]).
pub async fn fetch_jwks(
    fetcher: &dyn DocumentFetcher,
    url: &str,
) -> Result<serde_json::Value, FetchError> {
    let doc = fetcher.fetch_json(url).await?;
    validate::jwks(&doc).map_err(|_| FetchError::Shape {
        url: url.to_owned(),
        expected: "a JSON Web Key Set",
    })?;
    Ok(doc)
}

/// What the caller of the cluster registry is told when a key document could not be had: why
/// the URL was refused when it is its scheme, else only that it could not be fetched. What the
/// URL answered (status, body, shape) stays in the server's log, which gets it here.
pub fn caller_error(e: &FetchError) -> ApiError {
    tracing::warn!(error = %e, "cannot load a cluster's keys");
    match e {
        FetchError::NotHttps { .. } => ApiError::invalid_parameter(
            "the cluster's keys are fetched over https only: the JWKS URL (or the issuer, for \
             discovery) must be an https:// URL; a server started with --allow-http-jwks also \
             fetches http:// (local trials)",
        ),
        _ => ApiError::invalid_parameter(
            "cannot load the cluster's keys: the JWKS or discovery URL could not be fetched or \
             did not serve a usable document (the podid server's log says why)",
        ),
    }
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

#[cfg(test)]
mod tests;
