//! The agent's own small HTTP client (the kubelet's `/pods`, the change
//! feed): hyper-util's pooled client over rustls with aws-lc (both already
//! linked through aws-sdk-eksauth, so no new TLS stack), `https://` trusting a
//! CA file, the system roots or — explicitly — nothing, `http://` for tests;
//! every call bounded in time and in the size of its answer.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use podid_ca::CaBundle;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::error::AgentError;

/// Which servers' certificates an `https://` call accepts.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Only those signed by this bundle (a kubelet's CA): not the system roots.
    Only(CaBundle),
    /// The system's roots, and this bundle too when given (podid server's CA).
    System(Option<CaBundle>),
    /// Any certificate at all: no verification (an operator's explicit choice,
    /// for kubelets serving a self-signed certificate).
    InsecureSkipVerify,
}

/// How an [`HttpClient`] calls.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Whose certificates are trusted.
    pub trust: Trust,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// A whole call's timeout: connect, TLS, request, answer head and body.
    pub timeout: Duration,
    /// The largest answer body read; a longer one is an error.
    pub max_answer_bytes: usize,
}

impl HttpSettings {
    /// 1 s to connect, 5 s per call, answers up to 32 MiB, trusting `trust`.
    pub fn new(trust: Trust) -> Self {
        HttpSettings {
            trust,
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            max_answer_bytes: 32 * 1024 * 1024,
        }
    }
}

/// A whole answer.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body (at most the client's `max_answer_bytes`).
    pub body: Bytes,
}

type Connector = HttpsConnector<HttpConnector>;

/// A pooled HTTP/1.1 client (keep-alive; a few idle connections per host).
#[derive(Clone)]
pub struct HttpClient {
    client: Client<Connector, Full<Bytes>>,
    settings: Arc<HttpSettings>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Checks that `url` is `http://` or `https://` with a host.
pub fn parse_url(url: &str) -> Result<Uri, AgentError> {
    let bad = || AgentError::BadUrl {
        url: url.to_owned(),
    };
    let uri: Uri = url.parse().map_err(|_| bad())?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    if !scheme_ok || uri.host().is_none_or(str::is_empty) {
        return Err(bad());
    }
    Ok(uri)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn tls_config(trust: &Trust) -> Result<rustls::ClientConfig, AgentError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| AgentError::TlsSetup {
            what: e.to_string(),
        })?;
    let mut roots = rustls::RootCertStore::empty();
    let bundle = match trust {
        Trust::InsecureSkipVerify => {
            return Ok(builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
                .with_no_client_auth())
        }
        Trust::Only(bundle) => Some(bundle),
        Trust::System(bundle) => {
            let native = rustls_native_certs::load_native_certs();
            if native.certs.is_empty() && bundle.is_none() {
                return Err(AgentError::TlsSetup {
                    what: format!(
                        "no system root certificates ({} errors)",
                        native.errors.len()
                    ),
                });
            }
            // Unusable system roots are skipped, as the SDK's client does.
            roots.add_parsable_certificates(native.certs);
            bundle.as_ref()
        }
    };
    if let Some(bundle) = bundle {
        for cert in bundle.certificates() {
            // CaBundle checked each certificate as a trust anchor already.
            roots.add(cert.clone()).map_err(|e| AgentError::TlsSetup {
                what: format!("{}: {e}", bundle.origin()),
            })?;
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

impl HttpClient {
    /// A client calling as `settings` say.
    pub fn new(settings: HttpSettings) -> Result<HttpClient, AgentError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(settings.connect_timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(&settings.trust)?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(2)
            .build(connector);
        Ok(HttpClient {
            client,
            settings: Arc::new(settings),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &HttpSettings {
        &self.settings
    }

    /// `GET uri` with `headers`, within the client's timeout.
    pub async fn get(&self, uri: &Uri, headers: &HeaderMap) -> Result<HttpAnswer, AgentError> {
        let mut request = Request::get(uri.clone())
            .body(Full::new(Bytes::new()))
            .map_err(|source| AgentError::HttpRequest { source })?;
        request.headers_mut().extend(headers.clone());
        self.send_within(request, self.settings.timeout).await
    }

    /// Sends `request` and reads the whole answer within `timeout` (a long
    /// poll passes its own).
    pub async fn send_within(
        &self,
        request: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<HttpAnswer, AgentError> {
        let uri = request.uri();
        let host = uri.host().unwrap_or("").to_owned();
        if host.is_empty() || !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(AgentError::BadUrl {
                url: uri.to_string(),
            });
        }
        match tokio::time::timeout(timeout, self.call(request, &host)).await {
            Ok(result) => result,
            Err(_) => Err(AgentError::Timeout { host, timeout }),
        }
    }

    async fn call(
        &self,
        request: Request<Full<Bytes>>,
        host: &str,
    ) -> Result<HttpAnswer, AgentError> {
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| classify(e, host))?;
        let (parts, body) = response.into_parts();
        let limit = self.settings.max_answer_bytes;
        let body = Limited::new(body, limit)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    AgentError::TooLarge {
                        host: host.to_owned(),
                        limit,
                    }
                } else {
                    AgentError::AnswerBrokeOff {
                        host: host.to_owned(),
                        reason: e.to_string(),
                    }
                }
            })?
            .to_bytes();
        Ok(HttpAnswer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// Names a refused certificate; tells a connection failure from a later one.
fn classify(e: hyper_util::client::legacy::Error, host: &str) -> AgentError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    while let Some(c) = cause {
        if let Some(tls) = c.downcast_ref::<rustls::Error>() {
            if matches!(
                tls,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            ) {
                return AgentError::Untrusted {
                    host: host.to_owned(),
                    source: tls.clone(),
                };
            }
        }
        // An io::Error's `source` skips the error it wraps: look inside.
        cause = match c.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as _),
            None => c.source(),
        };
    }
    let host = host.to_owned();
    if e.is_connect() {
        AgentError::Connect { host, source: e }
    } else {
        AgentError::CallFailed { host, source: e }
    }
}

/// Accepts any server certificate (signatures are still checked, so the
/// handshake is not trivially broken; the server is simply not authenticated).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests;
