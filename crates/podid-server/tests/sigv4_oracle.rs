//! SigV4 with aws-sdk-rust's signer (aws-sigv4) as the oracle, against a real
//! `podid server` process (build it first: `cargo build -p podid`).
//!
//! Each request is signed by aws-sigv4 with the settings the SDKs use, then
//! altered after signing and sent as raw HTTP/1.1. Each case asserts that the
//! request is accepted, or refused with the error AWS answers: HTTP status,
//! `__type` / `x-amzn-ErrorType` and message, written as literals from AWS
//! (the IAM guide's "Troubleshoot signed requests", the Common Errors list,
//! the messages AWS's JSON services send). The same cases as
//! `tests/python/test_sigv4.py`, which signs with botocore.
//!
//! Two targets: the association API (service `eks`, admin key) and
//! AssumeRoleForPodIdentity (service `eks-auth`, node key: the fast path).
//! Signed again for another region or service, a request is refused in AWS's
//! words; a query naming a parameter twice, signed, is InvalidParameterException.
#![allow(clippy::unwrap_used, missing_docs)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use podid_test_support::sigv4::Signer;
use podid_test_support::{
    podid_binary, write_keys_file, PodidServerLaunch, PodidServerProcess, TestKey, ADMIN, NODE,
    TEST_JWKS,
};
use serde_json::{json, Value};

const MISMATCH: &str = "The request signature we calculated does not match the signature you \
     provided. Check your AWS Secret Access Key and signing method. Consult the service \
     documentation for details.";
const HOST_UNSIGNED: &str =
    "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.";
const TOKEN_INVALID: &str = "The security token included in the request is invalid";
const SESSION_TOKEN: &str = "FwoGZXIvYXdzEXAMPLESESSIONTOKEN";
const CLUSTER: &str = "blue";
/// The server's `--region`.
const REGION: &str = "us-east-1";

/// A request as it goes on the wire.
#[derive(Clone, Debug)]
struct Sent {
    method: &'static str,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Sent {
    fn get(&self, name: &str) -> &str {
        let found = self
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name));
        found.map(|(_, v)| v.as_str()).unwrap_or("")
    }

    fn remove(mut self, name: &str) -> Sent {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self
    }

    fn set(self, name: &str, value: &str) -> Sent {
        let mut sent = self.remove(name);
        sent.headers.push((name.to_owned(), value.to_owned()));
        sent
    }

    /// The `Authorization` header with its `SignedHeaders` list edited.
    fn signed_headers(self, edit: impl Fn(Vec<&str>) -> Vec<&str>) -> Sent {
        let auth = self.get("authorization").to_owned();
        let list = auth.split("SignedHeaders=").nth(1).unwrap();
        let list = list.split(',').next().unwrap();
        let edited = edit(list.split(';').collect()).join(";");
        let auth = auth.replace(
            &format!("SignedHeaders={list}"),
            &format!("SignedHeaders={edited}"),
        );
        self.set("authorization", &auth)
    }

    fn target(&self) -> String {
        match self.query.as_str() {
            "" => self.path.clone(),
            q => format!("{}?{q}", self.path),
        }
    }
}

struct Target {
    name: &'static str,
    service: &'static str,
    key: TestKey,
    method: &'static str,
    path: String,
    query: &'static str,
    body: Vec<u8>,
}

fn targets() -> [Target; 2] {
    [
        Target {
            name: "eks",
            service: "eks",
            key: ADMIN,
            method: "GET",
            path: format!("/clusters/{CLUSTER}/pod-identity-associations"),
            query: "namespace=default&maxResults=5",
            body: Vec::new(),
        },
        Target {
            name: "eks-auth",
            service: "eks-auth",
            key: NODE,
            method: "POST",
            path: format!("/clusters/{CLUSTER}/assume-role-for-pod-identity"),
            query: "",
            body: br#"{"token":"not-a-jwt"}"#.to_vec(),
        },
    ]
}

/// aws-sigv4 signs the request (with one extra header, `x-podid-probe`).
fn signed(host: &str, target: &Target, at: SystemTime, token: Option<&str>) -> Sent {
    let mut headers = vec![
        ("host".to_owned(), host.to_owned()),
        ("x-podid-probe".to_owned(), "signed".to_owned()),
    ];
    if !target.body.is_empty() {
        headers.push(("content-type".to_owned(), "application/json".to_owned()));
    }
    sign_as(
        target.key,
        (REGION, target.service),
        Sent {
            method: target.method,
            path: target.path.clone(),
            query: target.query.to_owned(),
            headers,
            body: target.body.clone(),
        },
        at,
        token,
    )
}

fn sign_as(
    key: TestKey,
    (region, service): (&str, &str),
    mut sent: Sent,
    at: SystemTime,
    token: Option<&str>,
) -> Sent {
    let signer = Signer {
        access_key_id: key.access_key_id,
        secret_access_key: key.secret_access_key,
        session_token: token,
        region,
        service,
        time: at,
        every_header: false,
    };
    let url = format!("http://{}{}", sent.get("host"), sent.target());
    let headers: Vec<(&str, &str)> = sent
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let added = signer
        .headers(sent.method, &url, &headers, &sent.body)
        .unwrap();
    for (name, value) in added {
        sent = sent.set(&name, &value);
    }
    sent
}

/// A server's answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    error_type: Option<String>,
    body: Value,
}

/// Sends `sent` byte for byte over a new connection and reads the answer.
fn send(server: &PodidServerProcess, sent: &Sent) -> Answer {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut out = format!("{} {} HTTP/1.1\r\n", sent.method, sent.target());
    for (name, value) in &sent.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !sent.body.is_empty() {
        out.push_str(&format!("content-length: {}\r\n", sent.body.len()));
    }
    out.push_str("connection: close\r\n\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&sent.body);
    stream.write_all(&bytes).unwrap();
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("no answer to {sent:?} within 30 s: {e}"));
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut error_type = None;
    let mut chunked = false;
    for line in lines {
        let (name, value) = line.split_once(':').unwrap();
        match name.to_ascii_lowercase().as_str() {
            "x-amzn-errortype" => error_type = Some(value.trim().to_owned()),
            "transfer-encoding" => chunked = value.trim() == "chunked",
            _ => {}
        }
    }
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    let body = serde_json::from_str(&body).unwrap_or(Value::Null);
    Answer {
        status,
        error_type,
        body,
    }
}

/// The payload of a chunked body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

/// What a case expects.
enum Expect {
    Accepted,
    /// Status, `__type`, and the exact message.
    Refused(u16, &'static str, String),
    /// Status, `__type`, and a text the message contains.
    RefusedSaying(u16, &'static str, &'static str),
}

fn mismatch() -> Expect {
    Expect::Refused(403, "InvalidSignatureException", MISMATCH.into())
}

/// `None` when `answer` is what `expect` says, else what differs.
fn judge(target: &Target, answer: &Answer, expect: &Expect) -> Option<String> {
    let type_name = answer.body["__type"].as_str();
    let message = answer.body["message"].as_str().unwrap_or("");
    let ok = match expect {
        // ListPodIdentityAssociations answered, or the credential call's
        // handler judged the token: authentication passed.
        Expect::Accepted if target.name == "eks" => {
            answer.status == 200 && answer.body["associations"] == json!([])
        }
        Expect::Accepted => answer.status == 400 && type_name == Some("InvalidTokenException"),
        Expect::Refused(status, name, text) => {
            (
                answer.status,
                type_name,
                answer.error_type.as_deref(),
                message,
            ) == (*status, Some(*name), Some(*name), text.as_str())
        }
        Expect::RefusedSaying(status, name, text) => {
            (answer.status, type_name, answer.error_type.as_deref())
                == (*status, Some(*name), Some(*name))
                && message.contains(text)
        }
    };
    (!ok).then(|| format!("{answer:?}"))
}

/// An alteration after signing.
type Alter = Box<dyn Fn(Sent) -> Sent>;
/// The expected answer, given the request as altered.
type Expected = Box<dyn Fn(&Sent) -> Expect>;
/// A case: its name, the alteration after signing, the expected answer.
type Case = (&'static str, Alter, Expected);

/// `X-Amz-Date`'s day, and the day before it.
fn days(amz: &str) -> (String, String) {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let day = time::PrimitiveDateTime::parse(amz, &format).unwrap().date();
    let previous = day.previous_day().unwrap();
    let f = time::macros::format_description!("[year][month][day]");
    (day.format(&f).unwrap(), previous.format(&f).unwrap())
}

fn amz_plus(amz: &str, seconds: i64) -> String {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let t =
        time::PrimitiveDateTime::parse(amz, &format).unwrap() + time::Duration::seconds(seconds);
    t.format(&format).unwrap()
}

/// The cases for `target`: a name, the alteration after signing, and the
/// expected answer (a function of the altered request).
fn cases(target: &Target) -> Vec<Case> {
    let wrong_signature = || -> Expected { Box::new(|_| mismatch()) };
    let accepted = || -> Expected { Box::new(|_| Expect::Accepted) };
    // Signed again, for another scope (issue 13: the server's region, the operation's service).
    let (key, service) = (target.key, target.service);
    let resign = move |scope: (&'static str, &'static str)| -> Alter {
        Box::new(move |s: Sent| {
            let s = s.remove("authorization").remove("x-amz-date");
            sign_as(key, scope, s, SystemTime::now(), None)
        })
    };
    let other_service = if service == "eks" { "eks-auth" } else { "eks" };
    let mut cases: Vec<Case> = vec![
        (
            "signed for another region",
            resign(("eu-west-1", service)),
            Box::new(|_| {
                Expect::Refused(
                    403,
                    "InvalidSignatureException",
                    "Credential should be scoped to a valid region, not 'eu-west-1'.".into(),
                )
            }),
        ),
        (
            "signed for another service",
            resign((REGION, other_service)),
            Box::new(move |_| {
                Expect::Refused(
                    403,
                    "InvalidSignatureException",
                    format!("Credential should be scoped to correct service: '{service}'."),
                )
            }),
        ),
        ("unaltered", Box::new(|s| s), accepted()),
        (
            "host changed",
            Box::new(|s| s.set("host", "podid.example.com")),
            wrong_signature(),
        ),
        (
            "body changed",
            Box::new(|mut s| {
                s.body = br#"{"token":"another-token"}"#.to_vec();
                s
            }),
            wrong_signature(),
        ),
        (
            "path changed",
            Box::new(|mut s| {
                s.path = s.path.replace(&format!("/{CLUSTER}/"), "/other-cluster/");
                s
            }),
            wrong_signature(),
        ),
        (
            "query parameter added",
            Box::new(|mut s| {
                s.query = match s.query.as_str() {
                    "" => "nextToken=abc".into(),
                    q => format!("{q}&nextToken=abc"),
                };
                s
            }),
            wrong_signature(),
        ),
        (
            "unsigned header added",
            Box::new(|s| s.set("x-podid-extra", "1")),
            accepted(),
        ),
        (
            "signed header added",
            Box::new(|s| {
                s.set("x-podid-extra", "1").signed_headers(|mut n| {
                    n.push("x-podid-extra");
                    n.sort_unstable();
                    n
                })
            }),
            wrong_signature(),
        ),
        (
            "signed header removed from the request",
            Box::new(|s| s.remove("x-podid-probe")),
            wrong_signature(),
        ),
        (
            "signed header's value changed",
            Box::new(|s| s.set("x-podid-probe", "changed")),
            wrong_signature(),
        ),
        (
            "header removed from SignedHeaders",
            Box::new(|s| {
                s.signed_headers(|n| n.into_iter().filter(|h| *h != "x-podid-probe").collect())
            }),
            wrong_signature(),
        ),
        (
            "host removed from SignedHeaders",
            Box::new(|s| s.signed_headers(|n| n.into_iter().filter(|h| *h != "host").collect())),
            Box::new(|_| Expect::Refused(403, "InvalidSignatureException", HOST_UNSIGNED.into())),
        ),
        (
            "security token added",
            Box::new(|s| s.set("x-amz-security-token", SESSION_TOKEN)),
            Box::new(|_| Expect::Refused(403, "UnrecognizedClientException", TOKEN_INVALID.into())),
        ),
        (
            "X-Amz-Date missing",
            Box::new(|s| s.remove("x-amz-date")),
            Box::new(|_| {
                Expect::RefusedSaying(400, "IncompleteSignatureException", "'X-Amz-Date'")
            }),
        ),
        (
            "X-Amz-Date one second later",
            Box::new(|s| {
                let later = amz_plus(s.get("x-amz-date"), 1);
                s.set("x-amz-date", &later)
            }),
            wrong_signature(),
        ),
        (
            "credential scope date is not X-Amz-Date's",
            Box::new(|s| {
                let (day, previous) = days(s.get("x-amz-date"));
                let auth = s
                    .get("authorization")
                    .replace(&format!("/{day}/"), &format!("/{previous}/"));
                s.set("authorization", &auth)
            }),
            Box::new(|s| {
                let amz = s.get("x-amz-date");
                let (day, previous) = days(amz);
                Expect::Refused(
                    403,
                    "InvalidSignatureException",
                    format!(
                        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version \
                         of date from HTTP: '{previous}' != '{day}', from '{amz}'."
                    ),
                )
            }),
        ),
    ];
    if target.name == "eks" {
        cases.push((
            "query reordered",
            Box::new(|mut s| {
                s.query = s.query.split('&').rev().collect::<Vec<_>>().join("&");
                s
            }),
            accepted(),
        ));
        cases.push((
            "query parameter duplicated",
            Box::new(|mut s| {
                s.query.push_str("&namespace=default");
                s
            }),
            wrong_signature(),
        ));
        let twice = resign((REGION, service));
        cases.push((
            "query parameter duplicated, then signed",
            Box::new(move |mut s| {
                s.query.push_str("&namespace=default");
                twice(s)
            }),
            Box::new(|_| {
                Expect::Refused(
                    400,
                    "InvalidParameterException",
                    "the query parameter 'namespace' is given more than once".into(),
                )
            }),
        ));
    }
    cases
}

/// A server with the test keys and cluster `blue` (registered by the admin key).
fn server() -> (tempfile::TempDir, PodidServerProcess) {
    let binary = podid_binary();
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build -p podid` first",
        binary.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let keys = write_keys_file(dir.path()).unwrap();
    let db = format!("sqlite://{}", dir.path().join("podid.db").display());
    let server = PodidServerLaunch::new(binary)
        .args(["--database-url", &db, "--keys-file", keys.to_str().unwrap()])
        .start()
        .unwrap_or_else(|e| panic!("podid server did not start: {e}"));
    let jwks: Value = serde_json::from_str(TEST_JWKS).unwrap();
    let body = json!({"name": CLUSTER, "issuer": "https://issuer.test/blue", "jwks": jwks});
    let register = Sent {
        method: "POST",
        path: "/podid/v1/clusters".into(),
        query: String::new(),
        headers: vec![
            ("host".into(), server.addr.to_string()),
            ("content-type".into(), "application/json".into()),
        ],
        body: body.to_string().into_bytes(),
    };
    let answer = send(
        &server,
        &sign_as(ADMIN, (REGION, "eks"), register, SystemTime::now(), None),
    );
    assert_eq!(answer.status, 200, "registering {CLUSTER}: {answer:?}");
    (dir, server)
}

#[test]
fn requests_altered_after_signing_get_the_aws_answer() {
    let (_dir, server) = server();
    let host = server.addr.to_string();
    let mut failures = Vec::new();
    let mut judged = 0;
    for target in targets() {
        for (name, alter, expect) in cases(&target) {
            let sent = alter(signed(&host, &target, SystemTime::now(), None));
            let answer = send(&server, &sent);
            if let Some(wrong) = judge(&target, &answer, &expect(&sent)) {
                failures.push(format!("{}: {name}: {wrong}", target.name));
            }
            judged += 1;
        }
        // Signed with a session token: podid issues none.
        let sent = signed(&host, &target, SystemTime::now(), Some(SESSION_TOKEN));
        assert!(sent.get("authorization").contains("x-amz-security-token"));
        let expect = Expect::Refused(403, "UnrecognizedClientException", TOKEN_INVALID.into());
        if let Some(wrong) = judge(&target, &send(&server, &sent), &expect) {
            failures.push(format!("{}: signed security token: {wrong}", target.name));
        }
    }
    assert_eq!(judged, 37);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Seconds since the epoch.
fn secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// AWS's skew message checked: `Signature expired: SENT is now earlier than
/// LIMIT (NOW - 5 min.)` (or `not yet current` / `still later` / `+`), with
/// NOW the server's time (between `t0` and `t1`) and LIMIT = NOW -/+ 300 s.
fn skew_message_holds(message: &str, sent: &str, late: bool, t0: f64, t1: f64) -> bool {
    let (prefix, middle, sign) = if late {
        ("Signature expired: ", " is now earlier than ", '-')
    } else {
        ("Signature not yet current: ", " is still later than ", '+')
    };
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let parse = |s: &str| {
        time::PrimitiveDateTime::parse(s, &format)
            .ok()
            .map(|t| t.assume_utc().unix_timestamp())
    };
    let Some(rest) = message.strip_prefix(&format!("{prefix}{sent}{middle}")) else {
        return false;
    };
    let (Some(limit), Some(now)) = (
        parse(&rest[..16.min(rest.len())]),
        rest.get(18..34).and_then(parse),
    ) else {
        return false;
    };
    let bound = if late { -300 } else { 300 };
    rest.get(16..18) == Some(" (")
        && rest.get(34..) == Some(&format!(" {sign} 5 min.)"))
        && limit - now == bound
        && t0.floor() <= now as f64
        && now as f64 <= t1
}

/// ±(5 min − 1 s) accepted, ±(5 min + 1 s) refused with AWS's message. The
/// signing second is rounded so that latency only moves the skew away from
/// the bound, except for −299 s and +301 s, where a latency over one second
/// could: an attempt that slow proves nothing and is retried (at most 5).
#[test]
fn clock_skew_of_five_minutes_plus_or_minus_one_second() {
    let (_dir, server) = server();
    let host = server.addr.to_string();
    for target in targets() {
        for (offset, round_up, late) in [
            (-299, true, None),
            (299, false, None),
            (-301, false, Some(true)),
            (301, true, Some(false)),
        ] {
            let mut slow = Vec::new();
            let judged = (0..5).any(|_| {
                let started = Instant::now();
                let t0 = secs(SystemTime::now());
                let second = if round_up { t0.ceil() } else { t0.floor() } as i64 + offset;
                let at = UNIX_EPOCH + Duration::from_secs(second as u64);
                let sent = signed(&host, &target, at, None);
                let answer = send(&server, &sent);
                let t1 = secs(SystemTime::now());
                let message = answer.body["message"].as_str().unwrap_or("");
                let ok = match late {
                    None => judge(&target, &answer, &Expect::Accepted).is_none(),
                    Some(late) => {
                        answer.status == 403
                            && answer.body["__type"] == "InvalidSignatureException"
                            && answer.error_type.as_deref() == Some("InvalidSignatureException")
                            && skew_message_holds(message, sent.get("x-amz-date"), late, t0, t1)
                    }
                };
                let took = started.elapsed();
                assert!(
                    ok || took >= Duration::from_secs(1),
                    "{} signed {offset:+} s: {answer:?}",
                    target.name
                );
                slow.push(took);
                ok
            });
            assert!(
                judged,
                "{} signed {offset:+} s: every attempt took over one second ({slow:?})",
                target.name
            );
        }
    }
}
