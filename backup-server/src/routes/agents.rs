//! Agents: tenant management routes, and the agent's own heartbeat and claim.

use axum::{Json, extract::State, http::StatusCode, response::Response};
use backup_core::{
    AgentCreated, AgentId, AgentView, ClaimAnswer, ClaimRequest, CreateAgent, ErrorBody, Heartbeat,
    HeartbeatAnswer, MAX_CLAIM_WAIT_SECONDS, Page, Settings, SettingsPatch, TokenIssued,
};

use super::{Paging, check_name, created};
use crate::{
    ApiError, AppState,
    auth::{AgentAuth, TenantAuth},
    extract::{AgentJson, ApiPath, ApiQuery, TenantJson},
};

/// Most task ids one heartbeat may list.
const MAX_HELD_TASKS: usize = 10_000;

/// Creates an agent with the default settings; its token is shown once.
#[utoipa::path(post, path = "/agents", tag = "agents", request_body = CreateAgent,
    security(("tenant" = [], "tenantId" = [])),
    responses(
        (status = 201, description = "Created; the token is shown once", body = AgentCreated),
        (status = 403, description = "The tenant has limits.maxAgentsPerTenant agents (quota_exceeded)", body = ErrorBody),
        (status = 422, description = "Invalid or unknown field", body = ErrorBody),
    ))]
pub(crate) async fn create_agent(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    TenantJson(body): TenantJson<CreateAgent>,
) -> Result<Response, ApiError> {
    check_name("name", &body.name)?;
    check_name("hostname", &body.hostname)?;
    let agent = state.store().create_agent(tenant, &body).await?;
    tracing::info!(%tenant, agent = %agent.agent.id, name = %agent.agent.name, "agent created");
    Ok(created(agent))
}

/// The tenant's agents, newest first.
#[utoipa::path(get, path = "/agents", tag = "agents", params(Paging),
    security(("tenant" = [], "tenantId" = [])),
    responses(
        (status = 200, description = "A page of agents", body = Page<AgentView>),
        (status = 422, description = "Bad limit or cursor", body = ErrorBody),
    ))]
pub(crate) async fn list_agents(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ApiQuery(q): ApiQuery<Paging>,
) -> Result<Json<Page<AgentView>>, ApiError> {
    let page = Paging::request(q.limit, q.cursor)?;
    Ok(Json(state.store().list_agents(tenant, &page).await?))
}

/// One agent with its load, backoff and derived status.
#[utoipa::path(get, path = "/agents/{id}", tag = "agents", params(("id" = String, Path, description = "Agent id")),
    security(("tenant" = [], "tenantId" = [])),
    responses(
        (status = 200, description = "The agent", body = AgentView),
        (status = 404, description = "No such agent for this tenant", body = ErrorBody),
    ))]
pub(crate) async fn get_agent(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ApiPath(id): ApiPath<AgentId>,
) -> Result<Json<AgentView>, ApiError> {
    Ok(Json(state.store().get_agent(tenant, id).await?))
}

/// Deletes an agent: revokes its token, cancels its open tasks, disables its policies.
#[utoipa::path(delete, path = "/agents/{id}", tag = "agents", params(("id" = String, Path, description = "Agent id")),
    security(("tenant" = [], "tenantId" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such agent for this tenant", body = ErrorBody),
    ))]
pub(crate) async fn delete_agent(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ApiPath(id): ApiPath<AgentId>,
) -> Result<StatusCode, ApiError> {
    state.store().delete_agent(tenant, id).await?;
    tracing::info!(%tenant, agent = %id, "agent deleted: its token revoked, its open tasks cancelled, its policies disabled");
    Ok(StatusCode::NO_CONTENT)
}

/// Merges a partial settings update; the agent applies it at its next heartbeat.
#[utoipa::path(patch, path = "/agents/{id}/settings", tag = "agents", request_body = SettingsPatch,
    params(("id" = String, Path, description = "Agent id")),
    security(("tenant" = [], "tenantId" = [])),
    responses(
        (status = 200, description = "The full settings after the merge", body = Settings),
        (status = 404, description = "No such agent for this tenant", body = ErrorBody),
        (status = 422, description = "Out of range, cross-field rule or unknown field", body = ErrorBody),
    ))]
pub(crate) async fn patch_settings(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ApiPath(id): ApiPath<AgentId>,
    TenantJson(patch): TenantJson<SettingsPatch>,
) -> Result<Json<Settings>, ApiError> {
    let settings = state.store().patch_settings(tenant, id, &patch).await?;
    let changed = serde_json::to_value(patch)
        .ok()
        .and_then(|v| {
            v.as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
        })
        .unwrap_or_default();
    tracing::info!(%tenant, agent = %id, %changed, "settings patched");
    Ok(Json(settings))
}

/// Rotates an agent's token; the old one stops working at once.
#[utoipa::path(post, path = "/agents/{id}/token", tag = "agents", params(("id" = String, Path, description = "Agent id")),
    security(("tenant" = [], "tenantId" = [])),
    responses(
        (status = 200, description = "The new token", body = TokenIssued),
        (status = 404, description = "No such agent for this tenant", body = ErrorBody),
    ))]
pub(crate) async fn rotate_agent_token(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ApiPath(id): ApiPath<AgentId>,
) -> Result<Json<TokenIssued>, ApiError> {
    let token = state.store().rotate_agent_token(tenant, id).await?;
    tracing::info!(%tenant, agent = %id, "agent token rotated");
    Ok(Json(TokenIssued { token }))
}

/// The agent reports its load and backoff; the answer carries its settings and the cancelled
/// tasks to stop.
#[utoipa::path(post, path = "/agents/{id}/heartbeat", tag = "agent protocol", request_body = Heartbeat,
    params(("id" = String, Path, description = "The calling agent's own id")),
    security(("agent" = [])),
    responses(
        (status = 200, description = "Settings, server time, tasks to cancel", body = HeartbeatAnswer),
        (status = 404, description = "Not the calling agent", body = ErrorBody),
        (status = 422, description = "A field of the wrong type or too many task ids", body = ErrorBody),
    ))]
pub(crate) async fn heartbeat(
    State(state): State<AppState>,
    agent: AgentAuth,
    ApiPath(id): ApiPath<AgentId>,
    AgentJson(body): AgentJson<Heartbeat>,
) -> Result<Json<HeartbeatAnswer>, ApiError> {
    if id != agent.agent_id() {
        return Err(ApiError::not_found("agent"));
    }
    if body.running_task_ids.len() + body.queued_task_ids.len() > MAX_HELD_TASKS {
        return Err(ApiError::invalid(
            "runningTaskIds",
            format!("at most {MAX_HELD_TASKS} task ids in one heartbeat"),
        ));
    }
    let answer = state.store().heartbeat(id, &body).await?;
    // The backoff it reported may have ended: a claim it has waiting looks again.
    state.waiters().wake(id);
    Ok(Json(answer))
}

/// Hands the agent its due tasks, up to its free slots; with `waitSeconds`, waits for one when
/// none is due (a long poll).
#[utoipa::path(post, path = "/agents/{id}/tasks/claim", tag = "agent protocol", request_body = ClaimRequest,
    params(("id" = String, Path, description = "The calling agent's own id")),
    security(("agent" = [])),
    responses(
        (status = 200, description = "The claimed tasks, leased", body = ClaimAnswer),
        (status = 404, description = "Not the calling agent", body = ErrorBody),
        (status = 422, description = "limit outside 1-500 or waitSeconds outside 0-60", body = ErrorBody),
    ))]
pub(crate) async fn claim(
    State(state): State<AppState>,
    agent: AgentAuth,
    ApiPath(id): ApiPath<AgentId>,
    AgentJson(body): AgentJson<ClaimRequest>,
) -> Result<Json<ClaimAnswer>, ApiError> {
    if id != agent.agent_id() {
        return Err(ApiError::not_found("agent"));
    }
    if !(1..=500).contains(&body.limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("limit: {} is not allowed; expected 1-500", body.limit),
        ));
    }
    if body.wait_seconds > MAX_CLAIM_WAIT_SECONDS {
        return Err(ApiError::invalid(
            "waitSeconds",
            format!(
                "waitSeconds: {} is not allowed; expected 0-{MAX_CLAIM_WAIT_SECONDS}",
                body.wait_seconds
            ),
        ));
    }
    Ok(Json(claim_or_wait(&state, id, &body).await?))
}

/// Claims at once, or, with `waitSeconds` and nothing claimable, holds the request until a
/// task of the agent becomes claimable or the wait ends (within the request timeout). Past
/// `limits.maxWaitingClaims` held at once, answers at once.
async fn claim_or_wait(
    state: &AppState,
    agent: AgentId,
    request: &ClaimRequest,
) -> Result<ClaimAnswer, ApiError> {
    let limits = state.config().limits;
    // Two seconds before the request timeout, so the answer is never a 408.
    let wait = request
        .wait_seconds
        .min(limits.request_timeout_seconds.saturating_sub(2));
    let waiting = (wait > 0)
        .then(|| state.waiters().enter(agent, limits.max_waiting_claims))
        .flatten();
    let Some(waiting) = waiting else {
        return Ok(state.store().claim(agent, request).await?);
    };
    state
        .metrics()
        .waiting_claims
        .set(i64::from(state.waiters().waiting()));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(u64::from(wait));
    let answer = loop {
        // Listening before looking: a task made between the claim and the wait still wakes it.
        let woken = waiting.notify.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let answer = state.store().claim(agent, request).await?;
        if !answer.tasks.is_empty() {
            break answer;
        }
        // A retry or a backoff that ends within the wait: the claim looks again then.
        let wake = match state.store().next_claimable_at(agent).await? {
            Some(at) => {
                let after = (at - state.store().clock().now())
                    .to_std()
                    .unwrap_or_default();
                tokio::time::Instant::now()
                    .checked_add(after)
                    .map_or(deadline, |t| deadline.min(t))
            }
            None => deadline,
        };
        tokio::select! {
            () = woken => {}
            () = tokio::time::sleep_until(wake) => {
                if wake == deadline {
                    break answer;
                }
            }
            () = state.waiters().closed() => break answer,
        }
    };
    drop(waiting);
    state
        .metrics()
        .waiting_claims
        .set(i64::from(state.waiters().waiting()));
    Ok(answer)
}
