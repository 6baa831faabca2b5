//! The private CA podid's clients trust besides the system roots (`--ca-file`,
//! `PODID_CA_FILE`): a PEM bundle read and checked once at start-up, then
//! handed to reqwest (the CLI, the webhook) or to the AWS SDK's HTTPS client
//! (the agent's aws-sdk-eksauth).
#![forbid(unsafe_code)]

use std::io::Read;
use std::path::Path;

use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// The largest CA file read (a full public bundle is ~220 KiB).
pub const MAX_CA_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Why a CA bundle cannot be used; each names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// The file cannot be opened or read.
    #[error("cannot read the CA file {origin}: {source}")]
    Read {
        /// The file.
        origin: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_CA_FILE_BYTES`].
    #[error("the CA file {origin} is larger than {MAX_CA_FILE_BYTES} bytes")]
    TooLarge {
        /// The file.
        origin: String,
    },
    /// A PEM section is malformed (no END line, bad base64, …).
    #[error("the CA file {origin} is not valid PEM: {source}")]
    Pem {
        /// The file.
        origin: String,
        /// The PEM parser's complaint.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// No `CERTIFICATE` section in the file.
    #[error("the CA file {origin} holds no certificate (expected PEM '-----BEGIN CERTIFICATE-----' blocks)")]
    NoCertificate {
        /// The file.
        origin: String,
    },
    /// A certificate that cannot be a trust anchor (not X.509 DER).
    #[error("certificate {number} of the CA file {origin} cannot be trusted: {source}")]
    BadCertificate {
        /// The file.
        origin: String,
        /// Its position in the file, from 1.
        number: usize,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// The AWS SDK's HTTPS client refused the bundle.
    #[error("cannot build an HTTPS client trusting the CA file {origin}: {source}")]
    SdkClient {
        /// The file.
        origin: String,
        /// The SDK's error.
        #[source]
        source: aws_smithy_http_client::HttpClientError,
    },
}

/// One or more CA certificates, each checked to be usable as a trust anchor.
#[derive(Clone)]
pub struct CaBundle {
    origin: String,
    pem: Vec<u8>,
    certificates: Vec<CertificateDer<'static>>,
}

impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaBundle")
            .field("origin", &self.origin)
            .field("certificates", &self.certificates.len())
            .finish()
    }
}

impl CaBundle {
    /// Reads and checks the PEM file at `path`.
    pub fn read(path: &Path) -> Result<CaBundle, CaError> {
        let origin = path.display().to_string();
        let read_error = |source| CaError::Read {
            origin: origin.clone(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        let mut pem = Vec::new();
        file.take(MAX_CA_FILE_BYTES + 1)
            .read_to_end(&mut pem)
            .map_err(read_error)?;
        if pem.len() as u64 > MAX_CA_FILE_BYTES {
            return Err(CaError::TooLarge { origin });
        }
        CaBundle::from_pem(pem, origin)
    }

    /// Checks PEM text; `origin` names it in errors (a path, usually).
    pub fn from_pem(
        pem: impl Into<Vec<u8>>,
        origin: impl Into<String>,
    ) -> Result<CaBundle, CaError> {
        let pem = pem.into();
        let origin = origin.into();
        // The parser the AWS SDK's client uses on the same bytes (it panics on
        // what fails here, so nothing reaches it unchecked).
        let certificates = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| CaError::Pem {
                origin: origin.clone(),
                source,
            })?;
        if certificates.is_empty() {
            return Err(CaError::NoCertificate { origin });
        }
        let mut roots = rustls::RootCertStore::empty();
        for (i, cert) in certificates.iter().enumerate() {
            roots
                .add(cert.clone())
                .map_err(|source| CaError::BadCertificate {
                    origin: origin.clone(),
                    number: i + 1,
                    source,
                })?;
        }
        Ok(CaBundle {
            origin,
            pem,
            certificates,
        })
    }

    /// Where the bundle came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The certificates (DER), in file order.
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certificates
    }

    /// The AWS SDK's HTTPS client (rustls with aws-lc, as the SDK's default)
    /// trusting the system roots and this bundle; set it on an `SdkConfig`
    /// loader or an SDK client's config (`http_client`).
    pub fn sdk_http_client(&self) -> Result<SharedHttpClient, CaError> {
        let trust = TrustStore::default()
            .with_native_roots(true)
            .with_pem_certificate(self.pem.clone());
        let context = TlsContext::builder()
            .with_trust_store(trust)
            .build()
            .map_err(|source| CaError::SdkClient {
                origin: self.origin.clone(),
                source,
            })?;
        Ok(aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(context)
            .build_https())
    }
}

#[cfg(test)]
mod tests;
