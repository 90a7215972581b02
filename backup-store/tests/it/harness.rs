//! Opens the same test against each backend, with a manual clock.

use std::sync::Arc;

use backup_core::{
    AgentCreated, AgentId, ClaimRequest, ClaimedTask, CreateAgent, Heartbeat, HeartbeatAnswer,
    ManualClock, PolicyId, PolicySpec, PolicyView, RepositoryBackoff, TaskId, TaskStatus,
    TenantCreated, TenantId,
};
use backup_store::{Store, StoreConfig};
use backup_testkit::TestDatabase;
use chrono::{DateTime, Utc};

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    SqliteMemory,
    SqliteFile,
    Postgres,
}

/// One backend under test: the store, its clock, and what keeps the database alive.
pub(crate) struct Env {
    pub(crate) store: Store,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) kind: Kind,
    pub(crate) url: String,
    pub(crate) config: StoreConfig,
    _dir: Option<tempfile::TempDir>,
    _db: Option<TestDatabase>,
}

pub(crate) fn start() -> DateTime<Utc> {
    "2026-03-01T00:00:00Z".parse().expect("rfc3339")
}

impl Env {
    /// Opens `kind` with `config`; `None` when PostgreSQL is absent (and not required).
    pub(crate) async fn open(kind: Kind, config: StoreConfig) -> Option<Env> {
        let clock = Arc::new(ManualClock::new(start()));
        let (url, dir, db) = match kind {
            Kind::SqliteMemory => ("sqlite::memory:".to_owned(), None, None),
            Kind::SqliteFile => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("store.db").display());
                (url, Some(dir), None)
            }
            Kind::Postgres => {
                let db = TestDatabase::create().await?;
                (db.url.clone(), None, Some(db))
            }
        };
        let store = Store::open(&url, config, clock.clone())
            .await
            .expect("store opens");
        Some(Env {
            store,
            clock,
            kind,
            url,
            config,
            _dir: dir,
            _db: db,
        })
    }

    /// A second store on the same database (another server replica), sharing the clock.
    pub(crate) async fn replica(&self) -> Store {
        if self.kind == Kind::SqliteMemory {
            // An in-memory database exists only inside its one connection.
            return self.store.clone();
        }
        Store::open(&self.url, self.config, self.clock.clone())
            .await
            .expect("replica opens")
    }

    pub(crate) fn advance_secs(&self, secs: i64) {
        self.clock.advance(chrono::TimeDelta::seconds(secs));
    }

    pub(crate) async fn tenant(&self, name: &str) -> TenantCreated {
        self.store.create_tenant(name).await.expect("tenant")
    }

    pub(crate) async fn agent(&self, tenant: &TenantCreated, name: &str) -> AgentCreated {
        self.store
            .create_agent(
                tenant.id,
                &CreateAgent {
                    name: name.into(),
                    hostname: format!("{name}.example"),
                },
            )
            .await
            .expect("agent")
    }

    /// The agent's `heartbeat`; the store's answer.
    pub(crate) async fn heartbeat(&self, agent: AgentId, heartbeat: &Heartbeat) -> HeartbeatAnswer {
        self.store
            .heartbeat(agent, heartbeat)
            .await
            .expect("heartbeat")
    }

    /// A heartbeat with nothing to report: the agent is online.
    pub(crate) async fn online(&self, agent: AgentId) {
        self.heartbeat(agent, &Heartbeat::default()).await;
    }

    pub(crate) async fn policy(&self, tenant: &TenantCreated, spec: PolicySpec) -> PolicyView {
        self.store
            .create_policy(tenant.id, &spec)
            .await
            .expect("policy")
    }

    /// When the policy is due next.
    pub(crate) async fn next_due_at(
        &self,
        tenant: TenantId,
        policy: PolicyId,
    ) -> Option<DateTime<Utc>> {
        self.store
            .get_policy(tenant, policy)
            .await
            .expect("policy")
            .next_due_at
    }

    /// The task's status.
    pub(crate) async fn task_status(&self, tenant: TenantId, task: TaskId) -> TaskStatus {
        self.store
            .get_task(tenant, task)
            .await
            .expect("task")
            .status
    }

    /// Claims everything claimable for `agent`.
    pub(crate) async fn claim_all(&self, agent: AgentId) -> Vec<ClaimedTask> {
        self.store
            .claim(
                agent,
                &ClaimRequest {
                    limit: 500,
                    per_kind: None,
                    wait_seconds: 0,
                },
            )
            .await
            .expect("claim")
            .tasks
    }
}

/// A backup policy on `agent` running every hour into `main`.
pub(crate) fn backup_every_hour(agent: AgentId) -> PolicySpec {
    PolicySpec {
        name: "hourly".into(),
        ..backup_testkit::backup_spec(agent, "main", &["/srv"])
    }
}

/// [`backup_every_hour`] named `name`, into `repository`.
pub(crate) fn backup_into(agent: AgentId, name: &str, repository: &str) -> PolicySpec {
    PolicySpec {
        name: name.into(),
        repository: repository.into(),
        ..backup_every_hour(agent)
    }
}

/// A heartbeat reporting `repository` in backoff for `seconds`.
pub(crate) fn repository_backoff(repository: &str, seconds: u64) -> Heartbeat {
    Heartbeat {
        backoff_repositories: Some(vec![RepositoryBackoff {
            repository: repository.into(),
            remaining_seconds: seconds,
        }]),
        ..Heartbeat::default()
    }
}

/// A heartbeat reporting the whole agent in backoff for `seconds`.
pub(crate) fn agent_backoff(seconds: u64) -> Heartbeat {
    Heartbeat {
        agent_backoff_seconds: Some(seconds),
        ..Heartbeat::default()
    }
}

/// Runs an async test body on every backend: `store_test!(name, |env| async move { ... });`
macro_rules! store_test {
    ($name:ident, $config:expr, |$env:ident| $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run(kind: $crate::harness::Kind) {
                let Some($env) = $crate::harness::Env::open(kind, $config).await else {
                    return;
                };
                $body.await
            }

            #[tokio::test]
            async fn sqlite_memory() {
                run($crate::harness::Kind::SqliteMemory).await
            }

            #[tokio::test]
            async fn sqlite_file() {
                run($crate::harness::Kind::SqliteFile).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                run($crate::harness::Kind::Postgres).await
            }
        }
    };
    ($name:ident, |$env:ident| $body:expr) => {
        store_test!($name, backup_store::StoreConfig::default(), |$env| $body);
    };
}
pub(crate) use store_test;
