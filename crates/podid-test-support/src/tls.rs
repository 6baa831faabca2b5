//! Test certificates (rcgen): a CA made for one test, serving certificates
//! for `localhost` and 127.0.0.1 it signs, their PEM files replaced the way a
//! Secret volume update replaces them, and a rustls client trusting the CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::HarnessError;

fn tls_error(what: &str, source: impl std::error::Error + Send + Sync + 'static) -> HarnessError {
    HarnessError::Tls {
        what: what.to_owned(),
        source: Box::new(source),
    }
}

/// A CA made for one test.
pub struct TestCa {
    /// Its certificate, PEM.
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

/// A leaf certificate and its key, PEM, and the certificate's DER.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM (PKCS#8).
    pub key_pem: String,
    /// The certificate, DER.
    pub der: Vec<u8>,
}

impl TestCa {
    /// A new CA called `name`.
    ///
    /// # Errors
    /// When rcgen cannot make the key or the certificate.
    pub fn new(name: &str) -> Result<TestCa, HarnessError> {
        let key = KeyPair::generate().map_err(|e| tls_error("CA key", e))?;
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(|e| tls_error("CA", e))?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params
            .self_signed(&key)
            .map_err(|e| tls_error("CA certificate", e))?;
        Ok(TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A serving certificate for `localhost` and 127.0.0.1 with this serial and CN.
    ///
    /// # Errors
    /// When rcgen cannot make the key or the certificate.
    pub fn leaf(&self, serial: u64, common_name: &str) -> Result<Leaf, HarnessError> {
        let key = KeyPair::generate().map_err(|e| tls_error("leaf key", e))?;
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .map_err(|e| tls_error("leaf", e))?;
        params.serial_number = Some(SerialNumber::from(serial));
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| tls_error("leaf certificate", e))?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        })
    }

    /// A rustls client configuration trusting this CA only.
    ///
    /// # Errors
    /// When the CA's PEM does not parse (it always does).
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, HarnessError> {
        client_config(self.pem.as_bytes())
    }
}

/// A rustls client configuration trusting the CA certificates of `ca_pem` only.
///
/// # Errors
/// When `ca_pem` holds no usable certificate.
pub fn client_config(ca_pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, HarnessError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| tls_error("CA PEM", e))?;
        roots
            .add(cert)
            .map_err(|e| tls_error("CA certificate", e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("TLS versions", e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Where a server's certificate files live.
#[derive(Debug)]
pub struct CertFiles {
    /// The directory holding them (removed on drop).
    pub dir: tempfile::TempDir,
    /// `tls.crt`.
    pub cert: PathBuf,
    /// `tls.key`.
    pub key: PathBuf,
}

impl CertFiles {
    /// `leaf`'s files in a new directory.
    ///
    /// # Errors
    /// When the files cannot be written.
    pub fn new(leaf: &Leaf) -> Result<CertFiles, HarnessError> {
        let dir = tempfile::tempdir().map_err(|source| HarnessError::Io {
            what: "creating a certificate directory".to_owned(),
            source,
        })?;
        let files = CertFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
            dir,
        };
        files.write(leaf)?;
        Ok(files)
    }

    /// Replaces both files the way a Secret volume update does: new files,
    /// then renamed over the old ones.
    ///
    /// # Errors
    /// When a file cannot be written.
    pub fn write(&self, leaf: &Leaf) -> Result<(), HarnessError> {
        write_atomically(&self.cert, leaf.cert_pem.as_bytes())?;
        write_atomically(&self.key, leaf.key_pem.as_bytes())
    }
}

/// Writes `contents` to a new file beside `path`, then renames it over `path`.
///
/// # Errors
/// When the file cannot be written or renamed.
pub fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), HarnessError> {
    let tmp = path.with_extension("tmp");
    let io = |source| HarnessError::Io {
        what: format!("writing {}", path.display()),
        source,
    };
    std::fs::write(&tmp, contents).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
