//! A string that must never be printed (secret keys, session tokens), kept in a `secrecy` box.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// A secret string. `Debug` prints `**redacted**`, there is no `Display`, and the
/// value is zeroed when dropped (`secrecy`), so it cannot reach a log line or an
/// error message by accident.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(SecretString::from(value.into()))
    }

    /// The value, for the one place that must use it (a response body, a signer).
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("**redacted**")
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn never_prints() {
        let s = Secret::new("wJalrXUtnFEMI");
        assert_eq!(format!("{s:?}"), "**redacted**");
        assert_eq!(s.expose(), "wJalrXUtnFEMI");
        assert_eq!(s.clone(), s);
        assert_ne!(s, Secret::new("other"));
    }
}
