//! Issue 13's rules after the signature: the scope's region and service, a
//! query parameter named twice, keys scoped to clusters, keys replaced while
//! serving. Requests are signed by aws-sigv4 (podid-test-support's signer);
//! expected answers are literals.

use podid_test_support::sigv4::Signer;

use super::*;
use crate::authz::Clusters;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const OTHER: &str = "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY";

fn key_entry(id: &str, secret: &str, role: &str, clusters: &str) -> String {
    format!(
        "[[key]]\naccess_key_id = \"{id}\"\nsecret_access_key = \"{secret}\"\nrole = \"{role}\"\n{clusters}\n"
    )
}

fn ring(text: &str) -> KeyRing {
    KeyRing::parse(text).unwrap()
}

/// `method uri` with `body`, signed by `id`/`secret` for `region`/`service` at `now`.
fn request(
    (id, secret): (&str, &str),
    (region, service): (&str, &str),
    method: &str,
    uri: &str,
    body: &[u8],
) -> http::request::Parts {
    let full = format!("http://localhost:8080{uri}");
    let headers = [
        ("content-type", "application/json"),
        ("host", "localhost:8080"),
    ];
    let signer = Signer {
        access_key_id: id,
        secret_access_key: secret,
        session_token: None,
        region,
        service,
        time: SystemTime::now(),
        every_header: false,
    };
    let mut builder = http::Request::builder().method(method).uri(&full);
    for (k, v) in headers {
        builder = builder.header(k, v);
    }
    for (k, v) in signer.headers(method, &full, &headers, body).unwrap() {
        builder = builder.header(k, v);
    }
    builder.body(()).unwrap().into_parts().0
}

fn answer(
    auth: &Authentication,
    parts: &http::request::Parts,
    body: &[u8],
) -> Result<Principal, (&'static str, u16, String)> {
    auth.authenticate(SystemTime::now(), parts, body)
        .map_err(|e| (e.kind.name(), e.kind.status(), e.message))
}

fn sigv4(ring: KeyRing) -> Authentication {
    Authentication::SigV4(Arc::new(SigV4Verifier::for_region(ring, "us-east-1")))
}

const ARN: &str = "arn%3Aaws%3Aeks%3Aus-east-1%3A111122223333%3Apodidentityassociation%2Fblue%2Fa-0123456789abcdefg";

/// Every route of the router (literal paths of docs/api.md), for `cluster`:
/// (method, target, body).
fn every_operation(cluster: &str) -> Vec<(&'static str, String, Vec<u8>)> {
    let arn = ARN.replace("%2Fblue%2F", &format!("%2F{cluster}%2F"));
    let id = "a-0123456789abcdefg";
    vec![
        (
            "POST",
            format!("/clusters/{cluster}/pod-identity-associations"),
            br#"{"namespace":"default"}"#.to_vec(),
        ),
        (
            "GET",
            format!("/clusters/{cluster}/pod-identity-associations?maxResults=5"),
            Vec::new(),
        ),
        (
            "GET",
            format!("/clusters/{cluster}/pod-identity-associations/{id}"),
            Vec::new(),
        ),
        (
            "POST",
            format!("/clusters/{cluster}/pod-identity-associations/{id}"),
            b"{}".to_vec(),
        ),
        (
            "DELETE",
            format!("/clusters/{cluster}/pod-identity-associations/{id}"),
            Vec::new(),
        ),
        ("GET", format!("/tags/{arn}"), Vec::new()),
        (
            "POST",
            format!("/tags/{arn}"),
            br#"{"tags":{"a":"b"}}"#.to_vec(),
        ),
        (
            "DELETE",
            format!("/tags/{arn}?tagKeys=a&tagKeys=b"),
            Vec::new(),
        ),
        (
            "POST",
            format!("/clusters/{cluster}/assume-role-for-pod-identity"),
            br#"{"token":"x"}"#.to_vec(),
        ),
        (
            "POST",
            "/podid/v1/clusters".to_owned(),
            format!(r#"{{"name":"{cluster}","issuer":"https://i"}}"#).into_bytes(),
        ),
        ("GET", format!("/podid/v1/clusters/{cluster}"), Vec::new()),
        (
            "PATCH",
            format!("/podid/v1/clusters/{cluster}"),
            b"{}".to_vec(),
        ),
        (
            "DELETE",
            format!("/podid/v1/clusters/{cluster}"),
            Vec::new(),
        ),
        (
            "GET",
            format!("/podid/v1/audit?cluster={cluster}"),
            Vec::new(),
        ),
    ]
}

fn service_for(uri: &str) -> &'static str {
    if uri.ends_with("/assume-role-for-pod-identity") {
        "eks-auth"
    } else {
        "eks"
    }
}

/// A key with `clusters = ["blue"]` passes for blue on every operation and
/// is refused for green (AccessDeniedException, 403, naming neither secret);
/// an unscoped key passes for both.
#[test]
fn a_scoped_key_acts_only_on_its_clusters() {
    let text = key_entry("SCOPED", SECRET, "admin", r#"clusters = ["blue", "teal"]"#)
        + &key_entry("ALLCLUSTERS", OTHER, "admin", "");
    let auth = sigv4(ring(&text));
    for (cluster, scoped_allowed) in [("blue", true), ("green", false)] {
        for (method, uri, body) in every_operation(cluster) {
            let by = |key| request(key, ("us-east-1", service_for(&uri)), method, &uri, &body);
            match answer(&auth, &by(("SCOPED", SECRET)), &body) {
                Ok(p) => {
                    assert!(scoped_allowed, "{method} {uri}");
                    assert_eq!(
                        p.clusters,
                        Clusters::Only(Arc::from(["blue".to_owned(), "teal".to_owned()]))
                    );
                }
                Err(e) => {
                    assert!(!scoped_allowed, "{method} {uri}: {e:?}");
                    assert_eq!(
                        e,
                        (
                            "AccessDeniedException",
                            403,
                            "key SCOPED is scoped to clusters and may not act on cluster 'green'"
                                .to_owned()
                        ),
                        "{method} {uri}"
                    );
                }
            }
            let unscoped = by(("ALLCLUSTERS", OTHER));
            assert!(answer(&auth, &unscoped, &body).is_ok(), "{method} {uri}");
        }
    }
    // What cannot be bound to its clusters: refused, whatever the role would allow.
    let every = "key SCOPED is scoped to clusters and may not act on every cluster: name one of its clusters";
    let unknown = "key SCOPED is scoped to clusters and may not act on this request";
    let green_encoded = "key SCOPED is scoped to clusters and may not act on cluster 'green'";
    for (method, uri, body, message) in [
        ("GET", "/podid/v1/clusters", "", every),
        ("GET", "/podid/v1/audit", "", every),
        (
            "GET",
            "/podid/v1/audit?namespace=x&cluster=green",
            "",
            green_encoded,
        ),
        (
            "GET",
            "/clusters/gr%65en/pod-identity-associations",
            "",
            green_encoded,
        ),
        ("GET", "/podid/v1/clusters/gr%65en", "", green_encoded),
        (
            "POST",
            "/podid/v1/clusters",
            r#"{"name":"green"}"#,
            green_encoded,
        ),
        (
            "POST",
            "/podid/v1/clusters",
            r#"{"name":"blue","name":"green"}"#,
            unknown,
        ),
        ("POST", "/podid/v1/clusters", "", unknown),
        ("POST", "/podid/v1/clusters", "not json", unknown),
        ("GET", "/tags/not-an-arn", "", unknown),
        ("GET", "/clusters/blue/unknown", "", unknown),
        ("GET", "/", "", unknown),
        ("GET", "/metrics", "", unknown),
    ] {
        let signed = request(
            ("SCOPED", SECRET),
            ("us-east-1", "eks"),
            method,
            uri,
            body.as_bytes(),
        );
        assert_eq!(
            answer(&auth, &signed, body.as_bytes()).unwrap_err(),
            ("AccessDeniedException", 403, message.to_owned()),
            "{method} {uri} {body}"
        );
    }
    // Two cluster filters: a parameter named twice, refused before the scope.
    let twice = request(
        ("SCOPED", SECRET),
        ("us-east-1", "eks"),
        "GET",
        "/podid/v1/audit?cluster=blue&cluster=green",
        b"",
    );
    assert_eq!(
        answer(&auth, &twice, b"").unwrap_err().0,
        "InvalidParameterException"
    );
    let teal = request(
        ("SCOPED", SECRET),
        ("us-east-1", "eks"),
        "GET",
        "/podid/v1/audit?cluster=teal",
        b"",
    );
    assert!(answer(&auth, &teal, b"").is_ok());
    assert!(answer(&Authentication::Disabled, &teal, b"").is_ok());
}

/// Issue 13: the scope's region must be the server's and its service the
/// operation's, in AWS's words; a verifier without a region takes any region
/// but still the operation's service.
#[test]
fn the_scope_names_the_servers_region_and_the_operations_service() {
    let auth = sigv4(ring(&key_entry("AKIDEXAMPLE", SECRET, "admin", "")));
    let key = ("AKIDEXAMPLE", SECRET);
    let region = |r: &str| format!("Credential should be scoped to a valid region, not '{r}'.");
    let service = |s: &str| format!("Credential should be scoped to correct service: '{s}'.");
    let assume = "/clusters/blue/assume-role-for-pod-identity";
    let list = "/clusters/blue/pod-identity-associations";
    let cases = [
        (assume, ("us-east-1", "eks-auth"), None),
        (assume, ("us-east-1", "eks"), Some(service("eks-auth"))),
        (assume, ("eu-west-1", "eks-auth"), Some(region("eu-west-1"))),
        (list, ("us-east-1", "eks"), None),
        (list, ("us-east-1", "eks-auth"), Some(service("eks"))),
        (list, ("us-east-1", "sts"), Some(service("eks"))),
        (
            "/podid/v1/clusters/blue",
            ("us-east-1", "eks-auth"),
            Some(service("eks")),
        ),
        (
            "/podid/v1/audit",
            ("us-east-1", "eks-auth"),
            Some(service("eks")),
        ),
        (
            list,
            ("us-west-2", "eks-auth"),
            Some(format!("{} {}", region("us-west-2"), service("eks"))),
        ),
    ];
    for (uri, scope, refused) in cases {
        let signed = request(key, scope, "GET", uri, b"");
        let got = answer(&auth, &signed, b"");
        match refused {
            None => assert!(got.is_ok(), "{uri} {scope:?}: {got:?}"),
            Some(message) => assert_eq!(
                got.unwrap_err(),
                ("InvalidSignatureException", 403, message),
                "{uri} {scope:?}"
            ),
        }
    }
    let any_region = SigV4Verifier::new(ring(&key_entry("AKIDEXAMPLE", SECRET, "admin", "")));
    for (scope, ok) in [
        (("ap-south-2", "eks"), true),
        (("ap-south-2", "eks-auth"), false),
    ] {
        let signed = request(key, scope, "GET", list, b"");
        let got = any_region.verify(SystemTime::now(), "GET", &signed.uri, &signed.headers, b"");
        assert_eq!(got.is_ok(), ok, "{scope:?}: {got:?}");
    }
}

/// A correctly signed request naming a query parameter twice is
/// InvalidParameterException; `UntagResource`'s `tagKeys` is a list; a
/// request not correctly signed gets the signature's answer first.
#[test]
fn a_query_parameter_named_twice_is_refused_once_the_signature_holds() {
    let auth = sigv4(ring(&key_entry("AKIDEXAMPLE", SECRET, "admin", "")));
    let key = ("AKIDEXAMPLE", SECRET);
    let list = "/clusters/blue/pod-identity-associations";
    let twice = |name: &str| {
        Err((
            "InvalidParameterException",
            400,
            format!("the query parameter '{name}' is given more than once"),
        ))
    };
    for (method, uri, expected) in [
        (
            "GET",
            format!("{list}?namespace=a&namespace=b"),
            twice("namespace"),
        ),
        (
            "GET",
            format!("{list}?namespace=a&maxResults=5&%6Eamespace=a"),
            twice("namespace"),
        ),
        (
            "GET",
            format!("{list}?maxResults=5&namespace=a&maxResults=5"),
            twice("maxResults"),
        ),
        ("GET", format!("{list}?flag&flag"), twice("flag")),
        (
            "DELETE",
            format!("/tags/{ARN}?tagKeys=a&tagKeys=b&tagKeys=c"),
            Ok(()),
        ),
        (
            "DELETE",
            format!("/tags/{ARN}?tagKeys=a&x=1&x=2"),
            twice("x"),
        ),
        (
            "GET",
            format!("/tags/{ARN}?tagKeys=a&tagKeys=b"),
            twice("tagKeys"),
        ),
        (
            "GET",
            format!("{list}?namespace=a&serviceAccount=b"),
            Ok(()),
        ),
    ] {
        let signed = request(key, ("us-east-1", "eks"), method, &uri, b"");
        assert_eq!(
            answer(&auth, &signed, b"").map(|_| ()),
            expected,
            "{method} {uri}"
        );
        // The same query, unsigned or wrongly signed: the signature's answer.
        let mut unsigned = signed.clone();
        unsigned.headers.remove("authorization");
        assert_eq!(
            answer(&auth, &unsigned, b"").unwrap_err().0,
            "MissingAuthenticationTokenException"
        );
        let mut forged = signed.clone();
        let auth_value = forged.headers["authorization"]
            .to_str()
            .unwrap()
            .replace("Signature=", "Signature=0");
        forged
            .headers
            .insert("authorization", auth_value.parse().unwrap());
        assert_eq!(
            answer(&auth, &forged, b"").unwrap_err().0,
            "InvalidSignatureException"
        );
    }
    let disabled = request(
        key,
        ("us-east-1", "eks"),
        "GET",
        &format!("{list}?a=1&a=2"),
        b"",
    );
    assert_eq!(
        answer(&Authentication::Disabled, &disabled, b"").map(|_| ()),
        twice("a")
    );
}

/// Replaced keys answer from the next request: a removed key is unknown, a
/// changed secret no longer verifies (the signing keys derived from the old
/// one go with it), an added key is accepted.
#[test]
fn replaced_keys_answer_from_the_next_request() {
    let verifier =
        SigV4Verifier::for_region(ring(&key_entry("KEYONE", SECRET, "admin", "")), "us-east-1");
    let uri = "/clusters/blue/assume-role-for-pod-identity";
    let scope = ("us-east-1", "eks-auth");
    let verify = |id, secret| {
        let signed = request((id, secret), scope, "POST", uri, b"{}");
        verifier
            .verify(
                SystemTime::now(),
                "POST",
                &signed.uri,
                &signed.headers,
                b"{}",
            )
            .map(|p| p.access_key_id)
            .map_err(|e| e.kind.name())
    };
    assert_eq!(verify("KEYONE", SECRET), Ok("KEYONE".to_owned()));
    let old = verifier.replace_keys(ring(&key_entry("KEYTWO", OTHER, "node", "")));
    assert_eq!(old.ids(), ["KEYONE"]);
    assert_eq!(verify("KEYONE", SECRET), Err("UnrecognizedClientException"));
    assert_eq!(verify("KEYTWO", OTHER), Ok("KEYTWO".to_owned()));
    verifier.replace_keys(ring(&key_entry("KEYTWO", SECRET, "node", "")));
    assert_eq!(verify("KEYTWO", OTHER), Err("InvalidSignatureException"));
    assert_eq!(verify("KEYTWO", SECRET), Ok("KEYTWO".to_owned()));
}
