//! Snapshots and restore: the snapshots per agent and repository, one snapshot's page with the
//! browse and restore forms, and the posts that create the `ls` and `restore` tasks (whose
//! progress and result the task page shows).

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use backup_core::{AgentView, LsRequest, SnapshotView};
use backup_store::{PageRequest, SnapshotFilter, StoreError};
use chrono::{DateTime, Utc};
use maud::{Markup, html};

use super::{
    forms::{BrowseForm, FieldError, Posted, RestoreForm, SnapshotAt},
    layout::{failure, layout, page, pager},
    names::Names,
    session::Session,
    units::{bytes, when},
};
use crate::AppState;

/// Snapshots per page.
const PAGE: u32 = 50;

/// The list's query: an agent and a repository to keep, and the page's cursor.
#[derive(serde::Deserialize, Default)]
pub(crate) struct SnapshotsQuery {
    #[serde(default)]
    agent: String,
    #[serde(default)]
    repository: String,
    cursor: Option<String>,
}

/// The address of a snapshot's page.
pub(super) fn snapshot_href(id: &str, agent: impl std::fmt::Display, repository: &str) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("agent", &agent.to_string())
        .append_pair("repository", repository)
        .finish();
    format!("/ui/snapshots/{id}?{query}")
}

fn snapshots_table(snapshots: &[SnapshotView], names: &Names, now: DateTime<Utc>) -> Markup {
    html! {
        table.snapshots {
            thead { tr { th { "Snapshot" } th { "Time" } th { "Agent" } th { "Repository" } th { "Host" } th { "Policy" } th { "Paths" } th { "Data added" } th { "Size" } } }
            tbody {
                @for s in snapshots {
                    tr {
                        td { a href=(snapshot_href(&s.id, s.agent_id, &s.repository)) { code { (s.short_id) } } }
                        td { (when(Some(s.time), now)) }
                        td { (names.agent(s.agent_id)) }
                        td { (s.repository) }
                        td { (s.hostname) }
                        td { (names.policy(s.policy_id)) }
                        td { (s.paths.join(", ")) }
                        td { (s.data_added.map(bytes).unwrap_or_default()) }
                        td { (s.total_bytes.map(bytes).unwrap_or_default()) }
                    }
                }
                @if snapshots.is_empty() { tr { td colspan="9" { "No snapshots here yet: agents report them after each backup." } } }
            }
        }
    }
}

pub(crate) async fn snapshots_page(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<SnapshotsQuery>,
) -> Response {
    let store = state.store();
    let tenant = session.tenant();
    let agent = q.agent.parse().ok();
    let repository = Some(q.repository.trim().to_owned()).filter(|r| !r.is_empty());
    let filter = SnapshotFilter {
        agent_id: agent,
        repository: repository.clone(),
        ..SnapshotFilter::default()
    };
    let request = PageRequest {
        limit: Some(PAGE),
        cursor: q.cursor.clone().filter(|c| !c.is_empty()),
    };
    let (snapshots, names, agents) = match (
        store.list_snapshots(tenant, &filter, &request).await,
        Names::load(store, tenant).await,
        store.list_agents(tenant, &PageRequest::first(500)).await,
    ) {
        (Ok(s), Ok(n), Ok(a)) => (s, n, a.items),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return failure(e),
    };
    let base: String = form_urlencoded::Serializer::new("/ui/snapshots?".to_owned())
        .append_pair("agent", &q.agent)
        .append_pair("repository", repository.as_deref().unwrap_or(""))
        .finish();
    page(
        StatusCode::OK,
        layout(
            "Snapshots",
            Some(&session),
            html! {
                h1 { "Snapshots" }
                form.filters method="get" action="/ui/snapshots" {
                    label for="agent" { "Agent" }
                    select id="agent" name="agent" {
                        option value="" { "every agent" }
                        @for a in &agents { option value=(a.id) selected[agent == Some(a.id)] { (a.name) } }
                    }
                    label for="repository" { "Repository" }
                    input id="repository" name="repository" value=(repository.as_deref().unwrap_or(""));
                    " " button type="submit" { "Show" }
                }
                (snapshots_table(&snapshots.items, &names, store.clock().now()))
                (pager(&base, snapshots.next_cursor.as_deref()))
            },
        ),
    )
}

/// The restore form for `snapshot` in `at`, with `include` filled in (a directory browsed to).
pub(super) fn restore_form(
    session: &Session,
    snapshot: &str,
    at: &SnapshotAt,
    agents: &[AgentView],
    values: &RestoreForm,
) -> Markup {
    let target_agent = if values.target_agent.is_empty() {
        &at.agent
    } else {
        &values.target_agent
    };
    html! {
        form.restore method="post" action={ "/ui/snapshots/" (snapshot) "/restore" } {
            input type="hidden" name="csrf" value=(session.csrf());
            input type="hidden" name="agent" value=(at.agent);
            input type="hidden" name="repository" value=(at.repository);
            fieldset.grid {
                div { label for="targetAgent" { "Restore onto agent" }
                    select id="targetAgent" name="targetAgent" {
                        @for a in agents { option value=(a.id) selected[*target_agent == a.id.to_string()] { (a.name) } }
                    } }
                div { label for="target" { "Into the folder (under its restoreTargets)" }
                    input id="target" name="target" value=(values.target) placeholder="/srv/restore" size="30"; }
                div { label for="dryRun" { "Dry run (count only; restic 0.17+)" }
                    input id="dryRun" name="dryRun" type="checkbox" checked[values.dry_run.is_some()]; }
            }
            label for="include" { "Paths to restore (one per line; empty: the whole snapshot)" }
            textarea id="include" name="include" rows="3" cols="60" { (values.include) }
            p { button type="submit" { "Restore" } }
        }
    }
}

/// The browse button of a directory of the snapshot.
pub(super) fn browse_button(
    session: &Session,
    snapshot: &str,
    at: &SnapshotAt,
    path: &str,
    label: Markup,
) -> Markup {
    html! {
        form.inline method="post" action={ "/ui/snapshots/" (snapshot) "/ls" } {
            input type="hidden" name="csrf" value=(session.csrf());
            input type="hidden" name="agent" value=(at.agent);
            input type="hidden" name="repository" value=(at.repository);
            input type="hidden" name="path" value=(path);
            button.link type="submit" { (label) }
        }
    }
}

async fn render_snapshot(
    state: &AppState,
    session: &Session,
    snapshot: &str,
    at: &SnapshotAt,
    values: &RestoreForm,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    if backup_core::validate_snapshot_id(snapshot).is_err() {
        return failure(StoreError::NotFound("snapshot"));
    }
    let store = state.store();
    let (agents, names) = match (
        store
            .list_agents(session.tenant(), &PageRequest::first(500))
            .await,
        Names::load(store, session.tenant()).await,
    ) {
        (Ok(a), Ok(n)) => (a.items, n),
        (Err(e), _) | (_, Err(e)) => return failure(e),
    };
    let Ok(agent) = at.agent_id() else {
        return failure(StoreError::NotFound("agent"));
    };
    page(
        status,
        layout(
            "Snapshot",
            Some(session),
            html! {
                h1 { "Snapshot " code { (snapshot.chars().take(8).collect::<String>()) } }
                p { "In repository " strong { (at.repository) } " of " (names.agent(agent)) "." }
                @if let Some(message) = error { p.error { (message) } }
                h2 { "Browse" }
                p { (browse_button(session, snapshot, at, "/", html! { "List the top directory" })) }
                h2 { "Restore" }
                (restore_form(session, snapshot, at, &agents, values))
            },
        ),
    )
}

pub(crate) async fn snapshot_page(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(at): Query<SnapshotAt>,
) -> Response {
    render_snapshot(
        &state,
        &session,
        &id,
        &at,
        &RestoreForm::default(),
        None,
        StatusCode::OK,
    )
    .await
}

pub(crate) async fn browse(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { session, form }: Posted<BrowseForm>,
) -> Response {
    let agent_id = match form.at.agent_id() {
        Ok(a) => a,
        Err((_, m)) => return failure_at(&state, &session, &id, &form.at, None, &m).await,
    };
    let request = LsRequest {
        agent_id,
        repository: form.at.repository.clone(),
        path: if form.path.is_empty() {
            "/".into()
        } else {
            form.path.clone()
        },
    };
    match state
        .store()
        .create_ls(session.tenant(), &id, &request)
        .await
    {
        Ok(task) => Redirect::to(&format!("/ui/tasks/{}", task.id)).into_response(),
        Err(StoreError::Validation(e)) => {
            failure_at(&state, &session, &id, &form.at, None, &e.to_string()).await
        }
        Err(e) => failure(e),
    }
}

pub(crate) async fn restore(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Posted { session, form }: Posted<RestoreForm>,
) -> Response {
    let request = match form.request(&id) {
        Ok(r) => r,
        Err((field, message)) => {
            let (field, message): FieldError = (field, message);
            let text = format!("{field}: {message}");
            return failure_at(&state, &session, &id, &form.at, Some(&form), &text).await;
        }
    };
    match state
        .store()
        .create_restore(session.tenant(), &request)
        .await
    {
        Ok(task) => Redirect::to(&format!("/ui/tasks/{}", task.id)).into_response(),
        Err(StoreError::Validation(e)) => {
            failure_at(&state, &session, &id, &form.at, Some(&form), &e.to_string()).await
        }
        Err(e) => failure(e),
    }
}

/// The snapshot page again with what was entered and why it was refused (422).
async fn failure_at(
    state: &AppState,
    session: &Session,
    snapshot: &str,
    at: &SnapshotAt,
    values: Option<&RestoreForm>,
    message: &str,
) -> Response {
    let values = values.cloned().unwrap_or_default();
    render_snapshot(
        state,
        session,
        snapshot,
        at,
        &values,
        Some(message),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await
}
