//! Bringing data back: a restore of a snapshot onto an agent, and the listing of one directory
//! of a snapshot (what a snapshot browser shows, one level at a time). Both are tasks for the agent,
//! claimable at once: an idle agent's waiting claim is woken, so they start within a second.

use axum::{extract::State, response::Response};
use backup_core::{ErrorBody, LsRequest, RestoreRequest, TaskView};

use super::created;
use crate::{
    ApiError, AppState,
    auth::TenantAuth,
    extract::{ApiPath, TenantJson},
};

/// Restores a snapshot (or the paths in `include`) into `target` on an agent that has the
/// repository under the same name; the task's `filesRestored` and `bytesRestored` say what it
/// did once it succeeded. The agent writes only under its `restoreTargets`: a target outside
/// them fails the task permanently, naming the key.
#[utoipa::path(post, path = "/restores", tag = "restores", request_body = RestoreRequest,
    security(("tenant" = [], "tenantId" = [])),
    responses(
        (status = 201, description = "The restore task, claimable at once", body = TaskView),
        (status = 422, description = "A bad or unknown field: agentId not the tenant's, a snapshot GET /snapshots does not list for that repository, a target that is not absolute", body = ErrorBody),
    ))]
pub(crate) async fn create_restore(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    TenantJson(body): TenantJson<RestoreRequest>,
) -> Result<Response, ApiError> {
    let task = state.store().create_restore(tenant, &body).await?;
    tracing::info!(%tenant, task = %task.id, agent = %task.agent_id, repository = %body.repository,
        snapshot = task.request.snapshot_id.as_deref().unwrap_or_default(),
        target = %body.target, dry_run = body.dry_run, "restore requested");
    crate::dispatch::announce(&state, &[task.agent_id]).await;
    Ok(created(task))
}

/// Lists one directory of a snapshot on an agent that has its repository; once the task
/// succeeded, `GET /tasks/{id}` carries its `entries` (at most 10,000, then `truncated`).
#[utoipa::path(post, path = "/snapshots/{snapshotId}/ls", tag = "restores", request_body = LsRequest,
    params(("snapshotId" = String, Path, description = "restic's full or 8-character short id, as GET /snapshots lists it")),
    security(("tenant" = [], "tenantId" = [])),
    responses(
        (status = 201, description = "The listing task, claimable at once", body = TaskView),
        (status = 422, description = "A bad or unknown field, an agent not the tenant's, or a snapshot the server does not list for that repository", body = ErrorBody),
    ))]
pub(crate) async fn list_snapshot_directory(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ApiPath(snapshot): ApiPath<String>,
    TenantJson(body): TenantJson<LsRequest>,
) -> Result<Response, ApiError> {
    let task = state.store().create_ls(tenant, &snapshot, &body).await?;
    tracing::debug!(%tenant, task = %task.id, agent = %task.agent_id, "snapshot listing requested");
    crate::dispatch::announce(&state, &[task.agent_id]).await;
    Ok(created(task))
}
