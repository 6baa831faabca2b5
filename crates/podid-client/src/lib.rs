//! A small SigV4-signing client for podid's APIs (the CLI and the admission webhook), signing
//! with the `eks` name as the AWS CLI signs the association API.
#![forbid(unsafe_code)]

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use serde::de::DeserializeOwned;

pub use podid_ca::{CaBundle, CaError};

/// Failures of a client call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered with an AWS-shaped error.
    #[error("{code}: {message}{}", request_id.as_deref().map(|id| format!(" (request id {id})")).unwrap_or_default())]
    Api {
        /// HTTP status.
        status: u16,
        /// The error name.
        code: String,
        /// The error message.
        message: String,
        /// `x-amzn-requestid`.
        request_id: Option<String>,
    },
    /// The request could not be sent or the answer not read.
    #[error("cannot reach {endpoint}: {reason}")]
    Transport {
        /// The endpoint.
        endpoint: String,
        /// What failed, in short: a timeout, or the innermost cause.
        reason: String,
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The endpoint is not a URL.
    #[error("cannot build the request: endpoint '{endpoint}' is not a URL: {source}")]
    EndpointNotUrl {
        /// The endpoint as given.
        endpoint: String,
        /// The parser's complaint.
        #[source]
        source: url::ParseError,
    },
    /// The endpoint is a URL, but not an http(s) one with a host.
    #[error("cannot build the request: endpoint '{0}' is not an http(s) URL")]
    EndpointNotHttp(String),
    /// The HTTP client could not be built.
    #[error("cannot build the request: cannot build the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    /// The request could not be signed.
    #[error("cannot build the request: {0}")]
    Signing(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The answer is not what the API promises.
    #[error("unexpected answer from the server: {0}")]
    Decode(#[source] serde_json::Error),
}

/// Where and how to call podid.
#[derive(Clone)]
pub struct ApiClient {
    endpoint: url::Url,
    region: String,
    credentials: Option<Credentials>,
    timeout: Duration,
    http: reqwest::Client,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("endpoint", &self.endpoint.as_str())
            .field("region", &self.region)
            .field("signed", &self.credentials.is_some())
            .finish()
    }
}

/// Builds an [`ApiClient`].
#[derive(Debug)]
pub struct ApiClientBuilder {
    endpoint: String,
    region: String,
    credentials: Option<Credentials>,
    connect_timeout: Duration,
    timeout: Duration,
    ca: Option<CaBundle>,
}

impl ApiClientBuilder {
    /// The region in request signatures (default `us-east-1`).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = region.into();
        self
    }

    /// Signs requests with these credentials; without, requests go unsigned.
    pub fn credentials(mut self, credentials: Option<Credentials>) -> Self {
        self.credentials = credentials;
        self
    }

    /// Trusts this private CA besides the built-in roots (`--ca-file`).
    pub fn ca(mut self, ca: Option<CaBundle>) -> Self {
        self.ca = ca;
        self
    }

    /// How long connecting may take (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a whole call may take, connecting included (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The client; fails on an endpoint that is not an http(s) URL.
    pub fn build(self) -> Result<ApiClient, ClientError> {
        let endpoint =
            url::Url::parse(&self.endpoint).map_err(|source| ClientError::EndpointNotUrl {
                endpoint: self.endpoint.clone(),
                source,
            })?;
        if !matches!(endpoint.scheme(), "http" | "https") || endpoint.host_str().is_none() {
            return Err(ClientError::EndpointNotHttp(endpoint.to_string()));
        }
        let mut http = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout.min(self.timeout))
            .timeout(self.timeout)
            // The API never redirects; a redirect would carry a signature elsewhere.
            .redirect(reqwest::redirect::Policy::none());
        // Added to reqwest's built-in roots (webpki-roots), which stay trusted.
        for der in self.ca.iter().flat_map(CaBundle::certificates) {
            http = http.add_root_certificate(
                reqwest::Certificate::from_der(der).map_err(ClientError::HttpClient)?,
            );
        }
        let http = http.build().map_err(ClientError::HttpClient)?;
        Ok(ApiClient {
            endpoint,
            region: self.region,
            credentials: self.credentials,
            timeout: self.timeout,
            http,
        })
    }
}

/// The credentials of the default AWS chain (environment, profile, …), if any.
pub async fn credentials_from_environment() -> Option<Credentials> {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    match config.credentials_provider()?.provide_credentials().await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::debug!(error = %e, "no AWS credentials found; sending unsigned requests");
            None
        }
    }
}

impl ApiClient {
    /// A builder for a client of `endpoint` (e.g. `http://podid:8080`).
    pub fn builder(endpoint: impl Into<String>) -> ApiClientBuilder {
        ApiClientBuilder {
            endpoint: endpoint.into(),
            region: "us-east-1".to_owned(),
            credentials: None,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            ca: None,
        }
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &url::Url {
        &self.endpoint
    }

    fn transport(&self, e: reqwest::Error) -> ClientError {
        let e = e.without_url();
        let reason = if e.is_timeout() {
            format!("no answer within {} ms", self.timeout.as_millis())
        } else {
            // The innermost cause says the most ("Connection refused (os error 111)").
            let mut innermost = None;
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                innermost = Some(s.to_string());
                source = s.source();
            }
            let prefix = if e.is_connect() {
                "cannot connect"
            } else {
                "transport error"
            };
            match innermost {
                Some(cause) => format!("{prefix}: {cause}"),
                None => format!("{prefix}: {e}"),
            }
        };
        ClientError::Transport {
            endpoint: self.endpoint.to_string(),
            reason,
            source: e,
        }
    }

    /// Sends a request and decodes a JSON answer. `path` is already
    /// percent-encoded; `query` pairs are encoded here.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<T, ClientError> {
        let mut url = self.endpoint.clone();
        url.set_path(&format!(
            "{}{}",
            self.endpoint.path().trim_end_matches('/'),
            path
        ));
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (k, v.as_str())));
        }
        let body_bytes = body
            .map(|b| serde_json::to_vec(b).unwrap_or_default())
            .unwrap_or_default();
        let mut request = self.http.request(method.clone(), url.clone());
        let mut headers: Vec<(String, String)> = Vec::new();
        if body.is_some() {
            headers.push(("content-type".into(), "application/json".into()));
        }
        if let Some(creds) = &self.credentials {
            let host = match url.port() {
                Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
                None => url.host_str().unwrap_or_default().to_owned(),
            };
            headers.push(("host".into(), host));
            let identity: Identity = creds.clone().into();
            let params = v4::SigningParams::builder()
                .identity(&identity)
                .region(&self.region)
                .name("eks")
                .time(SystemTime::now())
                .settings(SigningSettings::default())
                .build()
                .map_err(|e| ClientError::Signing(e.into()))?
                .into();
            let signable = SignableRequest::new(
                method.as_str(),
                url.as_str(),
                headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                SignableBody::Bytes(&body_bytes),
            )
            .map_err(|e| ClientError::Signing(e.into()))?;
            let (instructions, _signature) = sign(signable, &params)
                .map_err(|e| ClientError::Signing(e.into()))?
                .into_parts();
            for (name, value) in instructions.headers() {
                headers.push((name.to_owned(), value.to_owned()));
            }
        }
        for (name, value) in &headers {
            if name != "host" {
                request = request.header(name, value);
            }
        }
        if body.is_some() {
            request = request.body(body_bytes);
        }
        let response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status().as_u16();
        let request_id = response
            .headers()
            .get("x-amzn-requestid")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let error_type = response
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response.bytes().await.map_err(|e| self.transport(e))?;
        if !(200..300).contains(&status) {
            let parsed: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let code = error_type
                .or_else(|| {
                    parsed
                        .get("__type")
                        .and_then(|v| v.as_str())
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| format!("HTTP{status}"));
            let message = parsed
                .get("message")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned();
            let message = if code == "MissingAuthenticationTokenException" {
                format!("{message} (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE to a podid key)")
            } else {
                message
            };
            return Err(ClientError::Api {
                status,
                code,
                message,
                request_id,
            });
        }
        serde_json::from_slice(&bytes).map_err(ClientError::Decode)
    }
}

/// Percent-encodes one path segment (ARNs in `/tags/{arn}` included).
pub fn segment(value: &str) -> String {
    // RFC 3986 unreserved characters stay as they are; everything else,
    // ':' and '/' included, is encoded, as the AWS SDKs encode URI labels.
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(value, SEGMENT).to_string()
}
