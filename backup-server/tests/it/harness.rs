//! A server under test: `app()` over a store with a manual clock, and a small client.

use std::sync::Arc;

use axum::{Router, http::Method};
use backup_core::{ManualClock, TenantCreated};
use backup_server::{AppState, ServerConfig, app};
use backup_store::Store;
use backup_testkit::{Client, InProcess, TestDatabase};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

pub(crate) const ADMIN: &str = "admin-token-for-tests-only";

pub(crate) fn start() -> DateTime<Utc> {
    "2026-03-01T00:00:00Z".parse().expect("rfc3339")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Sqlite,
    Postgres,
}

pub(crate) use backup_testkit::{Answer, Auth, TestAgent};

pub(crate) struct Harness {
    pub(crate) state: AppState,
    pub(crate) router: Router,
    pub(crate) client: Client<InProcess>,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) url: String,
    pub(crate) config: ServerConfig,
    _db: Option<TestDatabase>,
    _dir: Option<tempfile::TempDir>,
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
        let router = app(state.clone());
        Some(Harness {
            client: Client::new(InProcess(router.clone())),
            router,
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
        self.client.call(method.as_str(), path, auth, body).await
    }

    pub(crate) async fn raw(
        &self,
        method: Method,
        path: &str,
        auth: &Auth,
        body: Vec<u8>,
    ) -> Answer {
        self.client
            .raw(method.as_str(), path, auth, Some(body))
            .await
    }

    /// The `/metrics` text (not JSON, so not through [`Harness::get`]).
    pub(crate) async fn metrics_text(&self) -> String {
        let a = self.get("/metrics", &Auth::None).await;
        assert_eq!(a.status, 200);
        a.text
    }

    pub(crate) async fn get(&self, path: &str, auth: &Auth) -> Answer {
        self.call(Method::GET, path, auth, None).await
    }

    pub(crate) async fn post(&self, path: &str, auth: &Auth, body: Value) -> Answer {
        self.call(Method::POST, path, auth, Some(body)).await
    }

    pub(crate) async fn patch(&self, path: &str, auth: &Auth, body: Value) -> Answer {
        self.call(Method::PATCH, path, auth, Some(body)).await
    }

    /// `POST /tasks/{task}/cancel` (no body) as `auth`.
    pub(crate) async fn cancel(&self, task: &str, auth: &Auth) -> Answer {
        self.call(Method::POST, &format!("/tasks/{task}/cancel"), auth, None)
            .await
    }

    pub(crate) fn advance_secs(&self, secs: i64) {
        self.clock.advance(chrono::TimeDelta::seconds(secs));
    }

    /// A tenant made through `POST /tenants`.
    pub(crate) async fn tenant(&self, name: &str) -> TenantCreated {
        self.client.create_tenant(ADMIN, name).await
    }

    /// An agent: its id and token.
    pub(crate) async fn agent(&self, tenant: &TenantCreated, name: &str) -> TestAgent {
        self.client.create_agent(tenant, name).await
    }

    pub(crate) async fn heartbeat(&self, agent: &TestAgent, body: Value) -> Answer {
        self.client.heartbeat(agent, body).await
    }

    pub(crate) async fn online(&self, agent: &TestAgent) {
        self.client.online(agent).await;
    }

    pub(crate) async fn policy(&self, tenant: &TenantCreated, body: Value) -> Value {
        let a = self.post("/policies", &Auth::tenant(tenant), body).await;
        assert_eq!(a.status, 201, "{a:?}");
        a.body
    }

    pub(crate) async fn claim(&self, agent: &TestAgent, limit: u32) -> Vec<Value> {
        self.client.claim(agent, limit).await
    }

    /// Claims one task for the agent: its id.
    pub(crate) async fn claim_one(&self, agent: &TestAgent) -> String {
        let claimed = self.claim(agent, 1).await;
        claimed[0]["id"].as_str().expect("task").to_owned()
    }

    pub(crate) async fn tick(&self) -> backup_server::TickSummary {
        backup_server::scheduler_tick(&self.state)
            .await
            .expect("tick")
    }
}

pub(crate) fn backup_policy(agent: impl std::fmt::Display) -> Value {
    json!({
        "name": "hourly", "agentId": agent.to_string(), "kind": "backup", "schedule": {"every": "1h"},
        "paths": ["/srv"], "repository": "main"
    })
}

/// A request to another router (a replica) with the same client code.
pub(crate) async fn call(
    router: &Router,
    method: Method,
    path: &str,
    auth: &Auth,
    body: Option<Vec<u8>>,
) -> Answer {
    Client::new(InProcess(router.clone()))
        .raw(method.as_str(), path, auth, body)
        .await
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
