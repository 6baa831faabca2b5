//! One call to podid's HTTP APIs signed with an API key (aws-sigv4, for the
//! service the path is signed for), and its answer.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::sigv4::Signer;

/// How long a call may take (long polls wait up to 30 s).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// An API answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiAnswer {
    /// The HTTP status.
    pub status: u16,
    /// The `x-amzn-errortype` header (empty on success).
    pub error_type: String,
    /// The JSON body (`Null` when it is not JSON).
    pub body: Value,
}

impl ApiAnswer {
    /// The error's `__type` (empty on success).
    pub fn kind(&self) -> &str {
        self.body["__type"].as_str().unwrap_or("")
    }

    /// The error's `message` (empty on success).
    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or("")
    }
}

/// `method endpoint+target` with `body` (JSON when not empty), signed by the
/// key `(access key id, secret)` for us-east-1 and `eks-auth` on
/// `/clusters/{name}/assume-role-for-pod-identity`, `eks` elsewhere.
///
/// # Panics
/// When the request cannot be signed or sent (the server is not there).
pub async fn signed_call(
    endpoint: &str,
    (id, secret): (&str, &str),
    method: &str,
    target: &str,
    body: &[u8],
) -> ApiAnswer {
    let url = format!("{endpoint}{target}");
    let host = endpoint.split("://").nth(1).unwrap_or(endpoint);
    let mut headers = vec![("host", host)];
    if !body.is_empty() {
        headers.push(("content-type", "application/json"));
    }
    let path = target.split('?').next().unwrap_or(target);
    let service = if path.ends_with("/assume-role-for-pod-identity") {
        "eks-auth"
    } else {
        "eks"
    };
    let signer = Signer {
        access_key_id: id,
        secret_access_key: secret,
        session_token: None,
        region: "us-east-1",
        service,
        time: SystemTime::now(),
        every_header: false,
    };
    let added = signer
        .headers(method, &url, &headers, body)
        .expect("the request can be signed");
    let mut request = reqwest::Client::new()
        .request(method.parse().expect("an HTTP method"), &url)
        .timeout(CALL_TIMEOUT)
        .body(body.to_vec());
    for (k, v) in headers.iter().copied() {
        request = request.header(k, v);
    }
    for (k, v) in &added {
        request = request.header(k, v);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let error_type = response
        .headers()
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = response.json().await.unwrap_or(Value::Null);
    ApiAnswer {
        status,
        error_type,
        body,
    }
}
