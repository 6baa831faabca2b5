//! SigV4 authentication of API requests.
//!
//! The server recomputes the client's signature with the aws-sigv4 crate — the
//! same canonicalisation the AWS SDKs use — over exactly the headers the client
//! says it signed, and compares in constant time.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use podid_api::{ApiError, ErrorKind};
use subtle::ConstantTimeEq;
use time::macros::format_description;
use time::PrimitiveDateTime;

use crate::keys::{KeyRing, Role};

/// Requests signed further than this from the server's clock are refused.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// Who made an authenticated request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The access key id the request was signed with (safe to log).
    pub access_key_id: String,
    /// The key's role.
    pub role: Role,
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
#[derive(Debug, PartialEq, Eq)]
struct AuthorizationHeader<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<AuthorizationHeader<'_>, ApiError> {
    let incomplete = |what: &str| {
        ApiError::new(ErrorKind::InvalidSignature, format!("Authorization header is not a valid SigV4 header: {what}"))
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
    let (Some(access_key_id), Some(date), Some(region), Some(service), Some("aws4_request"), None) =
        (scope.next(), scope.next(), scope.next(), scope.next(), scope.next(), scope.next())
    else {
        return Err(incomplete("Credential must be KEY/DATE/REGION/SERVICE/aws4_request"));
    };
    if signature.len() != 64 || !signature.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(incomplete("Signature must be 64 hexadecimal digits"));
    }
    let signed_headers: Vec<&str> = signed.split(';').collect();
    if !signed_headers.contains(&"host") {
        return Err(incomplete("the host header must be signed"));
    }
    Ok(AuthorizationHeader { access_key_id, date, region, service, signed_headers, signature })
}

fn parse_amz_date(value: &str) -> Option<SystemTime> {
    let format = format_description!("[year][month][day]T[hour][minute][second]Z");
    PrimitiveDateTime::parse(value, &format).ok().map(|t| SystemTime::from(t.assume_utc()))
}

/// Verifies a SigV4-signed request and says who sent it.
///
/// `uri` is the request target as received (path and query, still
/// percent-encoded); `body` the complete body. Errors are the AWS ones:
/// `MissingAuthenticationTokenException`, `UnrecognizedClientException`,
/// `InvalidSignatureException` — all 403, and none reveals what the server
/// expected.
pub fn verify_request(
    keys: &KeyRing,
    now: SystemTime,
    method: &str,
    uri: &http::Uri,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<Principal, ApiError> {
    let authorization = headers
        .get(http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::new(ErrorKind::MissingAuthenticationToken, "Missing Authentication Token"))?
        .to_str()
        .map_err(|_| ApiError::new(ErrorKind::InvalidSignature, "Authorization header is not ASCII"))?;
    let auth = parse_authorization(authorization)?;
    let key = keys.get(auth.access_key_id).ok_or_else(|| {
        ApiError::new(ErrorKind::UnrecognizedClient, "The security token included in the request is invalid.")
    })?;

    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::new(ErrorKind::InvalidSignature, "the request must carry an X-Amz-Date header"))?;
    let signed_at = parse_amz_date(amz_date)
        .ok_or_else(|| ApiError::new(ErrorKind::InvalidSignature, "X-Amz-Date must be YYYYMMDDTHHMMSSZ"))?;
    if !amz_date.starts_with(auth.date) || auth.date.len() != 8 {
        return Err(ApiError::new(ErrorKind::InvalidSignature, "the credential scope date does not match X-Amz-Date"));
    }
    let skew = now.duration_since(signed_at).unwrap_or_else(|e| e.duration());
    if skew > MAX_CLOCK_SKEW {
        return Err(ApiError::new(
            ErrorKind::InvalidSignature,
            format!("Signature expired: {amz_date} is more than 5 minutes away from the server's time"),
        ));
    }

    // Hand the signer exactly the headers the client signed; it adds host and
    // x-amz-date itself from what we pass.
    let mut signed_headers: Vec<(&str, &str)> = Vec::with_capacity(auth.signed_headers.len());
    for name in &auth.signed_headers {
        let mut found = false;
        for value in headers.get_all(*name) {
            let value = value.to_str().map_err(|_| {
                ApiError::new(ErrorKind::InvalidSignature, format!("signed header '{name}' is not ASCII"))
            })?;
            signed_headers.push((name, value));
            found = true;
        }
        if !found {
            return Err(ApiError::new(ErrorKind::InvalidSignature, format!("signed header '{name}' is missing")));
        }
    }
    let session_token = headers.get("x-amz-security-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
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
    let bad = || {
        ApiError::new(
            ErrorKind::InvalidSignature,
            "The request signature we calculated does not match the signature you provided.",
        )
    };
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(auth.region)
        .name(auth.service)
        .time(signed_at)
        .settings(settings)
        .build()
        .map_err(|_| bad())?
        .into();
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    // The authority is a placeholder: the signer takes the host from the signed
    // Host header, which is always present (checked above).
    let target = format!("http://podid.invalid{path_and_query}");
    let request = SignableRequest::new(method, target, signed_headers.into_iter(), SignableBody::Bytes(body))
        .map_err(|_| bad())?;
    let output = sign(request, &params).map_err(|_| bad())?;
    let expected = output.signature().as_bytes();
    if expected.ct_eq(auth.signature.to_ascii_lowercase().as_bytes()).into() {
        Ok(Principal { access_key_id: key.access_key_id.clone(), role: key.role })
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn ring() -> KeyRing {
        KeyRing::parse(&format!(
            "[[key]]\naccess_key_id = \"AKIDEXAMPLE\"\nsecret_access_key = \"{SECRET}\"\nrole = \"admin\"\n"
        ))
        .unwrap()
    }

    /// Signs a request the way an SDK does, with aws-sigv4's defaults.
    fn signed(method: &str, uri: &str, body: &[u8], at: SystemTime, secret: &str) -> (http::Uri, http::HeaderMap) {
        let identity: Identity = Credentials::new("AKIDEXAMPLE", secret, None, None, "test").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("eks")
            .time(at)
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let full = format!("http://localhost:8080{uri}");
        let headers = [("content-type", "application/json"), ("host", "localhost:8080")];
        let req = SignableRequest::new(method, full.clone(), headers.into_iter(), SignableBody::Bytes(body)).unwrap();
        let (instructions, _) = sign(req, &params).unwrap().into_parts();
        let mut request = http::Request::builder().method(method).uri(&full);
        for (k, v) in headers {
            request = request.header(k, v);
        }
        let mut request = request.body(()).unwrap();
        instructions.apply_to_request_http1x(&mut request);
        let (parts, ()) = request.into_parts();
        (parts.uri, parts.headers)
    }

    #[test]
    fn accepts_a_correct_signature_and_names_the_caller() {
        let now = SystemTime::now();
        let uri = "/clusters/blue/pod-identity-associations?maxResults=5&namespace=default";
        let (uri, headers) = signed("GET", uri, b"", now, SECRET);
        let p = verify_request(&ring(), now, "GET", &uri, &headers, b"").unwrap();
        assert_eq!(p, Principal { access_key_id: "AKIDEXAMPLE".into(), role: Role::Admin });
    }

    #[test]
    fn accepts_encoded_path_labels() {
        let now = SystemTime::now();
        let uri =
            "/tags/arn%3Aaws%3Aeks%3Aus-east-1%3A111122223333%3Apodidentityassociation%2Fblue%2Fa-0123456789abcdefg";
        let (uri, headers) = signed("GET", uri, b"", now, SECRET);
        assert!(verify_request(&ring(), now, "GET", &uri, &headers, b"").is_ok());
    }

    #[test]
    fn refuses_tampering_wrong_secret_unknown_key_skew_and_missing_auth() {
        let now = SystemTime::now();
        let body = br#"{"namespace":"default"}"#;
        let (uri, headers) = signed("POST", "/clusters/blue/pod-identity-associations", body, now, SECRET);

        let tampered = verify_request(&ring(), now, "POST", &uri, &headers, br#"{"namespace":"other"}"#);
        assert_eq!(tampered.unwrap_err().kind, ErrorKind::InvalidSignature);
        let other_method = verify_request(&ring(), now, "PUT", &uri, &headers, body);
        assert_eq!(other_method.unwrap_err().kind, ErrorKind::InvalidSignature);

        let (uri2, headers2) =
            signed("POST", "/clusters/blue/pod-identity-associations", body, now, "another-secret-entirely");
        assert_eq!(
            verify_request(&ring(), now, "POST", &uri2, &headers2, body).unwrap_err().kind,
            ErrorKind::InvalidSignature
        );

        let mut unknown = headers.clone();
        let auth = unknown.get("authorization").unwrap().to_str().unwrap().replace("AKIDEXAMPLE", "AKIDUNKNOWN");
        unknown.insert("authorization", auth.parse().unwrap());
        assert_eq!(
            verify_request(&ring(), now, "POST", &uri, &unknown, body).unwrap_err().kind,
            ErrorKind::UnrecognizedClient
        );

        for skew in [Duration::from_secs(301), Duration::from_secs(3600)] {
            let late = verify_request(&ring(), now + skew, "POST", &uri, &headers, body).unwrap_err();
            assert_eq!(late.kind, ErrorKind::InvalidSignature);
            assert!(late.message.contains("expired"));
            let early = verify_request(&ring(), now - skew, "POST", &uri, &headers, body).unwrap_err();
            assert_eq!(early.kind, ErrorKind::InvalidSignature);
        }
        assert!(verify_request(&ring(), now + Duration::from_secs(299), "POST", &uri, &headers, body).is_ok());

        let mut none = headers.clone();
        none.remove("authorization");
        assert_eq!(
            verify_request(&ring(), now, "POST", &uri, &none, body).unwrap_err().kind,
            ErrorKind::MissingAuthenticationToken
        );
    }

    #[test]
    fn malformed_headers_are_refused_without_panicking() {
        let now = SystemTime::now();
        for value in [
            "",
            "Basic abc",
            "AWS4-HMAC-SHA256",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE, SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/eks/aws4_request, SignedHeaders=x-amz-date, Signature=0000000000000000000000000000000000000000000000000000000000000000",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/eks/aws4_request, SignedHeaders=host;x-missing, Signature=0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            let mut headers = http::HeaderMap::new();
            headers.insert("authorization", value.parse().unwrap());
            headers.insert("host", "localhost".parse().unwrap());
            headers.insert("x-amz-date", "20260101T000000Z".parse().unwrap());
            let err = verify_request(&ring(), now, "GET", &"/".parse().unwrap(), &headers, b"").unwrap_err();
            assert_eq!(err.kind.status(), 403, "{value}: {err}");
            assert!(!err.message.contains(SECRET));
        }
    }
}
