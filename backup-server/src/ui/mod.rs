//! The dashboard: the fleet at a glance, served by the server itself.
//!
//! Server-rendered HTML (maud: compile-time checked, escaping by default), no external assets,
//! usable without JavaScript except for the live refresh of the agents table. Sessions are
//! signed cookies (HttpOnly, SameSite=Strict) naming the tenant and a hash of the token used to
//! log in, so rotating the tenant's token ends every session. Every form carries a CSRF token
//! derived from the session (the login form: a double-submit cookie).

mod agents;
mod badges;
mod chart;
mod events;
mod forms;
mod layout;
mod login;
mod names;
mod overview;
mod policies;
mod policy;
mod session;
mod snapshots;
mod task;
mod units;

use axum::{
    Router,
    http::{HeaderValue, header},
    middleware,
    response::Response,
    routing::{get, post},
};

use crate::AppState;

/// The `/ui` routes.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(overview::overview_page))
        .route("/ui/", get(overview::overview_page))
        .route("/ui/agents", get(agents::agents_page))
        .route("/ui/events", get(events::events_page))
        .route("/ui/login", get(login::login_form).post(login::login))
        .route("/ui/logout", post(login::logout))
        .route("/ui/fragments/agents", get(agents::agents_fragment))
        .route("/ui/agents/{id}", get(agents::agent_page))
        .route("/ui/agents/{id}/settings", post(agents::save_settings))
        .route("/ui/tasks/{id}", get(task::task_page))
        .route("/ui/tasks/{id}/cancel", post(agents::cancel_task))
        .route("/ui/snapshots", get(snapshots::snapshots_page))
        .route("/ui/snapshots/{id}", get(snapshots::snapshot_page))
        .route("/ui/snapshots/{id}/ls", post(snapshots::browse))
        .route("/ui/snapshots/{id}/restore", post(snapshots::restore))
        .route(
            "/ui/policies",
            get(policies::policies_page).post(policies::create_policy),
        )
        .route("/ui/policies/{id}", get(policy::policy_page))
        .route("/ui/policies/{id}/enabled", post(policies::set_enabled))
        .route("/ui/policies/{id}/run", post(policies::run_policy))
        .layer(middleware::map_response(security_headers))
}

/// Defence in depth for every dashboard response: a Content-Security-Policy that admits only
/// the page's own inline style and its one refresh script (by hash), no framing, no sniffing,
/// no referrer.
async fn security_headers(mut response: Response) -> Response {
    static CSP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let csp = CSP.get_or_init(|| {
        format!(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
             script-src '{}'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
             base-uri 'none'",
            layout::refresh_script_hash()
        )
    });
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
