//! The agents pages: the fleet table (refreshed live), and one agent with its settings form,
//! its tasks (with cancel) and its recent runs, each row naming its policy.

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use backup_core::Page;
use backup_core::{AgentId, AgentView, BackupRunView, SETTING_FIELDS, TaskId, TaskView};
use backup_store::{BackupRunFilter, PageRequest, StoreError, TaskFilter};
use chrono::{DateTime, Utc};
use maud::{Markup, PreEscaped, html};

use super::{
    badges,
    chart::chart,
    forms::{CancelForm, FieldError, Posted, SettingsForm},
    layout::{REFRESH, failure, layout, page, pager, pager_named},
    names::Names,
    policy::runs_table,
    session::Session,
    units::when,
};
use crate::AppState;

fn agents_table(agents: &[AgentView], now: DateTime<Utc>) -> Markup {
    html! {
        table {
            thead { tr { th { "Agent" } th { "Host" } th { "Status" } th { "Running / limit" } th { "Queue depth" } th { "Pending retries" } th { "Last heartbeat" } } }
            tbody {
                @for a in agents {
                    tr {
                        td { a href={ "/ui/agents/" (a.id) } { (a.name) } }
                        td { (a.hostname) }
                        td { (badges::agent(a, now)) }
                        td { (a.running_tasks) " / " (a.settings.max_concurrent_tasks) }
                        td { (a.queue_depth) }
                        td { (a.pending_retries) }
                        td { (when(a.last_heartbeat_at, now)) }
                    }
                }
                @if agents.is_empty() { tr { td colspan="7" { "No agents yet: create one with POST /agents." } } }
            }
        }
    }
}

/// Agents per page of the fleet table.
const AGENTS: u32 = 100;
/// Tasks and runs per page on an agent's page.
const ROWS: u32 = 30;

/// The fleet table's query: the page's cursor.
#[derive(serde::Deserialize, Default)]
pub(crate) struct AgentsQuery {
    cursor: Option<String>,
}

impl AgentsQuery {
    fn page(&self) -> PageRequest {
        PageRequest {
            limit: Some(AGENTS),
            cursor: self.cursor.clone().filter(|c| !c.is_empty()),
        }
    }
}

/// An agent page's query: the cursors of its tasks and of its runs.
#[derive(serde::Deserialize, Default)]
pub(crate) struct AgentQuery {
    tasks: Option<String>,
    runs: Option<String>,
}

/// A page of `ROWS` from `cursor` on.
fn rows(cursor: Option<&String>) -> PageRequest {
    PageRequest {
        limit: Some(ROWS),
        cursor: cursor.filter(|c| !c.is_empty()).cloned(),
    }
}

pub(crate) async fn agents_page(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<AgentsQuery>,
) -> Response {
    match state.store().list_agents(session.tenant(), &q.page()).await {
        Ok(list) => page(
            StatusCode::OK,
            layout(
                "Agents",
                Some(&session),
                html! {
                    h1 { "Agents" }
                    div #agents { (agents_table(&list.items, state.store().clock().now())) }
                    (pager("/ui/agents", list.next_cursor.as_deref()))
                    noscript { p { "Reload the page to refresh (the table refreshes itself when JavaScript is on)." } }
                    script { (PreEscaped(REFRESH)) }
                },
            ),
        ),
        Err(e) => failure(e),
    }
}

/// The fleet table alone, for the page's live refresh (the same page of it).
pub(crate) async fn agents_fragment(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<AgentsQuery>,
) -> Response {
    match state.store().list_agents(session.tenant(), &q.page()).await {
        Ok(list) => page(
            StatusCode::OK,
            agents_table(&list.items, state.store().clock().now()),
        ),
        Err(e) => failure(e),
    }
}

/// What the agent page shows besides its settings form.
struct Shown<'a> {
    agent: &'a AgentView,
    tasks: &'a Page<TaskView>,
    runs: &'a Page<BackupRunView>,
    names: &'a Names,
    now: DateTime<Utc>,
}

fn agent_markup(
    session: &Session,
    shown: &Shown<'_>,
    values: &SettingsForm,
    error: Option<(&str, &str)>,
) -> Markup {
    let Shown {
        agent,
        tasks,
        runs,
        names,
        now,
    } = *shown;
    let error_for = |field: &str| {
        error
            .filter(|(f, _)| *f == field)
            .map(|(_, m)| m.to_owned())
    };
    layout(
        &agent.name,
        Some(session),
        html! {
            h1 { (agent.name) " " (badges::agent(agent, now)) }
            p { "Host " (agent.hostname) " · running " (agent.running_tasks) " / " (agent.settings.max_concurrent_tasks)
                " · queue " (agent.queue_depth) " · pending retries " (agent.pending_retries)
                " · last heartbeat " (when(agent.last_heartbeat_at, now)) " · settings from " (agent.settings_source.as_str()) }
            h2 { "Settings" }
            @if let Some((field, message)) = error {
                @if !SETTING_FIELDS.iter().any(|(k, _, _)| *k == field) { p.error { (message) } }
            }
            form method="post" action={ "/ui/agents/" (agent.id) "/settings" } {
                input type="hidden" name="csrf" value=(session.csrf());
                fieldset.grid {
                    @for (key, _, _) in SETTING_FIELDS {
                        div {
                            label for=(key) { (SettingsForm::label(key)) }
                            input id=(key) name=(key) value=(values.value(key)) size="8";
                            @if let Some(m) = error_for(key) { div.error { (m) } }
                        }
                    }
                }
                button type="submit" { "Save settings" }
            }
            h2 { "Tasks" }
            table {
                thead { tr { th { "Policy" } th { "Kind" } th { "Status" } th { "Attempt" } th { "Retries" } th { "Next retry" } th { "Failed permanently" } th { "Last error" } th {} } }
                tbody {
                    @for t in &tasks.items {
                        tr {
                            td { (names.policy(t.policy_id)) }
                            td { a href={ "/ui/tasks/" (t.id) } { (t.kind.as_str()) } }
                            td { (t.status.as_str()) }
                            td { (t.attempt) }
                            td { (t.retry_count) " of " (t.max_retries) }
                            td { (when(t.next_retry_at, now)) }
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
            (pager_named(&format!("/ui/agents/{}", agent.id), "tasks", tasks.next_cursor.as_deref()))
            h2 { "Recent backup runs" }
            (chart(&runs.items))
            (runs_table(&runs.items, names, now))
            (pager_named(&format!("/ui/agents/{}", agent.id), "runs", runs.next_cursor.as_deref()))
        },
    )
}

async fn render_agent(
    state: &AppState,
    session: &Session,
    id: AgentId,
    cursors: &AgentQuery,
    values: Option<SettingsForm>,
    error: Option<(&str, &str)>,
    status: StatusCode,
) -> Response {
    let store = state.store();
    let agent = match store.get_agent(session.tenant(), id).await {
        Ok(a) => a,
        Err(e) => return failure(e),
    };
    let tasks = store
        .list_tasks(
            session.tenant(),
            &TaskFilter {
                agent_id: Some(id),
                ..TaskFilter::default()
            },
            &rows(cursors.tasks.as_ref()),
        )
        .await;
    let runs = store
        .list_backup_runs(
            session.tenant(),
            &BackupRunFilter {
                agent_id: Some(id),
                ..BackupRunFilter::default()
            },
            &rows(cursors.runs.as_ref()),
        )
        .await;
    let names = Names::load(store, session.tenant()).await;
    match (tasks, runs, names) {
        (Ok(tasks), Ok(runs), Ok(names)) => {
            let values = values.unwrap_or_else(|| SettingsForm::of(&agent));
            let shown = Shown {
                agent: &agent,
                tasks: &tasks,
                runs: &runs,
                names: &names,
                now: store.clock().now(),
            };
            page(status, agent_markup(session, &shown, &values, error))
        }
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => failure(e),
    }
}

pub(crate) async fn agent_page(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(cursors): Query<AgentQuery>,
) -> Response {
    let Ok(id) = id.parse::<AgentId>() else {
        return failure(StoreError::NotFound("agent"));
    };
    render_agent(&state, &session, id, &cursors, None, None, StatusCode::OK).await
}

pub(crate) async fn save_settings(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { session, form }: Posted<SettingsForm>,
) -> Response {
    let Ok(id) = id.parse::<AgentId>() else {
        return failure(StoreError::NotFound("agent"));
    };
    let patch = match form.patch() {
        Ok(p) => p,
        Err((field, message)) => {
            let (field, message): FieldError = (field, message);
            return render_agent(
                &state,
                &session,
                id,
                &AgentQuery::default(),
                Some(form.clone()),
                Some((&field, &message)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    match state
        .store()
        .patch_settings(session.tenant(), id, &patch)
        .await
    {
        Ok(_) => Redirect::to(&format!("/ui/agents/{id}")).into_response(),
        Err(StoreError::Validation(e)) => {
            let field = e.field().unwrap_or("settings").to_owned();
            render_agent(
                &state,
                &session,
                id,
                &AgentQuery::default(),
                Some(form.clone()),
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
    Posted { session, form }: Posted<CancelForm>,
) -> Response {
    let Ok(id) = id.parse::<TaskId>() else {
        return failure(StoreError::NotFound("task"));
    };
    match state.store().cancel_task(session.tenant(), id).await {
        Ok(task) => Redirect::to(&format!("/ui/agents/{}", task.agent_id)).into_response(),
        Err(StoreError::Conflict(_)) => {
            let back = form
                .agent
                .parse::<AgentId>()
                .ok()
                .map_or_else(|| "/ui/agents".to_owned(), |a| format!("/ui/agents/{a}"));
            Redirect::to(&back).into_response()
        }
        Err(e) => failure(e),
    }
}
