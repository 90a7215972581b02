//! Policies: create, list, view, update, delete, run now.

use axum::{Json, extract::State, http::StatusCode, response::Response};
use backup_core::{
    AgentId, ErrorBody, Page, PolicyId, PolicyPatch, PolicySpec, PolicyView, TaskView,
};
use serde::Deserialize;

use super::{Paging, created};
use crate::{
    ApiError, AppState,
    auth::TenantAuth,
    extract::{ApiPath, ApiQuery, TenantJson},
};

/// Creates a policy.
#[utoipa::path(post, path = "/policies", tag = "policies", request_body = PolicySpec,
    security(("tenant" = [], "tenantId" = [])),
    responses(
        (status = 201, description = "Created", body = PolicyView),
        (status = 403, description = "The tenant has limits.maxPoliciesPerTenant policies (quota_exceeded)", body = ErrorBody),
        (status = 422, description = "Invalid or unknown field (agentId of another tenant included), a repository the agent does not report", body = ErrorBody),
    ))]
pub(crate) async fn create_policy(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    TenantJson(spec): TenantJson<PolicySpec>,
) -> Result<Response, ApiError> {
    let policy = state.store().create_policy(tenant, &spec).await?;
    tracing::info!(%tenant, policy = %policy.id, name = %policy.spec.name, agent = %policy.spec.agent_id, kind = policy.spec.kind.as_str(), "policy created");
    Ok(created(policy))
}

/// Filters of `GET /policies`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct PolicyQuery {
    /// Only this agent's policies.
    #[param(value_type = Option<String>)]
    agent_id: Option<AgentId>,
    /// Only policies with this protection now (`ok`, `never_run`, `overdue`, `failing`,
    /// `disabled`).
    #[param(value_type = Option<String>)]
    protection: Option<backup_core::Protection>,
    /// Items per page, 1-500 (default 100).
    limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// The tenant's policies, newest first.
#[utoipa::path(get, path = "/policies", tag = "policies", params(PolicyQuery),
    security(("tenant" = [], "tenantId" = [])),
    responses(
        (status = 200, description = "A page of policies", body = Page<PolicyView>),
        (status = 422, description = "A bad filter, limit or cursor", body = ErrorBody),
    ))]
pub(crate) async fn list_policies(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ApiQuery(q): ApiQuery<PolicyQuery>,
) -> Result<Json<Page<PolicyView>>, ApiError> {
    let page = Paging::request(q.limit, q.cursor)?;
    let filter = backup_store::PolicyFilter {
        agent_id: q.agent_id,
        protection: q.protection,
    };
    Ok(Json(
        state.store().list_policies(tenant, &filter, &page).await?,
    ))
}

/// One policy.
#[utoipa::path(get, path = "/policies/{id}", tag = "policies", params(("id" = String, Path, description = "Policy id")),
    security(("tenant" = [], "tenantId" = [])),
    responses(
        (status = 200, description = "The policy", body = PolicyView),
        (status = 404, description = "No such policy for this tenant", body = ErrorBody),
    ))]
pub(crate) async fn get_policy(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ApiPath(id): ApiPath<PolicyId>,
) -> Result<Json<PolicyView>, ApiError> {
    Ok(Json(state.store().get_policy(tenant, id).await?))
}

/// Partial update; `schedule` and `retention` are replaced whole.
#[utoipa::path(patch, path = "/policies/{id}", tag = "policies", request_body = PolicyPatch,
    params(("id" = String, Path, description = "Policy id")),
    security(("tenant" = [], "tenantId" = [])),
    responses(
        (status = 200, description = "The updated policy", body = PolicyView),
        (status = 404, description = "No such policy for this tenant", body = ErrorBody),
        (status = 422, description = "Invalid or unknown field", body = ErrorBody),
    ))]
pub(crate) async fn update_policy(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ApiPath(id): ApiPath<PolicyId>,
    TenantJson(patch): TenantJson<PolicyPatch>,
) -> Result<Json<PolicyView>, ApiError> {
    let policy = state.store().update_policy(tenant, id, &patch).await?;
    let changed = serde_json::to_value(&patch)
        .ok()
        .and_then(|v| {
            v.as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
        })
        .unwrap_or_default();
    tracing::info!(%tenant, policy = %id, %changed, "policy updated");
    Ok(Json(policy))
}

/// Deletes a policy; its pending task is cancelled, claimed and running ones finish.
#[utoipa::path(delete, path = "/policies/{id}", tag = "policies", params(("id" = String, Path, description = "Policy id")),
    security(("tenant" = [], "tenantId" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such policy for this tenant", body = ErrorBody),
    ))]
pub(crate) async fn delete_policy(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ApiPath(id): ApiPath<PolicyId>,
) -> Result<StatusCode, ApiError> {
    state.store().delete_policy(tenant, id).await?;
    tracing::info!(%tenant, policy = %id, "policy deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Queues a run now: a pending task of this policy, claimed by its agent at the agent's next
/// claim (within `pollingIntervalSeconds`), also when the policy is disabled or the agent is
/// offline or saturated; while the repository is in backoff it waits for the backoff to end.
/// The policy's `nextDueAt` does not move.
#[utoipa::path(post, path = "/policies/{id}/run", tag = "policies", params(("id" = String, Path, description = "Policy id")),
    security(("tenant" = [], "tenantId" = [])),
    responses(
        (status = 201, description = "The new task", body = TaskView),
        (status = 404, description = "No such policy for this tenant", body = ErrorBody),
        (status = 409, description = "The policy has an open task (the message names it)", body = ErrorBody),
    ))]
pub(crate) async fn run_policy(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ApiPath(id): ApiPath<PolicyId>,
) -> Result<Response, ApiError> {
    let task: TaskView = state.store().run_policy_now(tenant, id).await?;
    tracing::info!(%tenant, policy = %id, task = %task.id, "run now: task queued");
    crate::dispatch::announce(&state, &[task.agent_id]).await;
    Ok(created(task))
}
