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
    http::{HeaderValue, header},
    middleware,
    response::Response,
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
            pages::refresh_script_hash()
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
