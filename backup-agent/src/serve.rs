//! The optional local listener: `/metrics` (Prometheus text) and `/diagnostics` (JSON).

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, header},
    response::IntoResponse,
    routing::get,
};

use crate::{Agent, Diagnostics};

pub(crate) fn router(agent: Agent) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/diagnostics", get(diagnostics))
        .with_state(agent)
}

/// Prometheus text format 0.0.4, or OpenMetrics when the `Accept` header asks for it.
async fn metrics(State(agent): State<Agent>, headers: HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, body) = backup_core::exposition::negotiate(accept, agent.render_metrics());
    ([(header::CONTENT_TYPE, content_type)], body)
}

async fn diagnostics(State(agent): State<Agent>) -> Json<Diagnostics> {
    Json(agent.diagnostics())
}
