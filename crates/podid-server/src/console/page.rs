//! What every console page shares: the security headers, the signed-in
//! [`Page`] extractor (else a 303 to the sign-in form), rendering of askama
//! templates (HTML-escaped by default) and the error pages.

use askama::Template;
use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::session::{csrf_matches, SessionKey, COOKIE};
use super::ConsoleState;
use crate::authz::Role;

/// The console's Content-Security-Policy: nothing inline, nothing foreign.
pub(crate) const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; \
     img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Sets the security headers on every console answer; `Cache-Control:
/// no-store` unless the handler chose (the static files).
pub(crate) async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// A signed-in request: the session's id and key (id, role, clusters, CSRF
/// token). Extracting it answers 303 to `/console/login` without a live session.
#[derive(Debug, Clone)]
pub(crate) struct Page {
    /// The session id (from the cookie).
    pub(crate) session_id: String,
    /// The key that signed in.
    pub(crate) key: SessionKey,
}

impl Page {
    /// Whether the key may change things (admin).
    #[allow(dead_code)] // for the changing pages' templates
    pub(crate) fn is_admin(&self) -> bool {
        self.key.role == Role::Admin
    }

    /// The role's name, for the layout.
    pub(crate) fn role(&self) -> &'static str {
        self.key.role.as_str()
    }

    /// `None` if `token` is the session's CSRF token, else the 403 page.
    pub(crate) fn csrf_refusal(&self, token: Option<&str>) -> Option<Response> {
        if csrf_matches(&self.key, token) {
            None
        } else {
            Some(message(
                StatusCode::FORBIDDEN,
                "Refused",
                "The form's CSRF token is missing or wrong. Reload the page and try again.",
            ))
        }
    }

    /// `None` for an admin key, else the 403 page (readers change nothing).
    #[allow(dead_code)] // for the changing pages' handlers
    pub(crate) fn admin_refusal(&self) -> Option<Response> {
        if self.is_admin() {
            None
        } else {
            Some(message(
                StatusCode::FORBIDDEN,
                "Refused",
                &format!(
                    "Key {} (role {}) may not change anything.",
                    self.key.key_id,
                    self.role()
                ),
            ))
        }
    }
}

/// The value of the `podid_session` cookie, if sent.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

/// 303 See Other to `location`.
pub(crate) fn see_other(location: &'static str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, HeaderValue::from_static(location))],
    )
        .into_response()
}

impl FromRequestParts<ConsoleState> for Page {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        let session = session_cookie(&parts.headers).and_then(|id| {
            let ring = state.ring()?;
            let key = state.sessions.get(id, &ring)?;
            Some(Page {
                session_id: id.to_owned(),
                key,
            })
        });
        session.ok_or_else(|| see_other("/console/login"))
    }
}

/// Renders `template` as an HTML answer with `status`.
pub(crate) fn render<T: Template>(status: StatusCode, template: &T) -> Response {
    match template.render() {
        Ok(html) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console: a page could not be rendered");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

/// A page with one message (refusals, errors, not found).
#[derive(Template)]
#[template(path = "console/message.html")]
struct Message<'a> {
    title: &'a str,
    text: &'a str,
}

/// The message page with `status`.
pub(crate) fn message(status: StatusCode, title: &str, text: &str) -> Response {
    render(status, &Message { title, text })
}

/// The answer to a path the console does not have.
pub(crate) async fn not_found() -> Response {
    message(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no console page here.",
    )
}
