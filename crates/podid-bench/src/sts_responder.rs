//! A local STS-compatible `AssumeRole` responder that enforces a rate (at most
//! N accepted calls in any second, `Throttling` beyond) and records every call.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// One accepted `AssumeRole` call.
#[derive(Debug, Clone)]
pub struct StsCall {
    /// When it arrived (since the responder started).
    pub at: Duration,
    /// `RoleSessionName`.
    pub session_name: String,
    /// The `kubernetes-pod-uid` session tag, if any.
    pub pod_uid: Option<String>,
}

struct Inner {
    started: Instant,
    max_per_second: usize,
    /// Arrival times of the accepted calls of the last second.
    window: Mutex<VecDeque<Instant>>,
    calls: Mutex<Vec<StsCall>>,
    throttled: AtomicU64,
    malformed: AtomicU64,
    serial: AtomicU64,
}

/// The responder's handle: its address and what it saw. Dropping it stops it.
pub struct StsResponder {
    /// Where it listens (`http://ADDR` is the `--sts-endpoint`).
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StsResponder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StsResponder {
    /// Listens on 127.0.0.1 (a free port), accepting at most
    /// `max_per_second` calls in any one-second window.
    pub async fn start(max_per_second: u32) -> anyhow::Result<StsResponder> {
        let inner = Arc::new(Inner {
            started: Instant::now(),
            max_per_second: max_per_second.max(1) as usize,
            window: Mutex::new(VecDeque::new()),
            calls: Mutex::new(Vec::new()),
            throttled: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            serial: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the STS responder")?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("STS responder stopped: {e}");
            }
        });
        Ok(StsResponder { addr, inner, task })
    }

    /// `http://ADDR`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// When it started: [`StsCall::at`] counts from here.
    pub fn started(&self) -> Instant {
        self.inner.started
    }

    /// Every accepted call so far, in arrival order.
    pub fn calls(&self) -> Vec<StsCall> {
        self.inner
            .calls
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// Calls answered `Throttling`.
    pub fn throttled(&self) -> u64 {
        self.inner.throttled.load(Ordering::Relaxed)
    }

    /// Requests that were not a well-formed `AssumeRole`.
    pub fn malformed(&self) -> u64 {
        self.inner.malformed.load(Ordering::Relaxed)
    }
}

/// The largest number of `calls` arriving within any window of one second.
pub fn max_in_any_second(calls: &[StsCall]) -> usize {
    let mut times: Vec<Duration> = calls.iter().map(|c| c.at).collect();
    times.sort();
    let mut best = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= Duration::from_secs(1) {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

/// Pod uids (or session names, for calls without the tag) seen more than
/// once, with their counts.
pub fn duplicates(calls: &[StsCall]) -> Vec<(String, usize)> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for c in calls {
        *seen
            .entry(c.pod_uid.as_deref().unwrap_or(&c.session_name))
            .or_default() += 1;
    }
    let mut dups: Vec<(String, usize)> = seen
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(k, n)| (k.to_owned(), n))
        .collect();
    dups.sort();
    dups
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn error(status: StatusCode, kind: &str, code: &str, message: &str) -> Response {
    let body = format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
         <Error><Type>{kind}</Type><Code>{code}</Code><Message>{}</Message></Error>\
         <RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>",
        xml_escape(message)
    );
    (status, [(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

/// `t` as STS writes its `Expiration`: RFC 3339 in UTC, whole seconds.
fn rfc3339(t: SystemTime) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from(t)
        .format(&format)
        .unwrap_or_default()
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    method: axum::http::Method,
    body: Bytes,
) -> Response {
    let arrived = Instant::now();
    let malformed = |message: &str| {
        inner.malformed.fetch_add(1, Ordering::Relaxed);
        error(StatusCode::BAD_REQUEST, "Sender", "InvalidAction", message)
    };
    if method != axum::http::Method::POST {
        return malformed("only POST is supported");
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let (Some("AssumeRole"), Some(role_arn), Some(session_name)) = (
        form.get("Action").map(String::as_str),
        form.get("RoleArn"),
        form.get("RoleSessionName"),
    ) else {
        return malformed("expected Action=AssumeRole with RoleArn and RoleSessionName");
    };
    {
        let Ok(mut window) = inner.window.lock() else {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Receiver",
                "InternalFailure",
                "lock poisoned",
            );
        };
        while window
            .front()
            .is_some_and(|t| arrived.duration_since(*t) >= Duration::from_secs(1))
        {
            window.pop_front();
        }
        if window.len() >= inner.max_per_second {
            inner.throttled.fetch_add(1, Ordering::Relaxed);
            return error(
                StatusCode::BAD_REQUEST,
                "Sender",
                "Throttling",
                "Rate exceeded",
            );
        }
        window.push_back(arrived);
    }
    let mut pod_uid = None;
    for n in 1..=50 {
        match form.get(&format!("Tags.member.{n}.Key")) {
            Some(k) if k == "kubernetes-pod-uid" => {
                pod_uid = form.get(&format!("Tags.member.{n}.Value")).cloned();
                break;
            }
            Some(_) => {}
            None => break,
        }
    }
    let duration: u64 = form
        .get("DurationSeconds")
        .and_then(|d| d.parse().ok())
        .unwrap_or(3600);
    let serial = inner.serial.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut calls) = inner.calls.lock() {
        calls.push(StsCall {
            at: arrived.duration_since(inner.started),
            session_name: session_name.clone(),
            pod_uid,
        });
    }
    let role_name = role_arn.rsplit('/').next().unwrap_or("role");
    let account = role_arn.split(':').nth(4).unwrap_or("111122223333");
    let expiration = rfc3339(SystemTime::now() + Duration::from_secs(duration));
    let body = format!(
        "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
         <AssumeRoleResult>\
         <AssumedRoleUser><AssumedRoleId>AROABENCH{serial:011}:{session}</AssumedRoleId>\
         <Arn>arn:aws:sts::{account}:assumed-role/{role}/{session}</Arn></AssumedRoleUser>\
         <Credentials><AccessKeyId>ASIABENCH{serial:011}</AccessKeyId>\
         <SecretAccessKey>benchSecretAccessKey{serial:020}</SecretAccessKey>\
         <SessionToken>benchSessionToken{serial:020}</SessionToken>\
         <Expiration>{expiration}</Expiration></Credentials>\
         <PackedPolicySize>6</PackedPolicySize>\
         </AssumeRoleResult>\
         <ResponseMetadata><RequestId>00000000-0000-0000-0000-{serial:012}</RequestId></ResponseMetadata>\
         </AssumeRoleResponse>",
        session = xml_escape(session_name),
        role = xml_escape(role_name),
        account = xml_escape(account),
    );
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(ms: u64, uid: &str) -> StsCall {
        StsCall {
            at: Duration::from_millis(ms),
            session_name: format!("s-{uid}"),
            pod_uid: Some(uid.into()),
        }
    }

    #[test]
    fn windows_and_duplicates() {
        let calls = vec![
            call(0, "a"),
            call(500, "b"),
            call(999, "c"),
            call(1000, "a"),
            call(1999, "d"),
        ];
        assert_eq!(max_in_any_second(&calls), 3);
        assert_eq!(duplicates(&calls), vec![("a".to_owned(), 2)]);
        assert_eq!(max_in_any_second(&[]), 0);
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)),
            "2026-01-01T00:00:00Z"
        );
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
    }
}
