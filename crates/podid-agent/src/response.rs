//! What the agent answers: the container-credentials body and JSON errors.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use time::macros::format_description;
use time::OffsetDateTime;

use crate::upstream::FetchedCredentials;

/// The body every SDK's container credential provider reads.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CredentialsBody<'a> {
    access_key_id: &'a str,
    secret_access_key: &'a str,
    token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_id: Option<&'a str>,
    expiration: &'a str,
}

/// `YYYY-MM-DDTHH:MM:SSZ` in UTC (the JS SDK v3 rejects anything not ending in `Z`).
pub fn format_expiration(at: SystemTime) -> String {
    let secs = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    i64::try_from(secs)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(format).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

/// The 12-digit account of an assumed-role ARN
/// (`arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/SESSION`).
pub fn account_of(arn: &str) -> Option<&str> {
    let account = arn.split(':').nth(4)?;
    (arn.starts_with("arn:") && !account.is_empty()).then_some(account)
}

/// Serialises credentials once, when they enter the cache:
/// `{"AccessKeyId","SecretAccessKey","Token","AccountId","Expiration"}`.
/// `AccountId` is left out when the assumed-role ARN does not name one.
pub fn credentials_body(credentials: &FetchedCredentials) -> Bytes {
    let expiration = format_expiration(credentials.expiration);
    let body = CredentialsBody {
        access_key_id: &credentials.access_key_id,
        secret_access_key: credentials.secret_access_key.expose(),
        token: credentials.session_token.expose(),
        account_id: account_of(&credentials.assumed_role_arn),
        expiration: &expiration,
    };
    // The body lives as long as its cache entry: allocate it at its size
    // (docs/benchmarks.md, "podid-agent"). Keys, quotes and punctuation take
    // under 128 bytes; escapes, if any, grow the buffer and `shrink_to_fit`
    // trims it back.
    let fields = [
        credentials.access_key_id.as_str(),
        credentials.secret_access_key.expose(),
        credentials.session_token.expose(),
    ];
    let mut out = Vec::with_capacity(
        fields.iter().map(|f| f.len()).sum::<usize>() + expiration.len() + 12 + 128,
    );
    // Serialising strings into a Vec cannot fail.
    if serde_json::to_writer(&mut out, &body).is_err() {
        out.clear();
    }
    out.shrink_to_fit();
    Bytes::from(out)
}

/// A cached answer as held in memory.
///
/// Entries that keep their token (the node's first pods, see
/// [`crate::CachePolicy::max_refresh_ahead`]) hold the body ready to send.
/// The others hold it compact: the same JSON with the session token — most
/// of the body, and base64 — stored as the bytes it encodes (3/4 the size)
/// and encoded again for each answer (criterion `cache`,
/// `hit_compact_10000_pods`; `podid-bench agent-memory`). A token that is
/// not canonical base64 is kept as it is. Its `Debug` shows sizes only: the
/// body holds the secret key and the session token.
#[derive(Clone)]
pub enum StoredAnswer {
    /// The body, ready to send.
    Ready(Bytes),
    /// The body with its session token decoded.
    Compact(CompactAnswer),
}

/// `prefix ++ base64(token) ++ suffix`, stored as `prefix ++ token ++ suffix`.
#[derive(Clone)]
pub struct CompactAnswer {
    parts: Box<[u8]>,
    token_at: usize,
    token_len: usize,
}

impl std::fmt::Debug for StoredAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoredAnswer::Ready(body) => write!(f, "Ready(<{} bytes>)", body.len()),
            StoredAnswer::Compact(c) => write!(f, "Compact(<{} bytes>)", c.parts.len()),
        }
    }
}

impl StoredAnswer {
    /// `body` stored compact when `session_token` appears in it as canonical
    /// base64, else ready.
    pub fn compact(body: Bytes, session_token: &str) -> StoredAnswer {
        match CompactAnswer::new(&body, session_token) {
            Some(compact) => StoredAnswer::Compact(compact),
            None => StoredAnswer::Ready(body),
        }
    }

    /// The body to send.
    pub fn body(&self) -> Bytes {
        match self {
            StoredAnswer::Ready(body) => body.clone(),
            StoredAnswer::Compact(compact) => compact.render(),
        }
    }
}

impl CompactAnswer {
    fn new(body: &[u8], session_token: &str) -> Option<CompactAnswer> {
        use base64::Engine as _;
        let engine = &base64::engine::general_purpose::STANDARD;
        let marker = b"\"Token\":\"";
        let start = body.windows(marker.len()).position(|w| w == marker)? + marker.len();
        let end = start.checked_add(session_token.len())?;
        if body.get(start..end)? != session_token.as_bytes() || body.get(end) != Some(&b'"') {
            return None;
        }
        let decoded = engine.decode(session_token).ok()?;
        // Only where encoding gives back exactly the same text.
        if engine.encode(&decoded) != session_token {
            return None;
        }
        let mut parts = Vec::with_capacity(body.len() - session_token.len() + decoded.len());
        parts.extend_from_slice(&body[..start]);
        parts.extend_from_slice(&decoded);
        parts.extend_from_slice(&body[end..]);
        Some(CompactAnswer {
            parts: parts.into_boxed_slice(),
            token_at: start,
            token_len: decoded.len(),
        })
    }

    fn render(&self) -> Bytes {
        use base64::Engine as _;
        let engine = &base64::engine::general_purpose::STANDARD;
        let token = &self.parts[self.token_at..self.token_at + self.token_len];
        let encoded_len = self.token_len.div_ceil(3) * 4;
        let mut out = Vec::with_capacity(self.parts.len() - self.token_len + encoded_len);
        out.extend_from_slice(&self.parts[..self.token_at]);
        out.resize(self.token_at + encoded_len, 0);
        // The buffer is exactly the encoded length: this cannot fail.
        let written = engine
            .encode_slice(token, &mut out[self.token_at..])
            .unwrap_or(0);
        out.truncate(self.token_at + written);
        out.extend_from_slice(&self.parts[self.token_at + self.token_len..]);
        Bytes::from(out)
    }
}

#[derive(Serialize)]
struct AgentErrorBody<'a> {
    code: &'a str,
    message: &'a str,
}

/// `{"code":"…","message":"…"}`.
pub fn error_body(code: &str, message: &str) -> Bytes {
    Bytes::from(serde_json::to_vec(&AgentErrorBody { code, message }).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::upstream::Secret;

    fn creds(arn: &str) -> FetchedCredentials {
        FetchedCredentials {
            access_key_id: "ASIAEXAMPLE".into(),
            secret_access_key: Secret::new("secret/key+with\"quote"),
            session_token: Secret::new("session-token"),
            expiration: UNIX_EPOCH + Duration::from_secs(1_795_946_400),
            assumed_role_arn: arn.into(),
            association_id: None,
        }
    }

    fn with_token(token: &str) -> Bytes {
        let mut c = creds("arn:aws:sts::111122223333:assumed-role/r/eks-c-p-1");
        c.session_token = Secret::new(token);
        credentials_body(&c)
    }

    #[test]
    fn a_compact_answer_renders_the_exact_body() {
        use base64::Engine as _;
        // STS-like tokens: base64 of binary, every length modulo 3 (padding or not).
        for len in [600usize, 601, 602, 1, 0] {
            let raw: Vec<u8> = (0..len).map(|i| (i * 131 % 251) as u8).collect();
            let token = base64::engine::general_purpose::STANDARD.encode(&raw);
            let body = with_token(&token);
            let stored = StoredAnswer::compact(body.clone(), &token);
            match &stored {
                StoredAnswer::Compact(c) => {
                    assert!(c.parts.len() < body.len() || len == 0, "{len}: smaller")
                }
                StoredAnswer::Ready(_) => {
                    assert_eq!(len, 0, "{len}: base64 tokens are stored compact")
                }
            }
            assert_eq!(stored.body(), body, "{len}");
        }
    }

    #[test]
    fn debug_never_shows_the_credentials() {
        let body = with_token("QUJD");
        for stored in [
            StoredAnswer::Ready(body.clone()),
            StoredAnswer::compact(body, "QUJD"),
        ] {
            let shown = format!("{stored:?}");
            assert!(
                !shown.contains("QUJD") && !shown.contains("secret/key"),
                "{shown}"
            );
        }
    }

    #[test]
    fn tokens_that_are_not_canonical_base64_are_kept_as_they_are() {
        for token in ["session-token", "QUJD=", "QUI=QUI=", "QUJ\\D", "QUI"] {
            let body = with_token(token);
            let stored = StoredAnswer::compact(body.clone(), token);
            assert!(matches!(stored, StoredAnswer::Ready(_)), "{token}");
            assert_eq!(stored.body(), body);
        }
        // A token that is not the body's: kept as it is.
        let body = with_token("QUJD");
        assert!(matches!(
            StoredAnswer::compact(body, "REVG"),
            StoredAnswer::Ready(_)
        ));
    }

    #[test]
    fn body_has_exactly_the_container_credential_fields() {
        let body = credentials_body(&creds("arn:aws:sts::111122223333:assumed-role/r/eks-c-p-1"));
        let text = std::str::from_utf8(&body).unwrap();
        assert_eq!(
            text,
            r#"{"AccessKeyId":"ASIAEXAMPLE","SecretAccessKey":"secret/key+with\"quote","Token":"session-token","AccountId":"111122223333","Expiration":"2026-11-29T10:00:00Z"}"#
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 5);
    }

    #[test]
    fn account_is_left_out_when_unknown() {
        let v: serde_json::Value = serde_json::from_slice(&credentials_body(&creds(""))).unwrap();
        assert!(v.get("AccountId").is_none());
        assert_eq!(
            account_of("arn:aws-cn:sts::123456789012:assumed-role/r/s"),
            Some("123456789012")
        );
        assert_eq!(account_of("not-an-arn"), None);
        assert_eq!(account_of("arn:aws:sts:::assumed-role/r/s"), None);
    }

    #[test]
    fn expiration_is_utc_with_a_trailing_z() {
        assert_eq!(format_expiration(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let s = format_expiration(UNIX_EPOCH + Duration::from_millis(1_767_225_600_999));
        assert_eq!(s, "2026-01-01T00:00:00Z");
        assert!(s.ends_with('Z') && s.len() == 20);
    }

    #[test]
    fn errors_are_json() {
        let v: serde_json::Value =
            serde_json::from_slice(&error_body("AccessDenied", "no \"way\"")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"code": "AccessDenied", "message": "no \"way\""})
        );
    }
}
