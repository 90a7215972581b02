//! The dashboard: the fleet at a glance, served by the server itself.
//!
//! Server-rendered HTML (maud: compile-time checked, escaping by default), no external assets,
//! usable without JavaScript except for the live refresh of the agents table. Sessions are
//! signed cookies (HttpOnly, SameSite=Strict) naming the tenant and a hash of the token used to
//! log in, so rotating the tenant's token ends every session. Every form carries a CSRF token
//! derived from the session (the login form: a double-submit cookie).

mod pages;
mod session;

use axum::{
    Router,
    routing::{get, post},
};

use crate::AppState;

pub(crate) use session::SessionKey;

/// The `/ui` routes.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(pages::agents_page))
        .route("/ui/", get(pages::agents_page))
        .route("/ui/login", get(pages::login_form).post(pages::login))
        .route("/ui/logout", post(pages::logout))
        .route("/ui/fragments/agents", get(pages::agents_fragment))
        .route("/ui/agents/{id}", get(pages::agent_page))
        .route("/ui/agents/{id}/settings", post(pages::save_settings))
        .route("/ui/tasks/{id}/cancel", post(pages::cancel_task))
        .route(
            "/ui/policies",
            get(pages::policies_page).post(pages::create_policy),
        )
        .route("/ui/policies/{id}/enabled", post(pages::set_enabled))
        .route("/ui/policies/{id}/run", post(pages::run_policy))
}
