//! `GET`/`POST /console/login` and `POST /console/logout`. The secret never
//! reaches a log line or a page.

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::page::{message, render, see_other, Page};
use super::session::{check_pair, ClientAddr, ABSOLUTE, COOKIE};
use super::ConsoleState;
use crate::authz::Role;
use crate::http_api::TlsReady;

/// What a wrong pair is told (never which half was wrong).
pub(crate) const WRONG_PAIR: &str = "The access key id or secret access key is wrong.";
/// What a source past its failed sign-ins is told.
pub(crate) const TOO_MANY: &str =
    "Too many failed sign-ins from your address: wait a minute and try again.";

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginForm<'a> {
    error: Option<&'a str>,
    access_key_id: &'a str,
}

fn login_page(status: StatusCode, error: Option<&str>, access_key_id: &str) -> Response {
    render(
        status,
        &LoginForm {
            error,
            access_key_id,
        },
    )
}

/// `GET /console/login`: the sign-in form.
pub(crate) async fn form() -> Response {
    login_page(StatusCode::OK, None, "")
}

/// The value of field `name` of a url-encoded form.
pub(crate) fn field(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `POST /console/login`: a right pair starts a session (303 to the
/// associations); a wrong one shows the form again, at most 5 per minute per source.
pub(crate) async fn submit(
    State(console): State<ConsoleState>,
    addr: Option<Extension<ClientAddr>>,
    tls: Option<Extension<TlsReady>>,
    body: Bytes,
) -> Response {
    let source = addr.map(|Extension(ClientAddr(a))| a.ip());
    let key_id = field(&body, "access_key_id").unwrap_or_default();
    if console.limiter.is_limited(source) {
        return login_page(StatusCode::TOO_MANY_REQUESTS, Some(TOO_MANY), &key_id);
    }
    let Some(ring) = console.ring() else {
        return login_page(
            StatusCode::FORBIDDEN,
            Some("This server runs without authentication (--insecure-no-auth); the console needs a keys file."),
            &key_id,
        );
    };
    let secret = field(&body, "secret_access_key").unwrap_or_default();
    let Some(key) = check_pair(&ring, &key_id, &secret) else {
        console.limiter.failed(source);
        tracing::info!(key = %podid_api::arn::printable(&key_id), "console: sign-in refused");
        return login_page(StatusCode::OK, Some(WRONG_PAIR), &key_id);
    };
    if key.role == Role::Node {
        return login_page(
            StatusCode::FORBIDDEN,
            Some("Node keys cannot sign in to the console: use an admin or reader key."),
            &key_id,
        );
    }
    let id = console.sessions.start(key);
    tracing::info!(key = %key.access_key_id, "console: signed in");
    let secure = tls.is_some_and(|Extension(t)| t.0.is_some());
    let cookie = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/console; Max-Age={}{}",
        ABSOLUTE.as_secs(),
        if secure { "; Secure" } else { "" }
    );
    let mut response = see_other("/console/associations");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `POST /console/logout` (with the CSRF token): ends the session.
pub(crate) async fn logout(
    State(console): State<ConsoleState>,
    page: Page,
    body: Bytes,
) -> Response {
    if let Some(refused) = page.csrf_refusal(field(&body, "csrf_token").as_deref()) {
        return refused;
    }
    console.sessions.end(&page.session_id);
    let mut response = see_other("/console/login");
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "podid_session=; HttpOnly; SameSite=Strict; Path=/console; Max-Age=0",
        ),
    );
    response.into_response()
}

/// A store failure as a page (the cause is logged, not shown).
pub(crate) fn store_failed(e: &podid_store::StoreError) -> Response {
    tracing::warn!(error = %crate::wire::error_chain(e), "console: store read failed");
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Unavailable",
        "The store could not be read; try again.",
    )
}
