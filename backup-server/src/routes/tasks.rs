//! Tasks: the agent's start and result, the tenant's list, view and cancel.

use axum::{Json, extract::State};
use backup_core::{
    AgentId, AttemptReport, ErrorBody, Page, PolicyId, StartRequest, TaskId, TaskStatus, TaskView,
};
use serde::Deserialize;

use super::Paging;
use crate::{
    ApiError, AppState,
    auth::{AgentAuth, TenantAuth},
    extract::{AgentJson, ApiPath, ApiQuery},
};

/// Marks the claimed attempt running.
#[utoipa::path(post, path = "/tasks/{id}/start", tag = "agent protocol", request_body = StartRequest,
    params(("id" = String, Path, description = "Task id")),
    security(("agent" = [])),
    responses(
        (status = 200, description = "The task, running", body = TaskView),
        (status = 404, description = "Not a task of the calling agent", body = ErrorBody),
        (status = 409, description = "Not the claimed attempt, or the task was cancelled", body = ErrorBody),
        (status = 422, description = "A field of the wrong type", body = ErrorBody),
    ))]
pub(crate) async fn start_task(
    State(state): State<AppState>,
    agent: AgentAuth,
    ApiPath(id): ApiPath<TaskId>,
    AgentJson(body): AgentJson<StartRequest>,
) -> Result<Json<TaskView>, ApiError> {
    Ok(Json(
        state
            .store()
            .start_task(agent.agent_id(), id, body.attempt)
            .await?,
    ))
}

/// Reports one attempt's outcome; the answer carries the server's decision.
#[utoipa::path(post, path = "/tasks/{id}/result", tag = "agent protocol", request_body = AttemptReport,
    params(("id" = String, Path, description = "Task id")),
    security(("agent" = [])),
    responses(
        (status = 200, description = "The task as decided (a repeat answers the same)", body = TaskView),
        (status = 404, description = "Not a task of the calling agent", body = ErrorBody),
        (status = 409, description = "conflict: an attempt never claimed; stale_attempt: closed as agent lost", body = ErrorBody),
        (status = 422, description = "A field of the wrong type", body = ErrorBody),
    ))]
pub(crate) async fn report_result(
    State(state): State<AppState>,
    agent: AgentAuth,
    ApiPath(id): ApiPath<TaskId>,
    AgentJson(body): AgentJson<AttemptReport>,
) -> Result<Json<TaskView>, ApiError> {
    // The store bounds and cleans what agents report (backup_store's storable.rs).
    let answer = state
        .store()
        .report_result(agent.agent_id(), id, &body)
        .await?;
    if answer.retried {
        state.metrics().retries_decided.inc();
    }
    if answer.task.failed_permanently && !answer.replayed {
        state
            .metrics()
            .count_failed_permanently(answer.task.kind, 1);
    }
    Ok(Json(answer.task))
}

/// Filters of `GET /tasks`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct TaskQuery {
    /// Only tasks in this status.
    #[param(value_type = Option<String>)]
    status: Option<TaskStatus>,
    /// Only this agent's tasks.
    #[param(value_type = Option<String>)]
    agent_id: Option<AgentId>,
    /// Only this policy's tasks.
    #[param(value_type = Option<String>)]
    policy_id: Option<PolicyId>,
    /// Items per page, 1-500 (default 100).
    limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// The tenant's tasks with their retry metadata, newest first.
#[utoipa::path(get, path = "/tasks", tag = "tasks", params(TaskQuery),
    security(("tenant" = [], "tenantId" = [])),
    responses(
        (status = 200, description = "A page of tasks", body = Page<TaskView>),
        (status = 422, description = "A bad filter, limit or cursor", body = ErrorBody),
    ))]
pub(crate) async fn list_tasks(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ApiQuery(q): ApiQuery<TaskQuery>,
) -> Result<Json<Page<TaskView>>, ApiError> {
    let page = Paging::request(q.limit, q.cursor)?;
    let filter = backup_store::TaskFilter {
        status: q.status,
        agent_id: q.agent_id,
        policy_id: q.policy_id,
    };
    Ok(Json(
        state.store().list_tasks(tenant, &filter, &page).await?,
    ))
}

/// One task.
#[utoipa::path(get, path = "/tasks/{id}", tag = "tasks", params(("id" = String, Path, description = "Task id")),
    security(("tenant" = [], "tenantId" = [])),
    responses(
        (status = 200, description = "The task", body = TaskView),
        (status = 404, description = "No such task for this tenant", body = ErrorBody),
    ))]
pub(crate) async fn get_task(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ApiPath(id): ApiPath<TaskId>,
) -> Result<Json<TaskView>, ApiError> {
    Ok(Json(state.store().get_task(tenant, id).await?))
}

/// Cancels an open task; the agent stops it after its next heartbeat.
#[utoipa::path(post, path = "/tasks/{id}/cancel", tag = "tasks", params(("id" = String, Path, description = "Task id")),
    security(("tenant" = [], "tenantId" = [])),
    responses(
        (status = 200, description = "The task, cancelled", body = TaskView),
        (status = 404, description = "No such task for this tenant", body = ErrorBody),
        (status = 409, description = "The task already ended", body = ErrorBody),
    ))]
pub(crate) async fn cancel_task(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ApiPath(id): ApiPath<TaskId>,
) -> Result<Json<TaskView>, ApiError> {
    let task = state.store().cancel_task(tenant, id).await?;
    tracing::info!(%tenant, task = %id, "task cancelled");
    Ok(Json(task))
}
