//! # backup-store: the orchestrator's memory, on SQLite or PostgreSQL
//!
//! One [`Store`] type over two databases. SQLite (a file, embedded, the default) suits one
//! server; PostgreSQL suits production and several server replicas. Both run **the same SQL
//! text**: every query lives once in `ops.rs`, which is compiled twice, once per backend, with
//! that backend's concrete sqlx types. The differences are small and named: how a write
//! transaction begins (`BEGIN IMMEDIATE` on SQLite's single writer connection) and the row locks
//! PostgreSQL takes so that replicas split work (`FOR UPDATE ... SKIP LOCKED`). Why one type and
//! not a trait with two implementations: the semantics (attempts, leases, retries, idempotent
//! results) are subtle, and writing them twice would let the two drift; one test suite runs
//! against both to prove they have not.
//!
//! What it guarantees, on both databases:
//! - a task is claimed by at most one caller at a time (also across server replicas);
//! - one task per policy slot (`UNIQUE(policy_id, slot)`) and at most one open task per policy;
//! - a result is recorded once per (task, attempt); a repeat answers what was decided;
//! - retries are decided in the transaction that stores a failure or lapses a lease, by
//!   backup-core's [`backup_core::RetryBudget`] under the agent's settings of that moment;
//! - every read and write is scoped by tenant (or by the calling agent).
//!
//! ```
//! use std::sync::Arc;
//! use backup_core::{CreateAgent, Heartbeat, ClaimRequest, PolicySpec, ScheduleSpec, SystemClock, TaskKind};
//! use backup_store::{Store, StoreConfig};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Store::open("sqlite::memory:", StoreConfig::default(), Arc::new(SystemClock)).await?;
//! let tenant = store.create_tenant("acme").await?;
//! let agent = store.create_agent(tenant.id, &CreateAgent { name: "db-1".into(), hostname: "db-1".into() }).await?;
//! let policy = store.create_policy(tenant.id, &PolicySpec {
//!     name: "nightly".into(), agent_id: agent.agent.id, kind: TaskKind::Backup,
//!     schedule: ScheduleSpec::every("24h"), paths: vec!["/srv".into()], excludes: vec![],
//!     repository: "main".into(), retention: None, max_task_retries: None,
//!     timeout_minutes: None, enabled: true, alert_after: None,
//! }).await?;
//!
//! // The agent says hello, the scheduler creates the due task, the agent claims it.
//! store.heartbeat(agent.agent.id, &Heartbeat::default()).await?;
//! let tick = store.schedule_due(true).await?;
//! assert_eq!(tick.created, 1);
//! let claimed = store.claim(agent.agent.id, &ClaimRequest { limit: 1, per_kind: None, wait_seconds: 0 }).await?;
//! assert_eq!(claimed.tasks[0].policy_id, Some(policy.id));
//! assert_eq!(claimed.tasks[0].attempt, 1);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod answers;
mod cursor;
mod error;
mod filters;
mod postgres;
mod rows;
mod sqlite;
mod storable;
mod token;
mod ts;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use backup_core::{
    AgentCreated, AgentId, AgentView, AttemptReport, BackupRunView, ClaimAnswer, ClaimRequest,
    Clock, CreateAgent, Heartbeat, HeartbeatAnswer, Page, PolicyId, PolicyPatch, PolicySpec,
    PolicyView, Settings, SettingsPatch, SplitMix64, TaskId, TaskView, TenantCreated, TenantId,
};
use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

pub use answers::{
    AgentPrincipal, DeliveryOutcome, DueDelivery, FleetSummary, LapseReport, ResultAnswer,
    TenantListing, TickReport, TransitionReport, UiSession,
};
pub use cursor::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PageRequest};
pub use dispatch::ClaimableListener;
pub use error::{Result, StoreError};
pub use filters::{
    BackupRunFilter, DeliveryFilter, EventFilter, PolicyFilter, SnapshotFilter, TaskFilter,
};

use crate::ts::Ts;

/// Scheduler settings the store needs to answer views and hand out leases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// `scheduler.leaseSeconds`: how long a claim or a heartbeat keeps a task leased.
    pub lease_seconds: u32,
    /// `scheduler.offlineAfterSeconds`: silence after which an agent counts as offline.
    pub offline_after_seconds: u32,
    /// `scheduler.agentQueueThreshold`: queue depth above which an agent is saturated.
    pub agent_queue_threshold: u32,
    /// PostgreSQL pool size.
    pub max_connections: u32,
    /// `limits.maxAgentsPerTenant` (0: no limit).
    pub max_agents_per_tenant: u32,
    /// `limits.maxPoliciesPerTenant` (0: no limit).
    pub max_policies_per_tenant: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            lease_seconds: 900,
            offline_after_seconds: 180,
            agent_queue_threshold: 10,
            max_connections: 16,
            max_agents_per_tenant: 100_000,
            max_policies_per_tenant: 1_000_000,
        }
    }
}

/// What the queries share: the clock, the configuration, the jitter generator.
#[derive(Debug)]
pub(crate) struct Ctx {
    clock: Arc<dyn Clock>,
    config: StoreConfig,
    rng: Mutex<SplitMix64>,
}

impl Ctx {
    fn now(&self) -> Ts {
        Ts::new(self.clock.now())
    }

    fn lease(&self) -> TimeDelta {
        TimeDelta::seconds(i64::from(self.config.lease_seconds))
    }

    fn rng(&self) -> MutexGuard<'_, SplitMix64> {
        self.rng.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(sqlite::Pools),
    Postgres(postgres::Pools),
}

/// The store. Cheap to clone (shared pools).
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    ctx: Arc<Ctx>,
}

/// Calls the same method on whichever backend this store uses.
macro_rules! on_backend {
    ($self:ident, $pools:ident => $call:expr) => {
        match &$self.backend {
            $crate::Backend::Sqlite($pools) => $call.await,
            $crate::Backend::Postgres($pools) => $call.await,
        }
    };
}

// The store's API, one file per concept beyond the first ones (they use `on_backend!`).
mod dispatch;
mod enrollment;
mod events;
mod restores;
mod snapshots;
mod webhooks;

/// Checks a name: 1-200 characters, not only whitespace.
pub(crate) fn validate_name(field: &str, name: &str) -> Result<()> {
    Ok(backup_core::validate_name(field, name)?)
}

impl Store {
    /// Opens (creating and migrating as needed) the database at `url`: `sqlite://path.db`,
    /// `sqlite::memory:` or `postgres://...`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached, created or migrated.
    pub async fn open(url: &str, config: StoreConfig, clock: Arc<dyn Clock>) -> Result<Self> {
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pools = postgres::Pools::connect(url, config.max_connections).await?;
            pools.migrate().await?;
            Backend::Postgres(pools)
        } else if url.starts_with("sqlite:") {
            let pools = sqlite::Pools::connect(url).await?;
            pools.migrate().await?;
            Backend::Sqlite(pools)
        } else {
            return Err(StoreError::Unavailable(format!(
                "unsupported database URL (want sqlite:// or postgres://): {url}"
            )));
        };
        let seed = clock.now().timestamp_nanos_opt().unwrap_or_default() as u64
            ^ u64::from(std::process::id());
        Ok(Self {
            backend,
            ctx: Arc::new(Ctx {
                clock,
                config,
                rng: Mutex::new(SplitMix64::new(seed)),
            }),
        })
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.ctx.config
    }

    /// The store's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.ctx.clock
    }

    /// Checks that the database answers.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when it does not.
    pub async fn ping(&self) -> Result<()> {
        on_backend!(self, p => p.ping())
    }

    /// Closes the pools.
    pub async fn close(&self) {
        on_backend!(self, p => p.close())
    }

    /// Creates a tenant; its token is in the answer and nowhere else.
    ///
    /// # Errors
    /// [`StoreError::Validation`] for a bad name; [`StoreError::Unavailable`].
    pub async fn create_tenant(&self, name: &str) -> Result<TenantCreated> {
        on_backend!(self, p => p.create_tenant(&self.ctx, name))
    }

    /// The fleet at a glance: agents by status, the oldest last success of enabled policies.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn fleet_summary(&self) -> Result<FleetSummary> {
        on_backend!(self, p => p.fleet_summary(&self.ctx))
    }

    /// Every tenant, oldest first (for the operator's CLI).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn list_tenants(&self) -> Result<Vec<TenantListing>> {
        on_backend!(self, p => p.list_tenants())
    }

    /// Whether `token` is the tenant's current token (constant-time comparison of hashes).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn tenant_token_matches(&self, tenant: TenantId, token: &str) -> Result<bool> {
        on_backend!(self, p => p.tenant_token_matches(tenant, token))
    }

    /// Opens a dashboard session for `tenant` lasting `lifetime` (and sweeps expired ones):
    /// its id (for the cookie: only its hash is stored) and CSRF token.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] (tenant), [`StoreError::Unavailable`].
    pub async fn open_ui_session(
        &self,
        tenant: TenantId,
        lifetime: std::time::Duration,
    ) -> Result<UiSession> {
        let lifetime = TimeDelta::from_std(lifetime).unwrap_or(TimeDelta::hours(12));
        on_backend!(self, p => p.open_ui_session(&self.ctx, tenant, lifetime))
    }

    /// The open, unexpired session whose cookie carries `id`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn ui_session(&self, id: &str) -> Result<Option<UiSession>> {
        on_backend!(self, p => p.ui_session(&self.ctx, id))
    }

    /// Ends the session whose cookie carries `id` (logout); nothing when there is none.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn close_ui_session(&self, id: &str) -> Result<()> {
        on_backend!(self, p => p.close_ui_session(id))
    }

    /// Issues a new tenant token; the old one stops working, and so do the dashboard sessions
    /// opened with it.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::Unavailable`].
    pub async fn rotate_tenant_token(&self, tenant: TenantId) -> Result<String> {
        on_backend!(self, p => p.rotate_tenant_token(&self.ctx, tenant))
    }

    /// Creates an agent with the default settings; its token is in the answer and nowhere else.
    ///
    /// # Errors
    /// [`StoreError::Validation`], [`StoreError::NotFound`] (tenant), [`StoreError::Unavailable`].
    pub async fn create_agent(&self, tenant: TenantId, body: &CreateAgent) -> Result<AgentCreated> {
        on_backend!(self, p => p.create_agent(&self.ctx, tenant, body))
    }

    /// The agent a token belongs to, if any (deleted agents' tokens are revoked).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn authenticate_agent(&self, token: &str) -> Result<Option<AgentPrincipal>> {
        on_backend!(self, p => p.authenticate_agent(token))
    }

    /// One of the tenant's agents.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] (also for another tenant's agent), [`StoreError::Unavailable`].
    pub async fn get_agent(&self, tenant: TenantId, agent: AgentId) -> Result<AgentView> {
        on_backend!(self, p => p.get_agent(&self.ctx, tenant, agent))
    }

    /// The tenant's agents, newest first.
    ///
    /// # Errors
    /// [`StoreError::Validation`] for a bad cursor, [`StoreError::Unavailable`].
    pub async fn list_agents(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<AgentView>> {
        on_backend!(self, p => p.list_agents(&self.ctx, tenant, page))
    }

    /// Deletes an agent: revokes its token, cancels its open tasks, disables its policies.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::Unavailable`].
    pub async fn delete_agent(&self, tenant: TenantId, agent: AgentId) -> Result<()> {
        on_backend!(self, p => p.delete_agent(&self.ctx, tenant, agent))
    }

    /// Issues a new agent token; the old one stops working.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::Unavailable`].
    pub async fn rotate_agent_token(&self, tenant: TenantId, agent: AgentId) -> Result<String> {
        on_backend!(self, p => p.rotate_agent_token(&self.ctx, tenant, agent))
    }

    /// Merges and validates a settings patch; from now on the agent's proposals are ignored.
    ///
    /// # Errors
    /// [`StoreError::Validation`] naming the field, [`StoreError::NotFound`], [`StoreError::Unavailable`].
    pub async fn patch_settings(
        &self,
        tenant: TenantId,
        agent: AgentId,
        patch: &SettingsPatch,
    ) -> Result<Settings> {
        on_backend!(self, p => p.patch_settings(&self.ctx, tenant, agent, patch))
    }

    /// Records a heartbeat: load, backoff, versions, proposals; renews the leases of the tasks
    /// it lists; answers the settings and the cancelled tasks to stop.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] (deleted agent), [`StoreError::Unavailable`].
    pub async fn heartbeat(
        &self,
        agent: AgentId,
        heartbeat: &Heartbeat,
    ) -> Result<HeartbeatAnswer> {
        let heartbeat = storable::storable_heartbeat(heartbeat);
        on_backend!(self, p => p.heartbeat(&self.ctx, agent, &heartbeat))
    }

    /// Creates a policy; an `every` policy is due at once, a cron one at its next match.
    ///
    /// # Errors
    /// [`StoreError::Validation`] naming the field (`agentId` for another tenant's agent).
    pub async fn create_policy(&self, tenant: TenantId, spec: &PolicySpec) -> Result<PolicyView> {
        on_backend!(self, p => p.create_policy(&self.ctx, tenant, spec))
    }

    /// One of the tenant's policies.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::Unavailable`].
    pub async fn get_policy(&self, tenant: TenantId, policy: PolicyId) -> Result<PolicyView> {
        on_backend!(self, p => p.get_policy(&self.ctx, tenant, policy))
    }

    /// The tenant's policies, newest first.
    ///
    /// # Errors
    /// [`StoreError::Validation`] for a bad cursor, [`StoreError::Unavailable`].
    pub async fn list_policies(
        &self,
        tenant: TenantId,
        filter: &PolicyFilter,
        page: &PageRequest,
    ) -> Result<Page<PolicyView>> {
        on_backend!(self, p => p.list_policies(&self.ctx, tenant, filter, page))
    }

    /// Applies a partial update; re-enabling or a new schedule makes it due afresh.
    ///
    /// # Errors
    /// [`StoreError::Validation`], [`StoreError::NotFound`], [`StoreError::Unavailable`].
    pub async fn update_policy(
        &self,
        tenant: TenantId,
        policy: PolicyId,
        patch: &PolicyPatch,
    ) -> Result<PolicyView> {
        on_backend!(self, p => p.update_policy(&self.ctx, tenant, policy, patch))
    }

    /// Deletes a policy and cancels its pending task (claimed and running ones finish).
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::Unavailable`].
    pub async fn delete_policy(&self, tenant: TenantId, policy: PolicyId) -> Result<()> {
        on_backend!(self, p => p.delete_policy(&self.ctx, tenant, policy))
    }

    /// Creates a task for slot "now", whatever the policy's or agent's state; `nextDueAt` unchanged.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] while the policy has an open task, [`StoreError::NotFound`].
    pub async fn run_policy_now(&self, tenant: TenantId, policy: PolicyId) -> Result<TaskView> {
        on_backend!(self, p => p.run_policy_now(&self.ctx, tenant, policy))
    }

    /// Hands the agent its due pending tasks (oldest first, within `limit` and the per-kind
    /// limits), each with the next attempt number and a lease.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn claim(&self, agent: AgentId, request: &ClaimRequest) -> Result<ClaimAnswer> {
        on_backend!(self, p => p.claim(&self.ctx, agent, request))
    }

    /// Marks the claimed attempt running and opens its backup run. Idempotent.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] for another attempt or a cancelled task, [`StoreError::NotFound`]
    /// for another agent's task.
    pub async fn start_task(&self, agent: AgentId, task: TaskId, attempt: u32) -> Result<TaskView> {
        on_backend!(self, p => p.start_task(&self.ctx, agent, task, attempt))
    }

    /// Records one attempt's outcome and decides what comes next. Idempotent per (task, attempt).
    ///
    /// # Errors
    /// [`StoreError::StaleAttempt`] for a late result that cannot change the task (still
    /// recorded), [`StoreError::Conflict`] for an attempt never claimed, [`StoreError::NotFound`].
    pub async fn report_result(
        &self,
        agent: AgentId,
        task: TaskId,
        report: &AttemptReport,
    ) -> Result<ResultAnswer> {
        let report = storable::storable_report(report);
        on_backend!(self, p => p.report_result(&self.ctx, agent, task, &report))
    }

    /// Cancels an open task; the agent holding it hears of it in its next heartbeat.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when it already ended, [`StoreError::NotFound`].
    pub async fn cancel_task(&self, tenant: TenantId, task: TaskId) -> Result<TaskView> {
        on_backend!(self, p => p.cancel_task(&self.ctx, tenant, task))
    }

    /// One of the tenant's tasks.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::Unavailable`].
    pub async fn get_task(&self, tenant: TenantId, task: TaskId) -> Result<TaskView> {
        on_backend!(self, p => p.get_task(tenant, task))
    }

    /// The tenant's tasks, newest first.
    ///
    /// # Errors
    /// [`StoreError::Validation`] for a bad cursor, [`StoreError::Unavailable`].
    pub async fn list_tasks(
        &self,
        tenant: TenantId,
        filter: &TaskFilter,
        page: &PageRequest,
    ) -> Result<Page<TaskView>> {
        on_backend!(self, p => p.list_tasks(tenant, filter, page))
    }

    /// The tenant's backup runs (one per attempt), newest first.
    ///
    /// # Errors
    /// [`StoreError::Validation`] for a bad cursor, [`StoreError::Unavailable`].
    pub async fn list_backup_runs(
        &self,
        tenant: TenantId,
        filter: &BackupRunFilter,
        page: &PageRequest,
    ) -> Result<Page<BackupRunView>> {
        on_backend!(self, p => p.list_backup_runs(tenant, filter, page))
    }

    /// The scheduler's step: every due, enabled policy gets a task for its slot (and its
    /// `nextDueAt` advanced past now) or a skip reason (and stays due), in transactions of at
    /// most 1,000 policies. Safe to run from several replicas at once on PostgreSQL.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`]; batches committed before the error stay committed.
    pub async fn schedule_due(&self, respect_agent_backoff: bool) -> Result<TickReport> {
        const BATCH: usize = 1000;
        let mut report = TickReport::default();
        let mut due_pending: HashMap<Uuid, i64> = HashMap::new();
        // Before any due time (and inside PostgreSQL's timestamp range).
        let mut after = (
            Ts::new(DateTime::<Utc>::UNIX_EPOCH - TimeDelta::days(365 * 70)),
            Uuid::nil(),
        );
        loop {
            let next = on_backend!(self, p => p.schedule_batch(
                &self.ctx, respect_agent_backoff, after, BATCH, &mut report, &mut due_pending,
            ))?;
            match next {
                Some(key) => after = key,
                None => {
                    report.claimable_agents.sort_unstable();
                    report.claimable_agents.dedup();
                    return Ok(report);
                }
            }
        }
    }

    /// Lapses every expired lease, in transactions of at most 1,000 tasks.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`]; batches committed before the error stay committed.
    pub async fn lapse_leases(&self) -> Result<LapseReport> {
        const BATCH: usize = 1000;
        let mut report = LapseReport::default();
        loop {
            let n = on_backend!(self, p => p.lapse_leases(&self.ctx, BATCH, &mut report))?;
            if n < BATCH {
                return Ok(report);
            }
        }
    }
}
