//! What every dashboard page shares: the frame (header, navigation, style), the one script,
//! how times read, and the error pages.

use axum::{
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use backup_store::StoreError;
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::session::Session;

/// The dashboard's style sheet, inline in every page (no external assets).
const STYLE: &str = include_str!("style.css");

/// Refreshes the agents table every 5 s without a full reload (the page works without it).
pub(super) const REFRESH: &str = include_str!("refresh.js");

/// The CSP source of [`REFRESH`]: `sha256-<base64 of its SHA-256>`.
pub(crate) fn refresh_script_hash() -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(REFRESH.as_bytes()))
    )
}

/// A whole page: the header (with navigation and log-out once logged in) around `content`.
pub(super) fn layout(title: &str, session: Option<&Session>, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · restic fleet" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    strong { "restic fleet" }
                    @if let Some(s) = session {
                        a href="/ui" { "Agents" }
                        a href="/ui/policies" { "Policies" }
                        form method="post" action="/ui/logout" {
                            input type="hidden" name="csrf" value=(s.csrf());
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { (content) }
            }
        }
    }
}

/// A time as people read it here: UTC to the second, or `-`.
pub(super) fn when(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "-".into(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

/// A page with its status; dashboard pages are never cached (they hold a CSRF token).
pub(super) fn page(status: StatusCode, markup: Markup) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], markup).into_response()
}

/// The page for a store error: 404, 503, or a 500 whose detail goes to the log only.
pub(super) fn failure(e: StoreError) -> Response {
    let (status, text) = match &e {
        StoreError::NotFound(what) => (StatusCode::NOT_FOUND, format!("No such {what}.")),
        StoreError::Unavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "The database is unavailable; try again shortly.".into(),
        ),
        _ => {
            tracing::error!(error = %e, "dashboard error");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong; see the server log.".into(),
            )
        }
    };
    page(
        status,
        layout(
            "Error",
            None,
            html! { p.error { (text) } p { a href="/ui" { "Back to the dashboard" } } },
        ),
    )
}

/// The page for a form whose CSRF token does not match its session.
pub(super) fn csrf_failed() -> Response {
    page(
        StatusCode::FORBIDDEN,
        layout(
            "Expired form",
            None,
            html! {
                p.error { "This form expired or did not come from this dashboard. Reload the page and try again." }
                p { a href="/ui" { "Back to the dashboard" } }
            },
        ),
    )
}
