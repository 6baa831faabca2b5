//! API keys: who may call the server, and with which role.

use std::collections::HashMap;
use std::path::Path;

use podid_api::Secret;
use serde::Deserialize;

use crate::ServerError;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// Describe, list and tag reads of associations; cluster reads.
    Reader,
    /// Only the credential call (`AssumeRoleForPodIdentity`), for node agents.
    Node,
}

impl Role {
    /// The role's name as the keys file spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Reader => "reader",
            Role::Node => "node",
        }
    }

    /// Whether the role may call `operation`.
    pub fn allows(self, operation: Operation) -> bool {
        match self {
            Role::Admin => true,
            Role::Reader => operation.is_read(),
            Role::Node => operation == Operation::AssumeRoleForPodIdentity,
        }
    }
}

/// Every operation the server answers, as named in metrics, logs and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// `CreatePodIdentityAssociation`.
    CreatePodIdentityAssociation,
    /// `DescribePodIdentityAssociation`.
    DescribePodIdentityAssociation,
    /// `ListPodIdentityAssociations`.
    ListPodIdentityAssociations,
    /// `UpdatePodIdentityAssociation`.
    UpdatePodIdentityAssociation,
    /// `DeletePodIdentityAssociation`.
    DeletePodIdentityAssociation,
    /// `TagResource`.
    TagResource,
    /// `UntagResource`.
    UntagResource,
    /// `ListTagsForResource`.
    ListTagsForResource,
    /// Cluster registry: register.
    RegisterCluster,
    /// Cluster registry: describe.
    DescribeCluster,
    /// Cluster registry: list.
    ListClusters,
    /// Cluster registry: update.
    UpdateCluster,
    /// Cluster registry: deregister.
    DeregisterCluster,
    /// EKS Auth: issue credentials for a pod.
    AssumeRoleForPodIdentity,
    /// The broker's audit trail: list.
    ListAuditEvents,
}

impl Operation {
    /// The operation's name.
    pub fn name(self) -> &'static str {
        match self {
            Operation::CreatePodIdentityAssociation => "CreatePodIdentityAssociation",
            Operation::DescribePodIdentityAssociation => "DescribePodIdentityAssociation",
            Operation::ListPodIdentityAssociations => "ListPodIdentityAssociations",
            Operation::UpdatePodIdentityAssociation => "UpdatePodIdentityAssociation",
            Operation::DeletePodIdentityAssociation => "DeletePodIdentityAssociation",
            Operation::TagResource => "TagResource",
            Operation::UntagResource => "UntagResource",
            Operation::ListTagsForResource => "ListTagsForResource",
            Operation::RegisterCluster => "RegisterCluster",
            Operation::DescribeCluster => "DescribeCluster",
            Operation::ListClusters => "ListClusters",
            Operation::UpdateCluster => "UpdateCluster",
            Operation::DeregisterCluster => "DeregisterCluster",
            Operation::AssumeRoleForPodIdentity => "AssumeRoleForPodIdentity",
            Operation::ListAuditEvents => "ListAuditEvents",
        }
    }

    /// Whether the operation only reads.
    pub fn is_read(self) -> bool {
        matches!(
            self,
            Operation::DescribePodIdentityAssociation
                | Operation::ListPodIdentityAssociations
                | Operation::ListTagsForResource
                | Operation::DescribeCluster
                | Operation::ListClusters
                | Operation::ListAuditEvents
        )
    }
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
}

/// The keys the server accepts, by access key id.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    keys: HashMap<String, ApiKey>,
    /// SigV4 signing keys derived from these keys ([`crate::auth`]).
    pub(crate) signing_keys: crate::auth::SigningKeyCache,
}

impl KeyRing {
    /// Reads a keys file:
    ///
    /// ```toml
    /// [[key]]
    /// access_key_id = "PODIDADMIN"
    /// secret_access_key = "…"
    /// role = "admin"   # admin | reader | node
    /// ```
    pub fn load(path: &Path) -> Result<Self, ServerError> {
        let text = std::fs::read_to_string(path).map_err(|source| ServerError::KeysFile {
            path: path.display().to_string(),
            reason: source.to_string(),
        })?;
        Self::parse(&text).map_err(|reason| ServerError::KeysFile {
            path: path.display().to_string(),
            reason,
        })
    }

    /// Parses the text of a keys file. The error never quotes a secret.
    pub fn parse(text: &str) -> Result<Self, String> {
        // toml's error messages may quote the offending line, which can hold a
        // secret: report only the position.
        let file: KeysFile = toml::from_str(text).map_err(|e| match e.span() {
            Some(span) => format!(
                "not a valid keys file (TOML error at byte {}): {}",
                span.start,
                e.message()
            ),
            None => "not a valid keys file".to_owned(),
        })?;
        let mut keys = HashMap::new();
        for entry in file.key {
            if entry.access_key_id.len() < 3
                || !entry
                    .access_key_id
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric())
            {
                return Err(format!(
                    "access_key_id '{}' must be 3 or more letters and digits",
                    entry.access_key_id
                ));
            }
            if entry.secret_access_key.len() < 16 {
                return Err(format!(
                    "the secret of key '{}' is shorter than 16 characters",
                    entry.access_key_id
                ));
            }
            let key = ApiKey {
                access_key_id: entry.access_key_id.clone(),
                secret_access_key: Secret::new(entry.secret_access_key),
                role: entry.role,
            };
            if keys.insert(entry.access_key_id.clone(), key).is_some() {
                return Err(format!(
                    "access_key_id '{}' appears twice",
                    entry.access_key_id
                ));
            }
        }
        if keys.is_empty() {
            return Err("the keys file defines no [[key]]".to_owned());
        }
        Ok(KeyRing {
            keys,
            signing_keys: Default::default(),
        })
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
            assert!(!err.contains(secret), "{err}");
        }
        assert!(format!("{:?}", Secret::new(secret)).contains("redacted"));
    }

    #[test]
    fn rejects_duplicates_short_secrets_and_empty_files() {
        let dup = "[[key]]\naccess_key_id=\"AAA\"\nsecret_access_key=\"0123456789abcdef\"\nrole=\"admin\"\n".repeat(2);
        assert!(KeyRing::parse(&dup).unwrap_err().contains("twice"));
        assert!(KeyRing::parse(
            "[[key]]\naccess_key_id=\"AAA\"\nsecret_access_key=\"short\"\nrole=\"admin\"\n"
        )
        .is_err());
        assert!(KeyRing::parse("").unwrap_err().contains("no [[key]]"));
    }

    #[test]
    fn roles_allow_what_they_should() {
        use Operation::*;
        assert!(
            Role::Admin.allows(CreatePodIdentityAssociation)
                && Role::Admin.allows(AssumeRoleForPodIdentity)
        );
        for op in [
            DescribePodIdentityAssociation,
            ListPodIdentityAssociations,
            ListTagsForResource,
            DescribeCluster,
            ListClusters,
        ] {
            assert!(Role::Reader.allows(op), "{op:?}");
            assert!(!Role::Node.allows(op), "{op:?}");
        }
        for op in [
            CreatePodIdentityAssociation,
            UpdatePodIdentityAssociation,
            DeletePodIdentityAssociation,
            TagResource,
            UntagResource,
            RegisterCluster,
            UpdateCluster,
            DeregisterCluster,
            AssumeRoleForPodIdentity,
        ] {
            assert!(!Role::Reader.allows(op), "{op:?}");
        }
        assert!(Role::Node.allows(AssumeRoleForPodIdentity));
        assert!(!Role::Node.allows(CreatePodIdentityAssociation));
    }
}
