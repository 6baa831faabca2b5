//! A fake AWS STS on 127.0.0.1 speaking the Query API's `AssumeRole` (form
//! body in, XML out, as in AWS's STS API reference), whose behaviour is
//! switched at run time: credentials, no answer, a 5xx, `Throttling`, a junk
//! 200, or refused connections. It serves on a runtime of its own so that it
//! can stop listening outright, and counts the requests it received.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::HarnessError;

/// The secret access key of every credential the fake issues.
pub const FAKE_STS_SECRET_ACCESS_KEY: &str = "fakeStsSecret/wJalrXUtnFEMI/K7MDENG/bPxRf";

/// The session token of every credential the fake issues (base64, as STS's).
pub const FAKE_STS_SESSION_TOKEN: &str = "FwoGZXIvYXdzEBYaDFakeStsSessionTokenAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==";

/// What the fake does with the next requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StsBehaviour {
    /// 200 with an `AssumeRoleResponse`: credentials valid for an hour
    /// (see [`FakeSts::set_lifetime`]).
    Ok,
    /// Reads the request and never answers.
    Hang,
    /// 400 `<ErrorResponse>` of type `Sender`, code `Throttling`, "Rate exceeded".
    Throttling,
    /// This 5xx with an `<ErrorResponse>` of type `Receiver`: code
    /// `ServiceUnavailable` for 503, `InternalFailure` otherwise.
    ServerError(u16),
    /// This status with an HTML page, as a proxy or load balancer answers.
    ErrorPage(u16),
    /// 200 with XML cut off in the middle of the credentials (the secret key
    /// included), as a broken connection or proxy could deliver.
    Malformed,
    /// 200 with a body that is not XML at all.
    Junk,
    /// Not listening: connections are refused. Any other behaviour listens
    /// again on the same address.
    Refused,
}

/// One request the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsRequest {
    /// When it arrived.
    pub at: Instant,
    /// The form's `Action`.
    pub action: String,
    /// The form's `RoleArn`.
    pub role_arn: String,
    /// The form's `RoleSessionName`.
    pub session_name: String,
    /// Whether an `authorization` header for the `sts` service came along.
    pub signed_for_sts: bool,
}

struct Shared {
    behaviour: StsBehaviour,
    lifetime: Duration,
    requests: Vec<StsRequest>,
}

/// A running fake STS, stopped on drop.
pub struct FakeSts {
    shared: Arc<Mutex<Shared>>,
    /// `http://ADDR`: the broker's `--sts-endpoint`.
    pub url: String,
    /// The bound address.
    pub addr: SocketAddr,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
}

impl std::fmt::Debug for FakeSts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSts")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> HarnessError {
    move |source| HarnessError::Io { what, source }
}

/// Binds `addr` and serves the fake on a new runtime (one worker thread).
fn serve(
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
) -> Result<(tokio::runtime::Runtime, SocketAddr), HarnessError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("fake-sts")
        .enable_all()
        .build()
        .map_err(io("starting the fake STS's runtime".into()))?;
    let listener =
        std::net::TcpListener::bind(addr).map_err(io(format!("binding the fake STS to {addr}")))?;
    listener
        .set_nonblocking(true)
        .map_err(io("setting the fake STS's socket non-blocking".into()))?;
    let bound = listener
        .local_addr()
        .map_err(io("reading the fake STS's address".into()))?;
    let listener = {
        let _entered = runtime.enter();
        tokio::net::TcpListener::from_std(listener)
            .map_err(io("registering the fake STS's socket".into()))?
    };
    let app = axum::Router::new()
        .route("/", post(answer))
        .with_state(shared);
    runtime.spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("fake STS stopped: {e}");
        }
    });
    Ok((runtime, bound))
}

impl FakeSts {
    /// Listens on 127.0.0.1 (any port), answering [`StsBehaviour::Ok`].
    ///
    /// # Errors
    /// [`HarnessError::Io`] when it cannot bind or start its runtime.
    pub fn start() -> Result<FakeSts, HarnessError> {
        let shared = Arc::new(Mutex::new(Shared {
            behaviour: StsBehaviour::Ok,
            lifetime: Duration::from_secs(3600),
            requests: Vec::new(),
        }));
        let (runtime, addr) = serve(SocketAddr::from(([127, 0, 0, 1], 0)), shared.clone())?;
        Ok(FakeSts {
            shared,
            url: format!("http://{addr}"),
            addr,
            runtime: Mutex::new(Some(runtime)),
        })
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What later requests get. [`StsBehaviour::Refused`] stops the listener
    /// and drops every open connection; anything else listens again on the
    /// same address when it was stopped.
    ///
    /// # Errors
    /// [`HarnessError::Io`] when the address cannot be bound again.
    pub fn set(&self, behaviour: StsBehaviour) -> Result<(), HarnessError> {
        self.shared().behaviour = behaviour;
        let mut runtime = self.runtime.lock().unwrap_or_else(|e| e.into_inner());
        match (behaviour, runtime.is_some()) {
            (StsBehaviour::Refused, true) => {
                if let Some(rt) = runtime.take() {
                    rt.shutdown_background();
                }
            }
            (StsBehaviour::Refused, false) | (_, true) => {}
            (_, false) => *runtime = Some(serve(self.addr, self.shared.clone())?.0),
        }
        Ok(())
    }

    /// How long later credentials are valid.
    pub fn set_lifetime(&self, lifetime: Duration) {
        self.shared().lifetime = lifetime;
    }

    /// How many requests arrived so far.
    pub fn request_count(&self) -> usize {
        self.shared().requests.len()
    }

    /// Every request so far, in order of arrival.
    pub fn requests(&self) -> Vec<StsRequest> {
        self.shared().requests.clone()
    }
}

impl Drop for FakeSts {
    fn drop(&mut self) {
        let runtime = self.runtime.get_mut().map(Option::take);
        if let Ok(Some(rt)) = runtime {
            rt.shutdown_background();
        }
    }
}

/// `application/x-www-form-urlencoded` decoding of one value.
fn form_decode(value: &str) -> String {
    let hex = |b: u8| char::from(b).to_digit(16);
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', h, l]) => hex(*h).zip(hex(*l)).map(|(h, l)| (h * 16 + l) as u8),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, b) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form_field(body: &str, name: &str) -> String {
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| form_decode(v))
        .unwrap_or_default()
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a time (the civil-from-days algorithm).
fn iso8601(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

const XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

fn xml(status: StatusCode, request_id: &str, body: String) -> Response {
    (
        status,
        [
            ("content-type", "text/xml"),
            ("x-amzn-requestid", request_id),
        ],
        body,
    )
        .into_response()
}

fn error_xml(status: StatusCode, kind: &str, code: &str, message: &str, id: &str) -> Response {
    let body = format!(
        "<ErrorResponse xmlns=\"{XMLNS}\">\n  <Error>\n    <Type>{kind}</Type>\n    \
         <Code>{code}</Code>\n    <Message>{message}</Message>\n  </Error>\n  \
         <RequestId>{id}</RequestId>\n</ErrorResponse>\n"
    );
    xml(status, id, body)
}

async fn answer(
    State(shared): State<Arc<Mutex<Shared>>>,
    headers: axum::http::HeaderMap,
    body: String,
) -> Response {
    let request = StsRequest {
        at: Instant::now(),
        action: form_field(&body, "Action"),
        role_arn: form_field(&body, "RoleArn"),
        session_name: form_field(&body, "RoleSessionName"),
        signed_for_sts: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("/sts/aws4_request")),
    };
    let (behaviour, lifetime, n) = {
        let mut shared = shared.lock().unwrap_or_else(|e| e.into_inner());
        shared.requests.push(request.clone());
        (shared.behaviour, shared.lifetime, shared.requests.len())
    };
    let id = format!("c6104cbe-af31-11e0-8154-{n:012x}");
    match behaviour {
        StsBehaviour::Hang | StsBehaviour::Refused => std::future::pending().await,
        StsBehaviour::Throttling => error_xml(
            StatusCode::BAD_REQUEST,
            "Sender",
            "Throttling",
            "Rate exceeded",
            &id,
        ),
        StsBehaviour::ServerError(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let code = if status == StatusCode::SERVICE_UNAVAILABLE {
                "ServiceUnavailable"
            } else {
                "InternalFailure"
            };
            error_xml(status, "Receiver", code, "Please try again later", &id)
        }
        StsBehaviour::ErrorPage(status) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            [("content-type", "text/html")],
            format!("<html><body><h1>{status} error</h1></body></html>"),
        )
            .into_response(),
        StsBehaviour::Malformed => {
            let body = format!(
                "<AssumeRoleResponse xmlns=\"{XMLNS}\"><AssumeRoleResult><Credentials>\
                 <AccessKeyId>ASIAFAKESTS{n:09}</AccessKeyId><SecretAccessKey>\
                 {FAKE_STS_SECRET_ACCESS_KEY}</SecretAccessKey><SessionToken>{FAKE_STS_SESSION_TOKEN}\
                 <Expir"
            );
            xml(StatusCode::OK, &id, body)
        }
        StsBehaviour::Junk => (
            StatusCode::OK,
            [("content-type", "text/xml")],
            "this is not XML {\"AccessKeyId\": 1}",
        )
            .into_response(),
        StsBehaviour::Ok => {
            let role_name = request.role_arn.rsplit('/').next().unwrap_or("role");
            let account = request.role_arn.split(':').nth(4).unwrap_or("111122223333");
            let session = &request.session_name;
            let expiration = iso8601(SystemTime::now() + lifetime);
            let body = format!(
                "<AssumeRoleResponse xmlns=\"{XMLNS}\">\n  <AssumeRoleResult>\n    \
                 <AssumedRoleUser>\n      \
                 <Arn>arn:aws:sts::{account}:assumed-role/{role_name}/{session}</Arn>\n      \
                 <AssumedRoleId>AROA3XFRBF535PLBIFPI4:{session}</AssumedRoleId>\n    \
                 </AssumedRoleUser>\n    <Credentials>\n      \
                 <AccessKeyId>ASIAFAKESTS{n:09}</AccessKeyId>\n      \
                 <SecretAccessKey>{FAKE_STS_SECRET_ACCESS_KEY}</SecretAccessKey>\n      \
                 <SessionToken>{FAKE_STS_SESSION_TOKEN}</SessionToken>\n      \
                 <Expiration>{expiration}</Expiration>\n    </Credentials>\n    \
                 <PackedPolicySize>6</PackedPolicySize>\n  </AssumeRoleResult>\n  \
                 <ResponseMetadata>\n    <RequestId>{id}</RequestId>\n  \
                 </ResponseMetadata>\n</AssumeRoleResponse>\n"
            );
            xml(StatusCode::OK, &id, body)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expirations_are_utc_iso8601() {
        // 2019-11-09T13:34:41Z, the expiration in AWS's AssumeRole example.
        let t = UNIX_EPOCH + Duration::from_secs(1_573_306_481);
        assert_eq!(iso8601(t), "2019-11-09T13:34:41Z");
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        // A leap day.
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(iso8601(leap), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn form_values_are_decoded() {
        let body = "Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fr&X=a+b%zz";
        assert_eq!(form_field(body, "Action"), "AssumeRole");
        assert_eq!(form_field(body, "RoleArn"), "arn:aws:iam::1:role/r");
        assert_eq!(form_field(body, "X"), "a b%zz");
        assert_eq!(form_field(body, "Missing"), "");
    }
}
