//! `POST /tenants` (admin) and `POST /token/rotate` (tenant).

use axum::{Json, extract::State, response::Response};
use backup_core::{CreateTenant, ErrorBody, TenantCreated, TokenIssued};

use super::{check_name, created};
use crate::{
    ApiError, AppState,
    auth::{AdminAuth, TenantAuth},
    extract::TenantJson,
};

/// Creates a tenant; its token is shown once.
#[utoipa::path(post, path = "/tenants", tag = "tenants", request_body = CreateTenant,
    security(("admin" = [])),
    responses(
        (status = 201, description = "Created; the token is shown once", body = TenantCreated),
        (status = 422, description = "Invalid or unknown field", body = ErrorBody),
    ))]
pub(crate) async fn create_tenant(
    State(state): State<AppState>,
    _admin: AdminAuth,
    TenantJson(body): TenantJson<CreateTenant>,
) -> Result<Response, ApiError> {
    check_name("name", &body.name)?;
    let tenant = state.store().create_tenant(&body.name).await?;
    tracing::info!(tenant = %tenant.id, name = %tenant.name, "tenant created");
    Ok(created(tenant))
}

/// Rotates the calling tenant's token; the old one stops working at once.
#[utoipa::path(post, path = "/token/rotate", tag = "tenants",
    security(("tenant" = [], "tenantId" = [])),
    responses(
        (status = 200, description = "The new token", body = TokenIssued),
    ))]
pub(crate) async fn rotate_tenant_token(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
) -> Result<Json<TokenIssued>, ApiError> {
    let token = state.store().rotate_tenant_token(tenant).await?;
    tracing::info!(%tenant, "tenant token rotated");
    Ok(Json(TokenIssued { token }))
}
