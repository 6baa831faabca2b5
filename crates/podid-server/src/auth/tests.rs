use podid_test_support::sigv4::Signer;

use super::*;
use crate::authz::{Clusters, Role};

pub(super) const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

fn ring() -> KeyRing {
    KeyRing::parse(&format!(
        "[[key]]\naccess_key_id = \"AKIDEXAMPLE\"\nsecret_access_key = \"{SECRET}\"\nrole = \"admin\"\n"
    ))
    .unwrap()
}

/// A verifier for the server's region, `us-east-1`.
pub(super) fn verifier() -> SigV4Verifier {
    SigV4Verifier::for_region(ring(), "us-east-1")
}

/// Signs a request the way an SDK does, with aws-sigv4's defaults.
fn signed(
    method: &str,
    uri: &str,
    body: &[u8],
    at: SystemTime,
    secret: &str,
) -> (http::Uri, http::HeaderMap) {
    let headers = [
        ("content-type", "application/json"),
        ("host", "localhost:8080"),
    ];
    signed_as(
        method,
        uri,
        body,
        at,
        secret,
        None,
        ("us-east-1", "eks"),
        &headers,
    )
}

/// The same with a session token, a scope and the headers to sign.
#[allow(clippy::too_many_arguments)]
pub(super) fn signed_as(
    method: &str,
    uri: &str,
    body: &[u8],
    at: SystemTime,
    secret: &str,
    token: Option<&str>,
    (region, service): (&str, &str),
    headers: &[(&str, &str)],
) -> (http::Uri, http::HeaderMap) {
    let signer = Signer {
        access_key_id: "AKIDEXAMPLE",
        secret_access_key: secret,
        session_token: token,
        region,
        service,
        time: at,
        every_header: false,
    };
    let full = format!("http://localhost:8080{uri}");
    let mut request = http::Request::builder().method(method).uri(&full);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    for (k, v) in signer.headers(method, &full, headers, body).unwrap() {
        request = request.header(k, v);
    }
    let (parts, ()) = request.body(()).unwrap().into_parts();
    (parts.uri, parts.headers)
}

#[test]
fn accepts_a_correct_signature_and_names_the_caller() {
    let now = SystemTime::now();
    let uri = "/clusters/blue/pod-identity-associations?maxResults=5&namespace=default";
    let (uri, headers) = signed("GET", uri, b"", now, SECRET);
    let p = verifier().verify(now, "GET", &uri, &headers, b"").unwrap();
    assert_eq!(
        p,
        Principal {
            access_key_id: "AKIDEXAMPLE".into(),
            role: Role::Admin,
            clusters: Clusters::All,
            node: None,
        }
    );
}

#[test]
fn accepts_encoded_path_labels() {
    let now = SystemTime::now();
    let uri =
        "/tags/arn%3Aaws%3Aeks%3Aus-east-1%3A111122223333%3Apodidentityassociation%2Fblue%2Fa-0123456789abcdefg";
    let (uri, headers) = signed("GET", uri, b"", now, SECRET);
    assert!(verifier().verify(now, "GET", &uri, &headers, b"").is_ok());
}

/// AWS's answer to a wrong signature (as its JSON services word it).
const MISMATCH: &str = "The request signature we calculated does not match the signature you \
     provided. Check your AWS Secret Access Key and signing method. Consult the service \
     documentation for details.";

#[test]
fn refuses_tampering_wrong_secret_unknown_key_skew_and_missing_auth() {
    let now = SystemTime::now();
    let body = br#"{"namespace":"default"}"#;
    let (uri, headers) = signed(
        "POST",
        "/clusters/blue/pod-identity-associations",
        body,
        now,
        SECRET,
    );
    let refused = |now, method, headers: &http::HeaderMap, body: &[u8]| {
        let e = verifier()
            .verify(now, method, &uri, headers, body)
            .unwrap_err();
        (e.kind.name(), e.kind.status(), e.message)
    };
    let mismatch = ("InvalidSignatureException", 403, MISMATCH.to_owned());

    let tampered = refused(now, "POST", &headers, br#"{"namespace":"other"}"#);
    assert_eq!(tampered, mismatch);
    assert_eq!(refused(now, "PUT", &headers, body), mismatch);

    let (_, headers2) = signed(
        "POST",
        "/clusters/blue/pod-identity-associations",
        body,
        now,
        "another-secret-entirely",
    );
    assert_eq!(refused(now, "POST", &headers2, body), mismatch);

    let mut unknown = headers.clone();
    let auth = unknown
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap()
        .replace("AKIDEXAMPLE", "AKIDUNKNOWN");
    unknown.insert("authorization", auth.parse().unwrap());
    assert_eq!(
        refused(now, "POST", &unknown, body),
        (
            "UnrecognizedClientException",
            403,
            "The security token included in the request is invalid.".to_owned()
        )
    );

    let amz = headers.get("x-amz-date").unwrap().to_str().unwrap();
    for skew in [Duration::from_secs(301), Duration::from_secs(3600)] {
        let (name, status, message) = refused(now + skew, "POST", &headers, body);
        assert_eq!((name, status), ("InvalidSignatureException", 403));
        let expired = format!("Signature expired: {amz} is now earlier than ");
        assert!(message.starts_with(&expired), "{message}");
        assert!(message.ends_with(" - 5 min.)"), "{message}");
        let (name, status, message) = refused(now - skew, "POST", &headers, body);
        assert_eq!((name, status), ("InvalidSignatureException", 403));
        let early = format!("Signature not yet current: {amz} is still later than ");
        assert!(message.starts_with(&early), "{message}");
        assert!(message.ends_with(" + 5 min.)"), "{message}");
    }
    for skew in [Duration::from_secs(299), Duration::ZERO] {
        let v = verifier();
        assert!(v.verify(now + skew, "POST", &uri, &headers, body).is_ok());
        assert!(v.verify(now - skew, "POST", &uri, &headers, body).is_ok());
    }

    let mut none = headers.clone();
    none.remove("authorization");
    assert_eq!(
        refused(now, "POST", &none, body),
        (
            "MissingAuthenticationTokenException",
            403,
            "Missing Authentication Token".to_owned()
        )
    );
}

/// The exact answers of AWS's own checks, in AWS's order: the literals are
/// AWS's messages (IAM "Troubleshoot signed requests", as services send them).
#[test]
fn each_malformed_part_gets_the_aws_error() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600); // 2026-01-01
    let sig = "0".repeat(64);
    let cred = "AKIDEXAMPLE/20260101/us-east-1/eks/aws4_request";
    let day = Some("20260101T000000Z");
    let incomplete = ("IncompleteSignatureException", 400);
    let invalid = ("InvalidSignatureException", 403);
    let missing = ("MissingAuthenticationTokenException", 403);
    // (Authorization, X-Amz-Date, (__type, status), message)
    type Case<'a> = (String, Option<&'a str>, (&'a str, u16), String);
    let cases: Vec<Case<'_>> = vec![
        (
            "Basic abc".into(),
            day,
            missing,
            "Missing Authentication Token".into(),
        ),
        (
            "".into(),
            day,
            missing,
            "Missing Authentication Token".into(),
        ),
        (
            "AWS4-HMAC-SHA1 Credential=a".into(),
            day,
            incomplete,
            "Unsupported AWS 'algorithm': 'AWS4-HMAC-SHA1' (only AWS4-HMAC-SHA256 for now).".into(),
        ),
        (
            "AWS4-HMAC-SHA256".into(),
            None,
            incomplete,
            "Authorization header requires 'Credential' parameter. Authorization header \
             requires 'Signature' parameter. Authorization header requires 'SignedHeaders' \
             parameter. Authorization header requires existence of a 'X-Amz-Date' header."
                .into(),
        ),
        (
            format!("AWS4-HMAC-SHA256 Credential={cred}, SignedHeaders=host;x-amz-date"),
            day,
            incomplete,
            "Authorization header requires 'Signature' parameter.".into(),
        ),
        (
            format!(
                "AWS4-HMAC-SHA256 Credential={cred}, SignedHeaders=host;x-amz-date, Signature="
            ),
            day,
            incomplete,
            "Authorization header requires 'Signature' parameter.".into(),
        ),
        (
            format!(
                "AWS4-HMAC-SHA256 Credential={cred}, SignedHeaders=host;x-amz-date, Signature={sig}"
            ),
            Some("+20260101T000000Z"),
            incomplete,
            "Date must be in ISO-8601 'basic format'. Got '+20260101T000000Z'. \
             See http://en.wikipedia.org/wiki/ISO_8601"
                .into(),
        ),
        (
            format!(
                "AWS4-HMAC-SHA256 Credential={cred}, SignedHeaders=host;x-amz-date, Signature={sig}"
            ),
            None,
            incomplete,
            "Authorization header requires existence of a 'X-Amz-Date' header.".into(),
        ),
        (
            format!(
                "AWS4-HMAC-SHA256 Credential={cred}, SignedHeaders=host;x-amz-date, Signature={sig}"
            ),
            Some("2026-01-01T00:00:00Z"),
            incomplete,
            "Date must be in ISO-8601 'basic format'. Got '2026-01-01T00:00:00Z'. \
             See http://en.wikipedia.org/wiki/ISO_8601"
                .into(),
        ),
        (
            format!(
                "AWS4-HMAC-SHA256 Credential={cred}, SignedHeaders=x-amz-date, Signature={sig}"
            ),
            day,
            invalid,
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".into(),
        ),
        (
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE, SignedHeaders=host;x-amz-date, \
                 Signature={sig}"
            ),
            day,
            incomplete,
            "Credential must have exactly 5 slash-delimited elements, e.g. \
             keyid/date/region/service/term, got 'AKIDEXAMPLE'"
                .into(),
        ),
        (
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20251231/us-east-1/eks/aws5_request, \
                 SignedHeaders=host;x-amz-date, Signature={sig}"
            ),
            day,
            invalid,
            "Credential should be scoped with a valid terminator: 'aws4_request', not \
             'aws5_request'. Date in Credential scope does not match YYYYMMDD from ISO-8601 \
             version of date from HTTP: '20251231' != '20260101', from '20260101T000000Z'."
                .into(),
        ),
        (
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDNOBODY/20260101/eu-west-1/eks/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature={sig}"
            ),
            day,
            invalid,
            "Credential should be scoped to a valid region, not 'eu-west-1'.".into(),
        ),
        (
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/eks-auth/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature={sig}"
            ),
            day,
            invalid,
            "Credential should be scoped to correct service: 'eks'.".into(),
        ),
        (
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20251231/us-west-2/sts/aws5_request, \
                 SignedHeaders=host;x-amz-date, Signature={sig}"
            ),
            day,
            invalid,
            "Credential should be scoped to a valid region, not 'us-west-2'. Credential should \
             be scoped to correct service: 'eks'. Credential should be scoped with a valid \
             terminator: 'aws4_request', not 'aws5_request'. Date in Credential scope does not \
             match YYYYMMDD from ISO-8601 version of date from HTTP: '20251231' != '20260101', \
             from '20260101T000000Z'."
                .into(),
        ),
        (
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIDNOBODY/20260101/us-east-1/eks/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature={sig}"
            ),
            day,
            ("UnrecognizedClientException", 403),
            "The security token included in the request is invalid.".into(),
        ),
        (
            format!(
                "AWS4-HMAC-SHA256 Credential={cred}, SignedHeaders=host;x-amz-date;x-missing, \
                 Signature={sig}"
            ),
            day,
            invalid,
            MISMATCH.into(),
        ),
        (
            format!(
                "AWS4-HMAC-SHA256 Credential={cred}, SignedHeaders=host;x-amz-date, Signature=00"
            ),
            day,
            invalid,
            MISMATCH.into(),
        ),
    ];
    for (authorization, amz_date, (name, status), message) in cases {
        let mut headers = http::HeaderMap::new();
        headers.insert("authorization", authorization.parse().unwrap());
        headers.insert("host", "localhost".parse().unwrap());
        if let Some(d) = amz_date {
            headers.insert("x-amz-date", d.parse().unwrap());
        }
        let err = verifier()
            .verify(now, "GET", &"/".parse().unwrap(), &headers, b"")
            .unwrap_err();
        assert_eq!(
            (err.kind.name(), err.kind.status(), err.message.as_str()),
            (name, status, message.as_str()),
            "{authorization}"
        );
    }
}

/// `YYYYMMDD` of `at`.
pub(super) fn date_of(at: SystemTime) -> String {
    let t = time::OffsetDateTime::from(at);
    format!("{:04}{:02}{:02}", t.year(), u8::from(t.month()), t.day())
}

#[test]
fn signing_keys_are_kept_per_scope_and_bounded() {
    const OTHER_SECRET: &str = "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY";
    let verifier = SigV4Verifier::new(
        KeyRing::parse(&format!(
            "[[key]]\naccess_key_id = \"AKIDEXAMPLE\"\nsecret_access_key = \"{SECRET}\"\nrole = \"admin\"\n\
             [[key]]\naccess_key_id = \"AKIDOTHER\"\nsecret_access_key = \"{OTHER_SECRET}\"\nrole = \"node\"\n"
        ))
        .unwrap(),
    );
    let day = SystemTime::UNIX_EPOCH + Duration::from_secs(20_000 * 86_400);
    // Each key of each scope is the one aws-sigv4 derives, however the cache
    // was filled before: by the other key, another day, region or service.
    let scopes = [
        ("AKIDEXAMPLE", SECRET, day, "us-east-1", "eks"),
        ("AKIDOTHER", OTHER_SECRET, day, "us-east-1", "eks"),
        (
            "AKIDEXAMPLE",
            SECRET,
            day + Duration::from_secs(60),
            "us-east-1",
            "eks",
        ),
        (
            "AKIDEXAMPLE",
            SECRET,
            day + Duration::from_secs(86_400),
            "us-east-1",
            "eks",
        ),
        ("AKIDEXAMPLE", SECRET, day, "us-east-1", "eks-auth"),
        ("AKIDEXAMPLE", SECRET, day, "eu-west-1", "eks"),
        ("AKIDOTHER", OTHER_SECRET, day, "us-east-1", "eks-auth"),
        ("AKIDEXAMPLE", SECRET, day, "us-east-1", "eks"),
    ];
    let ring = verifier.keys();
    let signing_keys = &verifier.current().signing_keys;
    for (id, secret, at, region, service) in scopes {
        let key = ring.get(id).unwrap();
        let expected = aws_sigv4::sign::v4::generate_signing_key(secret, at, region, service);
        assert_eq!(
            signing_keys.derived_for_test(key, at, region, service),
            expected.as_ref(),
            "{id} {region} {service}"
        );
    }
    let key = ring.get("AKIDEXAMPLE").unwrap();
    for i in 0..100 {
        signing_keys.derived_for_test(key, day, &format!("r{i}"), "eks");
    }
    assert!(signing_keys.len() <= 16);
    assert!(!format!("{:?}", verifier).contains(SECRET));
}

/// docs/api.md: refused only when *more than* 5 minutes off, in AWS's words.
#[test]
fn skew_of_exactly_five_minutes_is_accepted() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000); // 2023-11-14T22:13:20Z
    let at = |offset: i64| {
        let by = Duration::from_secs(offset.unsigned_abs());
        let shifted = if offset < 0 { now - by } else { now + by };
        (shifted, format_amz_date(shifted))
    };
    for offset in [-300, 0, 300] {
        let (signed_at, amz_date) = at(offset);
        assert_eq!(check_skew(now, signed_at, &amz_date), Ok(()), "{offset}");
    }
    let (signed_at, amz_date) = at(-301);
    let e = check_skew(now, signed_at, &amz_date).unwrap_err();
    assert_eq!(e.kind.name(), "InvalidSignatureException");
    assert_eq!(
        e.message,
        "Signature expired: 20231114T220819Z is now earlier than 20231114T220820Z \
         (20231114T221320Z - 5 min.)"
    );
    let (signed_at, amz_date) = at(301);
    let e = check_skew(now, signed_at, &amz_date).unwrap_err();
    assert_eq!(
        e.message,
        "Signature not yet current: 20231114T221821Z is still later than 20231114T221820Z \
         (20231114T221320Z + 5 min.)"
    );
}

/// docs/api.md: `SignedHeaders` as the SDKs write it — lowercase, sorted, each
/// name once, `x-amz-date` among them.
#[test]
fn signed_headers_must_be_listed_as_sdks_list_them() {
    use super::header::is_canonical_list;
    assert!(is_canonical_list(&["host", "x-amz-date"]));
    assert!(is_canonical_list(&[
        "content-type",
        "host",
        "x-amz-date",
        "x-amz-security-token"
    ]));
    for list in [
        &["host", "host", "x-amz-date"][..],
        &["x-amz-date", "host"],
        &["Host", "x-amz-date"],
        &["host"],
        &["", "host", "x-amz-date"],
    ] {
        assert!(!is_canonical_list(list), "{list:?}");
    }
}
