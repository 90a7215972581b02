//! The dashboard's pages and forms.

use std::collections::HashMap;

use axum::{
    Form,
    extract::{FromRequest, FromRequestParts, Path, Query, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use backup_core::{
    AgentId, AgentStatus, AgentView, BackupRunView, PolicyId, PolicyPatch, PolicySpec, PolicyView,
    Retention, ScheduleSpec, SettingsPatch, TaskId, TaskKind, TaskView, TenantId,
};
use backup_store::{BackupRunFilter, PageRequest, PolicyFilter, StoreError, TaskFilter};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::session::{self, LOGIN_CSRF_COOKIE, Session};
use crate::AppState;

type Fields = HashMap<String, String>;

const STYLE: &str = "
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2733;background:#f5f7fa}
header{background:#1d2733;color:#fff;padding:.6rem 1.2rem;display:flex;gap:1.2rem;align-items:center}
header a{color:#cfe3ff;text-decoration:none}header form{margin-left:auto}
main{padding:1rem 1.2rem;max-width:1200px}
table{border-collapse:collapse;width:100%;background:#fff;margin:.5rem 0 1.5rem}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #e3e8ee;font-size:.9rem}
th{background:#eef2f6}
.badge{display:inline-block;padding:.1rem .5rem;border-radius:.8rem;font-size:.8rem;font-weight:600}
.online{background:#d9f5e3;color:#17683a}.offline{background:#e6e9ed;color:#4c5866}
.saturated{background:#ffe7c2;color:#8a4b00}.backoff{background:#ffd6d6;color:#9b1c1c}
.error{color:#9b1c1c;font-size:.85rem}.notice{background:#e6f0ff;padding:.5rem .8rem}
form.inline{display:inline}label{display:block;margin:.4rem 0 .1rem;font-size:.85rem}
input,select,textarea{font:inherit;padding:.25rem .4rem}fieldset{background:#fff;border:1px solid #e3e8ee;margin:.5rem 0}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:.2rem 1rem}
button{font:inherit;padding:.25rem .7rem;cursor:pointer}
";

/// Refreshes the agents table every 5 s without a full reload (the page works without it).
const REFRESH: &str = "setInterval(async()=>{try{const r=await fetch('/ui/fragments/agents',{credentials:'same-origin'});\
if(r.redirected){location.reload();return}if(r.ok){document.getElementById('agents').innerHTML=await r.text()}}catch(e){}},5000);";

/// The CSP source of [`REFRESH`]: `sha256-<base64 of its SHA-256>`.
pub(crate) fn refresh_script_hash() -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(REFRESH.as_bytes()))
    )
}

fn layout(title: &str, session: Option<&Session>, content: Markup) -> Markup {
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

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "-".into(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

fn page(status: StatusCode, markup: Markup) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], markup).into_response()
}

fn failure(e: StoreError) -> Response {
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

fn csrf_failed() -> Response {
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

/// A form posted from a logged-in session with its CSRF token: every state-changing dashboard
/// route takes one, so none can forget the check. Without a session: the login page; with a
/// wrong or missing token: the "expired form" page.
pub(crate) struct Posted {
    session: Session,
    fields: Fields,
}

impl FromRequest<AppState> for Posted {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let Form(fields) = Form::<Fields>::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        if !fields.get("csrf").is_some_and(|c| session.csrf_ok(c)) {
            return Err(csrf_failed());
        }
        Ok(Posted { session, fields })
    }
}

// ---------------------------------------------------------------- login

fn login_markup(error: Option<&str>, csrf: &str, tenant: &str) -> Markup {
    layout(
        "Log in",
        None,
        html! {
            h1 { "Log in" }
            p { "Use your tenant's id and API token (the ones `backup-server tenant create` or POST /tenants printed)." }
            @if let Some(e) = error { p.error { (e) } }
            form method="post" action="/ui/login" {
                input type="hidden" name="csrf" value=(csrf);
                label for="tenantId" { "Tenant id" }
                input id="tenantId" name="tenantId" size="40" value=(tenant) autocomplete="username";
                label for="token" { "Token" }
                input id="token" name="token" type="password" size="70" autocomplete="current-password";
                p { button type="submit" { "Log in" } }
            }
        },
    )
}

pub(crate) async fn login_form() -> Response {
    let (csrf, cookie) = session::login_csrf();
    let mut response = page(StatusCode::OK, login_markup(None, &csrf, ""));
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

pub(crate) async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    let submitted = fields.get("csrf").map(String::as_str).unwrap_or_default();
    let expected = session::cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    let tenant_text = fields
        .get("tenantId")
        .map(|t| t.trim().to_owned())
        .unwrap_or_default();
    let retry = |status: StatusCode, error: &str| {
        let (csrf, cookie) = session::login_csrf();
        let mut response = page(status, login_markup(Some(error), &csrf, &tenant_text));
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
        response
    };
    if expected.is_empty()
        || !bool::from(subtle::ConstantTimeEq::ct_eq(
            submitted.as_bytes(),
            expected.as_bytes(),
        ))
    {
        return retry(
            StatusCode::FORBIDDEN,
            "The form expired; please log in again.",
        );
    }
    let token = fields
        .get("token")
        .map(|t| t.trim().to_owned())
        .unwrap_or_default();
    let Ok(tenant) = tenant_text.parse::<TenantId>() else {
        return retry(StatusCode::UNAUTHORIZED, "Unknown tenant or wrong token.");
    };
    match state.store().tenant_token_matches(tenant, &token).await {
        Ok(true) => {
            let mut response = Redirect::to("/ui").into_response();
            for cookie in [
                session::issue(state.session_key(), tenant, &token),
                format!("{LOGIN_CSRF_COOKIE}=; Path=/ui; Max-Age=0"),
            ] {
                if let Ok(v) = HeaderValue::from_str(&cookie) {
                    response.headers_mut().append(header::SET_COOKIE, v);
                }
            }
            response
        }
        Ok(false) => retry(StatusCode::UNAUTHORIZED, "Unknown tenant or wrong token."),
        Err(e) => failure(e),
    }
}

pub(crate) async fn logout(_: Posted) -> Response {
    let mut response = Redirect::to("/ui/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&session::clear()) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

// ---------------------------------------------------------------- agents

fn badge(agent: &AgentView) -> Markup {
    match agent.status {
        AgentStatus::Backoff => {
            html! { span.badge.backoff { "Backoff active until " (when(agent.backoff_until)) } }
        }
        AgentStatus::Saturated => html! { span.badge.saturated { "Saturated" } },
        AgentStatus::Online => html! { span.badge.online { "Online" } },
        _ => html! { span.badge.offline { "Offline" } },
    }
}

fn agents_table(agents: &[AgentView]) -> Markup {
    html! {
        table {
            thead { tr { th { "Agent" } th { "Host" } th { "Status" } th { "Running / limit" } th { "Queue depth" } th { "Pending retries" } th { "Last heartbeat" } } }
            tbody {
                @for a in agents {
                    tr {
                        td { a href={ "/ui/agents/" (a.id) } { (a.name) } }
                        td { (a.hostname) }
                        td { (badge(a)) }
                        td { (a.running_tasks) " / " (a.settings.max_concurrent_tasks) }
                        td { (a.queue_depth) }
                        td { (a.pending_retries) }
                        td { (when(a.last_heartbeat_at)) }
                    }
                }
                @if agents.is_empty() { tr { td colspan="7" { "No agents yet: create one with POST /agents." } } }
            }
        }
    }
}

pub(crate) async fn agents_page(State(state): State<AppState>, session: Session) -> Response {
    match state
        .store()
        .list_agents(session.tenant, &PageRequest::first(500))
        .await
    {
        Ok(list) => page(
            StatusCode::OK,
            layout(
                "Agents",
                Some(&session),
                html! {
                    h1 { "Agents" }
                    div #agents { (agents_table(&list.items)) }
                    noscript { p { "Reload the page to refresh (the table refreshes itself when JavaScript is on)." } }
                    script { (PreEscaped(REFRESH)) }
                },
            ),
        ),
        Err(e) => failure(e),
    }
}

pub(crate) async fn agents_fragment(State(state): State<AppState>, session: Session) -> Response {
    match state
        .store()
        .list_agents(session.tenant, &PageRequest::first(500))
        .await
    {
        Ok(list) => page(StatusCode::OK, agents_table(&list.items)),
        Err(e) => failure(e),
    }
}

/// The settings form's fields: (wire name, label).
const SETTINGS: [(&str, &str); 10] = [
    ("maxConcurrentTasks", "Max concurrent tasks (1-64)"),
    ("maxConcurrentBackups", "Max concurrent backups (1-64)"),
    ("maxConcurrentChecks", "Max concurrent checks (1-64)"),
    ("maxConcurrentPrunes", "Max concurrent prunes (1-64)"),
    ("cpuQuotaPercent", "CPU quota % (1-100)"),
    (
        "bandwidthLimitMbps",
        "Bandwidth limit Mbit/s (1-100000, empty: unlimited)",
    ),
    ("maxRetries", "Max retries (0-100)"),
    ("maxBackoffMinutes", "Max backoff minutes (1-1440)"),
    ("backoffBaseSeconds", "Backoff base seconds (1-3600)"),
    (
        "backoffFailureThreshold",
        "Backoff failure threshold (0-100)",
    ),
];

fn settings_values(agent: &AgentView) -> Fields {
    let json = serde_json::to_value(agent.settings).unwrap_or_default();
    SETTINGS
        .iter()
        .map(|(k, _)| {
            (
                (*k).to_owned(),
                json.get(*k)
                    .filter(|v| !v.is_null())
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            )
        })
        .collect()
}

fn chart(runs: &[BackupRunView]) -> Markup {
    let points: Vec<(u64, i64)> = runs
        .iter()
        .rev()
        .filter(|r| r.finished_at.is_some())
        .map(|r| (r.data_added.unwrap_or(0), r.duration_ms.unwrap_or(0)))
        .collect();
    if points.is_empty() {
        return html! { p { "No finished runs to chart yet." } };
    }
    let (w, h, pad) = (640.0_f64, 160.0_f64, 24.0_f64);
    let max_data = points.iter().map(|p| p.0).max().unwrap_or(1).max(1) as f64;
    let max_ms = points.iter().map(|p| p.1).max().unwrap_or(1).max(1) as f64;
    let step = (w - 2.0 * pad) / points.len() as f64;
    let line: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "{:.1},{:.1}",
                pad + step * (i as f64 + 0.5),
                h - pad - (p.1 as f64 / max_ms) * (h - 2.0 * pad)
            )
        })
        .collect();
    html! {
        svg width=(w) height=(h) viewBox={ "0 0 " (w) " " (h) } role="img" aria-label="Data added (bars) and duration (line) per run" {
            rect x="0" y="0" width=(w) height=(h) fill="#fff" {}
            @for (i, p) in points.iter().enumerate() {
                @let bar = (p.0 as f64 / max_data) * (h - 2.0 * pad);
                rect x=(format!("{:.1}", pad + step * i as f64 + 2.0)) y=(format!("{:.1}", h - pad - bar)) width=(format!("{:.1}", (step - 4.0).max(1.0))) height=(format!("{:.1}", bar)) fill="#9cc3f5" {}
            }
            polyline points=(line.join(" ")) fill="none" stroke="#c2410c" stroke-width="2" {}
            text x=(pad) y="14" font-size="11" fill="#1d4ed8" { "data added (max " (max_data as u64) " bytes)" }
            text x=(w - pad) y="14" font-size="11" fill="#c2410c" text-anchor="end" { "duration (max " (max_ms as i64) " ms)" }
        }
    }
}

fn agent_markup(
    session: &Session,
    agent: &AgentView,
    tasks: &[TaskView],
    runs: &[BackupRunView],
    values: &Fields,
    error: Option<(&str, &str)>,
) -> Markup {
    let error_for = |field: &str| {
        error
            .filter(|(f, _)| *f == field)
            .map(|(_, m)| m.to_owned())
    };
    layout(
        &agent.name,
        Some(session),
        html! {
            h1 { (agent.name) " " (badge(agent)) }
            p { "Host " (agent.hostname) " · running " (agent.running_tasks) " / " (agent.settings.max_concurrent_tasks)
                " · queue " (agent.queue_depth) " · pending retries " (agent.pending_retries)
                " · last heartbeat " (when(agent.last_heartbeat_at)) " · settings from " (agent.settings_source.as_str()) }
            h2 { "Settings" }
            @if let Some((field, message)) = error {
                @if !SETTINGS.iter().any(|(k, _)| *k == field) { p.error { (message) } }
            }
            form method="post" action={ "/ui/agents/" (agent.id) "/settings" } {
                input type="hidden" name="csrf" value=(session.csrf());
                fieldset.grid {
                    @for (key, label) in SETTINGS {
                        div {
                            label for=(key) { (label) }
                            input id=(key) name=(key) value=(values.get(key).cloned().unwrap_or_default()) size="8";
                            @if let Some(m) = error_for(key) { div.error { (m) } }
                        }
                    }
                }
                button type="submit" { "Save settings" }
            }
            h2 { "Tasks" }
            table {
                thead { tr { th { "Kind" } th { "Status" } th { "Attempt" } th { "Retries" } th { "Next retry" } th { "Failed permanently" } th { "Last error" } th {} } }
                tbody {
                    @for t in tasks {
                        tr {
                            td { (t.kind.as_str()) }
                            td { (t.status.as_str()) }
                            td { (t.attempt) }
                            td { (t.retry_count) " of " (t.max_retries) }
                            td { (when(t.next_retry_at)) }
                            td { @if t.failed_permanently { "yes (" (t.permanent_reason.map_or("", |r| r.as_str())) ")" } @else { "no" } }
                            td { (t.last_error.as_deref().unwrap_or("")) }
                            td {
                                @if t.status.is_open() {
                                    form.inline method="post" action={ "/ui/tasks/" (t.id) "/cancel" } {
                                        input type="hidden" name="csrf" value=(session.csrf());
                                        input type="hidden" name="agent" value=(agent.id);
                                        button type="submit" { "Cancel" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Recent backup runs" }
            (chart(runs))
            table {
                thead { tr { th { "Kind" } th { "Attempt" } th { "Status" } th { "Finished" } th { "Snapshot" } th { "Data added" } th { "Duration" } th { "Error" } } }
                tbody {
                    @for r in runs {
                        tr {
                            td { (r.kind.as_str()) } td { (r.attempt) } td { (r.status.as_str()) @if r.late { " (late)" } }
                            td { (when(r.finished_at)) } td { (r.snapshot_id.as_deref().unwrap_or("")) }
                            td { (r.data_added.map(|d| d.to_string()).unwrap_or_default()) }
                            td { (r.duration_ms.map(|d| format!("{d} ms")).unwrap_or_default()) }
                            td { (r.error.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        },
    )
}

async fn render_agent(
    state: &AppState,
    session: &Session,
    id: AgentId,
    values: Option<Fields>,
    error: Option<(&str, &str)>,
    status: StatusCode,
) -> Response {
    let store = state.store();
    let agent = match store.get_agent(session.tenant, id).await {
        Ok(a) => a,
        Err(e) => return failure(e),
    };
    let tasks = store
        .list_tasks(
            session.tenant,
            &TaskFilter {
                agent_id: Some(id),
                ..TaskFilter::default()
            },
            &PageRequest::first(50),
        )
        .await;
    let runs = store
        .list_backup_runs(
            session.tenant,
            &BackupRunFilter {
                agent_id: Some(id),
                ..BackupRunFilter::default()
            },
            &PageRequest::first(30),
        )
        .await;
    match (tasks, runs) {
        (Ok(tasks), Ok(runs)) => {
            let values = values.unwrap_or_else(|| settings_values(&agent));
            page(
                status,
                agent_markup(session, &agent, &tasks.items, &runs.items, &values, error),
            )
        }
        (Err(e), _) | (_, Err(e)) => failure(e),
    }
}

pub(crate) async fn agent_page(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = id.parse::<AgentId>() else {
        return failure(StoreError::NotFound("agent"));
    };
    render_agent(&state, &session, id, None, None, StatusCode::OK).await
}

/// The form's settings as a patch; a field that is not a number is an error on that field.
fn settings_patch(fields: &Fields) -> Result<SettingsPatch, (String, String)> {
    let mut json = serde_json::Map::new();
    for (key, label) in SETTINGS {
        let raw = fields.get(key).map(|v| v.trim()).unwrap_or_default();
        if raw.is_empty() {
            if key == "bandwidthLimitMbps" {
                json.insert(key.into(), serde_json::Value::Null);
            }
            continue;
        }
        let n: i64 = raw.parse().map_err(|_| {
            (
                key.to_owned(),
                format!("{raw:?} is not a whole number; {label}"),
            )
        })?;
        json.insert(key.into(), n.into());
    }
    serde_json::from_value(serde_json::Value::Object(json))
        .map_err(|e| ("settings".to_owned(), e.to_string()))
}

pub(crate) async fn save_settings(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { session, fields }: Posted,
) -> Response {
    let Ok(id) = id.parse::<AgentId>() else {
        return failure(StoreError::NotFound("agent"));
    };
    let patch = match settings_patch(&fields) {
        Ok(p) => p,
        Err((field, message)) => {
            return render_agent(
                &state,
                &session,
                id,
                Some(fields.clone()),
                Some((&field, &message)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    match state
        .store()
        .patch_settings(session.tenant, id, &patch)
        .await
    {
        Ok(_) => Redirect::to(&format!("/ui/agents/{id}")).into_response(),
        Err(StoreError::Validation(e)) => {
            let field = e.field().unwrap_or("settings").to_owned();
            render_agent(
                &state,
                &session,
                id,
                Some(fields.clone()),
                Some((&field, &e.to_string())),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => failure(e),
    }
}

pub(crate) async fn cancel_task(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { session, fields }: Posted,
) -> Response {
    let Ok(id) = id.parse::<TaskId>() else {
        return failure(StoreError::NotFound("task"));
    };
    match state.store().cancel_task(session.tenant, id).await {
        Ok(task) => Redirect::to(&format!("/ui/agents/{}", task.agent_id)).into_response(),
        Err(StoreError::Conflict(_)) => {
            let back = fields
                .get("agent")
                .and_then(|a| a.parse::<AgentId>().ok())
                .map_or_else(|| "/ui".to_owned(), |a| format!("/ui/agents/{a}"));
            Redirect::to(&back).into_response()
        }
        Err(e) => failure(e),
    }
}

// ---------------------------------------------------------------- policies

#[derive(serde::Deserialize, Default)]
pub(crate) struct Notice {
    notice: Option<String>,
}

fn policies_markup(
    session: &Session,
    policies: &[PolicyView],
    agents: &[AgentView],
    values: &Fields,
    error: Option<(&str, &str)>,
    notice: Option<&str>,
) -> Markup {
    let name_of = |id: AgentId| {
        agents
            .iter()
            .find(|a| a.id == id)
            .map_or_else(|| id.to_string(), |a| a.name.clone())
    };
    let v = |k: &str| values.get(k).cloned().unwrap_or_default();
    let error_for = |field: &str| {
        error
            .filter(|(f, _)| f.starts_with(field))
            .map(|(_, m)| m.to_owned())
    };
    layout(
        "Policies",
        Some(session),
        html! {
            h1 { "Policies" }
            @if let Some(n) = notice { p.notice { (n) } }
            table {
                thead { tr { th { "Name" } th { "Agent" } th { "Kind" } th { "Schedule" } th { "Repository" } th { "Next due" } th { "Enabled" } th {} } }
                tbody {
                    @for p in policies {
                        tr {
                            td { (p.spec.name) }
                            td { a href={ "/ui/agents/" (p.spec.agent_id) } { (name_of(p.spec.agent_id)) } }
                            td { (p.spec.kind.as_str()) }
                            td { @if let Some(e) = &p.spec.schedule.every { "every " (e) } @if let Some(c) = &p.spec.schedule.cron { "cron " (c) " " (p.spec.schedule.timezone.as_deref().unwrap_or("UTC")) } }
                            td { (p.spec.repository) }
                            td { (when(p.next_due_at)) }
                            td {
                                form.inline method="post" action={ "/ui/policies/" (p.id) "/enabled" } {
                                    input type="hidden" name="csrf" value=(session.csrf());
                                    input type="hidden" name="enabled" value=(if p.spec.enabled { "false" } else { "true" });
                                    button type="submit" { @if p.spec.enabled { "Enabled · disable" } @else { "Disabled · enable" } }
                                }
                            }
                            td {
                                form.inline method="post" action={ "/ui/policies/" (p.id) "/run" } {
                                    input type="hidden" name="csrf" value=(session.csrf());
                                    button type="submit" { "Run now" }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "New policy" }
            @if let Some((field, message)) = error { p.error { (field) ": " (message) } }
            form method="post" action="/ui/policies" {
                input type="hidden" name="csrf" value=(session.csrf());
                fieldset.grid {
                    div { label for="name" { "Name" } input id="name" name="name" value=(v("name")); @if let Some(m) = error_for("name") { div.error { (m) } } }
                    div { label for="agentId" { "Agent" } select id="agentId" name="agentId" { @for a in agents { option value=(a.id) selected[v("agentId") == a.id.to_string()] { (a.name) } } } }
                    div { label for="kind" { "Kind" } select id="kind" name="kind" { @for k in TaskKind::ALL { option value=(k.as_str()) selected[v("kind") == k.as_str()] { (k.as_str()) } } } }
                    div { label for="every" { "Every (e.g. 6h), or" } input id="every" name="every" value=(v("every")); }
                    div { label for="cron" { "Cron (5 fields)" } input id="cron" name="cron" value=(v("cron")); }
                    div { label for="timezone" { "Time zone (cron)" } input id="timezone" name="timezone" value=(v("timezone")) placeholder="UTC"; @if let Some(m) = error_for("schedule") { div.error { (m) } } }
                    div { label for="repository" { "Repository name" } input id="repository" name="repository" value=(v("repository")); @if let Some(m) = error_for("repository") { div.error { (m) } } }
                    div { label for="keepLast" { "Keep last (prune)" } input id="keepLast" name="keepLast" value=(v("keepLast")) size="5"; @if let Some(m) = error_for("retention") { div.error { (m) } } }
                    div { label for="maxTaskRetries" { "Max task retries (empty: the agent's)" } input id="maxTaskRetries" name="maxTaskRetries" value=(v("maxTaskRetries")) size="5"; }
                }
                label for="paths" { "Paths (one per line, backups)" }
                textarea id="paths" name="paths" rows="3" cols="60" { (v("paths")) }
                @if let Some(m) = error_for("paths") { div.error { (m) } }
                p { button type="submit" { "Create policy" } }
            }
        },
    )
}

async fn render_policies(
    state: &AppState,
    session: &Session,
    values: Fields,
    error: Option<(&str, &str)>,
    notice: Option<&str>,
    status: StatusCode,
) -> Response {
    let store = state.store();
    let policies = store
        .list_policies(
            session.tenant,
            &PolicyFilter::default(),
            &PageRequest::first(500),
        )
        .await;
    let agents = store
        .list_agents(session.tenant, &PageRequest::first(500))
        .await;
    match (policies, agents) {
        (Ok(p), Ok(a)) => page(
            status,
            policies_markup(session, &p.items, &a.items, &values, error, notice),
        ),
        (Err(e), _) | (_, Err(e)) => failure(e),
    }
}

pub(crate) async fn policies_page(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<Notice>,
) -> Response {
    render_policies(
        &state,
        &session,
        Fields::new(),
        None,
        q.notice.as_deref(),
        StatusCode::OK,
    )
    .await
}

fn number(fields: &Fields, key: &str) -> Result<Option<u32>, (String, String)> {
    match fields.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(raw) => raw
            .parse()
            .map(Some)
            .map_err(|_| (key.to_owned(), format!("{raw:?} is not a whole number"))),
    }
}

fn policy_from(fields: &Fields) -> Result<PolicySpec, (String, String)> {
    let text = |k: &str| {
        fields
            .get(k)
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let agent_id = text("agentId")
        .parse::<AgentId>()
        .map_err(|_| ("agentId".to_owned(), "choose an agent".to_owned()))?;
    let kind = text("kind")
        .parse::<TaskKind>()
        .map_err(|e| ("kind".to_owned(), e.to_string()))?;
    let (every, cron) = (text("every"), text("cron"));
    let schedule = ScheduleSpec {
        every: (!every.is_empty()).then_some(every),
        cron: (!cron.is_empty()).then_some(cron.clone()),
        timezone: (!cron.is_empty())
            .then(|| text("timezone"))
            .filter(|t| !t.is_empty()),
    };
    let keep_last = number(fields, "keepLast")?;
    Ok(PolicySpec {
        name: text("name"),
        agent_id,
        kind,
        schedule,
        paths: text("paths")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        excludes: vec![],
        repository: text("repository"),
        retention: keep_last.map(|n| Retention {
            keep_last: Some(n),
            ..Retention::default()
        }),
        max_task_retries: number(fields, "maxTaskRetries")?,
        timeout_minutes: None,
        enabled: true,
    })
}

pub(crate) async fn create_policy(
    State(state): State<AppState>,
    Posted { session, fields }: Posted,
) -> Response {
    let spec = match policy_from(&fields) {
        Ok(s) => s,
        Err((f, m)) => {
            return render_policies(
                &state,
                &session,
                fields.clone(),
                Some((&f, &m)),
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    match state.store().create_policy(session.tenant, &spec).await {
        Ok(p) => Redirect::to(&format!(
            "/ui/policies?notice=Created+{}",
            urlencode(&p.spec.name)
        ))
        .into_response(),
        Err(StoreError::Validation(e)) => {
            let field = e.field().unwrap_or("policy").to_owned();
            render_policies(
                &state,
                &session,
                fields.clone(),
                Some((&field, &e.to_string())),
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => failure(e),
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub(crate) async fn set_enabled(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { session, fields }: Posted,
) -> Response {
    let Ok(id) = id.parse::<PolicyId>() else {
        return failure(StoreError::NotFound("policy"));
    };
    let enabled = fields.get("enabled").is_some_and(|v| v == "true");
    match state
        .store()
        .update_policy(
            session.tenant,
            id,
            &PolicyPatch {
                enabled: Some(enabled),
                ..PolicyPatch::default()
            },
        )
        .await
    {
        Ok(p) => Redirect::to(&format!(
            "/ui/policies?notice={}+{}",
            if enabled { "Enabled" } else { "Disabled" },
            urlencode(&p.spec.name)
        ))
        .into_response(),
        Err(e) => failure(e),
    }
}

pub(crate) async fn run_policy(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { session, .. }: Posted,
) -> Response {
    let Ok(id) = id.parse::<PolicyId>() else {
        return failure(StoreError::NotFound("policy"));
    };
    match state.store().run_policy_now(session.tenant, id).await {
        Ok(_) => Redirect::to("/ui/policies?notice=Task+created").into_response(),
        Err(StoreError::Conflict(m)) => Redirect::to(&format!(
            "/ui/policies?notice={}",
            urlencode(&format!("Not started: {m}"))
        ))
        .into_response(),
        Err(e) => failure(e),
    }
}
