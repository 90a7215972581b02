//! One task's page, for the tasks a person starts and waits for (a browse, a restore): what it
//! asked, its progress (the page reloads itself every 2 s while the task is open, no script),
//! and its result: the directory listed, with its subdirectories to browse and a restore form,
//! or the files and bytes restored.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::Response,
};
use backup_core::{EntryType, LsEntry, TaskId, TaskKind, TaskView};
use backup_store::{PageRequest, StoreError};
use chrono::{DateTime, Utc};
use maud::{Markup, html};

use super::{
    forms::{RestoreForm, SnapshotAt},
    layout::{failure, layout_reloading, page},
    names::Names,
    session::Session,
    snapshots::{browse_button, restore_form, snapshot_href},
    units::{bytes, when},
};
use crate::AppState;

/// Seconds between reloads of an open task's page.
const RELOAD: u32 = 2;

fn entries_table(
    session: &Session,
    task: &TaskView,
    at: &SnapshotAt,
    entries: &[LsEntry],
    now: DateTime<Utc>,
) -> Markup {
    let snapshot = task.request.snapshot_id.as_deref().unwrap_or_default();
    html! {
        table.entries {
            thead { tr { th { "Path" } th { "Type" } th { "Size" } th { "Modified" } } }
            tbody {
                @for e in entries {
                    tr {
                        td {
                            @if e.entry_type == EntryType::Dir {
                                (browse_button(session, snapshot, at, &e.path, html! { (e.path) "/" }))
                            } @else { (e.path) }
                        }
                        td { (match e.entry_type { EntryType::File => "file", EntryType::Dir => "directory", EntryType::Symlink => "symlink", _ => "other" }) }
                        td { (e.size.map(bytes).unwrap_or_default()) }
                        td { (when(e.mtime, now)) }
                    }
                }
                @if entries.is_empty() { tr { td colspan="4" { "An empty directory." } } }
            }
        }
    }
}

fn task_markup(
    session: &Session,
    task: &TaskView,
    names: &Names,
    agents: &[backup_core::AgentView],
    now: DateTime<Utc>,
) -> Markup {
    let r = &task.request;
    let repository = task.repository.clone().unwrap_or_default();
    let at = SnapshotAt {
        agent: task.agent_id.to_string(),
        repository: repository.clone(),
    };
    let snapshot = r.snapshot_id.as_deref();
    let title = match task.kind {
        TaskKind::Ls => "Browse",
        TaskKind::Restore => "Restore",
        _ => task.kind.as_str(),
    };
    html! {
        h1 { (title) " · " span class={ "badge status-" (task.status.as_str()) } { (task.status.as_str()) } }
        dl.facts {
            dt { "Agent" } dd { (names.agent(task.agent_id)) }
            @if task.policy_id.is_some() { dt { "Policy" } dd { (names.policy(task.policy_id)) } }
            @if let Some(s) = snapshot {
                dt { "Snapshot" } dd { a href=(snapshot_href(s, task.agent_id, &repository)) { code { (s.chars().take(8).collect::<String>()) } } " in " (repository) }
            }
            @if let Some(p) = &r.path { dt { "Directory" } dd { code { (p) } } }
            @if let Some(t) = &r.target { dt { "Into" } dd { code { (t) } } }
            @if !r.include.is_empty() { dt { "Paths" } dd { (r.include.join(", ")) } }
            @if r.dry_run { dt { "Dry run" } dd { "yes: nothing is written" } }
            dt { "Attempt" } dd { (task.attempt) " (retries " (task.retry_count) " of " (task.max_retries) ")" }
            dt { "Created" } dd { (when(Some(task.created_at), now)) }
            dt { "Updated" } dd { (when(Some(task.updated_at), now)) }
            @if let Some(e) = &task.last_error { dt { "Last error" } dd.error { (e) } }
        }
        @if task.status.is_open() {
            p.notice { "Waiting for the agent; this page reloads itself every " (RELOAD) " s." }
        }
        @if let Some(files) = task.output.files_restored {
            p.notice.result { (if r.dry_run { "Would restore " } else { "Restored " }) (files) (if files == 1 { " file, " } else { " files, " })
                (task.output.bytes_restored.map(bytes).unwrap_or_else(|| "? B".into())) "." }
        }
        @if let (Some(entries), Some(s)) = (&task.output.entries, snapshot) {
            (entries_table(session, task, &at, entries, now))
            @if task.output.truncated { p.error { "The listing was cut at its limit: browse a deeper directory." } }
            h2 { "Restore from this directory" }
            (restore_form(session, s, &at, agents, &RestoreForm {
                include: r.path.clone().filter(|p| p != "/").unwrap_or_default(),
                ..RestoreForm::default()
            }))
        }
    }
}

pub(crate) async fn task_page(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = id.parse::<TaskId>() else {
        return failure(StoreError::NotFound("task"));
    };
    let store = state.store();
    let tenant = session.tenant();
    let (task, names, agents) = match (
        store.get_task(tenant, id).await,
        Names::load(store, tenant).await,
        store.list_agents(tenant, &PageRequest::first(500)).await,
    ) {
        (Ok(t), Ok(n), Ok(a)) => (t, n, a.items),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return failure(e),
    };
    let reload = task.status.is_open().then_some(RELOAD);
    page(
        StatusCode::OK,
        layout_reloading(
            "Task",
            Some(&session),
            reload,
            task_markup(&session, &task, &names, &agents, store.clock().now()),
        ),
    )
}
