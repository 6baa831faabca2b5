//! The serving certificate, reloaded from disk without a restart.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::ListenError;

/// Told the outcome of each reload that found changed files: `true` when a
/// new pair is in service, `false` when the files did not load.
pub trait ReloadObserver: Send + Sync {
    /// One reload's outcome.
    fn reloaded(&self, loaded: bool);
}

impl<F: Fn(bool) + Send + Sync> ReloadObserver for F {
    fn reloaded(&self, loaded: bool) {
        self(loaded)
    }
}

/// What one [`CertStore::reload`] did.
#[derive(Debug)]
pub enum Reload {
    /// The files have not changed since the last attempt.
    Unchanged,
    /// A new pair is in service.
    Loaded,
    /// The files changed but do not hold a usable pair; the previous one (if
    /// any) stays in service.
    Failed(ListenError),
}

/// The certificate and key files, and the pair loaded from them.
///
/// [`CertStore`] is the rustls certificate resolver: every new handshake gets
/// the pair loaded last. [`CertStore::watch`] polls the two files (their
/// contents' SHA-256, so rewrites within one mtime tick and Kubernetes'
/// symlink swaps of Secret volumes are both seen) and loads a changed pair.
/// A pair that does not load — unreadable, not PEM, key not matching the
/// certificate, half-written — is logged and reported to the observer, and the previous pair
/// stays in service; the next change is tried again.
pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Option<Arc<CertifiedKey>>>,
    last_seen: Mutex<Option<Seen>>,
}

/// What the last attempt found on disk.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// The files' contents.
    Contents([u8; 32]),
    /// A file could not be read.
    ReadError(String),
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("loaded", &self.is_loaded())
            .finish()
    }
}

impl CertStore {
    /// A store for the PEM files `cert` (chain, leaf first) and `key`
    /// (PKCS#8, PKCS#1 or SEC1). Nothing is read until [`reload`](Self::reload).
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        CertStore {
            cert_path: cert.into(),
            key_path: key.into(),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            current: RwLock::new(None),
            last_seen: Mutex::new(None),
        }
    }

    /// Whether a pair is in service.
    pub fn is_loaded(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// The leaf certificate in service (DER).
    pub fn current_certificate(&self) -> Option<CertificateDer<'static>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|k| k.cert.first().cloned())
    }

    /// Reads the files; loads them when their contents changed since the
    /// last attempt.
    pub fn reload(&self) -> Reload {
        let read = std::fs::read(&self.cert_path)
            .map_err(|source| ListenError::CertificateRead {
                path: self.cert_path.clone(),
                source,
            })
            .and_then(|c| {
                std::fs::read(&self.key_path)
                    .map(|k| (c, k))
                    .map_err(|source| ListenError::CertificateRead {
                        path: self.key_path.clone(),
                        source,
                    })
            });
        let (seen, files) = match read {
            Ok((cert, key)) => {
                let mut hasher = Sha256::new();
                hasher.update((cert.len() as u64).to_be_bytes());
                hasher.update(&cert);
                hasher.update(&key);
                (Seen::Contents(hasher.finalize().into()), Ok((cert, key)))
            }
            Err(e) => (Seen::ReadError(e.to_string()), Err(e)),
        };
        {
            // Each distinct state of the files is tried (and reported) once.
            let mut last = self.last_seen.lock().unwrap_or_else(|p| p.into_inner());
            if last.as_ref() == Some(&seen) {
                return Reload::Unchanged;
            }
            *last = Some(seen);
        }
        let (cert_pem, key_pem) = match files {
            Ok(f) => f,
            Err(reason) => return Reload::Failed(reason),
        };
        match self.parse(&cert_pem, &key_pem) {
            Ok(key) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(key));
                Reload::Loaded
            }
            Err(e) => Reload::Failed(e),
        }
    }

    fn parse(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, ListenError> {
        let fail = |what: &'static str,
                    source: Option<Box<dyn std::error::Error + Send + Sync>>| {
            ListenError::Certificate {
                cert: self.cert_path.clone(),
                key: self.key_path.clone(),
                what,
                source,
            }
        };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| fail("certificate file is not PEM", Some(e.into())))?;
        if chain.is_empty() {
            return Err(fail("certificate file holds no CERTIFICATE", None));
        }
        let key =
            PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| fail("key file", Some(e.into())))?;
        let signing_key = self
            .provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| fail("unusable key", Some(e.into())))?;
        let certified = CertifiedKey::new(chain, signing_key);
        match certified.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
                Ok(certified)
            }
            Err(e) => Err(fail(
                "the key does not match the certificate",
                Some(e.into()),
            )),
        }
    }

    /// Loads once now (logging the outcome) and returns whether a pair is in service.
    pub fn initial_load(&self, observer: &dyn ReloadObserver) -> bool {
        self.report(self.reload(), observer);
        self.is_loaded()
    }

    fn report(&self, outcome: Reload, observer: &dyn ReloadObserver) {
        match outcome {
            Reload::Unchanged => {}
            Reload::Loaded => {
                observer.reloaded(true);
                tracing::info!(cert = %self.cert_path.display(), "TLS certificate loaded");
            }
            Reload::Failed(reason) => {
                observer.reloaded(false);
                if self.is_loaded() {
                    tracing::error!(%reason, "new TLS certificate not loaded; still serving the previous one");
                } else {
                    tracing::error!(%reason, "no TLS certificate loaded; not ready");
                }
            }
        }
    }

    /// Polls the files every `interval` until the task is dropped.
    pub async fn watch(self: Arc<Self>, interval: Duration, observer: Arc<dyn ReloadObserver>) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let store = self.clone();
            let outcome = match tokio::task::spawn_blocking(move || store.reload()).await {
                Ok(o) => o,
                Err(e) => Reload::Failed(ListenError::ReloadTask(e)),
            };
            self.report(outcome, observer.as_ref());
        }
    }

    /// A rustls server configuration (TLS 1.2 and 1.3, ALPN h2 — with the
    /// `http2` feature — and http/1.1) whose certificate comes from this store.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, ListenError> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(ListenError::Tls)?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        #[cfg(feature = "http2")]
        config.alpn_protocols.insert(0, b"h2".to_vec());
        // No session resumption: a resumed session skips the certificate, so
        // clients could go on seeing a replaced certificate. Every handshake
        // presents the pair in service; the apiserver keeps its connections
        // alive, so full handshakes are rare.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_files_fail_with_the_file_names_and_the_rule() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert, "no PEM here").unwrap();
        std::fs::write(&key, "nor here").unwrap();
        let store = CertStore::new(&cert, &key);
        let Reload::Failed(reason) = store.reload() else {
            panic!("garbage loaded");
        };
        assert_eq!(
            reason.to_string(),
            format!(
                "TLS certificate {} / key {}: certificate file holds no CERTIFICATE",
                cert.display(),
                key.display()
            )
        );
        assert!(!store.is_loaded());
        assert!(matches!(store.reload(), Reload::Unchanged));
        std::fs::remove_file(&key).unwrap();
        let Reload::Failed(e) = store.reload() else {
            panic!("a missing key file loaded");
        };
        assert!(
            e.to_string()
                .starts_with(&format!("cannot read {}: ", key.display())),
            "{e}"
        );
        assert!(std::error::Error::source(&e).is_some());
    }
}
