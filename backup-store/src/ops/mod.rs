//! Every query of the store, written once and compiled twice: as `sqlite::ops` and as
//! `postgres::ops`, each with its own `Db`, `Pools`, `skip_locked!` and `for_update!`. The SQL
//! text is the same on both databases (numbered `$n` parameters, `ON CONFLICT`, `RETURNING`,
//! partial indexes); the only differences live in the parent module (how a write transaction
//! begins, and the row locks PostgreSQL needs for several replicas).
//!
//! One module per concept, along the life of a task: `tenants`, `agents` (and their settings),
//! `heartbeat`, `policies`, `schedule` (the tick that turns due policies into tasks), `claim`
//! (hand-out and start), `results` (an attempt's outcome and the retry decision), `leases`
//! (lapsed claims and lost agents), `tasks` (the tenant's reads and cancel). What several of
//! them need (row readers, the run insert, the retry decision) lives here.

mod agents;
mod claim;
mod enrollment;
mod events;
mod fleet;
mod heartbeat;
mod history;
mod leases;
mod policies;
mod protection;
mod repositories;
mod restores;
mod results;
mod schedule;
mod sessions;
mod snapshots;
mod tasks;
mod tenants;
mod webhooks;

use agents::{agent_settings, ensure_tenant_agent, store_settings};

use std::collections::{BTreeMap, HashMap};

use backup_core::{
    AgentCreated, AgentId, AgentStatus, AgentView, AttemptOutcome, AttemptReport, BackupRunView,
    ClaimAnswer, ClaimRequest, ClaimedTask, CreateAgent, DispatchInputs, ErrorClass,
    ExponentialBackoff, Heartbeat, HeartbeatAnswer, Page, PolicyId, PolicyPatch, PolicySpec,
    PolicyView, RepositoryBackoffView, RetryBudget, RetryDecision, RunStatus, Schedule, Settings,
    SettingsPatch, SettingsSource, StatusInputs, TaskId, TaskKind, TaskStatus, TaskView,
    TenantCreated, TenantId,
};
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{Arguments, AssertSqlSafe, Row};
use uuid::Uuid;

use super::{Db, Pools};
use crate::{
    AgentPrincipal, BackupRunFilter, Ctx, FleetSummary, LapseReport, PageRequest, PolicyFilter,
    Result, ResultAnswer, StoreError, TaskFilter, TenantListing, TickReport, UiSession,
    cursor::Cursor,
    rows::{
        AgentRow, POLICY_COLUMNS, PolicyRow, RUN_COLUMNS, RunRow, SettingsRow, TASK_COLUMNS,
        TaskRow, agent_columns, class_name, from_json, protection_case, settings_columns, to_json,
    },
    token::{self, TokenKind},
    ts::Ts,
    validate_name,
};

type Tx = sqlx::Transaction<'static, Db>;
type Args = <Db as sqlx::Database>::Arguments;

/// `$first, $first+1, ...` for `n` values.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn add<'q, T>(args: &mut Args, value: T) -> Result<()>
where
    T: sqlx::Encode<'q, Db> + sqlx::Type<Db> + 'q,
{
    args.add(value)
        .map_err(|e| StoreError::Internal(format!("binding a parameter: {e}")))
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn opt_i32(v: Option<u32>) -> Option<i32> {
    v.map(|v| i32::try_from(v).unwrap_or(i32::MAX))
}

fn i32_of(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

fn i64_of(v: Option<u64>) -> Option<i64> {
    v.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

async fn task_for_update(tx: &mut Tx, task: Uuid, agent: Uuid) -> Result<TaskRow> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks t WHERE t.id = $1 AND t.agent_id = $2{}",
        for_update!("t")
    );
    sqlx::query_as::<_, TaskRow>(AssertSqlSafe(sql))
        .bind(task)
        .bind(agent)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound("task"))
}

async fn task_by_id(tx: &mut Tx, task: Uuid) -> Result<TaskRow> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks t WHERE t.id = $1");
    Ok(sqlx::query_as::<_, TaskRow>(AssertSqlSafe(sql))
        .bind(task)
        .fetch_one(&mut **tx)
        .await?)
}

/// The retry decision of a failed attempt, under the agent's settings at this moment.
fn decide(ctx: &Ctx, task: &TaskRow, settings: &Settings, class: ErrorClass) -> RetryDecision {
    let budget = RetryBudget::new(
        u32::try_from(task.max_retries).unwrap_or(0),
        ExponentialBackoff::from_settings(settings),
    );
    let retry_count = u32::try_from(task.retry_count).unwrap_or(0);
    budget.decide(retry_count, class, ctx.clock.as_ref(), &mut *ctx.rng())
}

/// Writes a failed attempt's decision into the task. Returns whether it was a retry.
async fn apply_failure(
    tx: &mut Tx,
    task: &TaskRow,
    decision: RetryDecision,
    error: Option<&str>,
    now: Ts,
) -> Result<bool> {
    match decision {
        RetryDecision::Retry {
            retry_count,
            next_retry_at,
        } => {
            sqlx::query(
                "UPDATE tasks SET status = 'pending', retry_count = $2, next_retry_at = $3, \
                 lease_expires_at = NULL, last_error = $4, updated_at = $5 WHERE id = $1",
            )
            .bind(task.id)
            .bind(i32_of(retry_count))
            .bind(Ts::new(next_retry_at))
            .bind(error)
            .bind(now)
            .execute(&mut **tx)
            .await?;
            Ok(true)
        }
        RetryDecision::FailPermanently { reason } => {
            sqlx::query(
                "UPDATE tasks SET status = 'failed_permanently', failed_permanently = TRUE, \
                 permanent_reason = $2, next_retry_at = NULL, lease_expires_at = NULL, \
                 last_error = $3, updated_at = $4 WHERE id = $1",
            )
            .bind(task.id)
            .bind(reason.as_str())
            .bind(error)
            .bind(now)
            .execute(&mut **tx)
            .await?;
            Ok(false)
        }
        _ => Err(StoreError::Internal("unknown retry decision".into())),
    }
}

async fn insert_run(
    tx: &mut Tx,
    ctx: &Ctx,
    task: &TaskRow,
    attempt: i32,
    status: RunStatus,
    started_at: Option<Ts>,
) -> Result<()> {
    let tenant: Uuid = sqlx::query_scalar("SELECT tenant_id FROM tasks WHERE id = $1")
        .bind(task.id)
        .fetch_one(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO backup_runs (id, tenant_id, task_id, policy_id, agent_id, kind, status, \
         started_at, attempt, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (task_id, attempt) DO NOTHING",
    )
    .bind(Uuid::new_v4())
    .bind(tenant)
    .bind(task.id)
    .bind(task.policy_id)
    .bind(task.agent_id)
    .bind(&task.kind)
    .bind(status.as_str())
    .bind(started_at)
    .bind(attempt)
    .bind(ctx.now())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Pools {
    pub(crate) async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(self.read()).await?;
        Ok(())
    }
}

/// Keeps a policy's last run and last success with it: `status` finished at `at` (a run older
/// than the one recorded, a late result, changes nothing).
async fn note_policy_run(
    tx: &mut Tx,
    policy: Option<Uuid>,
    status: RunStatus,
    at: Ts,
) -> Result<()> {
    // A restore or a listing belongs to no policy.
    let Some(policy) = policy else { return Ok(()) };
    let success = matches!(status, RunStatus::Succeeded | RunStatus::Partial);
    sqlx::query(
        "UPDATE policies SET last_run_at = $2, last_run_status = $3, \
         last_success_at = CASE WHEN $4 THEN $2 ELSE last_success_at END \
         WHERE id = $1 AND (last_run_at IS NULL OR last_run_at <= $2)",
    )
    .bind(policy)
    .bind(at)
    .bind(status.as_str())
    .bind(success)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
