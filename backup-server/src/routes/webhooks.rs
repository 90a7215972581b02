//! Webhooks: where the tenant's events are delivered, signed, at least once.

use axum::{Json, extract::State, http::StatusCode, response::Response};
use backup_core::{
    CreateWebhook, DeliveryStatus, DeliveryView, ErrorBody, Page, WebhookCreated, WebhookId,
    WebhookView,
};
use serde::Deserialize;

use super::{Paging, created};
use crate::{
    ApiError, AppState,
    auth::TenantAuth,
    extract::{ApiPath, ApiQuery, TenantJson},
};

/// Creates a webhook; its `secret` (the key of the `X-Fleet-Signature` HMAC) is shown once.
/// A URL whose host is (or resolves to) a loopback, private, link-local or metadata address is
/// refused unless the server allows it (`notifications.allowPrivateTargets`).
#[utoipa::path(post, path = "/webhooks", tag = "webhooks", request_body = CreateWebhook,
    security(("tenant" = [], "tenantId" = [])),
    responses(
        (status = 201, description = "Created; the secret is shown this once", body = WebhookCreated),
        (status = 422, description = "A bad URL (or one the server may not reach), an unknown event type", body = ErrorBody),
    ))]
pub(crate) async fn create_webhook(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    TenantJson(body): TenantJson<CreateWebhook>,
) -> Result<Response, ApiError> {
    body.validate()?;
    crate::notify::check_target(
        &body.url,
        state.config().notifications.allow_private_targets,
    )
    .await
    .map_err(|e| ApiError::invalid("url", e))?;
    let webhook = state.store().create_webhook(tenant, &body).await?;
    tracing::info!(%tenant, webhook = %webhook.webhook.id, "webhook created");
    Ok(created(webhook))
}

/// Paging of `GET /webhooks`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct WebhookQuery {
    /// Items per page, 1-500 (default 100).
    limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// The tenant's webhooks, newest first (never their secrets).
#[utoipa::path(get, path = "/webhooks", tag = "webhooks", params(WebhookQuery),
    security(("tenant" = [], "tenantId" = [])),
    responses(
        (status = 200, description = "A page of webhooks", body = Page<WebhookView>),
        (status = 422, description = "A bad limit or cursor", body = ErrorBody),
    ))]
pub(crate) async fn list_webhooks(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ApiQuery(q): ApiQuery<WebhookQuery>,
) -> Result<Json<Page<WebhookView>>, ApiError> {
    let page = Paging::request(q.limit, q.cursor)?;
    Ok(Json(state.store().list_webhooks(tenant, &page).await?))
}

/// Deletes a webhook; its pending deliveries end as failed.
#[utoipa::path(delete, path = "/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id")),
    security(("tenant" = [], "tenantId" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such webhook for this tenant", body = ErrorBody),
    ))]
pub(crate) async fn delete_webhook(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ApiPath(id): ApiPath<WebhookId>,
) -> Result<StatusCode, ApiError> {
    state.store().delete_webhook(tenant, id).await?;
    tracing::info!(%tenant, webhook = %id, "webhook deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Filters of `GET /webhooks/{id}/deliveries`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct DeliveryQuery {
    /// Only deliveries in this status (`pending`, `delivered`, `failed`).
    #[param(value_type = Option<String>)]
    status: Option<DeliveryStatus>,
    /// Items per page, 1-500 (default 100).
    limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// A webhook's deliveries, newest first, with their attempts and last error.
#[utoipa::path(get, path = "/webhooks/{id}/deliveries", tag = "webhooks", params(("id" = String, Path, description = "Webhook id"), DeliveryQuery),
    security(("tenant" = [], "tenantId" = [])),
    responses(
        (status = 200, description = "A page of deliveries", body = Page<DeliveryView>),
        (status = 404, description = "No such webhook for this tenant", body = ErrorBody),
        (status = 422, description = "A bad filter, limit or cursor", body = ErrorBody),
    ))]
pub(crate) async fn list_deliveries(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ApiPath(id): ApiPath<WebhookId>,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> Result<Json<Page<DeliveryView>>, ApiError> {
    let page = Paging::request(q.limit, q.cursor)?;
    let filter = backup_store::DeliveryFilter { status: q.status };
    Ok(Json(
        state
            .store()
            .list_deliveries(tenant, id, &filter, &page)
            .await?,
    ))
}
