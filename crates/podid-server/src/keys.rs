//! The keys file: loads the API keys the server accepts and their roles.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use podid_api::{validate, Secret};
use serde::Deserialize;

use crate::authz::{Clusters, Role};

/// Why a keys file was refused. No variant quotes a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeysFileError {
    /// The file could not be read.
    #[error(transparent)]
    Read(#[from] std::io::Error),
    /// The text is not TOML of the keys file's shape (only the position and
    /// toml's message are kept: its full error may quote a secret).
    #[error("not a valid keys file (TOML error at byte {at}): {message}")]
    Syntax {
        /// Byte offset of the error.
        at: usize,
        /// toml's message, without the offending line.
        message: String,
    },
    /// The text is not a valid keys file, and toml gave no position.
    #[error("not a valid keys file")]
    Invalid,
    /// An access key id is too short or not alphanumeric.
    #[error("access_key_id '{0}' must be 3 or more letters and digits")]
    AccessKeyId(String),
    /// A secret is too short.
    #[error("the secret of key '{0}' is shorter than 16 characters")]
    ShortSecret(String),
    /// An access key id appears twice.
    #[error("access_key_id '{0}' appears twice")]
    Duplicate(String),
    /// A key's `clusters` is empty or names an invalid cluster.
    #[error("the clusters of key '{key}': {reason}")]
    Clusters {
        /// The access key id.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// No key at all.
    #[error("the keys file defines no [[key]]")]
    Empty,
}

/// One API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The access key id clients sign with.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: Secret,
    /// What the key may do.
    pub role: Role,
    /// The clusters it may act on.
    pub clusters: Clusters,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    #[serde(default)]
    key: Vec<KeyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    access_key_id: String,
    secret_access_key: String,
    role: Role,
    #[serde(default)]
    clusters: Option<Vec<String>>,
}

/// A key entry's `clusters`: absent is every cluster; a list must name at
/// least one valid cluster name.
fn clusters_of(access_key_id: &str, names: Option<Vec<String>>) -> Result<Clusters, KeysFileError> {
    let Some(mut names) = names else {
        return Ok(Clusters::All);
    };
    let bad = |reason: String| KeysFileError::Clusters {
        key: access_key_id.to_owned(),
        reason,
    };
    if names.is_empty() {
        return Err(bad(
            "an empty list allows no cluster; leave clusters out for every cluster".to_owned(),
        ));
    }
    for name in &names {
        validate::cluster_name(name).map_err(|e| bad(e.message))?;
    }
    names.sort_unstable();
    names.dedup();
    Ok(Clusters::Only(Arc::from(names)))
}

/// The keys the server accepts, by access key id.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    keys: HashMap<String, ApiKey>,
}

impl KeyRing {
    /// Reads a keys file:
    ///
    /// ```toml
    /// [[key]]
    /// access_key_id = "PODIDADMIN"
    /// secret_access_key = "…"
    /// role = "admin"   # admin | reader | node
    /// clusters = ["blue"]   # optional: only these clusters (default: all)
    /// ```
    pub fn load(path: &Path) -> Result<Self, KeysFileError> {
        Self::parse(&std::fs::read_to_string(path)?)
    }

    /// Parses the text of a keys file. The error never quotes a secret.
    pub fn parse(text: &str) -> Result<Self, KeysFileError> {
        // toml's error messages may quote the offending line, which can hold a
        // secret: report only the position.
        let file: KeysFile = toml::from_str(text).map_err(|e| match e.span() {
            Some(span) => KeysFileError::Syntax {
                at: span.start,
                message: e.message().to_owned(),
            },
            None => KeysFileError::Invalid,
        })?;
        let mut keys = HashMap::new();
        for entry in file.key {
            if entry.access_key_id.len() < 3
                || !entry
                    .access_key_id
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric())
            {
                return Err(KeysFileError::AccessKeyId(entry.access_key_id));
            }
            if entry.secret_access_key.len() < 16 {
                return Err(KeysFileError::ShortSecret(entry.access_key_id));
            }
            let key = ApiKey {
                clusters: clusters_of(&entry.access_key_id, entry.clusters)?,
                access_key_id: entry.access_key_id.clone(),
                secret_access_key: Secret::new(entry.secret_access_key),
                role: entry.role,
            };
            if keys.insert(entry.access_key_id.clone(), key).is_some() {
                return Err(KeysFileError::Duplicate(entry.access_key_id));
            }
        }
        if keys.is_empty() {
            return Err(KeysFileError::Empty);
        }
        Ok(KeyRing { keys })
    }

    /// The key with this access key id.
    pub fn get(&self, access_key_id: &str) -> Option<&ApiKey> {
        self.keys.get(access_key_id)
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The access key ids, sorted (safe to log).
    pub fn ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keys_and_roles() {
        let ring = KeyRing::parse(
            r#"
            [[key]]
            access_key_id = "ADMIN1"
            secret_access_key = "0123456789abcdef0123"
            role = "admin"
            [[key]]
            access_key_id = "NODE1"
            secret_access_key = "0123456789abcdef0123"
            role = "node"
            "#,
        )
        .unwrap();
        assert_eq!(ring.len(), 2);
        assert_eq!(ring.get("NODE1").unwrap().role, Role::Node);
        assert!(ring.get("nobody").is_none());
    }

    #[test]
    fn errors_never_quote_secrets() {
        let secret = "s3cr3t-value-that-must-not-leak";
        for text in [
            format!("[[key]]\naccess_key_id = \"A1B\"\nsecret_access_key = \"{secret}\"\nrole = \"root\"\n"),
            format!("[[key]]\naccess_key_id = \"A1B\"\nsecret_access_key = \"{secret}\nrole = \"admin\"\n"),
            format!(
                "[[key]]\naccess_key_id = \"A1B\"\nsecret_access_key = \"{secret}\"\nrole = \"admin\"\nextra = 1\n"
            ),
        ] {
            let err = KeyRing::parse(&text).unwrap_err();
            assert!(!err.to_string().contains(secret), "{err}");
        }
        assert!(format!("{:?}", Secret::new(secret)).contains("redacted"));
    }

    #[test]
    fn keys_may_be_scoped_to_clusters() {
        let entry = |clusters: &str| {
            format!(
                "[[key]]\naccess_key_id = \"NODEBLUE\"\nsecret_access_key = \"0123456789abcdef0123\"\n\
                 role = \"node\"\n{clusters}\n"
            )
        };
        let ring = KeyRing::parse(&entry(r#"clusters = ["green", "blue", "blue"]"#)).unwrap();
        assert_eq!(
            ring.get("NODEBLUE").unwrap().clusters,
            Clusters::Only(Arc::from(["blue".to_owned(), "green".to_owned()]))
        );
        let ring = KeyRing::parse(&entry("")).unwrap();
        assert_eq!(ring.get("NODEBLUE").unwrap().clusters, Clusters::All);
        for (clusters, message) in [
            (
                "clusters = []",
                "the clusters of key 'NODEBLUE': an empty list allows no cluster; leave clusters out for every cluster",
            ),
            (
                r#"clusters = ["blue", "no spaces"]"#,
                "the clusters of key 'NODEBLUE': ",
            ),
        ] {
            let e = KeyRing::parse(&entry(clusters)).unwrap_err().to_string();
            assert!(e.starts_with(message), "{e}");
        }
        assert!(KeyRing::parse(&entry(r#"clusters = "blue""#)).is_err());
        assert!(KeyRing::parse(&entry("clusters = [1]")).is_err());
    }

    #[test]
    fn rejects_duplicates_short_secrets_and_empty_files() {
        let dup = "[[key]]\naccess_key_id=\"AAA\"\nsecret_access_key=\"0123456789abcdef\"\nrole=\"admin\"\n".repeat(2);
        assert!(KeyRing::parse(&dup)
            .unwrap_err()
            .to_string()
            .contains("twice"));
        assert!(KeyRing::parse(
            "[[key]]\naccess_key_id=\"AAA\"\nsecret_access_key=\"short\"\nrole=\"admin\"\n"
        )
        .is_err());
        assert!(KeyRing::parse("")
            .unwrap_err()
            .to_string()
            .contains("no [[key]]"));
    }
}
