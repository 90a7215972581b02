//! Enrollment: tokens with which machines create their own agent, and the agent's side of it.

use axum::{Json, extract::State, http::StatusCode, response::Response};
use backup_core::{
    CreateEnrollmentToken, EnrollRequest, Enrolled, EnrollmentTokenCreated, EnrollmentTokenView,
    ErrorBody, Page,
};
use serde::Deserialize;

use super::{Paging, check_name, created};
use crate::{
    ApiError, AppState,
    auth::{EnrollBearer, TenantAuth},
    extract::{AgentJson, ApiPath, ApiQuery, TenantJson},
};

/// Makes an enrollment token: put it in the agents' configuration (`enrollmentToken` or
/// `enrollmentTokenFile`); each machine without credentials enrolls itself once. The token is
/// shown once.
#[utoipa::path(post, path = "/enrollment-tokens", tag = "enrollment", request_body = CreateEnrollmentToken,
    security(("tenant" = [], "tenantId" = [])),
    responses(
        (status = 201, description = "Created; the token is shown this once", body = EnrollmentTokenCreated),
        (status = 422, description = "A bad lifetime (1m-30days), use count (1-100000) or description", body = ErrorBody),
    ))]
pub(crate) async fn create_enrollment_token(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    TenantJson(body): TenantJson<CreateEnrollmentToken>,
) -> Result<Response, ApiError> {
    let created_token = state.store().create_enrollment_token(tenant, &body).await?;
    tracing::info!(%tenant, token = %created_token.view.id, max_uses = body.max_uses, expires_at = %created_token.view.expires_at, "enrollment token created");
    Ok(created(created_token))
}

/// Paging of `GET /enrollment-tokens`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct EnrollmentQuery {
    /// Items per page, 1-500 (default 100).
    limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// The tenant's enrollment tokens, newest first, with their uses (never their values).
#[utoipa::path(get, path = "/enrollment-tokens", tag = "enrollment", params(EnrollmentQuery),
    security(("tenant" = [], "tenantId" = [])),
    responses(
        (status = 200, description = "A page of enrollment tokens", body = Page<EnrollmentTokenView>),
        (status = 422, description = "A bad limit or cursor", body = ErrorBody),
    ))]
pub(crate) async fn list_enrollment_tokens(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ApiQuery(q): ApiQuery<EnrollmentQuery>,
) -> Result<Json<Page<EnrollmentTokenView>>, ApiError> {
    let page = Paging::request(q.limit, q.cursor)?;
    Ok(Json(
        state.store().list_enrollment_tokens(tenant, &page).await?,
    ))
}

/// Revokes an enrollment token: no agent enrolls with it any more (those that did keep their
/// own tokens).
#[utoipa::path(delete, path = "/enrollment-tokens/{id}", tag = "enrollment",
    params(("id" = String, Path, description = "Enrollment token id")),
    security(("tenant" = [], "tenantId" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such enrollment token for this tenant", body = ErrorBody),
    ))]
pub(crate) async fn revoke_enrollment_token(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> Result<StatusCode, ApiError> {
    state.store().revoke_enrollment_token(tenant, id).await?;
    tracing::info!(%tenant, token = %id, "enrollment token revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// An agent without credentials creates itself: `Authorization: Bearer <enrollment token>`,
/// no tenant header. The answer carries the agent's own id and token (shown once); the agent
/// keeps them.
#[utoipa::path(post, path = "/enroll", tag = "enrollment", request_body = EnrollRequest,
    security(("enrollment" = [])),
    responses(
        (status = 201, description = "The agent's credentials, shown once", body = Enrolled),
        (status = 401, description = "An unknown, revoked, expired or used-up enrollment token", body = ErrorBody),
        (status = 403, description = "The tenant has limits.maxAgentsPerTenant agents (quota_exceeded)", body = ErrorBody),
        (status = 409, description = "A live agent of the tenant has this name", body = ErrorBody),
        (status = 422, description = "A bad name or host name", body = ErrorBody),
    ))]
pub(crate) async fn enroll(
    State(state): State<AppState>,
    bearer: EnrollBearer,
    AgentJson(body): AgentJson<EnrollRequest>,
) -> Result<Response, ApiError> {
    check_name("name", &body.name)?;
    check_name("hostname", &body.hostname)?;
    match state.store().enroll(&bearer.token, &body).await? {
        Some(enrolled) => {
            tracing::info!(tenant = %enrolled.tenant_id, agent = %enrolled.agent_id, name = %body.name, "agent enrolled");
            Ok(created(enrolled))
        }
        None => {
            bearer.failed(&state);
            Err(ApiError::unauthorized(
                "unknown, revoked, expired or used-up enrollment token",
            ))
        }
    }
}
