//! The web console under `/console/` on the API listener: server-rendered
//! pages for a key of the keys file signed in with a session cookie (not SigV4).

use std::sync::Arc;

use axum::middleware;
use axum::routing::{get, post};
use axum::Router;

use crate::auth::Authentication;
use crate::keys::KeyRing;
use crate::SharedState;

mod associations;
mod audit;
mod clusters;
mod forms;
mod login;
pub(crate) mod page;
mod params;
pub(crate) mod session;
mod static_files;
mod trust_policy;

pub(crate) use session::ClientAddr;

/// What the console's handlers share: the server's state, the sessions and
/// the sign-in limiter.
pub(crate) struct Console {
    /// The server's state.
    pub(crate) app: SharedState,
    /// Signed-in sessions (in memory).
    pub(crate) sessions: session::Sessions,
    /// Failed sign-ins per source.
    pub(crate) limiter: session::LoginLimiter,
}

/// The console's state as its handlers get it.
pub(crate) type ConsoleState = Arc<Console>;

impl Console {
    /// The keys file's current keys; `None` without authentication.
    pub(crate) fn ring(&self) -> Option<KeyRing> {
        match &self.app.auth {
            Authentication::SigV4(verifier) => Some(verifier.keys()),
            Authentication::Disabled => None,
        }
    }
}

/// The console's routes, relative to `/console` (http_api.rs nests them).
pub(crate) fn router(app: SharedState) -> Router {
    let state = Arc::new(Console {
        app,
        sessions: session::Sessions::default(),
        limiter: session::LoginLimiter::default(),
    });
    Router::new()
        .route(
            "/",
            get(|| async { page::see_other("/console/associations") }),
        )
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/associations", get(associations::list))
        .route(
            "/associations/{cluster}/{association_id}",
            get(associations::detail),
        )
        .route(
            "/associations/new",
            get(forms::new_form).post(forms::create),
        )
        .route(
            "/associations/{cluster}/{association_id}/edit",
            get(forms::edit_page).post(forms::edit),
        )
        .route(
            "/associations/{cluster}/{association_id}/delete",
            get(forms::delete_page).post(forms::delete),
        )
        .route("/clusters", get(clusters::list))
        .route("/audit", get(audit::list))
        .route("/trust-policy", get(trust_policy::show))
        .route("/static/console.css", get(static_files::css))
        .route("/static/console.js", get(static_files::js))
        .fallback(page::not_found)
        .layer(middleware::map_response(page::security_headers))
        .with_state(state)
}
