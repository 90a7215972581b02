//! `GET /backup-runs`: one row per attempt.

use axum::{Json, extract::State};
use backup_core::{AgentId, BackupRunView, ErrorBody, Page, PolicyId, RunStatus, TaskId};
use serde::Deserialize;

use super::Paging;
use crate::{ApiError, AppState, auth::TenantAuth, extract::ApiQuery};

/// Filters of `GET /backup-runs`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct RunQuery {
    /// Only this agent's runs.
    #[param(value_type = Option<String>)]
    agent_id: Option<AgentId>,
    /// Only this policy's runs.
    #[param(value_type = Option<String>)]
    policy_id: Option<PolicyId>,
    /// Only this task's runs.
    #[param(value_type = Option<String>)]
    task_id: Option<TaskId>,
    /// Only runs in this status.
    #[param(value_type = Option<String>)]
    status: Option<RunStatus>,
    /// Items per page, 1-500 (default 100).
    limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// The tenant's backup runs, newest first.
#[utoipa::path(get, path = "/backup-runs", tag = "backup runs", params(RunQuery),
    security(("tenant" = [], "tenantId" = [])),
    responses(
        (status = 200, description = "A page of runs", body = Page<BackupRunView>),
        (status = 422, description = "A bad filter, limit or cursor", body = ErrorBody),
    ))]
pub(crate) async fn list_backup_runs(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ApiQuery(q): ApiQuery<RunQuery>,
) -> Result<Json<Page<BackupRunView>>, ApiError> {
    let page = Paging::request(q.limit, q.cursor)?;
    let filter = backup_store::BackupRunFilter {
        agent_id: q.agent_id,
        policy_id: q.policy_id,
        task_id: q.task_id,
        status: q.status,
    };
    Ok(Json(
        state
            .store()
            .list_backup_runs(tenant, &filter, &page)
            .await?,
    ))
}
