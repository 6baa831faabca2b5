//! The test API keys (admin, reader, node) and the keys file that holds them.

use std::path::{Path, PathBuf};

use crate::HarnessError;

/// The account of the test servers' ARNs (`--account-id`).
pub const ACCOUNT_ID: &str = "111122223333";

/// An API key of the test keys file.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TestKey {
    /// `access_key_id`.
    pub access_key_id: &'static str,
    /// `secret_access_key`.
    pub secret_access_key: &'static str,
    /// `role`: `admin`, `reader` or `node`.
    pub role: &'static str,
}

/// The key id and role, not the secret.
impl std::fmt::Debug for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestKey({} {})", self.access_key_id, self.role)
    }
}

/// The environment that makes a key a process's only AWS credentials: no
/// profile, session token, config files or instance metadata (`None`: removed).
pub fn aws_key_env<'a>(
    access_key_id: &'a str,
    secret_access_key: &'a str,
) -> [(&'static str, Option<&'a str>); 8] {
    [
        ("AWS_ACCESS_KEY_ID", Some(access_key_id)),
        ("AWS_SECRET_ACCESS_KEY", Some(secret_access_key)),
        ("AWS_REGION", Some("us-east-1")),
        ("AWS_EC2_METADATA_DISABLED", Some("true")),
        ("AWS_CONFIG_FILE", Some("/nonexistent/podid-test")),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            Some("/nonexistent/podid-test"),
        ),
        ("AWS_PROFILE", None),
        ("AWS_SESSION_TOKEN", None),
    ]
}

/// The admin key: association and cluster calls.
pub const ADMIN: TestKey = TestKey {
    access_key_id: "PODIDADMIN",
    secret_access_key: "admin-secret-0123456789abcdef",
    role: "admin",
};

/// The reader key: lookups (the webhook signs with it).
pub const READER: TestKey = TestKey {
    access_key_id: "PODIDREADER",
    secret_access_key: "reader-secret-0123456789abcdef",
    role: "reader",
};

/// The node key: `AssumeRoleForPodIdentity` (agents sign with it).
pub const NODE: TestKey = TestKey {
    access_key_id: "PODIDNODE",
    secret_access_key: "node-secret-0123456789abcdef00",
    role: "node",
};

/// Writes `dir/keys.toml` (the server's `--keys-file`) holding [`ADMIN`],
/// [`READER`] and [`NODE`]; returns its path.
///
/// # Errors
/// [`HarnessError::Io`] when the file cannot be written.
pub fn write_keys_file(dir: &Path) -> Result<PathBuf, HarnessError> {
    let path = dir.join("keys.toml");
    let text: String = [ADMIN, READER, NODE]
        .iter()
        .map(|k| {
            format!(
                "[[key]]\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\nrole = \"{}\"\n\n",
                k.access_key_id, k.secret_access_key, k.role
            )
        })
        .collect();
    std::fs::write(&path, text).map_err(|source| HarnessError::Io {
        what: format!("writing {}", path.display()),
        source,
    })?;
    Ok(path)
}
