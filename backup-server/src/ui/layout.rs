//! What every dashboard page shares: the frame (header, navigation, style), the one script,
//! the pager of long tables, and the error pages.

use axum::{
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use backup_store::StoreError;
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
    layout_reloading(title, session, None, content)
}

/// A whole page that reloads itself every `reload` seconds (a task being waited for): a
/// `<meta http-equiv="refresh">`, which needs no script.
pub(super) fn layout_reloading(
    title: &str,
    session: Option<&Session>,
    reload: Option<u32>,
    content: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(secs) = reload { meta http-equiv="refresh" content=(secs); }
                title { (title) " · restic fleet" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    strong { "restic fleet" }
                    @if let Some(s) = session {
                        a href="/ui" { "Overview" }
                        a href="/ui/agents" { "Agents" }
                        a href="/ui/policies" { "Policies" }
                        a href="/ui/snapshots" { "Snapshots" }
                        a href="/ui/events" { "Events" }
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

/// The link to a table's next page, when there is one: `path` with the cursor added to its
/// query string.
pub(super) fn pager(path: &str, next: Option<&str>) -> Markup {
    pager_named(path, "cursor", next)
}

/// [`pager`] for one of several tables on a page: the cursor goes in the query as `param`.
pub(super) fn pager_named(path: &str, param: &str, next: Option<&str>) -> Markup {
    html! {
        @if let Some(cursor) = next {
            @let sep = if path.contains('?') { '&' } else { '?' };
            @let cursor: String = form_urlencoded::byte_serialize(cursor.as_bytes()).collect();
            p.pager { a.next href={ (path) (sep) (param) "=" (cursor) } { "Next page →" } }
        }
    }
}

/// A page with its status; dashboard pages are never cached (they hold a CSRF token).
pub(super) fn page(status: StatusCode, markup: Markup) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], markup).into_response()
}

/// The page for a store error: 404, 400 for bad input (a link's cursor), 503, or a 500 whose detail goes to the log only.
pub(super) fn failure(e: StoreError) -> Response {
    let (status, text) = match &e {
        StoreError::NotFound(what) => (StatusCode::NOT_FOUND, format!("No such {what}.")),
        StoreError::Validation(e) => (StatusCode::BAD_REQUEST, e.to_string()),
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
