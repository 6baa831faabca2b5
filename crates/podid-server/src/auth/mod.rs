//! SigV4 authentication of API requests: who signed a request, checked
//! against the keys file's keys with the SDKs' own canonicalisation.

use std::borrow::Cow;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use podid_api::{ApiError, ErrorKind};
use subtle::ConstantTimeEq;

use self::fast::SigningKeyCache;
use self::header::{
    check_scope, format_amz_date, is_canonical_list, parse_amz_date, parse_authorization,
    split_credential, AuthorizationHeader, Credential,
};
use crate::authz::{routes, Principal};
use crate::keys::{ApiKey, KeyRing};

pub(crate) mod agent_token;
mod fast;
mod header;
pub(crate) mod reload;

/// Requests signed further than this from the server's clock are refused.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// How requests are authenticated.
#[derive(Debug, Clone)]
pub(crate) enum Authentication {
    /// Every request must be SigV4-signed by one of these keys.
    SigV4(Arc<SigV4Verifier>),
    /// Nothing is checked (`--insecure-no-auth`); every caller is an admin.
    Disabled,
}

impl Authentication {
    /// Who sent the request whose head is `parts` and body `body`, at `now`;
    /// then, for a correctly signed request, a query parameter named twice is
    /// `InvalidParameter` and a cluster outside the key's `clusters` is
    /// `AccessDenied` (the role is checked by the handler).
    pub(crate) fn authenticate(
        &self,
        now: SystemTime,
        parts: &http::request::Parts,
        body: &[u8],
    ) -> Result<Principal, ApiError> {
        let principal = match self {
            Authentication::Disabled => Principal::anonymous(),
            Authentication::SigV4(verifier) => {
                verifier.verify(now, parts.method.as_str(), &parts.uri, &parts.headers, body)?
            }
        };
        admit(principal, parts, body)
    }
}

/// The checks after authentication, for SigV4 keys and agent tokens alike: a
/// query parameter named twice is `InvalidParameter`, a cluster outside the
/// principal's `clusters` is `AccessDenied`.
pub(crate) fn admit(
    principal: Principal,
    parts: &http::request::Parts,
    body: &[u8],
) -> Result<Principal, ApiError> {
    if let Some(name) = routes::repeated_query_parameter(&parts.method, &parts.uri) {
        return Err(ApiError::invalid_parameter(format!(
            "the query parameter '{}' is given more than once",
            podid_api::arn::printable(&name)
        )));
    }
    principal.authorise_clusters(&parts.method, &parts.uri, body)?;
    Ok(principal)
}

/// A request as its signature covers it: `uri` as received (path and query,
/// still percent-encoded), `body` complete.
struct RequestToVerify<'a> {
    method: &'a str,
    uri: &'a http::Uri,
    headers: &'a http::HeaderMap,
    body: &'a [u8],
}

/// The keys in service and the signing keys derived from them (replaced
/// together, so a changed secret never meets a key derived from the old one).
#[derive(Debug)]
struct Keys {
    ring: KeyRing,
    signing_keys: SigningKeyCache,
}

impl Keys {
    fn new(ring: KeyRing) -> Arc<Keys> {
        Arc::new(Keys {
            ring,
            signing_keys: SigningKeyCache::default(),
        })
    }
}

/// Checks SigV4 signatures against a [`KeyRing`], keeping the signing keys
/// it derives (one HMAC per request instead of five). The ring can be
/// replaced while requests are verified ([`SigV4Verifier::replace_keys`]).
#[derive(Debug)]
pub struct SigV4Verifier {
    keys: RwLock<Arc<Keys>>,
    /// The region the credential scope must name; `None` accepts any.
    region: Option<String>,
}

impl SigV4Verifier {
    /// A verifier of requests signed by `keys` for any region (the service
    /// must still be the path's).
    pub fn new(keys: KeyRing) -> Self {
        SigV4Verifier {
            keys: RwLock::new(Keys::new(keys)),
            region: None,
        }
    }

    /// A verifier of requests signed by `keys` for `region` only (the
    /// server's `--region`).
    pub fn for_region(keys: KeyRing, region: impl Into<String>) -> Self {
        SigV4Verifier {
            region: Some(region.into()),
            ..SigV4Verifier::new(keys)
        }
    }

    fn current(&self) -> Arc<Keys> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The keys in service.
    pub fn keys(&self) -> KeyRing {
        self.current().ring.clone()
    }

    /// Puts `keys` in service from the next request on; returns the ring
    /// they replace.
    pub fn replace_keys(&self, keys: KeyRing) -> KeyRing {
        let new = Keys::new(keys);
        let old = std::mem::replace(
            &mut *self.keys.write().unwrap_or_else(PoisonError::into_inner),
            new,
        );
        old.ring.clone()
    }

    /// Verifies a SigV4-signed request and says who sent it.
    ///
    /// `uri` is the request target as received (path and query, still
    /// percent-encoded); `body` the complete body. Checks and errors follow
    /// AWS's order and names: no AWS4 `Authorization` →
    /// `MissingAuthenticationTokenException`; a missing or malformed part →
    /// `IncompleteSignatureException`; too old or too new, `host` unsigned, a
    /// wrong scope (region not the server's, service not the path's,
    /// terminator, date) → `InvalidSignatureException`; an unknown key →
    /// `UnrecognizedClientException`; a wrong signature →
    /// `InvalidSignatureException`; then any `X-Amz-Security-Token` (podid
    /// issues none) → `UnrecognizedClientException`. No error reveals what the
    /// server expected.
    pub fn verify(
        &self,
        now: SystemTime,
        method: &str,
        uri: &http::Uri,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<Principal, ApiError> {
        let authorization = headers
            .get(http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorKind::MissingAuthenticationToken,
                    "Missing Authentication Token",
                )
            })?
            .to_str()
            .map_err(|_| {
                ApiError::new(
                    ErrorKind::IncompleteSignature,
                    "Authorization header is not ASCII",
                )
            })?;
        let amz_date = headers
            .get("x-amz-date")
            .map(|v| v.to_str().unwrap_or("\u{fffd}"));
        let (auth, amz_date) = parse_authorization(authorization, amz_date)?;
        let signed_at = parse_amz_date(amz_date)?;
        check_skew(now, signed_at, amz_date)?;
        if !auth.signed_headers.contains(&"host") {
            return Err(ApiError::new(
                ErrorKind::InvalidSignature,
                "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
            ));
        }
        let credential = split_credential(auth.credential)?;
        check_scope(
            &credential,
            amz_date,
            self.region.as_deref(),
            routes::signing_service(uri.path()),
        )?;
        let keys = self.current();
        let key = keys.ring.get(credential.access_key_id).ok_or_else(|| {
            ApiError::new(
                ErrorKind::UnrecognizedClient,
                "The security token included in the request is invalid.",
            )
        })?;
        if !is_canonical_list(&auth.signed_headers) {
            return Err(mismatch());
        }

        let request = RequestToVerify {
            method,
            uri,
            headers,
            body,
        };
        let expected = match fast::signature(
            &keys.signing_keys,
            key,
            &credential,
            &auth,
            &request,
            amz_date,
            signed_at,
        ) {
            Some(signature) => signature,
            None => sdk_signature(key, &credential, &auth, signed_at, &request)?,
        };
        if !bool::from(
            expected
                .as_bytes()
                .ct_eq(auth.signature.to_ascii_lowercase().as_bytes()),
        ) {
            return Err(mismatch());
        }
        if headers.contains_key("x-amz-security-token") {
            return Err(ApiError::new(
                ErrorKind::UnrecognizedClient,
                "The security token included in the request is invalid",
            ));
        }
        Ok(Principal {
            access_key_id: key.access_key_id.clone(),
            role: key.role,
            clusters: key.clusters.clone(),
            node: None,
        })
    }
}

/// Refuses a request signed more than [`MAX_CLOCK_SKEW`] before or after
/// `now`, in AWS's words.
fn check_skew(now: SystemTime, signed_at: SystemTime, amz_date: &str) -> Result<(), ApiError> {
    let (earliest, latest) = (now - MAX_CLOCK_SKEW, now + MAX_CLOCK_SKEW);
    let message = if signed_at < earliest {
        format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - 5 min.)",
            format_amz_date(earliest),
            format_amz_date(now)
        )
    } else if signed_at > latest {
        format!(
            "Signature not yet current: {amz_date} is still later than {} ({} + 5 min.)",
            format_amz_date(latest),
            format_amz_date(now)
        )
    } else {
        return Ok(());
    };
    Err(ApiError::new(ErrorKind::InvalidSignature, message))
}

/// The answer to a wrong signature (AWS's words), saying nothing of what was
/// expected.
fn mismatch() -> ApiError {
    ApiError::new(
        ErrorKind::InvalidSignature,
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS Secret Access Key and signing method. \
         Consult the service documentation for details.",
    )
}

/// The signature the client should have sent, computed by aws-sigv4's signer
/// (the SDKs' own canonicalisation) over exactly the headers the client says
/// it signed: every request the fast path ([`fast::signature`]) does not take.
fn sdk_signature(
    key: &ApiKey,
    credential: &Credential<'_>,
    auth: &AuthorizationHeader<'_>,
    signed_at: SystemTime,
    request: &RequestToVerify<'_>,
) -> Result<String, ApiError> {
    // Hand the signer exactly the headers the client signed (a session token
    // among them is one more header); it adds host and x-amz-date itself from
    // what we pass. A signed header that is missing or not ASCII cannot match.
    let mut signed_headers: Vec<(&str, &str)> = Vec::with_capacity(auth.signed_headers.len());
    for name in &auth.signed_headers {
        let mut found = false;
        for value in request.headers.get_all(*name) {
            signed_headers.push((name, value.to_str().map_err(|_| mismatch())?));
            found = true;
        }
        if !found {
            return Err(mismatch());
        }
    }
    let identity: Identity = Credentials::new(
        key.access_key_id.clone(),
        key.secret_access_key.expose().to_owned(),
        None,
        None,
        "podid-keys-file",
    )
    .into();
    let mut settings = SigningSettings::default();
    // Sign every header the client listed, even those the SDK would exclude.
    settings.excluded_headers = Some(Vec::<Cow<'static, str>>::new());
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(credential.region)
        .name(credential.service)
        .time(signed_at)
        .settings(settings)
        .build()
        .map_err(|_| mismatch())?
        .into();
    let path_and_query = request
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    // The authority is a placeholder: the signer takes the host from the signed
    // Host header, which is always present (checked above).
    let target = format!("http://podid.invalid{path_and_query}");
    let signable = SignableRequest::new(
        request.method,
        target,
        signed_headers.into_iter(),
        SignableBody::Bytes(request.body),
    )
    .map_err(|_| mismatch())?;
    let output = sign(signable, &params).map_err(|_| mismatch())?;
    Ok(output.signature().to_owned())
}

#[cfg(test)]
mod differential_tests;
#[cfg(test)]
mod scope_tests;
#[cfg(test)]
mod tests;
