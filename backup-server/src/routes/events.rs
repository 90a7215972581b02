//! The event and audit log, and the fleet's protection at a glance.

use axum::{Json, extract::State};
use backup_core::{ErrorBody, EventType, EventView, Page, Summary};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::Paging;
use crate::{ApiError, AppState, auth::TenantAuth, extract::ApiQuery};

/// Filters of `GET /events`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct EventQuery {
    /// Only events of this type (`agent.offline`, `task.failed_permanently`, ...).
    #[serde(rename = "type")]
    #[param(rename = "type", value_type = Option<String>)]
    event_type: Option<EventType>,
    /// Only events about this object (an agent, a policy, a task, a webhook).
    #[param(value_type = Option<String>, format = Uuid)]
    subject_id: Option<uuid::Uuid>,
    /// Only events at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<DateTime<Utc>>,
    /// Items per page, 1-500 (default 100).
    limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// The tenant's events and audit trail, newest first. Secrets never appear in them.
#[utoipa::path(get, path = "/events", tag = "events", params(EventQuery),
    security(("tenant" = [], "tenantId" = [])),
    responses(
        (status = 200, description = "A page of events", body = Page<EventView>),
        (status = 422, description = "A bad filter, limit or cursor", body = ErrorBody),
    ))]
pub(crate) async fn list_events(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
    ApiQuery(q): ApiQuery<EventQuery>,
) -> Result<Json<Page<EventView>>, ApiError> {
    let page = Paging::request(q.limit, q.cursor)?;
    let filter = backup_store::EventFilter {
        event_type: q.event_type,
        subject_id: q.subject_id,
        since: q.since,
    };
    Ok(Json(
        state.store().list_events(tenant, &filter, &page).await?,
    ))
}

/// Is everything protected: agents by status, policies by protection, the last day's
/// permanent failures and bytes added, the oldest last success.
#[utoipa::path(get, path = "/summary", tag = "events",
    security(("tenant" = [], "tenantId" = [])),
    responses((status = 200, description = "The fleet at a glance", body = Summary)))]
pub(crate) async fn summary(
    State(state): State<AppState>,
    TenantAuth(tenant): TenantAuth,
) -> Result<Json<Summary>, ApiError> {
    Ok(Json(state.store().summary(tenant).await?))
}
