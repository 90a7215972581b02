//! A server under test: `app()` over a store with a manual clock, and a small client.

use std::sync::Arc;

use axum::{
    Router,
    body::Body,
    http::{Method, Request, StatusCode},
};
use backup_core::{ManualClock, TenantCreated};
use backup_server::{AppState, ServerConfig, app};
use backup_store::Store;
use backup_testkit::TestDatabase;
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

pub(crate) const ADMIN: &str = "admin-token-for-tests-only";

pub(crate) fn start() -> DateTime<Utc> {
    "2026-03-01T00:00:00Z".parse().expect("rfc3339")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Sqlite,
    Postgres,
}

/// Credentials a request carries.
#[derive(Clone, Debug)]
pub(crate) enum Auth {
    None,
    Admin,
    Tenant { id: String, token: String },
    Agent(String),
    Raw(Vec<(&'static str, String)>),
}

impl Auth {
    pub(crate) fn tenant(t: &TenantCreated) -> Self {
        Auth::Tenant {
            id: t.id.to_string(),
            token: t.token.clone(),
        }
    }
}

pub(crate) struct Harness {
    pub(crate) state: AppState,
    pub(crate) router: Router,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) url: String,
    pub(crate) config: ServerConfig,
    _db: Option<TestDatabase>,
    _dir: Option<tempfile::TempDir>,
}

/// An answer: status and JSON body (Null when empty or not JSON).
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
    pub(crate) headers: axum::http::HeaderMap,
}

impl Answer {
    pub(crate) fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    pub(crate) fn field(&self) -> &str {
        self.body["error"]["field"].as_str().unwrap_or_default()
    }
}

impl Harness {
    pub(crate) async fn open(kind: Kind, config: ServerConfig) -> Option<Harness> {
        let clock = Arc::new(ManualClock::new(start()));
        let (url, db, dir) = match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().expect("dir");
                (
                    format!("sqlite://{}", dir.path().join("server.db").display()),
                    None,
                    Some(dir),
                )
            }
            Kind::Postgres => {
                let db = TestDatabase::create().await?;
                (db.url.clone(), Some(db), None)
            }
        };
        let config = ServerConfig {
            database: url.clone(),
            admin_token: Some(ADMIN.into()),
            ..config
        };
        let store = Store::open(&url, config.store_config(), clock.clone())
            .await
            .expect("store");
        let state = AppState::new(store, config.clone());
        Some(Harness {
            router: app(state.clone()),
            state,
            clock,
            url,
            config,
            _db: db,
            _dir: dir,
        })
    }

    /// Another server over the same database (a replica), sharing the clock.
    pub(crate) async fn replica(&self) -> (AppState, Router) {
        let store = Store::open(&self.url, self.config.store_config(), self.clock.clone())
            .await
            .expect("store");
        let state = AppState::new(store, self.config.clone());
        (state.clone(), app(state))
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        auth: &Auth,
        body: Option<Value>,
    ) -> Answer {
        call(
            &self.router,
            method,
            path,
            auth,
            body.map(|b| b.to_string().into_bytes()),
        )
        .await
    }

    pub(crate) async fn raw(
        &self,
        method: Method,
        path: &str,
        auth: &Auth,
        body: Vec<u8>,
    ) -> Answer {
        call(&self.router, method, path, auth, Some(body)).await
    }

    /// The `/metrics` text (not JSON, so not through [`Harness::get`]).
    pub(crate) async fn metrics_text(&self) -> String {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let response = self
            .router
            .clone()
            .oneshot(
                axum::http::Request::get("/metrics")
                    .body(axum::body::Body::empty())
                    .expect("req"),
            )
            .await
            .expect("infallible");
        assert_eq!(response.status(), axum::http::StatusCode::OK);
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        String::from_utf8(bytes.to_vec()).expect("utf8")
    }

    pub(crate) async fn get(&self, path: &str, auth: &Auth) -> Answer {
        self.call(Method::GET, path, auth, None).await
    }

    pub(crate) async fn post(&self, path: &str, auth: &Auth, body: Value) -> Answer {
        self.call(Method::POST, path, auth, Some(body)).await
    }

    pub(crate) fn advance_secs(&self, secs: i64) {
        self.clock.advance(chrono::TimeDelta::seconds(secs));
    }

    /// A tenant made through `POST /tenants`.
    pub(crate) async fn tenant(&self, name: &str) -> TenantCreated {
        let a = self
            .post("/tenants", &Auth::Admin, json!({"name": name}))
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{a:?}");
        serde_json::from_value(a.body).expect("tenant body")
    }

    /// An agent: its id and token.
    pub(crate) async fn agent(&self, tenant: &TenantCreated, name: &str) -> (String, String) {
        let a = self
            .post(
                "/agents",
                &Auth::tenant(tenant),
                json!({"name": name, "hostname": format!("{name}.example")}),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{a:?}");
        (
            a.body["id"].as_str().expect("id").to_owned(),
            a.body["token"].as_str().expect("token").to_owned(),
        )
    }

    pub(crate) async fn heartbeat(&self, agent: &(String, String), body: Value) -> Answer {
        self.post(
            &format!("/agents/{}/heartbeat", agent.0),
            &Auth::Agent(agent.1.clone()),
            body,
        )
        .await
    }

    pub(crate) async fn online(&self, agent: &(String, String)) {
        let a = self
            .heartbeat(agent, json!({"runningTasks": 0, "queueDepth": 0}))
            .await;
        assert_eq!(a.status, StatusCode::OK, "{a:?}");
    }

    pub(crate) async fn policy(&self, tenant: &TenantCreated, body: Value) -> Value {
        let a = self.post("/policies", &Auth::tenant(tenant), body).await;
        assert_eq!(a.status, StatusCode::CREATED, "{a:?}");
        a.body
    }

    pub(crate) async fn claim(&self, agent: &(String, String), limit: u32) -> Vec<Value> {
        let a = self
            .post(
                &format!("/agents/{}/tasks/claim", agent.0),
                &Auth::Agent(agent.1.clone()),
                json!({"limit": limit}),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{a:?}");
        a.body["tasks"].as_array().cloned().unwrap_or_default()
    }

    pub(crate) async fn tick(&self) -> backup_server::TickSummary {
        backup_server::scheduler_tick(&self.state)
            .await
            .expect("tick")
    }
}

pub(crate) fn backup_policy(agent: &str) -> Value {
    json!({
        "name": "hourly", "agentId": agent, "kind": "backup", "schedule": {"every": "1h"},
        "paths": ["/srv"], "repository": "main"
    })
}

pub(crate) async fn call(
    router: &Router,
    method: Method,
    path: &str,
    auth: &Auth,
    body: Option<Vec<u8>>,
) -> Answer {
    let mut req = Request::builder().method(method).uri(path);
    match auth {
        Auth::None => {}
        Auth::Admin => req = req.header("authorization", format!("Bearer {ADMIN}")),
        Auth::Tenant { id, token } => {
            req = req
                .header("authorization", format!("Bearer {token}"))
                .header("x-tenant-id", id.as_str());
        }
        Auth::Agent(token) => req = req.header("authorization", format!("Bearer {token}")),
        Auth::Raw(headers) => {
            for (k, v) in headers {
                req = req.header(*k, v.as_str());
            }
        }
    }
    let body = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Body::from(b)
        }
        None => Body::empty(),
    };
    let response = router
        .clone()
        .oneshot(req.body(body).expect("request"))
        .await
        .expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        body,
        headers,
    }
}

/// Runs a test body on SQLite and on PostgreSQL: `server_test!(name, |h| async move { ... });`
macro_rules! server_test {
    ($name:ident, $config:expr, |$h:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run(kind: $crate::harness::Kind) {
                let Some($h) = $crate::harness::Harness::open(kind, $config).await else {
                    return;
                };
                $body.await
            }

            #[tokio::test]
            async fn sqlite() {
                run($crate::harness::Kind::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                run($crate::harness::Kind::Postgres).await
            }
        }
    };
    ($name:ident, |$h:ident| $body:expr) => {
        server_test!($name, backup_server::ServerConfig::default(), |$h| $body);
    };
}
pub(crate) use server_test;
