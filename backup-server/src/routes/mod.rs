//! The router: every route of the API, the operational endpoints, and the layers around them
//! (body limit, timeout, request ids, tracing without secrets, metrics, JSON 404 / 405).

mod agents;
mod enrollment;
mod events;
mod health;
mod policies;
mod restores;
mod runs;
mod snapshots;
mod tasks;
mod tenants;
mod webhooks;

use std::time::Duration;

use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::{HeaderName, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use backup_core::ErrorCode;
use serde::Deserialize;
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::TraceLayer,
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    ApiError, AppState, MAX_BODY_BYTES,
    metrics::{RequestLabels, RouteLabels},
};

pub(crate) use agents::*;
pub(crate) use enrollment::*;
pub(crate) use events::*;
pub(crate) use health::*;
pub(crate) use policies::*;
pub(crate) use restores::*;
pub(crate) use runs::*;
pub(crate) use snapshots::*;
pub(crate) use tasks::*;
pub(crate) use tenants::*;
pub(crate) use webhooks::*;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every route of the API, declared once: the router serves them and the OpenAPI document
/// describes them from this one list (utoipa-axum checks that each handler's `#[utoipa::path]`
/// names the path it is routed on).
pub(crate) fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_tenant))
        .routes(routes!(rotate_tenant_token))
        .routes(routes!(create_agent, list_agents))
        .routes(routes!(get_agent, delete_agent))
        .routes(routes!(patch_settings))
        .routes(routes!(rotate_agent_token))
        .routes(routes!(heartbeat))
        .routes(routes!(claim))
        .routes(routes!(list_tasks))
        .routes(routes!(get_task))
        .routes(routes!(start_task))
        .routes(routes!(report_result))
        .routes(routes!(cancel_task))
        .routes(routes!(create_policy, list_policies))
        .routes(routes!(get_policy, update_policy, delete_policy))
        .routes(routes!(run_policy))
        .routes(routes!(list_backup_runs))
        .routes(routes!(report_snapshots))
        .routes(routes!(list_snapshots))
        .routes(routes!(create_restore))
        .routes(routes!(list_snapshot_directory))
        .routes(routes!(list_events))
        .routes(routes!(summary))
        .routes(routes!(create_webhook, list_webhooks))
        .routes(routes!(delete_webhook))
        .routes(routes!(list_deliveries))
        .routes(routes!(create_enrollment_token, list_enrollment_tokens))
        .routes(routes!(revoke_enrollment_token))
        .routes(routes!(enroll))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
}

/// The whole API as an axum `Router`, ready for `axum::serve` or `tower::ServiceExt::oneshot`.
pub fn app(state: AppState) -> Router {
    let timeout = Duration::from_secs(u64::from(state.config().limits.request_timeout_seconds));
    let (api, _) = api().split_for_parts();
    api.merge(crate::ui::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(refuse_large_bodies))
        .layer(middleware::from_fn_with_state(state.clone(), record_metrics))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                // Method, path and request id only: headers (tokens) never reach the logs.
                let id = req
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
            }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not take that method",
    )
}

/// What the server reads and throws away of a body it refuses, so that a client that writes
/// its whole body before reading (Python's urllib does) gets to read the 413 instead of a
/// reset connection. A larger body is cut off at once.
const DRAIN_BYTES: u64 = 16 * 1024 * 1024;

/// A declared body over 1 MiB is refused on every route, also those that read no body (where
/// `DefaultBodyLimit` never looks).
async fn refuse_large_bodies(req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let known = axum::body::HttpBody::size_hint(req.body()).lower();
    let size = declared.unwrap_or(0).max(known);
    if size <= MAX_BODY_BYTES as u64 {
        return next.run(req).await;
    }
    // A client that sent `Expect: 100-continue` waits for a go-ahead before its body: it reads
    // the 413 at once, and reading the body would invite an upload only to throw it away.
    let expects_continue = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if size <= DRAIN_BYTES && !expects_continue {
        let mut body = req.into_body();
        let mut drained = 0u64;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while drained <= DRAIN_BYTES {
            match tokio::time::timeout_at(deadline, http_body_util::BodyExt::frame(&mut body)).await
            {
                Ok(Some(Ok(frame))) => {
                    drained += frame.data_ref().map_or(0, |d| d.len() as u64);
                }
                _ => break,
            }
        }
    }
    let mut response =
        ApiError::new(ErrorCode::PayloadTooLarge, "the body is larger than 1 MiB").into_response();
    response.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}

async fn record_metrics(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    // A fixed set: hyper accepts any token as a method, and a label per made-up method would
    // grow the metrics without bound.
    let method = match req.method().as_str() {
        m @ ("GET" | "POST" | "PATCH" | "PUT" | "DELETE" | "HEAD" | "OPTIONS") => m,
        _ => "other",
    }
    .to_owned();
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let metrics = state.metrics();
    metrics
        .request_duration
        .get_or_create(&RouteLabels {
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// `limit` and `cursor` of every list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(crate) struct Paging {
    /// Items per page, 1-500 (default 100).
    limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    cursor: Option<String>,
}

impl Paging {
    fn request(
        limit: Option<i64>,
        cursor: Option<String>,
    ) -> Result<backup_store::PageRequest, ApiError> {
        let limit = match limit {
            None => None,
            Some(n) if (1..=i64::from(backup_store::MAX_PAGE_SIZE)).contains(&n) => Some(n as u32),
            Some(n) => {
                return Err(ApiError::invalid(
                    "limit",
                    format!(
                        "limit: {n} is not allowed; expected 1-{}",
                        backup_store::MAX_PAGE_SIZE
                    ),
                ));
            }
        };
        if cursor.as_ref().is_some_and(|c| c.len() > 200) {
            return Err(ApiError::invalid(
                "cursor",
                "cursor: not a nextCursor of this API",
            ));
        }
        Ok(backup_store::PageRequest { limit, cursor })
    }
}

/// 201 with a JSON body.
pub(crate) fn created<T: serde::Serialize>(body: T) -> Response {
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

/// Names are checked here too so that a huge one is refused before it reaches the store.
pub(crate) fn check_name(field: &str, value: &str) -> Result<(), ApiError> {
    Ok(backup_core::validate_name(field, value)?)
}
