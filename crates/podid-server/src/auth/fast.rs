//! The SigV4 check's fast path: signatures of requests already in canonical form.
//! Hand-written (streamed SHA-256, kept signing keys) for `podid-bench broker`.

use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use aws_sigv4::sign::v4::{calculate_signature, generate_signing_key};
use sha2::{Digest, Sha256};

use super::header::{AuthorizationHeader, Credential};
use super::RequestToVerify;
use crate::keys::ApiKey;

/// How many derived signing keys are kept at most (one per key, day, region
/// and service in use; a day's change replaces them).
const MAX_SIGNING_KEYS: usize = 16;

struct Derived {
    access_key_id: String,
    date: String,
    region: String,
    service: String,
    key: [u8; 32],
}

/// Derived SigV4 signing keys (aws-sigv4's `generate_signing_key`), so a
/// request costs one HMAC rather than five.
/// Bounded: the oldest goes first.
#[derive(Default)]
pub(crate) struct SigningKeyCache {
    keys: Mutex<Vec<Derived>>,
}

impl std::fmt::Debug for SigningKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKeyCache { .. }")
    }
}

impl SigningKeyCache {
    /// The signing key of `key` for the scope `date/region/service`.
    fn get(
        &self,
        key: &ApiKey,
        at: SystemTime,
        date: &str,
        region: &str,
        service: &str,
    ) -> [u8; 32] {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let found = keys.iter().find(|d| {
            d.date == date
                && d.region == region
                && d.service == service
                && d.access_key_id == key.access_key_id
        });
        if let Some(d) = found {
            return d.key;
        }
        let mut derived = [0u8; 32];
        derived.copy_from_slice(
            generate_signing_key(key.secret_access_key.expose(), at, region, service).as_ref(),
        );
        if keys.len() >= MAX_SIGNING_KEYS {
            keys.remove(0);
        }
        keys.push(Derived {
            access_key_id: key.access_key_id.clone(),
            date: date.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
            key: derived,
        });
        derived
    }
}

#[cfg(test)]
impl SigningKeyCache {
    /// The signature of `data` with the kept signing key (for tests).
    pub(super) fn derived_for_test(
        &self,
        key: &ApiKey,
        at: SystemTime,
        region: &str,
        service: &str,
    ) -> [u8; 32] {
        let date = crate::auth::tests::date_of(at);
        self.get(key, at, &date, region, service)
    }

    /// How many keys are kept.
    pub(super) fn len(&self) -> usize {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Lowercase hexadecimal of a SHA-256 digest, without allocating.
fn hex32(digest: &[u8; 32]) -> [u8; 64] {
    let mut out = [0u8; 64];
    // 32 bytes fill 64 digits exactly: the length check cannot fail.
    let _ = hex::encode_to_slice(digest, &mut out);
    out
}

/// A path the SDK's signer uses as it is: no dot segments, no empty
/// segments, nothing to percent-encode.
fn is_canonical_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.contains("//")
        && path
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'/' || c == b'-' || c == b'_')
}

/// The signature (lowercase hex) of a request in canonical form, or `None`
/// when the request is not in that form and aws-sigv4 must canonicalise it.
///
/// A request whose path needs no normalisation or encoding, that has no
/// query, and whose signed headers each have one value that needs no
/// trimming, is its own canonical request (every `AssumeRoleForPodIdentity`
/// an SDK or agent sends). The result is byte for byte what aws-sigv4's
/// signer computes (`differential_tests::agrees_with_the_sdk_signer`); every other request
/// goes through aws-sigv4 ([`super::sdk_signature`]).
///
/// The caller has already checked that `amz_date` (the `X-Amz-Date` header)
/// is `YYYYMMDDTHHMMSSZ`, within the allowed skew, of the scope's day, and
/// that `SignedHeaders` is canonical: lowercase, sorted, unique, naming
/// `host` and `x-amz-date`.
pub(super) fn signature(
    cache: &SigningKeyCache,
    key: &ApiKey,
    credential: &Credential<'_>,
    auth: &AuthorizationHeader<'_>,
    request: &RequestToVerify<'_>,
    amz_date: &str,
    signed_at: SystemTime,
) -> Option<String> {
    let RequestToVerify {
        method,
        uri,
        headers,
        body,
    } = *request;
    let path = uri.path();
    if uri.query().is_some() || !is_canonical_path(path) {
        return None;
    }
    let names = &auth.signed_headers;

    let mut creq = Sha256::new();
    creq.update(method.as_bytes());
    creq.update(b"\n");
    creq.update(path.as_bytes());
    creq.update(b"\n\n");
    for name in names {
        // Exactly one value, ASCII, with nothing for the SDK to trim.
        let mut values = headers.get_all(*name).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return None;
        };
        let value = value.to_str().ok()?;
        if value.starts_with(' ') || value.ends_with(' ') || value.contains("  ") {
            return None;
        }
        creq.update(name.as_bytes());
        creq.update(b":");
        creq.update(value.as_bytes());
        creq.update(b"\n");
    }
    creq.update(b"\n");
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            creq.update(b";");
        }
        creq.update(name.as_bytes());
    }
    creq.update(b"\n");
    creq.update(hex32(&Sha256::digest(body).into()));
    let creq = creq.finalize();

    let signing_key = cache.get(
        key,
        signed_at,
        credential.date,
        credential.region,
        credential.service,
    );
    let mut sts = Vec::with_capacity(160);
    sts.extend_from_slice(b"AWS4-HMAC-SHA256\n");
    sts.extend_from_slice(amz_date.as_bytes());
    sts.push(b'\n');
    for part in [
        credential.date,
        "/",
        credential.region,
        "/",
        credential.service,
        "/aws4_request\n",
    ] {
        sts.extend_from_slice(part.as_bytes());
    }
    sts.extend_from_slice(&hex32(&creq.into()));
    Some(calculate_signature(signing_key, &sts))
}
