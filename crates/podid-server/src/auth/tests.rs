use super::*;
use crate::authz::Role;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

fn ring() -> KeyRing {
    KeyRing::parse(&format!(
        "[[key]]\naccess_key_id = \"AKIDEXAMPLE\"\nsecret_access_key = \"{SECRET}\"\nrole = \"admin\"\n"
    ))
    .unwrap()
}

fn verifier() -> SigV4Verifier {
    SigV4Verifier::new(ring())
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
fn signed_as(
    method: &str,
    uri: &str,
    body: &[u8],
    at: SystemTime,
    secret: &str,
    token: Option<&str>,
    (region, service): (&str, &str),
    headers: &[(&str, &str)],
) -> (http::Uri, http::HeaderMap) {
    let identity: Identity = Credentials::new(
        "AKIDEXAMPLE",
        secret,
        token.map(str::to_owned),
        None,
        "test",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(at)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let full = format!("http://localhost:8080{uri}");
    let req = SignableRequest::new(
        method,
        full.clone(),
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(req, &params).unwrap().into_parts();
    let mut request = http::Request::builder().method(method).uri(&full);
    for (k, v) in headers {
        request = request.header(*k, *v);
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
    let p = verifier().verify(now, "GET", &uri, &headers, b"").unwrap();
    assert_eq!(
        p,
        Principal {
            access_key_id: "AKIDEXAMPLE".into(),
            role: Role::Admin
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

    let tampered = verifier().verify(now, "POST", &uri, &headers, br#"{"namespace":"other"}"#);
    assert_eq!(tampered.unwrap_err().kind, ErrorKind::InvalidSignature);
    let other_method = verifier().verify(now, "PUT", &uri, &headers, body);
    assert_eq!(other_method.unwrap_err().kind, ErrorKind::InvalidSignature);

    let (uri2, headers2) = signed(
        "POST",
        "/clusters/blue/pod-identity-associations",
        body,
        now,
        "another-secret-entirely",
    );
    assert_eq!(
        verifier()
            .verify(now, "POST", &uri2, &headers2, body)
            .unwrap_err()
            .kind,
        ErrorKind::InvalidSignature
    );

    let mut unknown = headers.clone();
    let auth = unknown
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap()
        .replace("AKIDEXAMPLE", "AKIDUNKNOWN");
    unknown.insert("authorization", auth.parse().unwrap());
    assert_eq!(
        verifier()
            .verify(now, "POST", &uri, &unknown, body)
            .unwrap_err()
            .kind,
        ErrorKind::UnrecognizedClient
    );

    for skew in [Duration::from_secs(301), Duration::from_secs(3600)] {
        let late = verifier()
            .verify(now + skew, "POST", &uri, &headers, body)
            .unwrap_err();
        assert_eq!(late.kind, ErrorKind::InvalidSignature);
        assert!(late.message.contains("expired"));
        let early = verifier()
            .verify(now - skew, "POST", &uri, &headers, body)
            .unwrap_err();
        assert_eq!(early.kind, ErrorKind::InvalidSignature);
    }
    assert!(verifier()
        .verify(now + Duration::from_secs(299), "POST", &uri, &headers, body)
        .is_ok());

    let mut none = headers.clone();
    none.remove("authorization");
    assert_eq!(
        verifier()
            .verify(now, "POST", &uri, &none, body)
            .unwrap_err()
            .kind,
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
        let err = verifier().verify(now, "GET", &"/".parse().unwrap(), &headers, b"").unwrap_err();
        assert_eq!(err.kind.status(), 403, "{value}: {err}");
        assert!(!err.message.contains(SECRET));
    }
}

/// Requests of many shapes, signed as SDKs sign them (aws-sigv4, default
/// settings, optional session token), then varied the ways a client or an
/// attacker could vary them.
fn variants(now: SystemTime) -> Vec<(&'static str, String, http::HeaderMap, Vec<u8>, bool)> {
    let mut out = Vec::new();
    let paths = [
        "/clusters/blue/assume-role-for-pod-identity",
        "/clusters/b_l-u3/assume-role-for-pod-identity",
        "/",
        "/clusters/blue/pod-identity-associations?maxResults=5&namespace=default",
        "/clusters/a%20b/x",
        "/clusters/./blue/../x",
        "/clusters//blue",
        "/tags/arn%3Aaws%3Aeks",
    ];
    let bodies: [&[u8]; 3] = [b"", br#"{"token":"abc"}"#, &[b'x'; 1400]];
    for (i, path) in paths.iter().enumerate() {
        for (j, body) in bodies.iter().enumerate() {
            for token in [None, Some("FwoGZXIvYXdzEXAMPLETOKEN")] {
                let method = ["POST", "GET", "DELETE"][(i + j) % 3];
                let headers = [
                    ("content-type", "application/json"),
                    ("host", "localhost:8080"),
                    ("amz-sdk-request", "attempt=1; max=3"),
                ];
                let scope = (
                    ["us-east-1", "eu-west-3"][j % 2],
                    ["eks-auth", "eks"][i % 2],
                );
                let (uri, h) = signed_as(method, path, body, now, SECRET, token, scope, &headers);
                let uri = uri.path_and_query().unwrap().as_str().to_owned();
                out.push((method, uri.clone(), h.clone(), body.to_vec(), true));

                // Variations: each must get the same answer from both paths.
                let auth = h.get("authorization").unwrap().to_str().unwrap().to_owned();
                let mut vary = |f: &dyn Fn(&mut http::HeaderMap)| {
                    let mut h2 = h.clone();
                    f(&mut h2);
                    out.push((method, uri.clone(), h2, body.to_vec(), false));
                };
                let swapped = auth.replace("content-type;host", "host;content-type");
                vary(&|m| {
                    m.insert("authorization", swapped.parse().unwrap());
                });
                let upper = auth.replace(
                    "SignedHeaders=amz-sdk-request",
                    "SignedHeaders=Amz-Sdk-Request",
                );
                vary(&|m| {
                    m.insert("authorization", upper.parse().unwrap());
                });
                let no_date = auth.replace(";x-amz-date", "");
                vary(&|m| {
                    m.insert("authorization", no_date.parse().unwrap());
                });
                let no_token = auth.replace(";x-amz-security-token", "");
                vary(&|m| {
                    m.insert("authorization", no_token.parse().unwrap());
                });
                vary(&|m| {
                    m.insert("content-type", " application/json ".parse().unwrap());
                });
                vary(&|m| {
                    m.insert("amz-sdk-request", "attempt=1;  max=3".parse().unwrap());
                });
                vary(&|m| {
                    m.append("content-type", "application/json".parse().unwrap());
                });
                vary(&|m| {
                    m.insert("x-amz-security-token", "another-token".parse().unwrap());
                });
                vary(&|m| {
                    m.remove("content-type");
                });
                vary(&|m| {
                    m.insert("host", "localhost:8081".parse().unwrap());
                });
            }
        }
    }
    out
}

/// The fast path computes exactly what aws-sigv4 computes whenever it
/// answers, and takes every request shaped like the credential call.
#[test]
fn agrees_with_the_sdk_signer() {
    let now = SystemTime::now();
    let verifier = verifier();
    let key = verifier.keys().get("AKIDEXAMPLE").unwrap();
    let mut fast_taken = 0;
    for (method, uri, headers, body, original) in variants(now) {
        let uri: http::Uri = uri.parse().unwrap();
        let authorization = headers.get("authorization").unwrap().to_str().unwrap();
        let auth = parse_authorization(authorization).unwrap();
        let amz_date = headers.get("x-amz-date").unwrap().to_str().unwrap();
        let signed_at = parse_amz_date(amz_date).unwrap();
        let request = RequestToVerify {
            method,
            uri: &uri,
            headers: &headers,
            body: &body,
        };
        let sdk = sdk_signature(key, &auth, signed_at, &request);
        let ours = fast::signature(
            &verifier.signing_keys,
            key,
            &auth,
            &request,
            amz_date,
            signed_at,
        );
        if let Some(ours) = ours {
            assert_eq!(Some(&ours), sdk.as_ref().ok(), "{method} {uri} {headers:?}");
            fast_taken += 1;
        } else if original && uri.path().ends_with("assume-role-for-pod-identity") {
            panic!("the fast path refused a canonical request: {method} {uri} {headers:?}");
        }
        // Both paths together give the same verdict as aws-sigv4 alone.
        let verdict = verifier.verify(now, method, &uri, &headers, &body).is_ok();
        let sdk_verdict = sdk.is_ok_and(|s| s == auth.signature);
        assert_eq!(verdict, sdk_verdict, "{method} {uri} {headers:?}");
    }
    assert!(fast_taken >= 24, "{fast_taken}");
}

/// `YYYYMMDD` of `at`.
pub(super) fn date_of(at: SystemTime) -> String {
    let t = time::OffsetDateTime::from(at);
    format!("{:04}{:02}{:02}", t.year(), u8::from(t.month()), t.day())
}

#[test]
fn signing_keys_are_kept_per_scope_and_bounded() {
    let verifier = verifier();
    let key = verifier.keys().get("AKIDEXAMPLE").unwrap();
    let day = SystemTime::UNIX_EPOCH + Duration::from_secs(20_000 * 86_400);
    let a = verifier
        .signing_keys
        .derived_for_test(key, day, "us-east-1", "eks");
    assert_eq!(
        verifier.signing_keys.derived_for_test(
            key,
            day + Duration::from_secs(60),
            "us-east-1",
            "eks"
        ),
        a
    );
    assert_ne!(
        verifier.signing_keys.derived_for_test(
            key,
            day + Duration::from_secs(86_400),
            "us-east-1",
            "eks"
        ),
        a
    );
    assert_ne!(
        verifier
            .signing_keys
            .derived_for_test(key, day, "us-east-1", "eks-auth"),
        a
    );
    for i in 0..100 {
        verifier
            .signing_keys
            .derived_for_test(key, day, &format!("r{i}"), "eks");
    }
    assert!(verifier.signing_keys.len() <= 16);
    assert!(!format!("{:?}", verifier).contains(SECRET));
}
