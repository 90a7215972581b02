//! Every query of the store, written once and compiled twice: as `sqlite::ops` and as
//! `postgres::ops`, each with its own `Db`, `Pools` and `skip_locked!`. The SQL text is the same
//! on both databases (numbered `$n` parameters, `ON CONFLICT`, `RETURNING`, partial indexes); the
//! only differences live in the parent module (how a write transaction begins, and the row locks
//! PostgreSQL needs for several replicas).

use std::collections::HashMap;

use backup_core::{
    AgentCreated, AgentId, AgentView, AttemptOutcome, AttemptReport, BackupRunView, ClaimAnswer,
    ClaimRequest, ClaimedTask, CreateAgent, DispatchInputs, ErrorClass, ExponentialBackoff,
    Heartbeat, HeartbeatAnswer, Page, PolicyId, PolicyPatch, PolicySpec, PolicyView,
    RepositoryBackoffView, RetryBudget, RetryDecision, RunStatus, Schedule, Settings,
    SettingsPatch, SettingsSource, TaskId, TaskKind, TaskStatus, TaskView, TenantCreated, TenantId,
};
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{Arguments, AssertSqlSafe, Row};
use uuid::Uuid;

use super::{Db, Pools};
use crate::{
    AgentPrincipal, BackupRunFilter, Ctx, LapseReport, PageRequest, PolicyFilter, Result,
    ResultAnswer, StoreError, TaskFilter, TickReport,
    cursor::Cursor,
    rows::{
        AgentRow, POLICY_COLUMNS, PolicyRow, RUN_COLUMNS, RunRow, SettingsRow, TASK_COLUMNS,
        TaskRow, agent_columns, class_name, from_json, settings_columns, to_json,
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

async fn agent_row(tx: &mut Tx, agent: Uuid, now: Ts) -> Result<AgentRow> {
    let sql = concat!(
        "SELECT ",
        agent_columns!("$2"),
        " FROM agents a WHERE a.id = $1 AND a.deleted_at IS NULL"
    );
    sqlx::query_as::<_, AgentRow>(sql)
        .bind(agent)
        .bind(now)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound("agent"))
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

/// The outcome of a result inside its transaction; a stale answer still commits what it recorded.
enum Recorded {
    Answer(ResultAnswer),
    Stale(TaskView),
}

impl Pools {
    pub(crate) async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(self.read()).await?;
        Ok(())
    }

    // ---------------------------------------------------------------- tenants

    pub(crate) async fn create_tenant(&self, ctx: &Ctx, name: &str) -> Result<TenantCreated> {
        validate_name("name", name)?;
        let id = TenantId::new();
        let token = token::generate(TokenKind::Tenant)?;
        sqlx::query(
            "INSERT INTO tenants (id, name, token_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(*id.as_uuid())
        .bind(name)
        .bind(token::hash(&token))
        .bind(ctx.now())
        .execute(self.read_write())
        .await?;
        Ok(TenantCreated {
            id,
            name: name.to_owned(),
            token,
        })
    }

    pub(crate) async fn tenant_token_matches(
        &self,
        tenant: TenantId,
        presented: &str,
    ) -> Result<bool> {
        let stored: Option<String> =
            sqlx::query_scalar("SELECT token_hash FROM tenants WHERE id = $1")
                .bind(*tenant.as_uuid())
                .fetch_optional(self.read())
                .await?;
        Ok(stored.is_some_and(|h| token::matches(presented, &h)))
    }

    pub(crate) async fn tenant_token_hash_matches(
        &self,
        tenant: TenantId,
        hash: &str,
    ) -> Result<bool> {
        let stored: Option<String> =
            sqlx::query_scalar("SELECT token_hash FROM tenants WHERE id = $1")
                .bind(*tenant.as_uuid())
                .fetch_optional(self.read())
                .await?;
        Ok(stored.is_some_and(|h| token::same_hash(&h, hash)))
    }

    pub(crate) async fn rotate_tenant_token(&self, tenant: TenantId) -> Result<String> {
        let token = token::generate(TokenKind::Tenant)?;
        let done = sqlx::query("UPDATE tenants SET token_hash = $2 WHERE id = $1")
            .bind(*tenant.as_uuid())
            .bind(token::hash(&token))
            .execute(self.read_write())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("tenant"));
        }
        Ok(token)
    }

    // ---------------------------------------------------------------- agents

    pub(crate) async fn create_agent(
        &self,
        ctx: &Ctx,
        tenant: TenantId,
        body: &CreateAgent,
    ) -> Result<AgentCreated> {
        validate_name("name", &body.name)?;
        validate_name("hostname", &body.hostname)?;
        let id = AgentId::new();
        let token = token::generate(TokenKind::Agent)?;
        let now = ctx.now();
        let d = Settings::default();
        let mut tx = self.write().await?;
        let inserted = sqlx::query(
            "INSERT INTO agents (id, tenant_id, name, hostname, token_hash, created_at, \
             max_concurrent_tasks, max_concurrent_backups, max_concurrent_checks, \
             max_concurrent_prunes, cpu_quota_percent, bandwidth_limit_mbps, max_retries, \
             max_backoff_minutes, backoff_base_seconds, backoff_failure_threshold, \
             running_tasks, queue_depth, pending_retries) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, 0, 0, 0)",
        )
        .bind(*id.as_uuid())
        .bind(*tenant.as_uuid())
        .bind(&body.name)
        .bind(&body.hostname)
        .bind(token::hash(&token))
        .bind(now)
        .bind(i32_of(d.max_concurrent_tasks))
        .bind(i32_of(d.max_concurrent_backups))
        .bind(i32_of(d.max_concurrent_checks))
        .bind(i32_of(d.max_concurrent_prunes))
        .bind(i32_of(d.cpu_quota_percent))
        .bind(opt_i32(d.bandwidth_limit_mbps))
        .bind(i32_of(d.max_retries))
        .bind(i32_of(d.max_backoff_minutes))
        .bind(i32_of(d.backoff_base_seconds))
        .bind(i32_of(d.backoff_failure_threshold))
        .execute(&mut *tx)
        .await;
        if let Err(e) = &inserted
            && matches!(e, sqlx::Error::Database(db) if db.is_foreign_key_violation())
        {
            return Err(StoreError::NotFound("tenant"));
        }
        inserted?;
        let row = agent_row(&mut tx, *id.as_uuid(), now).await?;
        tx.commit().await?;
        Ok(AgentCreated {
            agent: row.view(&ctx.config, now.get())?,
            token,
        })
    }

    pub(crate) async fn authenticate_agent(
        &self,
        presented: &str,
    ) -> Result<Option<AgentPrincipal>> {
        let row = sqlx::query(
            "SELECT id, tenant_id, token_hash FROM agents \
             WHERE token_hash = $1 AND deleted_at IS NULL",
        )
        .bind(token::hash(presented))
        .fetch_optional(self.read())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let stored: String = row.try_get("token_hash")?;
        if !token::matches(presented, &stored) {
            return Ok(None);
        }
        Ok(Some(AgentPrincipal {
            agent_id: AgentId::from_uuid(row.try_get("id")?),
            tenant_id: TenantId::from_uuid(row.try_get("tenant_id")?),
        }))
    }

    pub(crate) async fn get_agent(
        &self,
        ctx: &Ctx,
        tenant: TenantId,
        agent: AgentId,
    ) -> Result<AgentView> {
        let now = ctx.now();
        let sql = concat!(
            "SELECT ",
            agent_columns!("$3"),
            " FROM agents a WHERE a.tenant_id = $1 AND a.id = $2 AND a.deleted_at IS NULL"
        );
        sqlx::query_as::<_, AgentRow>(sql)
            .bind(*tenant.as_uuid())
            .bind(*agent.as_uuid())
            .bind(now)
            .fetch_optional(self.read())
            .await?
            .ok_or(StoreError::NotFound("agent"))?
            .view(&ctx.config, now.get())
    }

    pub(crate) async fn list_agents(
        &self,
        ctx: &Ctx,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<AgentView>> {
        let now = ctx.now();
        let cursor = page.cursor()?;
        let sql = concat!(
            "SELECT ",
            agent_columns!("$2"),
            ", a.created_at FROM agents a WHERE a.tenant_id = $1 AND a.deleted_at IS NULL ",
            "AND ($3 IS NULL OR a.created_at < $3 OR (a.created_at = $3 AND a.id < $4)) ",
            "ORDER BY a.created_at DESC, a.id DESC LIMIT $5"
        );
        let rows = sqlx::query(sql)
            .bind(*tenant.as_uuid())
            .bind(now)
            .bind(cursor.map(|c| c.at))
            .bind(cursor.map(|c| c.id))
            .bind(page.fetch_limit())
            .fetch_all(self.read())
            .await?;
        let mut items = Vec::with_capacity(rows.len());
        let mut keys = Vec::with_capacity(rows.len());
        for row in &rows {
            let agent = <AgentRow as sqlx::FromRow<'_, _>>::from_row(row)?;
            let created: Ts = row.try_get("created_at")?;
            keys.push(Cursor {
                at: created,
                id: agent.id,
            });
            items.push(agent.view(&ctx.config, now.get())?);
        }
        Ok(page.finish(items, keys))
    }

    pub(crate) async fn delete_agent(
        &self,
        ctx: &Ctx,
        tenant: TenantId,
        agent: AgentId,
    ) -> Result<()> {
        let now = ctx.now();
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "UPDATE agents SET deleted_at = $3, token_hash = NULL \
             WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL",
        )
        .bind(*tenant.as_uuid())
        .bind(*agent.as_uuid())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("agent"));
        }
        sqlx::query(
            "UPDATE backup_runs SET status = 'cancelled', finished_at = $2 \
             WHERE agent_id = $1 AND status = 'running'",
        )
        .bind(*agent.as_uuid())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE tasks SET status = 'cancelled', lease_expires_at = NULL, updated_at = $2 \
             WHERE agent_id = $1 AND status IN ('pending', 'claimed', 'running')",
        )
        .bind(*agent.as_uuid())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE policies SET enabled = FALSE, next_due_at = NULL, updated_at = $2 \
             WHERE agent_id = $1 AND deleted_at IS NULL",
        )
        .bind(*agent.as_uuid())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn rotate_agent_token(
        &self,
        tenant: TenantId,
        agent: AgentId,
    ) -> Result<String> {
        let token = token::generate(TokenKind::Agent)?;
        let done = sqlx::query(
            "UPDATE agents SET token_hash = $3 WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL",
        )
        .bind(*tenant.as_uuid())
        .bind(*agent.as_uuid())
        .bind(token::hash(&token))
        .execute(self.read_write())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("agent"));
        }
        Ok(token)
    }

    pub(crate) async fn patch_settings(
        &self,
        ctx: &Ctx,
        tenant: TenantId,
        agent: AgentId,
        patch: &SettingsPatch,
    ) -> Result<Settings> {
        let now = ctx.now();
        let mut tx = self.write().await?;
        let row = agent_row(&mut tx, *agent.as_uuid(), now).await?;
        if row.tenant_id != *tenant.as_uuid() {
            return Err(StoreError::NotFound("agent"));
        }
        let settings = row.settings().apply(patch)?;
        store_settings(&mut *tx, *agent.as_uuid(), &settings, None).await?;
        tx.commit().await?;
        Ok(settings)
    }

    /// One heartbeat. Not one transaction: the common case (nothing held, no backoff, no new
    /// proposal) is a single `UPDATE ... RETURNING` in autocommit, which is what lets one
    /// server take a large fleet's heartbeats. Each further step is one idempotent statement,
    /// and the settings adoption is conditional on the source still being `agent`, so a PATCH
    /// that lands in between wins.
    pub(crate) async fn heartbeat(
        &self,
        ctx: &Ctx,
        agent: AgentId,
        hb: &Heartbeat,
    ) -> Result<HeartbeatAnswer> {
        let now = ctx.now();
        let agent_uuid = *agent.as_uuid();
        let pool = self.read_write();
        let (probe_agent, probe_repositories) = backoff_state(
            hb,
            &Settings {
                max_backoff_minutes: u32::MAX / 60,
                ..Settings::default()
            },
            now.get(),
        );
        let reports_backoff = probe_agent.is_some() || !probe_repositories.is_empty();
        let sql = if reports_backoff {
            concat!(
                "UPDATE agents SET running_tasks = $2, queue_depth = $3, pending_retries = $4, ",
                "agent_version = COALESCE($5, agent_version), restic_version = COALESCE($6, restic_version), ",
                "last_heartbeat_at = $7 WHERE id = $1 AND deleted_at IS NULL RETURNING ",
                settings_columns!(""),
                ", (SELECT COUNT(*) FROM tasks t WHERE t.agent_id = agents.id AND t.cancel_notify) AS pending_cancels"
            )
        } else {
            concat!(
                "UPDATE agents SET running_tasks = $2, queue_depth = $3, pending_retries = $4, ",
                "agent_version = COALESCE($5, agent_version), restic_version = COALESCE($6, restic_version), ",
                "last_heartbeat_at = $7, backoff_until = NULL, agent_backoff_until = NULL, ",
                "backoff_repositories = '[]' WHERE id = $1 AND deleted_at IS NULL RETURNING ",
                settings_columns!(""),
                ", (SELECT COUNT(*) FROM tasks t WHERE t.agent_id = agents.id AND t.cancel_notify) AS pending_cancels"
            )
        };
        let row = sqlx::query_as::<_, SettingsRow>(sql)
            .bind(agent_uuid)
            .bind(i32_of(hb.running_tasks))
            .bind(i32_of(hb.queue_depth))
            .bind(i32_of(hb.pending_retries.unwrap_or(0)))
            .bind(hb.agent_version.as_deref())
            .bind(hb.restic_version.as_deref())
            .bind(now)
            .fetch_optional(pool)
            .await?
            .ok_or(StoreError::NotFound("agent"))?;
        let current = row.settings();
        if reports_backoff {
            // Clamped to maxBackoffMinutes from now, replacing the previous state.
            let (agent_until, repositories) = backoff_state(hb, &current, now.get());
            let latest = repositories
                .iter()
                .map(|r| r.backoff_until)
                .chain(agent_until)
                .max();
            sqlx::query(
                "UPDATE agents SET backoff_until = $2, agent_backoff_until = $3, \
                 backoff_repositories = $4 WHERE id = $1",
            )
            .bind(agent_uuid)
            .bind(latest.map(Ts::new))
            .bind(agent_until.map(Ts::new))
            .bind(to_json(&repositories))
            .execute(pool)
            .await?;
        }
        let mut settings = current;
        if row.source()? == SettingsSource::Agent
            && let Some(proposal) = &hb.proposed_settings
        {
            match current.apply(proposal) {
                Ok(adopted) if adopted != current => {
                    let done =
                        store_settings(pool, agent_uuid, &adopted, Some(SettingsSource::Agent))
                            .await?;
                    if done {
                        settings = adopted;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(agent = %agent, error = %e, "ignoring the agent's invalid settings proposal")
                }
            }
        }

        let held: Vec<Uuid> = hb
            .running_task_ids
            .iter()
            .chain(&hb.queued_task_ids)
            .map(|t| *t.as_uuid())
            .collect();
        let lease = Ts::new(now.get() + ctx.lease());
        let mut cancel_task_ids = Vec::new();
        for chunk in held.chunks(500) {
            let sql = format!(
                "UPDATE tasks SET lease_expires_at = $2 WHERE agent_id = $1 \
                 AND status IN ('claimed', 'running') AND id IN ({})",
                placeholders(3, chunk.len())
            );
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(agent_uuid).bind(lease);
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(pool).await?;
            let sql = format!(
                "SELECT id FROM tasks WHERE agent_id = $1 AND status = 'cancelled' AND id IN ({})",
                placeholders(2, chunk.len())
            );
            let mut q = sqlx::query_scalar::<_, Uuid>(AssertSqlSafe(sql)).bind(agent_uuid);
            for id in chunk {
                q = q.bind(*id);
            }
            cancel_task_ids.extend(q.fetch_all(pool).await?);
        }
        if row.pending_cancels > 0 {
            let notified: Vec<Uuid> = sqlx::query_scalar(
                "UPDATE tasks SET cancel_notify = FALSE WHERE agent_id = $1 AND cancel_notify RETURNING id",
            )
            .bind(agent_uuid)
            .fetch_all(pool)
            .await?;
            for id in notified {
                if !cancel_task_ids.contains(&id) {
                    cancel_task_ids.push(id);
                }
            }
        }
        Ok(HeartbeatAnswer {
            settings,
            server_time: now.get(),
            cancel_task_ids: cancel_task_ids.into_iter().map(TaskId::from_uuid).collect(),
        })
    }

    // ---------------------------------------------------------------- policies

    pub(crate) async fn create_policy(
        &self,
        ctx: &Ctx,
        tenant: TenantId,
        spec: &PolicySpec,
    ) -> Result<PolicyView> {
        let schedule = spec.validate()?;
        let now = ctx.now();
        let id = PolicyId::new();
        let mut tx = self.write().await?;
        ensure_tenant_agent(&mut tx, tenant, spec.agent_id).await?;
        let next_due = spec.enabled.then(|| Ts::new(schedule.first_due(now.get())));
        sqlx::query(
            "INSERT INTO policies (id, tenant_id, agent_id, name, kind, created_at, updated_at, \
             max_task_retries, schedule_every, schedule_cron, timezone, paths, excludes, \
             repository, retention, timeout_minutes, enabled, next_due_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        )
        .bind(*id.as_uuid())
        .bind(*tenant.as_uuid())
        .bind(*spec.agent_id.as_uuid())
        .bind(&spec.name)
        .bind(spec.kind.as_str())
        .bind(now)
        .bind(opt_i32(spec.max_task_retries))
        .bind(spec.schedule.every.as_deref())
        .bind(spec.schedule.cron.as_deref())
        .bind(spec.schedule.timezone.as_deref())
        .bind(to_json(&spec.paths))
        .bind(to_json(&spec.excludes))
        .bind(&spec.repository)
        .bind(spec.retention.as_ref().map(to_json))
        .bind(opt_i32(spec.timeout_minutes))
        .bind(spec.enabled)
        .bind(next_due)
        .execute(&mut *tx)
        .await?;
        let view = policy_row(&mut tx, tenant, *id.as_uuid()).await?.view()?;
        tx.commit().await?;
        Ok(view)
    }

    pub(crate) async fn get_policy(
        &self,
        tenant: TenantId,
        policy: PolicyId,
    ) -> Result<PolicyView> {
        let sql = format!(
            "SELECT {POLICY_COLUMNS} FROM policies p \
             WHERE p.tenant_id = $1 AND p.id = $2 AND p.deleted_at IS NULL"
        );
        sqlx::query_as::<_, PolicyRow>(AssertSqlSafe(sql))
            .bind(*tenant.as_uuid())
            .bind(*policy.as_uuid())
            .fetch_optional(self.read())
            .await?
            .ok_or(StoreError::NotFound("policy"))?
            .view()
    }

    pub(crate) async fn list_policies(
        &self,
        tenant: TenantId,
        filter: &PolicyFilter,
        page: &PageRequest,
    ) -> Result<Page<PolicyView>> {
        let cursor = page.cursor()?;
        let sql = format!(
            "SELECT {POLICY_COLUMNS} FROM policies p WHERE p.tenant_id = $1 AND p.deleted_at IS NULL \
             AND ($2 IS NULL OR p.agent_id = $2) \
             AND ($3 IS NULL OR p.created_at < $3 OR (p.created_at = $3 AND p.id < $4)) \
             ORDER BY p.created_at DESC, p.id DESC LIMIT $5"
        );
        let rows = sqlx::query_as::<_, PolicyRow>(AssertSqlSafe(sql))
            .bind(*tenant.as_uuid())
            .bind(filter.agent_id.map(|a| *a.as_uuid()))
            .bind(cursor.map(|c| c.at))
            .bind(cursor.map(|c| c.id))
            .bind(page.fetch_limit())
            .fetch_all(self.read())
            .await?;
        let keys = rows
            .iter()
            .map(|r| Cursor {
                at: r.created_at,
                id: r.id,
            })
            .collect();
        let items = rows
            .iter()
            .map(PolicyRow::view)
            .collect::<Result<Vec<_>>>()?;
        Ok(page.finish(items, keys))
    }

    pub(crate) async fn update_policy(
        &self,
        ctx: &Ctx,
        tenant: TenantId,
        policy: PolicyId,
        patch: &PolicyPatch,
    ) -> Result<PolicyView> {
        let now = ctx.now();
        let mut tx = self.write().await?;
        let row = policy_row(&mut tx, tenant, *policy.as_uuid()).await?;
        let current = row.spec()?;
        let (spec, schedule) = current.apply(patch)?;
        if spec.agent_id != current.agent_id {
            ensure_tenant_agent(&mut tx, tenant, spec.agent_id).await?;
        }
        let next_due = if !spec.enabled {
            None
        } else if !current.enabled || spec.schedule != current.schedule || row.next_due_at.is_none()
        {
            Some(Ts::new(schedule.first_due(now.get())))
        } else {
            row.next_due_at
        };
        sqlx::query(
            "UPDATE policies SET agent_id = $2, name = $3, kind = $4, max_task_retries = $5, \
             schedule_every = $6, schedule_cron = $7, timezone = $8, paths = $9, excludes = $10, \
             repository = $11, retention = $12, timeout_minutes = $13, enabled = $14, \
             next_due_at = $15, updated_at = $16 WHERE id = $1",
        )
        .bind(row.id)
        .bind(*spec.agent_id.as_uuid())
        .bind(&spec.name)
        .bind(spec.kind.as_str())
        .bind(opt_i32(spec.max_task_retries))
        .bind(spec.schedule.every.as_deref())
        .bind(spec.schedule.cron.as_deref())
        .bind(spec.schedule.timezone.as_deref())
        .bind(to_json(&spec.paths))
        .bind(to_json(&spec.excludes))
        .bind(&spec.repository)
        .bind(spec.retention.as_ref().map(to_json))
        .bind(opt_i32(spec.timeout_minutes))
        .bind(spec.enabled)
        .bind(next_due)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let view = policy_row(&mut tx, tenant, row.id).await?.view()?;
        tx.commit().await?;
        Ok(view)
    }

    pub(crate) async fn delete_policy(
        &self,
        ctx: &Ctx,
        tenant: TenantId,
        policy: PolicyId,
    ) -> Result<()> {
        let now = ctx.now();
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "UPDATE policies SET deleted_at = $3, enabled = FALSE, next_due_at = NULL, updated_at = $3 \
             WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL",
        )
        .bind(*tenant.as_uuid())
        .bind(*policy.as_uuid())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("policy"));
        }
        sqlx::query(
            "UPDATE tasks SET status = 'cancelled', updated_at = $2 \
             WHERE policy_id = $1 AND status = 'pending'",
        )
        .bind(*policy.as_uuid())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn run_policy_now(
        &self,
        ctx: &Ctx,
        tenant: TenantId,
        policy: PolicyId,
    ) -> Result<TaskView> {
        let now = ctx.now();
        let mut tx = self.write().await?;
        let row = policy_row(&mut tx, tenant, *policy.as_uuid()).await?;
        let agent_max_retries: Option<i32> = sqlx::query_scalar(
            "SELECT max_retries FROM agents WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(row.agent_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(agent_max_retries) = agent_max_retries else {
            return Err(StoreError::Conflict(
                "the policy's agent was deleted".into(),
            ));
        };
        let max_retries = row.max_task_retries.unwrap_or(agent_max_retries);
        let id = Uuid::new_v4();
        let inserted = sqlx::query(
            "INSERT INTO tasks (id, tenant_id, policy_id, agent_id, kind, status, created_at, \
             updated_at, retry_count, max_retries, failed_permanently, slot) \
             VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6, 0, $7, FALSE, $6)",
        )
        .bind(id)
        .bind(*tenant.as_uuid())
        .bind(row.id)
        .bind(row.agent_id)
        .bind(&row.kind)
        .bind(now)
        .bind(max_retries)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict("the policy has an open task".into()));
            }
            other => {
                other?;
            }
        }
        let view = task_by_id(&mut tx, id).await?.view()?;
        tx.commit().await?;
        Ok(view)
    }

    // ---------------------------------------------------------------- tasks

    pub(crate) async fn claim(
        &self,
        ctx: &Ctx,
        agent: AgentId,
        req: &ClaimRequest,
    ) -> Result<ClaimAnswer> {
        let now = ctx.now();
        let agent_uuid = *agent.as_uuid();
        let limit = req.limit.min(500);
        if limit == 0 {
            return Ok(ClaimAnswer::default());
        }
        // Most polls find nothing: answer those from a reader, without a write transaction.
        let any_due: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM tasks t WHERE t.agent_id = $1 AND t.status = 'pending' \
             AND (t.next_retry_at IS NULL OR t.next_retry_at <= $2))",
        )
        .bind(agent_uuid)
        .bind(now)
        .fetch_one(self.read())
        .await?;
        if !any_due {
            return Ok(ClaimAnswer::default());
        }
        let mut tx = self.write().await?;
        let mut candidates: Vec<(Ts, Uuid)> = Vec::new();
        let caps = TaskKind::ALL.map(|kind| req.per_kind.map_or(limit, |p| p.get(kind).min(limit)));
        if caps.iter().all(|&cap| cap == limit) {
            let sql = concat!(
                "SELECT t.slot, t.id FROM tasks t WHERE t.agent_id = $1 AND t.status = 'pending' ",
                "AND (t.next_retry_at IS NULL OR t.next_retry_at <= $2) ",
                "ORDER BY t.slot, t.id LIMIT $3",
                skip_locked!("t")
            );
            let rows = sqlx::query(sql)
                .bind(agent_uuid)
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await?;
            for row in rows {
                candidates.push((row.try_get("slot")?, row.try_get("id")?));
            }
        } else {
            for (kind, cap) in TaskKind::ALL.into_iter().zip(caps) {
                if cap == 0 {
                    continue;
                }
                let sql = concat!(
                    "SELECT t.slot, t.id FROM tasks t WHERE t.agent_id = $1 AND t.status = 'pending' ",
                    "AND t.kind = $2 AND (t.next_retry_at IS NULL OR t.next_retry_at <= $3) ",
                    "ORDER BY t.slot, t.id LIMIT $4",
                    skip_locked!("t")
                );
                let rows = sqlx::query(sql)
                    .bind(agent_uuid)
                    .bind(kind.as_str())
                    .bind(now)
                    .bind(i64::from(cap))
                    .fetch_all(&mut *tx)
                    .await?;
                for row in rows {
                    candidates.push((row.try_get("slot")?, row.try_get("id")?));
                }
            }
        }
        candidates.sort();
        candidates.truncate(limit as usize);
        if candidates.is_empty() {
            tx.commit().await?;
            return Ok(ClaimAnswer::default());
        }
        let ids: Vec<Uuid> = candidates.into_iter().map(|(_, id)| id).collect();
        let lease = Ts::new(now.get() + ctx.lease());
        let sql = format!(
            "UPDATE tasks SET status = 'claimed', attempt = started_attempt + 1, \
             lease_expires_at = $1, updated_at = $2 WHERE status = 'pending' AND id IN ({})",
            placeholders(3, ids.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(lease).bind(now);
        for id in &ids {
            q = q.bind(*id);
        }
        q.execute(&mut *tx).await?;
        let sql = format!(
            "SELECT {TASK_COLUMNS}, p.timeout_minutes, p.paths, p.excludes, p.repository, p.retention \
             FROM tasks t JOIN policies p ON p.id = t.policy_id WHERE t.id IN ({}) \
             ORDER BY t.slot, t.id",
            placeholders(1, ids.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for id in &ids {
            q = q.bind(*id);
        }
        let rows = q.fetch_all(&mut *tx).await?;
        tx.commit().await?;
        let mut tasks = Vec::with_capacity(rows.len());
        for row in &rows {
            let task = <TaskRow as sqlx::FromRow<'_, _>>::from_row(row)?;
            let view = task.view()?;
            let retention: Option<String> = row.try_get("retention")?;
            let timeout: Option<i32> = row.try_get("timeout_minutes")?;
            tasks.push(ClaimedTask {
                id: view.id,
                policy_id: view.policy_id,
                kind: view.kind,
                attempt: view.attempt,
                retry_count: view.retry_count,
                max_retries: view.max_retries,
                next_retry_at: view.next_retry_at,
                timeout_minutes: timeout.and_then(|t| u32::try_from(t).ok()),
                paths: from_json("policy paths", &row.try_get::<String, _>("paths")?)?,
                excludes: from_json("policy excludes", &row.try_get::<String, _>("excludes")?)?,
                repository: row.try_get("repository")?,
                retention: retention
                    .as_deref()
                    .map(|r| from_json("retention", r))
                    .transpose()?,
            });
        }
        Ok(ClaimAnswer { tasks })
    }

    pub(crate) async fn start_task(
        &self,
        ctx: &Ctx,
        agent: AgentId,
        task: TaskId,
        attempt: u32,
    ) -> Result<TaskView> {
        let now = ctx.now();
        let attempt = i32_of(attempt);
        let mut tx = self.write().await?;
        let row = task_for_update(&mut tx, *task.as_uuid(), *agent.as_uuid()).await?;
        match row.status()? {
            TaskStatus::Running if row.started_attempt == attempt => {
                tx.commit().await?;
                return row.view();
            }
            TaskStatus::Claimed if row.attempt == attempt => {}
            TaskStatus::Cancelled => {
                return Err(StoreError::Conflict("the task was cancelled".into()));
            }
            status => {
                return Err(StoreError::Conflict(format!(
                    "attempt {attempt} is not the claimed attempt (task is {status}, attempt {})",
                    row.attempt
                )));
            }
        }
        sqlx::query(
            "UPDATE tasks SET status = 'running', started_attempt = $2, updated_at = $3 WHERE id = $1",
        )
        .bind(row.id)
        .bind(attempt)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        insert_run(&mut tx, ctx, &row, attempt, RunStatus::Running, Some(now)).await?;
        let view = task_by_id(&mut tx, row.id).await?.view()?;
        tx.commit().await?;
        Ok(view)
    }

    pub(crate) async fn report_result(
        &self,
        ctx: &Ctx,
        agent: AgentId,
        task: TaskId,
        report: &AttemptReport,
    ) -> Result<ResultAnswer> {
        let mut tx = self.write().await?;
        let recorded =
            record_result(&mut tx, ctx, *agent.as_uuid(), *task.as_uuid(), report).await?;
        tx.commit().await?;
        match recorded {
            Recorded::Answer(answer) => Ok(answer),
            Recorded::Stale(view) => Err(StoreError::StaleAttempt(Box::new(view))),
        }
    }

    pub(crate) async fn cancel_task(
        &self,
        ctx: &Ctx,
        tenant: TenantId,
        task: TaskId,
    ) -> Result<TaskView> {
        let now = ctx.now();
        let mut tx = self.write().await?;
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks t WHERE t.tenant_id = $1 AND t.id = $2{}",
            for_update!("t")
        );
        let row = sqlx::query_as::<_, TaskRow>(AssertSqlSafe(sql))
            .bind(*tenant.as_uuid())
            .bind(*task.as_uuid())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound("task"))?;
        let status = row.status()?;
        if status == TaskStatus::Cancelled {
            tx.commit().await?;
            return row.view();
        }
        if !status.is_open() {
            return Err(StoreError::Conflict(format!(
                "the task already ended ({status})"
            )));
        }
        let held_by_agent = matches!(status, TaskStatus::Claimed | TaskStatus::Running);
        sqlx::query(
            "UPDATE tasks SET status = 'cancelled', cancel_notify = $2, lease_expires_at = NULL, \
             next_retry_at = NULL, updated_at = $3 WHERE id = $1",
        )
        .bind(row.id)
        .bind(held_by_agent)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE backup_runs SET status = 'cancelled', finished_at = $2 \
             WHERE task_id = $1 AND status = 'running'",
        )
        .bind(row.id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let view = task_by_id(&mut tx, row.id).await?.view()?;
        tx.commit().await?;
        Ok(view)
    }

    pub(crate) async fn get_task(&self, tenant: TenantId, task: TaskId) -> Result<TaskView> {
        let sql =
            format!("SELECT {TASK_COLUMNS} FROM tasks t WHERE t.tenant_id = $1 AND t.id = $2");
        sqlx::query_as::<_, TaskRow>(AssertSqlSafe(sql))
            .bind(*tenant.as_uuid())
            .bind(*task.as_uuid())
            .fetch_optional(self.read())
            .await?
            .ok_or(StoreError::NotFound("task"))?
            .view()
    }

    pub(crate) async fn list_tasks(
        &self,
        tenant: TenantId,
        filter: &TaskFilter,
        page: &PageRequest,
    ) -> Result<Page<TaskView>> {
        let cursor = page.cursor()?;
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks t WHERE t.tenant_id = $1 \
             AND ($2 IS NULL OR t.status = $2) AND ($3 IS NULL OR t.agent_id = $3) \
             AND ($4 IS NULL OR t.policy_id = $4) \
             AND ($5 IS NULL OR t.created_at < $5 OR (t.created_at = $5 AND t.id < $6)) \
             ORDER BY t.created_at DESC, t.id DESC LIMIT $7"
        );
        let rows = sqlx::query_as::<_, TaskRow>(AssertSqlSafe(sql))
            .bind(*tenant.as_uuid())
            .bind(filter.status.map(TaskStatus::as_str))
            .bind(filter.agent_id.map(|a| *a.as_uuid()))
            .bind(filter.policy_id.map(|p| *p.as_uuid()))
            .bind(cursor.map(|c| c.at))
            .bind(cursor.map(|c| c.id))
            .bind(page.fetch_limit())
            .fetch_all(self.read())
            .await?;
        let keys = rows
            .iter()
            .map(|r| Cursor {
                at: r.created_at,
                id: r.id,
            })
            .collect();
        let items = rows.iter().map(TaskRow::view).collect::<Result<Vec<_>>>()?;
        Ok(page.finish(items, keys))
    }

    pub(crate) async fn list_backup_runs(
        &self,
        tenant: TenantId,
        filter: &BackupRunFilter,
        page: &PageRequest,
    ) -> Result<Page<BackupRunView>> {
        let cursor = page.cursor()?;
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM backup_runs r WHERE r.tenant_id = $1 \
             AND ($2 IS NULL OR r.agent_id = $2) AND ($3 IS NULL OR r.policy_id = $3) \
             AND ($4 IS NULL OR r.task_id = $4) AND ($5 IS NULL OR r.status = $5) \
             AND ($6 IS NULL OR r.created_at < $6 OR (r.created_at = $6 AND r.id < $7)) \
             ORDER BY r.created_at DESC, r.id DESC LIMIT $8"
        );
        let rows = sqlx::query_as::<_, RunRow>(AssertSqlSafe(sql))
            .bind(*tenant.as_uuid())
            .bind(filter.agent_id.map(|a| *a.as_uuid()))
            .bind(filter.policy_id.map(|p| *p.as_uuid()))
            .bind(filter.task_id.map(|t| *t.as_uuid()))
            .bind(filter.status.map(RunStatus::as_str))
            .bind(cursor.map(|c| c.at))
            .bind(cursor.map(|c| c.id))
            .bind(page.fetch_limit())
            .fetch_all(self.read())
            .await?;
        let keys = rows
            .iter()
            .map(|r| Cursor {
                at: r.created_at,
                id: r.id,
            })
            .collect();
        let items = rows.iter().map(RunRow::view).collect::<Result<Vec<_>>>()?;
        Ok(page.finish(items, keys))
    }

    // ---------------------------------------------------------------- scheduler

    /// One batch of the scheduler's tick: up to `batch` due policies after `after` (keyset),
    /// each given a task or a skip reason, in one transaction. Returns the last key seen.
    pub(crate) async fn schedule_batch(
        &self,
        ctx: &Ctx,
        respect_agent_backoff: bool,
        after: (Ts, Uuid),
        batch: usize,
        report: &mut TickReport,
        due_pending: &mut HashMap<Uuid, i64>,
    ) -> Result<Option<(Ts, Uuid)>> {
        let now = ctx.now();
        let mut tx = self.write().await?;
        let sql = concat!(
            "SELECT p.id, p.tenant_id, p.agent_id, p.kind, p.schedule_every, p.schedule_cron, ",
            "p.timezone, p.repository, p.max_task_retries, p.next_due_at, ",
            "a.last_heartbeat_at, COALESCE(a.queue_depth, 0) AS queue_depth, a.agent_backoff_until, ",
            "a.backoff_repositories, a.max_retries AS agent_max_retries, ",
            "EXISTS (SELECT 1 FROM tasks t WHERE t.policy_id = p.id ",
            "AND t.status IN ('pending', 'claimed', 'running')) AS has_open ",
            "FROM policies p JOIN agents a ON a.id = p.agent_id ",
            "WHERE p.enabled AND p.deleted_at IS NULL AND p.next_due_at <= $1 ",
            "AND (p.next_due_at, p.id) > ($2, $3) ",
            "ORDER BY p.next_due_at, p.id LIMIT $4",
            skip_locked!("p")
        );
        let rows = sqlx::query(sql)
            .bind(now)
            .bind(after.0)
            .bind(after.1)
            .bind(i64::try_from(batch).unwrap_or(1000))
            .fetch_all(&mut *tx)
            .await?;
        let Some(last) = rows.last() else {
            tx.commit().await?;
            return Ok(None);
        };
        let last_key: (Ts, Uuid) = (last.try_get("next_due_at")?, last.try_get("id")?);

        // Due pending counts of the agents in this batch that we have not counted yet.
        let mut unknown: Vec<Uuid> = Vec::new();
        for row in &rows {
            let agent: Uuid = row.try_get("agent_id")?;
            if !due_pending.contains_key(&agent) && !unknown.contains(&agent) {
                unknown.push(agent);
            }
        }
        for chunk in unknown.chunks(500) {
            let sql = format!(
                "SELECT agent_id, COUNT(*) AS n FROM tasks WHERE status = 'pending' \
                 AND (next_retry_at IS NULL OR next_retry_at <= $1) AND agent_id IN ({}) \
                 GROUP BY agent_id",
                placeholders(2, chunk.len())
            );
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now);
            for id in chunk {
                q = q.bind(*id);
            }
            for row in q.fetch_all(&mut *tx).await? {
                due_pending.insert(row.try_get("agent_id")?, row.try_get("n")?);
            }
            for id in chunk {
                due_pending.entry(*id).or_insert(0);
            }
        }

        struct NewTask {
            id: Uuid,
            tenant: Uuid,
            policy: Uuid,
            agent: Uuid,
            kind: String,
            slot: Ts,
            max_retries: i32,
            next_due: Ts,
            missed: u64,
        }
        let mut creates: Vec<NewTask> = Vec::new();
        let offline_after = TimeDelta::seconds(i64::from(ctx.config.offline_after_seconds));
        for row in &rows {
            report.evaluated += 1;
            let policy: Uuid = row.try_get("id")?;
            let agent: Uuid = row.try_get("agent_id")?;
            let repository: String = row.try_get("repository")?;
            let repositories: Vec<RepositoryBackoffView> = from_json(
                "backoff repositories",
                &row.try_get::<String, _>("backoff_repositories")?,
            )?;
            let queue_depth: i32 = row.try_get("queue_depth")?;
            let pending = due_pending.get(&agent).copied().unwrap_or(0);
            let inputs = DispatchInputs {
                now: now.get(),
                has_open_task: row.try_get("has_open")?,
                last_heartbeat_at: row
                    .try_get::<Option<Ts>, _>("last_heartbeat_at")?
                    .map(Ts::get),
                offline_after,
                agent_backoff_until: row
                    .try_get::<Option<Ts>, _>("agent_backoff_until")?
                    .map(Ts::get),
                repository_backoff_until: repositories
                    .iter()
                    .find(|r| r.repository == repository)
                    .map(|r| r.backoff_until),
                respect_agent_backoff,
                queue_depth: u32::try_from(i64::from(queue_depth.max(0)) + pending)
                    .unwrap_or(u32::MAX),
                queue_threshold: ctx.config.agent_queue_threshold,
            };
            if let Some(reason) = inputs.skip_reason() {
                *report.skipped.entry(reason).or_default() += 1;
                continue;
            }
            let spec = backup_core::ScheduleSpec {
                every: row.try_get("schedule_every")?,
                cron: row.try_get("schedule_cron")?,
                timezone: row.try_get("timezone")?,
            };
            let schedule = match Schedule::parse(&spec) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(policy = %policy, error = %e, "a stored schedule does not parse; policy skipped");
                    continue;
                }
            };
            let slot: Ts = row.try_get("next_due_at")?;
            let (next_due, missed) = schedule.advance(slot.get(), now.get());
            let policy_max: Option<i32> = row.try_get("max_task_retries")?;
            let agent_max: i32 = row.try_get("agent_max_retries")?;
            *due_pending.entry(agent).or_insert(0) += 1;
            creates.push(NewTask {
                id: Uuid::new_v4(),
                tenant: row.try_get("tenant_id")?,
                policy,
                agent,
                kind: row.try_get("kind")?,
                slot,
                max_retries: policy_max.unwrap_or(agent_max),
                next_due: Ts::new(next_due),
                missed,
            });
        }

        // Small multi-row statements: per-row cost dominates, and SQLite's cost per statement
        // grows faster than linearly with its parameter count (measured: 25-100 rows is best).
        for chunk in creates.chunks(50) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let b = i * 8;
                    format!(
                        "(${}, ${}, ${}, ${}, ${}, 'pending', ${}, ${}, 0, ${}, FALSE, ${})",
                        b + 1,
                        b + 2,
                        b + 3,
                        b + 4,
                        b + 5,
                        b + 6,
                        b + 6,
                        b + 7,
                        b + 8
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO tasks (id, tenant_id, policy_id, agent_id, kind, status, created_at, \
                 updated_at, retry_count, max_retries, failed_permanently, slot) VALUES {} \
                 ON CONFLICT DO NOTHING RETURNING policy_id",
                values.join(", ")
            );
            let mut args = Args::default();
            for t in chunk {
                add(&mut args, t.id)?;
                add(&mut args, t.tenant)?;
                add(&mut args, t.policy)?;
                add(&mut args, t.agent)?;
                add(&mut args, t.kind.clone())?;
                add(&mut args, now)?;
                add(&mut args, t.max_retries)?;
                add(&mut args, t.slot)?;
            }
            let inserted: Vec<Uuid> = sqlx::query_scalar_with(AssertSqlSafe(sql), args)
                .fetch_all(&mut *tx)
                .await?;
            // A policy whose insert hit a conflict (a run-now task, or a racing replica's task
            // for the same slot) keeps its due time: the open task is the skip reason.
            let advanced: Vec<&NewTask> = chunk
                .iter()
                .filter(|t| inserted.contains(&t.policy))
                .collect();
            report.skipped_for_conflict(chunk.len() - advanced.len());
            if advanced.is_empty() {
                continue;
            }
            report.created += advanced.len() as u64;
            report.missed_slots += advanced.iter().map(|t| t.missed).sum::<u64>();
            let mut cases = String::new();
            let mut args = Args::default();
            add(&mut args, now)?;
            for (i, t) in advanced.iter().enumerate() {
                cases.push_str(&format!(" WHEN ${} THEN ${}", 2 * i + 2, 2 * i + 3));
                add(&mut args, t.policy)?;
                add(&mut args, t.next_due)?;
            }
            let n = advanced.len();
            let ids = (0..n)
                .map(|i| format!("${}", 2 * i + 2))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "UPDATE policies SET next_due_at = CASE id{cases} END, updated_at = $1 WHERE id IN ({ids})"
            );
            sqlx::query_with(AssertSqlSafe(sql), args)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Some(last_key))
    }

    /// Lapses up to `batch` expired leases: a claimed task returns to pending with its attempt
    /// number given back; a running task's attempt fails as "agent lost" through the budget.
    pub(crate) async fn lapse_leases(
        &self,
        ctx: &Ctx,
        batch: usize,
        report: &mut LapseReport,
    ) -> Result<usize> {
        let now = ctx.now();
        let mut tx = self.write().await?;
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks t WHERE t.status IN ('claimed', 'running') \
             AND t.lease_expires_at < $1 ORDER BY t.lease_expires_at, t.id LIMIT $2{}",
            skip_locked!("t")
        );
        let rows = sqlx::query_as::<_, TaskRow>(AssertSqlSafe(sql))
            .bind(now)
            .bind(i64::try_from(batch).unwrap_or(1000))
            .fetch_all(&mut *tx)
            .await?;
        let mut settings_of: HashMap<Uuid, Settings> = HashMap::new();
        for task in &rows {
            match task.status()? {
                TaskStatus::Claimed => {
                    sqlx::query(
                        "UPDATE tasks SET status = 'pending', attempt = started_attempt, \
                         lease_expires_at = NULL, updated_at = $2 WHERE id = $1",
                    )
                    .bind(task.id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    report.returned += 1;
                }
                _ => {
                    let error = "agent lost: no heartbeat renewed the lease";
                    sqlx::query(
                        "UPDATE backup_runs SET status = 'failed', finished_at = $3, error = $4, \
                         error_kind = 'retriable' WHERE task_id = $1 AND attempt = $2 AND status = 'running'",
                    )
                    .bind(task.id)
                    .bind(task.started_attempt)
                    .bind(now)
                    .bind(error)
                    .execute(&mut *tx)
                    .await?;
                    let settings = match settings_of.get(&task.agent_id) {
                        Some(s) => *s,
                        None => {
                            let s = agent_settings(&mut tx, task.agent_id).await?;
                            settings_of.insert(task.agent_id, s);
                            s
                        }
                    };
                    let decision = decide(ctx, task, &settings, ErrorClass::Retriable);
                    if apply_failure(&mut tx, task, decision, Some(error), now).await? {
                        report.retried += 1;
                    } else {
                        sqlx::query(
                            "UPDATE backup_runs SET failed_permanently = TRUE WHERE task_id = $1 AND attempt = $2",
                        )
                        .bind(task.id)
                        .bind(task.started_attempt)
                        .execute(&mut *tx)
                        .await?;
                        report.failed_permanently += 1;
                    }
                    report.lost += 1;
                }
            }
        }
        tx.commit().await?;
        Ok(rows.len())
    }
}

/// Writes `s`; with `only_while` set, only if the agent's source still is that one (a PATCH
/// wins over a proposal that raced it). Returns whether the row was written.
async fn store_settings<'e, E>(
    executor: E,
    agent: Uuid,
    s: &Settings,
    only_while: Option<SettingsSource>,
) -> Result<bool>
where
    E: sqlx::Executor<'e, Database = Db>,
{
    let source = only_while.unwrap_or(SettingsSource::Api);
    let done = sqlx::query(
        "UPDATE agents SET max_concurrent_tasks = $2, max_concurrent_backups = $3, \
         max_concurrent_checks = $4, max_concurrent_prunes = $5, cpu_quota_percent = $6, \
         bandwidth_limit_mbps = $7, max_retries = $8, max_backoff_minutes = $9, \
         backoff_base_seconds = $10, backoff_failure_threshold = $11, settings_source = $12 \
         WHERE id = $1 AND ($13 IS NULL OR settings_source = $13)",
    )
    .bind(agent)
    .bind(i32_of(s.max_concurrent_tasks))
    .bind(i32_of(s.max_concurrent_backups))
    .bind(i32_of(s.max_concurrent_checks))
    .bind(i32_of(s.max_concurrent_prunes))
    .bind(i32_of(s.cpu_quota_percent))
    .bind(opt_i32(s.bandwidth_limit_mbps))
    .bind(i32_of(s.max_retries))
    .bind(i32_of(s.max_backoff_minutes))
    .bind(i32_of(s.backoff_base_seconds))
    .bind(i32_of(s.backoff_failure_threshold))
    .bind(source.as_str())
    .bind(only_while.map(SettingsSource::as_str))
    .execute(executor)
    .await?;
    Ok(done.rows_affected() > 0)
}

async fn agent_settings(tx: &mut Tx, agent: Uuid) -> Result<Settings> {
    // Deleted agents too: their running tasks still need a decision.
    let sql = concat!(
        "SELECT ",
        agent_columns!("$2"),
        " FROM agents a WHERE a.id = $1"
    );
    let row = sqlx::query_as::<_, AgentRow>(sql)
        .bind(agent)
        .bind(Ts::new(DateTime::<Utc>::UNIX_EPOCH))
        .fetch_one(&mut **tx)
        .await?;
    Ok(row.settings())
}

async fn ensure_tenant_agent(tx: &mut Tx, tenant: TenantId, agent: AgentId) -> Result<()> {
    let found: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM agents WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL",
    )
    .bind(*tenant.as_uuid())
    .bind(*agent.as_uuid())
    .fetch_optional(&mut **tx)
    .await?;
    match found {
        Some(_) => Ok(()),
        None => Err(backup_core::Error::invalid(
            "agentId",
            agent,
            "the id of one of this tenant's agents",
        )
        .into()),
    }
}

async fn policy_row(tx: &mut Tx, tenant: TenantId, policy: Uuid) -> Result<PolicyRow> {
    let sql = format!(
        "SELECT {POLICY_COLUMNS} FROM policies p \
         WHERE p.tenant_id = $1 AND p.id = $2 AND p.deleted_at IS NULL"
    );
    sqlx::query_as::<_, PolicyRow>(AssertSqlSafe(sql))
        .bind(*tenant.as_uuid())
        .bind(policy)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound("policy"))
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

/// The backoff state a heartbeat reports, clamped to `maxBackoffMinutes` from now.
fn backoff_state(
    hb: &Heartbeat,
    settings: &Settings,
    now: DateTime<Utc>,
) -> (Option<DateTime<Utc>>, Vec<RepositoryBackoffView>) {
    let cap = i64::from(settings.max_backoff_minutes) * 60;
    let after =
        |secs: u64| now + TimeDelta::seconds(i64::try_from(secs).unwrap_or(i64::MAX).min(cap));
    if hb.backoff_repositories.is_some() || hb.agent_backoff_seconds.is_some() {
        let repositories = hb
            .backoff_repositories
            .iter()
            .flatten()
            .filter(|r| r.remaining_seconds > 0)
            .map(|r| RepositoryBackoffView {
                repository: r.repository.clone(),
                backoff_until: Ts::new(after(r.remaining_seconds)).get(),
            })
            .collect();
        let agent = hb
            .agent_backoff_seconds
            .filter(|s| *s > 0)
            .map(|s| Ts::new(after(s)).get());
        (agent, repositories)
    } else {
        let cap_at = now + TimeDelta::seconds(cap);
        let agent = hb
            .backoff_until
            .filter(|t| *t > now)
            .map(|t| Ts::new(t.min(cap_at)).get());
        (agent, Vec::new())
    }
}

/// Records one attempt's result, inside the caller's transaction.
async fn record_result(
    tx: &mut Tx,
    ctx: &Ctx,
    agent: Uuid,
    task_id: Uuid,
    report: &AttemptReport,
) -> Result<Recorded> {
    let now = ctx.now();
    let attempt = i32_of(report.attempt);
    let task = task_for_update(tx, task_id, agent).await?;
    let run = sqlx::query(
        "SELECT status, result_at, answer, answer_stale FROM backup_runs WHERE task_id = $1 AND attempt = $2",
    )
    .bind(task_id)
    .bind(attempt)
    .fetch_optional(&mut **tx)
    .await?;

    // A repeat of a result already stored: the answer as it was decided.
    if let Some(run) = &run
        && run.try_get::<Option<Ts>, _>("result_at")?.is_some()
    {
        if run.try_get::<bool, _>("answer_stale")? {
            return Ok(Recorded::Stale(task.view()?));
        }
        let answer: Option<String> = run.try_get("answer")?;
        let task_view: TaskView = match answer {
            Some(a) => from_json("stored answer", &a)?,
            None => task.view()?,
        };
        return Ok(Recorded::Answer(ResultAnswer {
            task: task_view,
            retried: false,
            replayed: true,
        }));
    }
    let status = task.status()?;
    let run_status: Option<RunStatus> = match &run {
        Some(r) => Some(crate::rows::parse(
            "run status",
            &r.try_get::<String, _>("status")?,
        )?),
        None => None,
    };

    // A cancelled task: record what happened, change nothing.
    if status == TaskStatus::Cancelled {
        if run.is_none() && task.attempt != attempt {
            return Err(StoreError::Conflict(format!(
                "attempt {attempt} was never claimed"
            )));
        }
        insert_run(tx, ctx, &task, attempt, RunStatus::Cancelled, None).await?;
        let view = task.view()?;
        write_run(
            tx,
            &task,
            attempt,
            report,
            RunStatus::Cancelled,
            false,
            false,
            now,
            Some(&view),
        )
        .await?;
        return Ok(Recorded::Answer(ResultAnswer {
            task: view,
            retried: false,
            replayed: false,
        }));
    }

    match run_status {
        // The attempt was closed as "agent lost" before this result arrived.
        Some(closed) if closed != RunStatus::Running => {
            let waiting_for_retry = status == TaskStatus::Pending && task.next_retry_at.is_some();
            if report.outcome.is_success() && waiting_for_retry {
                sqlx::query(
                    "UPDATE tasks SET status = 'succeeded', next_retry_at = NULL, lease_expires_at = NULL, \
                     last_error = NULL, updated_at = $2 WHERE id = $1",
                )
                .bind(task.id)
                .bind(now)
                .execute(&mut **tx)
                .await?;
                let view = task_by_id(tx, task.id).await?.view()?;
                write_run(
                    tx,
                    &task,
                    attempt,
                    report,
                    report.outcome.into(),
                    true,
                    false,
                    now,
                    Some(&view),
                )
                .await?;
                return Ok(Recorded::Answer(ResultAnswer {
                    task: view,
                    retried: false,
                    replayed: false,
                }));
            }
            write_run(
                tx,
                &task,
                attempt,
                report,
                report.outcome.into(),
                true,
                false,
                now,
                None,
            )
            .await?;
            return Ok(Recorded::Stale(task.view()?));
        }
        Some(_) => {
            if status != TaskStatus::Running || task.started_attempt != attempt {
                return Err(StoreError::Conflict(format!(
                    "attempt {attempt} is not the running attempt"
                )));
            }
        }
        None => {
            // A result before start (an unknown repository, say) is accepted for the claimed attempt.
            if status != TaskStatus::Claimed || task.attempt != attempt {
                return Err(StoreError::Conflict(format!(
                    "attempt {attempt} was never claimed"
                )));
            }
            insert_run(tx, ctx, &task, attempt, RunStatus::Running, None).await?;
            sqlx::query("UPDATE tasks SET started_attempt = $2 WHERE id = $1")
                .bind(task.id)
                .bind(attempt)
                .execute(&mut **tx)
                .await?;
        }
    }

    let mut retried = false;
    let mut failed_permanently = false;
    match report.outcome {
        AttemptOutcome::Succeeded | AttemptOutcome::Partial => {
            sqlx::query(
                "UPDATE tasks SET status = 'succeeded', next_retry_at = NULL, lease_expires_at = NULL, \
                 last_error = $2, updated_at = $3 WHERE id = $1",
            )
            .bind(task.id)
            .bind(report.error.as_deref())
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        AttemptOutcome::Interrupted => {
            sqlx::query(
                "UPDATE tasks SET status = 'pending', next_retry_at = NULL, lease_expires_at = NULL, \
                 last_error = $2, updated_at = $3 WHERE id = $1",
            )
            .bind(task.id)
            .bind(report.error.as_deref())
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        _ => {
            let class = report.error_kind.unwrap_or(ErrorClass::Retriable);
            let settings = agent_settings(tx, task.agent_id).await?;
            let decision = decide(ctx, &task, &settings, class);
            retried = apply_failure(tx, &task, decision, report.error.as_deref(), now).await?;
            failed_permanently = !retried;
        }
    }
    let view = task_by_id(tx, task.id).await?.view()?;
    write_run(
        tx,
        &task,
        attempt,
        report,
        report.outcome.into(),
        false,
        failed_permanently,
        now,
        Some(&view),
    )
    .await?;
    Ok(Recorded::Answer(ResultAnswer {
        task: view,
        retried,
        replayed: false,
    }))
}

/// Fills a run with the agent's result. `answer` is the task view answered (None: stale).
#[allow(clippy::too_many_arguments)]
async fn write_run(
    tx: &mut Tx,
    task: &TaskRow,
    attempt: i32,
    report: &AttemptReport,
    status: RunStatus,
    late: bool,
    failed_permanently: bool,
    now: Ts,
    answer: Option<&TaskView>,
) -> Result<()> {
    let duration_ms = match (report.started_at, report.finished_at) {
        (Some(s), Some(f)) => Some((f - s).num_milliseconds().max(0)),
        _ => None,
    };
    let error_kind = match report.outcome {
        AttemptOutcome::Failed => Some(class_name(
            report.error_kind.unwrap_or(ErrorClass::Retriable),
        )),
        _ => None,
    };
    sqlx::query(
        "UPDATE backup_runs SET status = $3, started_at = COALESCE($4, started_at), \
         finished_at = COALESCE($5, $12), snapshot_id = $6, files_new = $7, data_added = $8, \
         duration_ms = $9, exit_code = $10, error = $11, error_kind = $13, late = $14, \
         failed_permanently = (failed_permanently OR $15), result_at = $12, answer = $16, \
         answer_stale = $17 WHERE task_id = $1 AND attempt = $2",
    )
    .bind(task.id)
    .bind(attempt)
    .bind(status.as_str())
    .bind(report.started_at.map(Ts::new))
    .bind(report.finished_at.map(Ts::new))
    .bind(report.snapshot_id.as_deref())
    .bind(i64_of(report.files_new))
    .bind(i64_of(report.data_added))
    .bind(duration_ms)
    .bind(report.exit_code)
    .bind(report.error.as_deref())
    .bind(now)
    .bind(error_kind)
    .bind(late)
    .bind(failed_permanently)
    .bind(answer.map(to_json))
    .bind(answer.is_none())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
