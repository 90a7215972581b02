//! The optional local listener: `/metrics` (Prometheus text) and `/diagnostics` (JSON).

use axum::{Json, Router, extract::State, http::header, response::IntoResponse, routing::get};

use crate::{Agent, Diagnostics};

pub(crate) fn router(agent: Agent) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/diagnostics", get(diagnostics))
        .with_state(agent)
}

async fn metrics(State(agent): State<Agent>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        agent.render_metrics(),
    )
}

async fn diagnostics(State(agent): State<Agent>) -> Json<Diagnostics> {
    Json(agent.diagnostics())
}
