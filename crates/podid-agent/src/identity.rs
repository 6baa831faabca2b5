//! A bearer token kept in a file: the agent's own service-account token
//! (`--identity-token-file`, sent instead of a SigV4 signature) and the
//! kubelet token (`--kubelet-token-file`). Read again when kubelet rotates
//! it, sent as `Authorization: Bearer <token>`. Never logged.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use http::HeaderValue;

use crate::error::AgentError;

/// The largest token file read (projected tokens are a few KiB).
const MAX_TOKEN_BYTES: u64 = 64 * 1024;

/// What identifies one version of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn version(path: &Path) -> std::io::Result<Version> {
    use std::os::unix::fs::MetadataExt;
    // Follows the `..data` symlink kubelet swaps on rotation.
    let meta = std::fs::metadata(path)?;
    Ok(Version {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

struct Loaded {
    version: Version,
    header: HeaderValue,
}

/// The token file and the header made of its current contents.
pub struct IdentityToken {
    path: PathBuf,
    loaded: Mutex<Option<Loaded>>,
}

impl std::fmt::Debug for IdentityToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityToken")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl IdentityToken {
    /// The token in `path`, read now (so a missing file fails at start).
    pub fn open(path: impl Into<PathBuf>) -> Result<IdentityToken, AgentError> {
        let token = IdentityToken {
            path: path.into(),
            loaded: Mutex::new(None),
        };
        token.authorization()?;
        Ok(token)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Option<Loaded>> {
        self.loaded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `Bearer <token>` (a sensitive header value), the file read again
    /// when its modification time, size or inode changed (one `stat` per call).
    pub fn authorization(&self) -> Result<HeaderValue, AgentError> {
        let read_error = |source| AgentError::TokenFileRead {
            path: self.path.clone(),
            source,
        };
        let now = version(&self.path).map_err(read_error)?;
        let mut loaded = self.lock();
        if let Some(current) = loaded.as_ref().filter(|l| l.version == now) {
            return Ok(current.header.clone());
        }
        if now.len > MAX_TOKEN_BYTES {
            return Err(self.unusable("is larger than 64 KiB"));
        }
        let text = std::fs::read_to_string(&self.path).map_err(read_error)?;
        let token = text.trim();
        if token.is_empty() {
            return Err(self.unusable("is empty"));
        }
        let mut header = HeaderValue::try_from(format!("Bearer {token}"))
            .map_err(|_| self.unusable("holds characters a header cannot carry"))?;
        header.set_sensitive(true);
        if loaded.is_some() {
            tracing::info!(path = %self.path.display(), "the token file changed: read again");
        }
        *loaded = Some(Loaded {
            version: now,
            header: header.clone(),
        });
        Ok(header)
    }

    fn unusable(&self, why: &'static str) -> AgentError {
        AgentError::TokenFileUnusable {
            path: self.path.clone(),
            why,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn write(path: &Path, text: &str) {
        // As kubelet does: a new file renamed into place.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[test]
    fn the_header_follows_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        write(&path, "aaa.bbb.ccc\n");
        let token = IdentityToken::open(&path).unwrap();
        let header = token.authorization().unwrap();
        assert_eq!(header, "Bearer aaa.bbb.ccc");
        assert!(header.is_sensitive());
        assert!(
            !format!("{token:?}").contains("aaa"),
            "Debug hides the token"
        );
        write(&path, "ddd.eee.fff");
        assert_eq!(token.authorization().unwrap(), "Bearer ddd.eee.fff");
    }

    #[test]
    fn a_missing_empty_or_odd_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        // Neutral texts: the file is the agent's identity token or the kubelet token.
        let err = IdentityToken::open(&path).unwrap_err();
        let says = format!("cannot read the token file {}", path.display());
        assert_eq!(err.to_string(), says);
        write(&path, " \n");
        let err = IdentityToken::open(&path).unwrap_err();
        let says = format!("the token file {} is empty", path.display());
        assert_eq!(err.to_string(), says);
        write(&path, "secret\u{1}token");
        let err = IdentityToken::open(&path).unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        // A token that was good stays an error once the file goes.
        write(&path, "good");
        let token = IdentityToken::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(token.authorization().is_err());
    }
}
