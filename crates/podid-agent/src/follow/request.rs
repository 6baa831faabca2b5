//! One call of the change feed: the URL, the caller's proof (a Bearer
//! token, or SigV4 with the node's key for service `eks`), the answer read.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http::header::{AUTHORIZATION, HOST};
use http::{HeaderValue, Request, Uri};
use http_body_util::Full;
use podid_api::changes::ChangesResponse;
use serde::Deserialize;

use crate::error::AgentError;
use crate::http::HttpClient;
use crate::identity::IdentityToken;

/// How the agent proves itself to the feed: as to the broker.
#[derive(Clone)]
pub enum FeedAuth {
    /// `Authorization: Bearer` with the agent's identity token.
    Bearer(Arc<IdentityToken>),
    /// SigV4 for service `eks` in `region`, with the node's key.
    SigV4 {
        /// The node's credentials (the SDK's provider, which caches them).
        credentials: SharedCredentialsProvider,
        /// The signing region.
        region: String,
    },
}

impl std::fmt::Debug for FeedAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FeedAuth::Bearer(token) => write!(f, "Bearer({})", token.path().display()),
            FeedAuth::SigV4 { region, .. } => write!(f, "SigV4({region})"),
        }
    }
}

/// The AWS error shape's fields the agent reads.
#[derive(Deserialize)]
struct ErrorShape {
    #[serde(rename = "__type", default)]
    kind: Option<String>,
    #[serde(default, alias = "Message")]
    message: Option<String>,
}

/// `s` with every byte outside `[A-Za-z0-9._~-]` percent-encoded (a path segment).
pub(crate) fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The feed URL of `cluster` at `endpoint`, asking after `after` (waiting up to
/// `wait` seconds), or for the current position without it.
pub(crate) fn feed_url(endpoint: &str, cluster: &str, after: Option<i64>, wait: u64) -> String {
    let base = endpoint.trim_end_matches('/');
    let path = format!("{base}/podid/v1/clusters/{}/changes", path_segment(cluster));
    match after {
        Some(after) => format!("{path}?after={after}&waitSeconds={wait}"),
        None => path,
    }
}

/// Adds the caller's proof to `request`.
async fn authenticate(
    auth: &FeedAuth,
    request: &mut Request<Full<Bytes>>,
) -> Result<(), AgentError> {
    match auth {
        FeedAuth::Bearer(token) => {
            request
                .headers_mut()
                .insert(AUTHORIZATION, token.authorization()?);
        }
        FeedAuth::SigV4 {
            credentials,
            region,
        } => {
            let creds = credentials
                .provide_credentials()
                .await
                .map_err(AgentError::FeedCredentials)?;
            let identity: Identity = creds.into();
            let host = request
                .uri()
                .authority()
                .map(|a| a.as_str().to_owned())
                .unwrap_or_default();
            let host =
                HeaderValue::try_from(host).map_err(|e| AgentError::FeedSigning(e.into()))?;
            request.headers_mut().insert(HOST, host);
            let params = v4::SigningParams::builder()
                .identity(&identity)
                .region(region)
                .name("eks")
                .time(SystemTime::now())
                .settings(SigningSettings::default())
                .build()
                .map_err(|e| AgentError::FeedSigning(e.into()))?
                .into();
            let uri = request.uri().to_string();
            let headers: Vec<(String, String)> = request
                .headers()
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect();
            let signable = SignableRequest::new(
                "GET",
                &uri,
                headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                SignableBody::Bytes(&[]),
            )
            .map_err(|e| AgentError::FeedSigning(e.into()))?;
            let (instructions, _) = sign(signable, &params)
                .map_err(|e| AgentError::FeedSigning(e.into()))?
                .into_parts();
            instructions.apply_to_request_http1x(request);
        }
    }
    Ok(())
}

/// One `GET` of `url`, authenticated by `auth`, answered within `timeout`.
pub(crate) async fn call(
    client: &HttpClient,
    auth: &FeedAuth,
    url: &str,
    timeout: Duration,
) -> Result<ChangesResponse, AgentError> {
    let uri: Uri = crate::http::parse_url(url)?;
    let mut request = Request::get(uri)
        .body(Full::new(Bytes::new()))
        .map_err(|source| AgentError::HttpRequest { source })?;
    authenticate(auth, &mut request).await?;
    let answer = client.send_within(request, timeout).await?;
    if answer.status.is_success() {
        return serde_json::from_slice(&answer.body).map_err(AgentError::FeedUnreadable);
    }
    let shape: Option<ErrorShape> = serde_json::from_slice(&answer.body).ok();
    let header_kind = answer
        .headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(':').next().unwrap_or(v).to_owned());
    let code = shape
        .as_ref()
        .and_then(|s| s.kind.clone())
        .or(header_kind)
        .unwrap_or_else(|| "UnknownError".to_owned());
    let message = shape.and_then(|s| s.message).unwrap_or_default();
    Err(AgentError::FeedRefused {
        status: answer.status.as_u16(),
        code: code.chars().take(64).collect(),
        message: message.chars().take(256).collect(),
    })
}
