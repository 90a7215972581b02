//! One policy's page: what it does, whether it protects, run-now, and its recent runs with the
//! chart of data added and duration.

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::Response,
};
use backup_core::{BackupRunView, PolicyId, PolicyView, ScheduleSpec};
use backup_store::{BackupRunFilter, PageRequest, StoreError};
use chrono::{DateTime, Utc};
use maud::{Markup, html};

use super::{
    badges,
    chart::chart,
    layout::{failure, layout, page, pager},
    names::Names,
    session::Session,
    units::{bytes, duration_ms, when},
};
use crate::AppState;

/// Runs per page.
const RUNS: u32 = 30;

/// The page's query: the cursor of the runs table.
#[derive(serde::Deserialize, Default)]
pub(crate) struct RunsQuery {
    cursor: Option<String>,
}

/// A schedule as it reads: `every 6h`, or `cron 0 3 * * * Europe/Paris`.
pub(super) fn schedule(s: &ScheduleSpec) -> Markup {
    html! {
        @if let Some(e) = &s.every { "every " (e) }
        @if let Some(c) = &s.cron { "cron " (c) " " (s.timezone.as_deref().unwrap_or("UTC")) }
    }
}

/// The runs as a table, newest first, in human units.
pub(super) fn runs_table(runs: &[BackupRunView], names: &Names, now: DateTime<Utc>) -> Markup {
    html! {
        table.runs {
            thead { tr { th { "Policy" } th { "Kind" } th { "Attempt" } th { "Status" } th { "Finished" } th { "Snapshot" } th { "Files new" } th { "Data added" } th { "Duration" } th { "Error" } } }
            tbody {
                @for r in runs {
                    tr {
                        td { (names.policy(r.policy_id)) }
                        td { (r.kind.as_str()) }
                        td { (r.attempt) }
                        td { (r.status.as_str()) @if r.late { " (late)" } }
                        td { (when(r.finished_at, now)) }
                        td { code { (r.snapshot_id.as_deref().map(|s| s.chars().take(8).collect::<String>()).unwrap_or_default()) } }
                        td { (r.files_new.map(|n| n.to_string()).unwrap_or_default()) }
                        td { (r.data_added.map(bytes).unwrap_or_default()) }
                        td { (r.duration_ms.map(duration_ms).unwrap_or_default()) }
                        td { (r.error.as_deref().unwrap_or("")) }
                    }
                }
                @if runs.is_empty() { tr { td colspan="10" { "No runs yet." } } }
            }
        }
    }
}

fn policy_markup(
    session: &Session,
    policy: &PolicyView,
    runs: &backup_core::Page<BackupRunView>,
    names: &Names,
    now: DateTime<Utc>,
) -> Markup {
    let spec = &policy.spec;
    layout(
        &spec.name,
        Some(session),
        html! {
            h1 { (spec.name) " " (badges::protection(policy.protection)) }
            dl.facts {
                dt { "Agent" } dd { (names.agent(spec.agent_id)) }
                dt { "Kind" } dd { (spec.kind.as_str()) }
                dt { "Schedule" } dd { (schedule(&spec.schedule)) }
                dt { "Repository" } dd { (spec.repository) }
                @if !spec.paths.is_empty() { dt { "Paths" } dd { (spec.paths.join(", ")) } }
                dt { "Enabled" } dd { (if spec.enabled { "yes" } else { "no" }) }
                dt { "Alert after" } dd { (policy.effective_alert_after.as_deref().unwrap_or("-")) }
                dt { "Last success" } dd { (when(policy.last_success_at, now)) }
                dt { "Last run" } dd { @if let Some(s) = policy.last_run_status { (s.as_str()) " " } (when(policy.last_run_at, now)) }
                dt { "Next due" } dd { (when(policy.next_due_at, now)) }
            }
            form.inline method="post" action={ "/ui/policies/" (policy.id) "/run" } {
                input type="hidden" name="csrf" value=(session.csrf());
                button type="submit" { "Run now" }
            }
            h2 { "Recent runs" }
            (chart(&runs.items))
            (runs_table(&runs.items, names, now))
            (pager(&format!("/ui/policies/{}", policy.id), runs.next_cursor.as_deref()))
        },
    )
}

pub(crate) async fn policy_page(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<RunsQuery>,
) -> Response {
    let Ok(id) = id.parse::<PolicyId>() else {
        return failure(StoreError::NotFound("policy"));
    };
    let store = state.store();
    let tenant = session.tenant();
    let policy = match store.get_policy(tenant, id).await {
        Ok(p) => p,
        Err(e) => return failure(e),
    };
    let filter = BackupRunFilter {
        policy_id: Some(id),
        ..BackupRunFilter::default()
    };
    let request = PageRequest {
        limit: Some(RUNS),
        cursor: q.cursor.filter(|c| !c.is_empty()),
    };
    let runs = match store.list_backup_runs(tenant, &filter, &request).await {
        Ok(r) => r,
        Err(e) => return failure(e),
    };
    match Names::load(store, tenant).await {
        Ok(names) => page(
            StatusCode::OK,
            policy_markup(&session, &policy, &runs, &names, store.clock().now()),
        ),
        Err(e) => failure(e),
    }
}
