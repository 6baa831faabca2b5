//! Parsing of the SigV4 `Authorization` and `X-Amz-Date` headers, with the
//! errors AWS answers for each malformed part.

use std::time::SystemTime;

use podid_api::{ApiError, ErrorKind};
use time::macros::format_description;
use time::PrimitiveDateTime;

/// The only algorithm accepted.
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct AuthorizationHeader<'a> {
    /// `KEY/DATE/REGION/SERVICE/aws4_request`, not yet split.
    pub(super) credential: &'a str,
    pub(super) signed_headers: Vec<&'a str>,
    pub(super) signature: &'a str,
}

/// The credential scope, split.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Credential<'a> {
    pub(super) access_key_id: &'a str,
    pub(super) date: &'a str,
    pub(super) region: &'a str,
    pub(super) service: &'a str,
    pub(super) terminator: &'a str,
}

fn incomplete(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::IncompleteSignature, message)
}

/// The `Authorization` header's three parameters, and `X-Amz-Date`: AWS's
/// `MissingAuthenticationTokenException` when the header is no AWS4 one,
/// `IncompleteSignatureException` naming every missing part.
pub(super) fn parse_authorization<'a>(
    value: &'a str,
    amz_date: Option<&'a str>,
) -> Result<(AuthorizationHeader<'a>, &'a str), ApiError> {
    let (algorithm, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !algorithm.starts_with("AWS4-") {
        return Err(ApiError::new(
            ErrorKind::MissingAuthenticationToken,
            "Missing Authentication Token",
        ));
    }
    if algorithm != ALGORITHM {
        return Err(incomplete(format!(
            "Unsupported AWS 'algorithm': '{algorithm}' (only {ALGORITHM} for now)."
        )));
    }
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
    let mut missing = String::new();
    for (name, part) in [
        ("Credential", credential),
        ("Signature", signature),
        ("SignedHeaders", signed),
    ] {
        if part.is_none_or(str::is_empty) {
            missing.push_str(&format!(
                "Authorization header requires '{name}' parameter. "
            ));
        }
    }
    if amz_date.is_none() {
        missing.push_str("Authorization header requires existence of a 'X-Amz-Date' header.");
    }
    match (credential, signed, signature, amz_date) {
        (Some(credential), Some(signed), Some(signature), Some(amz_date)) if missing.is_empty() => {
            Ok((
                AuthorizationHeader {
                    credential,
                    signed_headers: signed.split(';').collect(),
                    signature,
                },
                amz_date,
            ))
        }
        _ => Err(incomplete(missing.trim_end())),
    }
}

/// `X-Amz-Date` as a time: `YYYYMMDDTHHMMSSZ` exactly, else AWS's
/// `IncompleteSignatureException`.
pub(super) fn parse_amz_date(value: &str) -> Result<SystemTime, ApiError> {
    let format = format_description!("[year][month][day]T[hour][minute][second]Z");
    match PrimitiveDateTime::parse(value, &format) {
        Ok(t) if value.len() == 16 => Ok(SystemTime::from(t.assume_utc())),
        _ => Err(incomplete(format!(
            "Date must be in ISO-8601 'basic format'. Got '{value}'. \
             See http://en.wikipedia.org/wiki/ISO_8601"
        ))),
    }
}

/// `time` as `YYYYMMDDTHHMMSSZ` (whole seconds).
pub(super) fn format_amz_date(time: SystemTime) -> String {
    let format = format_description!("[year][month][day]T[hour][minute][second]Z");
    time::OffsetDateTime::from(time)
        .format(&format)
        .unwrap_or_default()
}

/// The credential scope's five parts, else AWS's `IncompleteSignatureException`.
pub(super) fn split_credential(credential: &str) -> Result<Credential<'_>, ApiError> {
    let mut parts = credential.split('/');
    let parts: [Option<&str>; 6] = std::array::from_fn(|_| parts.next());
    match parts {
        [Some(access_key_id), Some(date), Some(region), Some(service), Some(terminator), None] => {
            Ok(Credential {
                access_key_id,
                date,
                region,
                service,
                terminator,
            })
        }
        _ => Err(incomplete(format!(
            "Credential must have exactly 5 slash-delimited elements, \
             e.g. keyid/date/region/service/term, got '{credential}'"
        ))),
    }
}

/// The scope checked, with AWS's `InvalidSignatureException` messages: its
/// region against `region` (the server's; `None` takes any), its service
/// against `service` (the operation's), its terminator, and its date against
/// `X-Amz-Date`. The region and service messages are AWS's words as its
/// JSON services answer them: "Credential should be scoped to a valid region,
/// not 'eu-west-1'." (quoted in aws/aws-sdk-ruby#508, joona/aws-es-curl#15)
/// and "Credential should be scoped to correct service: 'batch'." (quoted in
/// cllunsford/aws-signing-proxy#25); neither names the server's region.
pub(super) fn check_scope(
    credential: &Credential<'_>,
    amz_date: &str,
    region: Option<&str>,
    service: &str,
) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    if region.is_some_and(|r| r != credential.region) {
        errors.push(format!(
            "Credential should be scoped to a valid region, not '{}'.",
            credential.region
        ));
    }
    if credential.service != service {
        errors.push(format!(
            "Credential should be scoped to correct service: '{service}'."
        ));
    }
    if credential.terminator != "aws4_request" {
        errors.push(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{}'.",
            credential.terminator
        ));
    }
    // `amz_date` is valid ASCII `YYYYMMDDTHHMMSSZ` here.
    let day = amz_date.get(..8).unwrap_or(amz_date);
    if credential.date != day {
        errors.push(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date \
             from HTTP: '{}' != '{day}', from '{amz_date}'.",
            credential.date
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::new(ErrorKind::InvalidSignature, errors.join(" ")))
    }
}

/// `SignedHeaders` as the SDKs write it: lowercase names, sorted, each once,
/// `x-amz-date` among them (the signer always signs it).
pub(super) fn is_canonical_list(names: &[&str]) -> bool {
    names
        .iter()
        .all(|n| !n.is_empty() && !n.bytes().any(|c| c.is_ascii_uppercase()))
        && names.windows(2).all(|w| w[0] < w[1])
        && names.contains(&"x-amz-date")
}
