//! Parsing of the SigV4 `Authorization` and `X-Amz-Date` headers.

use std::time::SystemTime;

use podid_api::{ApiError, ErrorKind};
use time::macros::format_description;
use time::PrimitiveDateTime;

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct AuthorizationHeader<'a> {
    pub(super) access_key_id: &'a str,
    pub(super) date: &'a str,
    pub(super) region: &'a str,
    pub(super) service: &'a str,
    pub(super) signed_headers: Vec<&'a str>,
    pub(super) signature: &'a str,
}

pub(super) fn parse_authorization(value: &str) -> Result<AuthorizationHeader<'_>, ApiError> {
    let incomplete = |what: &str| {
        ApiError::new(
            ErrorKind::InvalidSignature,
            format!("Authorization header is not a valid SigV4 header: {what}"),
        )
    };
    let rest = value.strip_prefix("AWS4-HMAC-SHA256").ok_or_else(|| {
        ApiError::new(
            ErrorKind::MissingAuthenticationToken,
            "Missing Authentication Token: only AWS4-HMAC-SHA256 signatures are accepted",
        )
    })?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let credential = credential.ok_or_else(|| incomplete("no Credential"))?;
    let signed = signed.ok_or_else(|| incomplete("no SignedHeaders"))?;
    let signature = signature.ok_or_else(|| incomplete("no Signature"))?;
    let mut scope = credential.split('/');
    let parts: [Option<&str>; 6] = std::array::from_fn(|_| scope.next());
    let [Some(access_key_id), Some(date), Some(region), Some(service), Some("aws4_request"), None] =
        parts
    else {
        return Err(incomplete(
            "Credential must be KEY/DATE/REGION/SERVICE/aws4_request",
        ));
    };
    if signature.len() != 64 || !signature.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(incomplete("Signature must be 64 hexadecimal digits"));
    }
    let signed_headers: Vec<&str> = signed.split(';').collect();
    if !signed_headers.contains(&"host") {
        return Err(incomplete("the host header must be signed"));
    }
    Ok(AuthorizationHeader {
        access_key_id,
        date,
        region,
        service,
        signed_headers,
        signature,
    })
}

pub(super) fn parse_amz_date(value: &str) -> Option<SystemTime> {
    let format = format_description!("[year][month][day]T[hour][minute][second]Z");
    PrimitiveDateTime::parse(value, &format)
        .ok()
        .map(|t| SystemTime::from(t.assume_utc()))
}
