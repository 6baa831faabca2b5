//! The aws-sdk-sts issuer against a fake STS on a local socket that counts the
//! requests it received: a request that may have reached STS is never sent
//! twice; an error STS answered and a refused connection are tried again once.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sts::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_sts::config::{ConfigBag, Intercept, RuntimeComponents};

use super::AwsStsIssuer;
use crate::{AssumeRoleSpec, IssueError, Issuer};

/// What the fake STS does with one request, after reading all of it.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// Keeps the connection open and never answers.
    Hang,
    /// Closes the connection without answering.
    Close,
    /// Sends a 200's head and part of its body, then closes.
    CutOff,
    /// Answers STS's `InternalFailure` (HTTP 500).
    Fail,
    /// Answers credentials.
    Issue,
}

const ISSUED: &str = "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
<AssumeRoleResult><AssumedRoleUser><AssumedRoleId>AROAEXAMPLE:pod</AssumedRoleId>\
<Arn>arn:aws:sts::123456789012:assumed-role/role/pod</Arn></AssumedRoleUser>\
<Credentials><AccessKeyId>ASIAEXAMPLE</AccessKeyId><SecretAccessKey>secret</SecretAccessKey>\
<SessionToken>token</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>\
</AssumeRoleResult><ResponseMetadata><RequestId>r1</RequestId></ResponseMetadata></AssumeRoleResponse>";

const INTERNAL_FAILURE: &str =
    "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
<Error><Type>Receiver</Type><Code>InternalFailure</Code><Message>try again</Message></Error>\
<RequestId>r0</RequestId></ErrorResponse>";

/// A fake STS: request `i` gets `script[i]` (the last entry once the script
/// is used up); `requests` counts the requests read whole.
struct FakeSts {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
}

impl FakeSts {
    fn start(script: &[Behaviour]) -> FakeSts {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let (count, script) = (requests.clone(), script.to_vec());
        // Runs until the test process ends; hung connections are kept open.
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                if read_request(&stream).is_none() {
                    continue;
                }
                let i = count.fetch_add(1, Ordering::SeqCst);
                match script[i.min(script.len() - 1)] {
                    Behaviour::Hang => held.push(stream),
                    Behaviour::Close => drop(stream),
                    Behaviour::CutOff => {
                        let _ = stream.write_all(
                            format!("{}{}", head(200, ISSUED.len()), &ISSUED[..40]).as_bytes(),
                        );
                    }
                    Behaviour::Fail => answer(&mut stream, 500, INTERNAL_FAILURE),
                    Behaviour::Issue => answer(&mut stream, 200, ISSUED),
                }
            }
        });
        FakeSts { addr, requests }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Reads one request's head and its `Content-Length` body.
fn read_request(stream: &TcpStream) -> Option<()> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream);
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()
}

fn head(status: u16, length: usize) -> String {
    format!(
        "HTTP/1.1 {status} X\r\nContent-Type: text/xml\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    )
}

fn answer(stream: &mut TcpStream, status: u16, body: &str) {
    let _ = stream.write_all(format!("{}{body}", head(status, body.len())).as_bytes());
}

/// Counts the SDK's attempts (each one before it is sent).
#[derive(Debug)]
struct Attempts(Arc<AtomicUsize>);

impl Intercept for Attempts {
    fn name(&self) -> &'static str {
        "count attempts"
    }

    fn read_before_attempt(
        &self,
        _: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// One `AssumeRole` through the issuer at `url` with `timeout`; its result
/// and how many attempts the SDK made.
async fn assume(url: &str, timeout: Duration) -> (Result<String, IssueError>, usize) {
    let credentials =
        aws_credential_types::Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
    let sdk = aws_types::SdkConfig::builder()
        .region(aws_types::region::Region::new("us-east-1"))
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(credentials),
        )
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .build();
    let attempts = Arc::new(AtomicUsize::new(0));
    let config = AwsStsIssuer::config(&sdk, Some(url), timeout)
        .interceptor(Attempts(attempts.clone()))
        .build();
    let spec = AssumeRoleSpec {
        role_arn: "arn:aws:iam::123456789012:role/role".into(),
        session_name: "pod".into(),
        duration: Duration::from_secs(3600),
        tags: Vec::new(),
        transitive_tag_keys: Vec::new(),
        policy: None,
        external_id: None,
    };
    let result = AwsStsIssuer::from_config(config)
        .assume_role(&spec, None)
        .await
        .map(|c| c.access_key_id);
    (result, attempts.load(Ordering::SeqCst))
}

fn assert_unavailable(result: &Result<String, IssueError>) {
    assert!(
        matches!(result, Err(IssueError::Unavailable(_))),
        "{result:?}"
    );
}

/// STS does `first` with the call, and would issue for a second request:
/// the call fails, sent once.
async fn assert_sent_once(first: Behaviour, timeout: Duration) {
    let sts = FakeSts::start(&[first, Behaviour::Issue]);
    let (result, attempts) = assume(&sts.url(), timeout).await;
    assert_unavailable(&result);
    assert_eq!((sts.requests(), attempts), (1, 1), "{first:?}");
}

#[tokio::test]
async fn an_attempt_that_timed_out_at_sts_is_not_sent_again() {
    // STS received the request and may issue after the broker gave up: a
    // second request would be a second issuance. (1.5 s: the operation's 3 s
    // leave room for the SDK's back-off of at most 1 s and a second attempt.)
    assert_sent_once(Behaviour::Hang, Duration::from_millis(1500)).await;
}

#[tokio::test]
async fn a_connection_closed_after_the_request_is_not_sent_again() {
    assert_sent_once(Behaviour::Close, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn an_answer_cut_off_is_not_sent_again() {
    assert_sent_once(Behaviour::CutOff, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn an_error_sts_answered_is_tried_again_once() {
    // An InternalFailure issued nothing: docs/broker.md's one retry.
    let sts = FakeSts::start(&[Behaviour::Fail, Behaviour::Issue]);
    let (result, attempts) = assume(&sts.url(), Duration::from_secs(5)).await;
    assert_eq!(result.unwrap(), "ASIAEXAMPLE");
    assert_eq!((sts.requests(), attempts), (2, 2));

    let sts = FakeSts::start(&[Behaviour::Fail]);
    let (result, attempts) = assume(&sts.url(), Duration::from_secs(5)).await;
    assert_unavailable(&result);
    assert_eq!((sts.requests(), attempts), (2, 2));
}

#[tokio::test]
async fn a_refused_connection_is_tried_again_once() {
    // Nothing reached STS: trying again cannot issue twice.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (result, attempts) = assume(&url, Duration::from_secs(5)).await;
    assert_unavailable(&result);
    assert_eq!(attempts, 2);
}
