//! SigV4 authentication of API requests: who signed a request, checked
//! against the keys file's keys with the SDKs' own canonicalisation.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use podid_api::{ApiError, ErrorKind};
use subtle::ConstantTimeEq;

use self::fast::SigningKeyCache;
use self::header::{parse_amz_date, parse_authorization, AuthorizationHeader};
use crate::authz::Principal;
use crate::keys::{ApiKey, KeyRing};

mod fast;
mod header;

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
    /// Who sent the request whose head is `parts` and body `body`, at `now`.
    pub(crate) fn authenticate(
        &self,
        now: SystemTime,
        parts: &http::request::Parts,
        body: &[u8],
    ) -> Result<Principal, ApiError> {
        match self {
            Authentication::Disabled => Ok(Principal::anonymous()),
            Authentication::SigV4(verifier) => {
                verifier.verify(now, parts.method.as_str(), &parts.uri, &parts.headers, body)
            }
        }
    }
}

/// A request as its signature covers it: `uri` as received (path and query,
/// still percent-encoded), `body` complete.
struct RequestToVerify<'a> {
    method: &'a str,
    uri: &'a http::Uri,
    headers: &'a http::HeaderMap,
    body: &'a [u8],
}

/// Checks SigV4 signatures against a [`KeyRing`], keeping the signing keys
/// it derives (one HMAC per request instead of five).
#[derive(Debug)]
pub struct SigV4Verifier {
    keys: KeyRing,
    signing_keys: SigningKeyCache,
}

impl SigV4Verifier {
    /// A verifier of requests signed by `keys`.
    pub fn new(keys: KeyRing) -> Self {
        SigV4Verifier {
            keys,
            signing_keys: SigningKeyCache::default(),
        }
    }

    /// The keys.
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// Verifies a SigV4-signed request and says who sent it.
    ///
    /// `uri` is the request target as received (path and query, still
    /// percent-encoded); `body` the complete body. Errors are the AWS ones:
    /// `MissingAuthenticationTokenException`, `UnrecognizedClientException`,
    /// `InvalidSignatureException` — all 403, and none reveals what the server
    /// expected.
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
                    ErrorKind::InvalidSignature,
                    "Authorization header is not ASCII",
                )
            })?;
        let auth = parse_authorization(authorization)?;
        let key = self.keys.get(auth.access_key_id).ok_or_else(|| {
            ApiError::new(
                ErrorKind::UnrecognizedClient,
                "The security token included in the request is invalid.",
            )
        })?;

        let amz_date = headers
            .get("x-amz-date")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ApiError::new(
                    ErrorKind::InvalidSignature,
                    "the request must carry an X-Amz-Date header",
                )
            })?;
        let signed_at = parse_amz_date(amz_date).ok_or_else(|| {
            ApiError::new(
                ErrorKind::InvalidSignature,
                "X-Amz-Date must be YYYYMMDDTHHMMSSZ",
            )
        })?;
        if !amz_date.starts_with(auth.date) || auth.date.len() != 8 {
            return Err(ApiError::new(
                ErrorKind::InvalidSignature,
                "the credential scope date does not match X-Amz-Date",
            ));
        }
        let skew = now
            .duration_since(signed_at)
            .unwrap_or_else(|e| e.duration());
        if skew > MAX_CLOCK_SKEW {
            return Err(ApiError::new(
                ErrorKind::InvalidSignature,
                format!(
                    "Signature expired: {amz_date} is more than 5 minutes away \
                     from the server's time"
                ),
            ));
        }

        let request = RequestToVerify {
            method,
            uri,
            headers,
            body,
        };
        let expected = match fast::signature(
            &self.signing_keys,
            key,
            &auth,
            &request,
            amz_date,
            signed_at,
        ) {
            Some(signature) => signature,
            None => sdk_signature(key, &auth, signed_at, &request)?,
        };
        if expected
            .as_bytes()
            .ct_eq(auth.signature.to_ascii_lowercase().as_bytes())
            .into()
        {
            Ok(Principal {
                access_key_id: key.access_key_id.clone(),
                role: key.role,
            })
        } else {
            Err(mismatch())
        }
    }
}

/// The answer to a wrong signature, saying nothing of what was expected.
fn mismatch() -> ApiError {
    ApiError::new(
        ErrorKind::InvalidSignature,
        "The request signature we calculated does not match the signature you provided.",
    )
}

/// The signature the client should have sent, computed by aws-sigv4's signer
/// (the SDKs' own canonicalisation) over exactly the headers the client says
/// it signed: every request the fast path ([`fast::signature`]) does not take.
fn sdk_signature(
    key: &ApiKey,
    auth: &AuthorizationHeader<'_>,
    signed_at: SystemTime,
    request: &RequestToVerify<'_>,
) -> Result<String, ApiError> {
    // Hand the signer exactly the headers the client signed; it adds host and
    // x-amz-date itself from what we pass.
    let mut signed_headers: Vec<(&str, &str)> = Vec::with_capacity(auth.signed_headers.len());
    for name in &auth.signed_headers {
        let mut found = false;
        for value in request.headers.get_all(*name) {
            let value = value.to_str().map_err(|_| {
                ApiError::new(
                    ErrorKind::InvalidSignature,
                    format!("signed header '{name}' is not ASCII"),
                )
            })?;
            signed_headers.push((name, value));
            found = true;
        }
        if !found {
            return Err(ApiError::new(
                ErrorKind::InvalidSignature,
                format!("signed header '{name}' is missing"),
            ));
        }
    }
    let session_token = request
        .headers
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let identity: Identity = Credentials::new(
        key.access_key_id.clone(),
        key.secret_access_key.expose().to_owned(),
        session_token,
        None,
        "podid-keys-file",
    )
    .into();
    let mut settings = SigningSettings::default();
    // Sign every header the client listed, even those the SDK would exclude.
    settings.excluded_headers = Some(Vec::<Cow<'static, str>>::new());
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(auth.region)
        .name(auth.service)
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
mod tests;
