//! Snapshots: the agent reports each repository's list, the tenant reads them.

use axum::{Json, extract::State};
use backup_core::{
    AgentId, ErrorBody, Page, PolicyId, SnapshotList, SnapshotView, SnapshotsStored,
};
use serde::Deserialize;

use super::Paging;
use crate::{
    ApiError, AppState,
    auth::{AgentAuth, TenantAuth},
    extract::{AgentJson, ApiPath, ApiQuery},
};

/// The agent's whole list of its host's snapshots in one repository: it replaces the server's.
#[utoipa::path(put, path = "/agents/{id}/repositories/{name}/snapshots", tag = "agent protocol",
    request_body = SnapshotList,
    params(
        ("id" = String, Path, description = "The calling agent's own id"),
        ("name" = String, Path, description = "The repository, by the agent's name for it"),
    ),
    security(("agent" = [])),
    responses(
        (status = 200, description = "Stored (a repeat stores the same)", body = SnapshotsStored),
        (status = 404, description = "Not the calling agent", body = ErrorBody),
        (status = 422, description = "A bad repository name or a field of the wrong type", body = ErrorBody),
    ))]
pub(crate) async fn report_snapshots(
    State(state): State<AppState>,
    agent: AgentAuth,
    ApiPath((id, name)): ApiPath<(AgentId, String)>,
    AgentJson(body): AgentJson<SnapshotList>,
) -> Result<Json<SnapshotsStored>, ApiError> {
    if id != agent.agent_id() {
        return Err(ApiError::not_found("agent"));
    }
    // The store drops unusable entries and keeps the newest 100,000 (storable.rs).
    let stored = state
        .store()
        .replace_snapshots(id, &name, &body.snapshots)
        .await?;
    if stored.truncated {
        tracing::warn!(agent = %id, repository = %name, "a snapshot list over 100,000 entries: the newest kept");
    }
    Ok(Json(stored))
}

/// Filters of `GET /snapshots`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct SnapshotQuery {
    /// Only snapshots this agent reported.
    #[param(value_type = Option<String>)]
    agent_id: Option<AgentId>,
    /// Only snapshots in the repository of this name.
    repository: Option<String>,
    /// Only snapshots made by this policy's backups.
    #[param(value_type = Option<String>)]
    policy_id: Option<PolicyId>,
    /// Items per page, 1-500 (default 100).
    limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// The tenant's snapshots as its agents last reported them, newest first.
#[utoipa::path(get, path = "/snapshots", tag = "snapshots", params(SnapshotQuery),
    security(("tenant" = [], "tenantId" = [])),
    responses(
        (status = 200, description = "A page of snapshots", body = Page<SnapshotView>),
        (status = 422, description = "A bad filter, limit or cursor", body = ErrorBody),
    ))]
pub(crate) async fn list_snapshots(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ApiQuery(q): ApiQuery<SnapshotQuery>,
) -> Result<Json<Page<SnapshotView>>, ApiError> {
    let page = Paging::request(q.limit, q.cursor)?;
    if let Some(name) = &q.repository {
        backup_core::validate_repository_name(name)?;
    }
    let filter = backup_store::SnapshotFilter {
        agent_id: q.agent_id,
        repository: q.repository,
        policy_id: q.policy_id,
    };
    Ok(Json(
        state.store().list_snapshots(tenant, &filter, &page).await?,
    ))
}
