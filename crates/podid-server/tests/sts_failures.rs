//! The broker when STS fails: a real `podid server` process (built with
//! `cargo build -p podid`) in front of a fake STS (`podid_test_support::fake_sts`)
//! that times out, answers 5xx, `Throttling` or junk, or refuses connections.
//! Calls are `AssumeRoleForPodIdentity` by aws-sdk-eksauth (no retries),
//! signed with the node key, carrying a token signed with the cluster's key.
//!
//! Each failure is asserted as the EKS Auth error it must be (status and
//! `__type`, literals from the EKS Auth API reference), without a secret in
//! the answer; then STS comes back and the same pod gets credentials. The
//! server's log, read after it exited, holds no secret either.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use aws_sdk_eksauth::config::retry::RetryConfig;
use aws_sdk_eksauth::config::timeout::TimeoutConfig;
use aws_sdk_eksauth::error::{ProvideErrorMetadata, SdkError};
use podid_test_support::fake_sts::{
    StsBehaviour, FAKE_STS_SECRET_ACCESS_KEY, FAKE_STS_SESSION_TOKEN,
};
use podid_test_support::sts_broker::{StsBroker, BROKER_KEY, CLUSTER, ROLE_ARN};
use podid_test_support::{ADMIN, NODE};

/// aws-sdk-eksauth at the server, signing with the node key, one attempt.
fn eks_auth(broker: &StsBroker) -> aws_sdk_eksauth::Client {
    let credentials = aws_credential_types::Credentials::new(
        NODE.access_key_id,
        NODE.secret_access_key,
        None,
        None,
        "test",
    );
    let config = aws_sdk_eksauth::Config::builder()
        .behavior_version(aws_sdk_eksauth::config::BehaviorVersion::latest())
        .region(aws_sdk_eksauth::config::Region::new("us-east-1"))
        .credentials_provider(credentials)
        .endpoint_url(broker.endpoint())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(30))
                .build(),
        )
        .build();
    aws_sdk_eksauth::Client::from_conf(config)
}

/// What the broker answered an error with.
#[derive(Debug)]
struct Refusal {
    status: u16,
    error_type_header: String,
    code: String,
    body: serde_json::Value,
    raw: String,
}

/// Calls `AssumeRoleForPodIdentity` with `token`: the access key id, or the refusal.
async fn assume(client: &aws_sdk_eksauth::Client, token: &str) -> Result<String, Refusal> {
    let result = client
        .assume_role_for_pod_identity()
        .cluster_name(CLUSTER)
        .token(token)
        .send()
        .await;
    match result {
        Ok(out) => Ok(out.credentials().unwrap().access_key_id().to_owned()),
        Err(SdkError::ServiceError(e)) => {
            let raw = e.raw();
            let text = String::from_utf8_lossy(raw.body().bytes().unwrap_or_default()).into_owned();
            Err(Refusal {
                status: raw.status().as_u16(),
                error_type_header: raw
                    .headers()
                    .get("x-amzn-errortype")
                    .unwrap_or_default()
                    .to_owned(),
                code: e.err().code().unwrap_or_default().to_owned(),
                body: serde_json::from_str(&text).unwrap_or_default(),
                raw: text,
            })
        }
        Err(other) => panic!("no answer from the broker: {other:?}"),
    }
}

/// Everything secret the test handled: the broker's and the node's secret
/// keys, the fake STS's credentials, and the pods' tokens (and their claim
/// and signature segments).
fn secrets(tokens: &[&str]) -> Vec<String> {
    let mut all = vec![
        BROKER_KEY.secret_access_key.to_owned(),
        NODE.secret_access_key.to_owned(),
        ADMIN.secret_access_key.to_owned(),
        FAKE_STS_SECRET_ACCESS_KEY.to_owned(),
        FAKE_STS_SESSION_TOKEN.to_owned(),
    ];
    for token in tokens {
        all.push((*token).to_owned());
        all.extend(token.split('.').skip(1).map(str::to_owned));
    }
    all
}

fn assert_no_secret(what: &str, text: &str, tokens: &[&str]) {
    for secret in secrets(tokens) {
        assert!(
            !text.contains(&secret),
            "{what} carries a secret ({}…): {text}",
            &secret[..8]
        );
    }
}

/// With STS behaving as `behaviour`, a new pod's call is refused with
/// `status` and `error_type` and carries no secret; STS saw `sts_requests`
/// requests for it (when given), each an `AssumeRole` of the association's
/// role signed for `sts`. Then STS answers again and the same pod gets the
/// credentials it issued. Returns the pod's token.
async fn fails_then_recovers(
    broker: &StsBroker,
    pod: &str,
    behaviour: StsBehaviour,
    status: u16,
    error_type: &str,
    sts_requests: Option<usize>,
) -> String {
    let client = eks_auth(broker);
    let token = broker.token(pod);
    broker.sts.set(behaviour).unwrap();
    let before = broker.sts.request_count();
    let refusal = assume(&client, &token)
        .await
        .expect_err(&format!("{behaviour:?}: the broker issued credentials"));
    assert_eq!(refusal.status, status, "{behaviour:?}: {refusal:?}");
    assert_eq!(refusal.code, error_type, "{behaviour:?}: {refusal:?}");
    assert_eq!(
        refusal.body["__type"], error_type,
        "{behaviour:?}: {refusal:?}"
    );
    assert!(
        refusal.error_type_header.starts_with(error_type),
        "{behaviour:?}: {refusal:?}"
    );
    assert!(
        refusal.body["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{behaviour:?}: {refusal:?}"
    );
    assert_no_secret(&format!("{behaviour:?}'s answer"), &refusal.raw, &[&token]);

    let seen = broker.sts.requests();
    let seen = &seen[before..];
    if let Some(n) = sts_requests {
        assert_eq!(seen.len(), n, "{behaviour:?}: STS requests {seen:?}");
    } else {
        assert!(!seen.is_empty(), "{behaviour:?}: STS was never asked");
    }
    for request in seen {
        assert_eq!(request.action, "AssumeRole", "{request:?}");
        assert_eq!(request.role_arn, ROLE_ARN, "{request:?}");
        assert!(request.signed_for_sts, "{request:?}");
    }

    // STS is back: the same pod gets what STS issued now.
    broker.sts.set(StsBehaviour::Ok).unwrap();
    let issued_before = broker.sts.request_count();
    let key = assume(&client, &token)
        .await
        .unwrap_or_else(|e| panic!("after {behaviour:?}, STS answering again: {e:?}"));
    // One STS request, or two when a loaded machine made the first time out.
    let issued: Vec<String> = (issued_before + 1..=broker.sts.request_count())
        .map(|n| format!("ASIAFAKESTS{n:09}"))
        .collect();
    assert!(
        (1..=2).contains(&issued.len()) && issued.contains(&key),
        "{key} not among {issued:?}"
    );
    token
}

/// Stops the server and checks its whole log (flushed: read after it exited)
/// for the secrets and the tokens used.
fn assert_log_clean(mut broker: StsBroker, tokens: &[String]) {
    let log = broker.stop().unwrap();
    assert!(log.contains("STS call failed"), "{log}");
    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
    assert_no_secret("the server's log", &log, &tokens);
}

/// One failure case: a new pod, what STS does, the broker's status and
/// `__type`, and how many STS requests the failed call made (when fixed).
type Case = (&'static str, StsBehaviour, u16, &'static str, Option<usize>);

/// A server with `args` through `cases`, one after another; then its log.
async fn run(args: &[&str], cases: &[Case]) {
    let broker = StsBroker::start(args).unwrap();
    let mut tokens = Vec::new();
    for &(pod, behaviour, status, error_type, sts_requests) in cases {
        let token =
            fails_then_recovers(&broker, pod, behaviour, status, error_type, sts_requests).await;
        tokens.push(token);
    }
    assert_log_clean(broker, &tokens);
}

const UNAVAILABLE: &str = "ServiceUnavailableException";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_timing_out_is_service_unavailable() {
    // Attempts time out after 300 ms, the call after 600 ms: STS sees one
    // request or two (the retry waits a random back-off).
    let case = ("hang", StsBehaviour::Hang, 503, UNAVAILABLE, None);
    run(&["--sts-timeout-ms", "300"], &[case]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_5xx_is_service_unavailable_after_one_retry() {
    // docs/broker.md: "one retry" of an STS call.
    let cases = [
        (
            "internal",
            StsBehaviour::ServerError(500),
            503,
            UNAVAILABLE,
            Some(2),
        ),
        (
            "unavailable",
            StsBehaviour::ServerError(503),
            503,
            UNAVAILABLE,
            Some(2),
        ),
        (
            "bad-gateway",
            StsBehaviour::ErrorPage(502),
            503,
            UNAVAILABLE,
            Some(2),
        ),
    ];
    run(&[], &cases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_throttling_is_throttling_exception_after_one_retry() {
    let case = (
        "throttled",
        StsBehaviour::Throttling,
        429,
        "ThrottlingException",
        Some(2),
    );
    run(&[], &[case]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_refusing_connections_is_service_unavailable() {
    let case = ("refused", StsBehaviour::Refused, 503, UNAVAILABLE, Some(0));
    run(&[], &[case]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_answering_junk_is_service_unavailable_without_a_retry() {
    // A 200 the SDK cannot parse, and one it parses with fields missing (cut
    // off before the expiration), which the broker refuses.
    let cases = [
        ("junk", StsBehaviour::Junk, 503, UNAVAILABLE, Some(1)),
        (
            "cut-off",
            StsBehaviour::Malformed,
            503,
            UNAVAILABLE,
            Some(1),
        ),
    ];
    run(&[], &cases).await;
}
