//! The SigV4 check against aws-sigv4, differentially: requests of many
//! shapes, signed as SDKs sign them and then varied, are accepted exactly
//! when aws-sigv4 signing that very request writes the header they carry.

use super::tests::{signed_as, verifier, SECRET};
use super::*;
use podid_test_support::sigv4::Signer;

/// A request as sent: `(method, uri, headers, body, original)`.
type Variant = (&'static str, String, http::HeaderMap, Vec<u8>, bool);

/// Requests of many shapes, signed as SDKs sign them (aws-sigv4, default
/// settings, optional session token), then varied the ways a client or an
/// attacker could vary them.
fn variants(now: SystemTime) -> Vec<Variant> {
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
                // Mostly the right scope; now and then another region or service.
                let scope = match (i + j) % 4 {
                    0 => ("eu-west-3", service_of(path)),
                    1 => ("us-east-1", ["eks", "eks-auth"][i % 2]),
                    _ => ("us-east-1", service_of(path)),
                };
                let (uri, h) = signed_as(method, path, body, now, SECRET, token, scope, &headers);
                let uri = uri.path_and_query().unwrap().as_str().to_owned();
                out.push((method, uri.clone(), h.clone(), body.to_vec(), true));
                vary(&mut out, method, &uri, &h, body);
            }
        }
    }
    out
}

/// The service a request to `uri` must be signed for (issue 13: `eks-auth`
/// for AssumeRoleForPodIdentity, `eks` for the rest).
fn service_of(uri: &str) -> &'static str {
    let path = uri.split('?').next().unwrap_or(uri);
    let parts: Vec<&str> = path.split('/').collect();
    match parts[..] {
        ["", "clusters", _, "assume-role-for-pod-identity"] => "eks-auth",
        _ => "eks",
    }
}

/// Whether the `Credential` scope of `authorization` is the server's region
/// (`us-east-1`) and `uri`'s service.
fn scope_is_right(uri: &str, authorization: &str) -> bool {
    let scope = format!("/us-east-1/{}/aws4_request,", service_of(uri));
    authorization.contains(&scope)
}

/// Adds the variations of one signed request to `out`.
fn vary(out: &mut Vec<Variant>, method: &'static str, uri: &str, h: &http::HeaderMap, body: &[u8]) {
    let auth = h.get("authorization").unwrap().to_str().unwrap().to_owned();
    let mut push = |uri: &str, body: &[u8], f: &dyn Fn(&mut http::HeaderMap)| {
        let mut h2 = h.clone();
        f(&mut h2);
        out.push((method, uri.to_owned(), h2, body.to_vec(), false));
    };
    // The Authorization header rewritten.
    let rewritten = [
        auth.replace("content-type;host", "host;content-type"),
        auth.replace(
            "SignedHeaders=amz-sdk-request",
            "SignedHeaders=Amz-Sdk-Request",
        ),
        auth.replace(";x-amz-date", ""),
        auth.replace(";x-amz-security-token", ""),
        auth.replace("content-type;", ""),
    ];
    for value in rewritten {
        push(uri, body, &|m| {
            m.insert("authorization", value.parse().unwrap());
        });
    }
    let listed = auth.replace("host;", "host;x-extra;");
    push(uri, body, &|m| {
        m.insert("x-extra", "1".parse().unwrap());
        m.insert("authorization", listed.parse().unwrap());
    });
    // Header values, as a proxy or an attacker may change them.
    let values = [
        ("content-type", " application/json "),
        ("content-type", " application/json"),
        ("content-type", "application/json "),
        ("amz-sdk-request", "attempt=1;  max=3"),
        ("x-amz-security-token", "another-token"),
        ("host", "localhost:8081"),
        ("x-unsigned", "1"),
    ];
    for (name, value) in values {
        push(uri, body, &|m| {
            m.insert(name, value.parse().unwrap());
        });
    }
    push(uri, body, &|m| {
        m.append("content-type", "application/json".parse().unwrap());
    });
    for name in ["content-type", "x-amz-date"] {
        push(uri, body, &|m| {
            m.remove(name);
        });
    }
    // The target and the body.
    push(&format!("{uri}x"), body, &|_| {});
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let mut pairs: Vec<&str> = query.split('&').filter(|s| !s.is_empty()).collect();
    pairs.reverse();
    push(&format!("{path}?{}", pairs.join("&")), body, &|_| {});
    if let Some(first) = pairs.first() {
        push(&format!("{uri}&{first}"), body, &|_| {});
    }
    push(uri, b"{}", &|_| {});
}

/// The oracle: the `Authorization` header aws-sigv4's `sign()` writes for
/// exactly this request: its method, target, body, `X-Amz-Date` and the
/// headers its own `Authorization` names, with their values as sent, under
/// the same key and scope. Parsed and signed here, with no verifier code.
fn sdk_authorization(
    method: &str,
    uri: &str,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Option<String> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let fields: Vec<&str> = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")?
        .split(", ")
        .collect();
    let [credential, signed, _signature] = fields[..] else {
        return None;
    };
    let scope: Vec<&str> = credential.strip_prefix("Credential=")?.split('/').collect();
    let names = signed.strip_prefix("SignedHeaders=")?.split(';');
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let amz_date = headers.get("x-amz-date")?.to_str().ok()?;
    let at = time::PrimitiveDateTime::parse(amz_date, &format).ok()?;
    let mut signed_headers = Vec::new();
    for name in names {
        for value in headers.get_all(name) {
            signed_headers.push((name, value.to_str().ok()?));
        }
    }
    let signer = Signer {
        access_key_id: scope[0],
        secret_access_key: SECRET,
        session_token: None,
        region: scope[2],
        service: scope[3],
        time: SystemTime::from(at.assume_utc()),
        every_header: true,
    };
    let target = format!("http://localhost:8080{uri}");
    let signed = signer
        .headers(method, &target, &signed_headers, body)
        .ok()?;
    let (_, value) = signed
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))?;
    Some(value)
}

/// The signature of an `Authorization` header.
fn signature_of(authorization: &str) -> &str {
    authorization.rsplit("Signature=").next().unwrap()
}

/// Every variant is accepted exactly when aws-sigv4, signing that very
/// request, writes the `Authorization` header it carries (and it carries no
/// session token: podid issues none); whenever the fast path answers, its
/// signature is the one aws-sigv4 writes; and it takes every request shaped
/// like the credential call.
#[test]
fn agrees_with_the_sdk_signer() {
    let now = SystemTime::now();
    let verifier = verifier();
    let ring = verifier.keys();
    let key = ring.get("AKIDEXAMPLE").unwrap();
    let signing_keys = &verifier.current().signing_keys;
    let (mut fast_taken, mut accepted, mut refused) = (0, 0, 0);
    for (method, uri, headers, body, original) in variants(now) {
        let what = format!("{method} {uri} {headers:?}");
        let sent = headers.get("authorization").unwrap().to_str().unwrap();
        let oracle = sdk_authorization(method, &uri, &headers, &body);
        let expected = oracle.as_deref() == Some(sent)
            && !headers.contains_key("x-amz-security-token")
            && scope_is_right(&uri, sent);
        let target: http::Uri = uri.parse().unwrap();
        let verdict = verifier.verify(now, method, &target, &headers, &body);
        assert_eq!(verdict.is_ok(), expected, "{what}: {verdict:?}");
        if expected {
            accepted += 1;
        } else {
            refused += 1;
        }

        // The fast path, wherever its preconditions hold.
        let Some(amz_date) = headers.get("x-amz-date").map(|v| v.to_str().unwrap()) else {
            continue;
        };
        let (auth, _) = parse_authorization(sent, Some(amz_date)).unwrap();
        if !header::is_canonical_list(&auth.signed_headers) {
            continue;
        }
        let credential = header::split_credential(auth.credential).unwrap();
        let signed_at = parse_amz_date(amz_date).unwrap();
        let request = RequestToVerify {
            method,
            uri: &target,
            headers: &headers,
            body: &body,
        };
        let ours = fast::signature(
            signing_keys,
            key,
            &credential,
            &auth,
            &request,
            amz_date,
            signed_at,
        );
        if let Some(ours) = ours {
            let oracle = oracle.expect("aws-sigv4 signs what the fast path takes");
            assert_eq!(ours, signature_of(&oracle), "{what}");
            fast_taken += 1;
        } else if original && target.path().ends_with("assume-role-for-pod-identity") {
            panic!("the fast path refused a canonical request: {what}");
        }
    }
    assert!(fast_taken >= 100, "{fast_taken}");
    assert!(accepted >= 100 && refused >= 600, "{accepted} {refused}");
}
