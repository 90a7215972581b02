//! Agents: creation, authentication, views, deletion, token rotation and the settings the
//! server keeps for them.

use backup_core::{Actor, EventType};
use serde_json::json;

use super::*;

/// What a tenant counts: its live agents or its live policies.
#[derive(Clone, Copy, Debug)]
pub(super) enum Counted {
    Agents,
    Policies,
}

impl Counted {
    fn column(self) -> &'static str {
        match self {
            Counted::Agents => "live_agents",
            Counted::Policies => "live_policies",
        }
    }

    fn words(self) -> &'static str {
        match self {
            Counted::Agents => "agents",
            Counted::Policies => "policies",
        }
    }
}

/// Counts one more of `what` for `tenant`, in the caller's transaction, or refuses it past
/// `limit` (0: none), naming `key`. The count is a column of the tenant's row, so the check is
/// one row read however many the tenant has, and the row's lock makes it exact also across
/// replicas. A transaction that fails after it rolls the count back with the rest.
pub(super) async fn count_one_more(
    tx: &mut Tx,
    what: Counted,
    tenant: TenantId,
    limit: u32,
    key: &str,
) -> Result<()> {
    let column = what.column();
    let sql = format!(
        "UPDATE tenants SET {column} = {column} + 1 WHERE id = $1 AND ($2 = 0 OR {column} < $2) \
         RETURNING {column}"
    );
    let counted: Option<i64> = sqlx::query_scalar(AssertSqlSafe(sql))
        .bind(*tenant.as_uuid())
        .bind(i64::from(limit))
        .fetch_optional(&mut **tx)
        .await?;
    if counted.is_some() {
        return Ok(());
    }
    let n: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT {column} FROM tenants WHERE id = $1"
    )))
    .bind(*tenant.as_uuid())
    .fetch_optional(&mut **tx)
    .await?;
    let Some(n) = n else {
        return Err(StoreError::NotFound("tenant"));
    };
    let words = what.words();
    Err(StoreError::QuotaExceeded(format!(
        "the tenant has {n} {words}, its limit ({key} = {limit}); delete some or raise the limit"
    )))
}

/// Counts one fewer of `what` for `tenant` (a deletion), in the caller's transaction.
pub(super) async fn count_one_fewer(tx: &mut Tx, what: Counted, tenant: TenantId) -> Result<()> {
    let column = what.column();
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE tenants SET {column} = {column} - 1 WHERE id = $1 AND {column} > 0"
    )))
    .bind(*tenant.as_uuid())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Inserts a new agent of `tenant` with the default settings, in the caller's transaction;
/// its id and its token (shown once).
pub(super) async fn insert_agent(
    tx: &mut Tx,
    ctx: &Ctx,
    tenant: TenantId,
    body: &CreateAgent,
) -> Result<(AgentId, String)> {
    validate_name("name", &body.name)?;
    validate_name("hostname", &body.hostname)?;
    let now = ctx.now();
    count_one_more(
        tx,
        Counted::Agents,
        tenant,
        ctx.config.max_agents_per_tenant,
        "limits.maxAgentsPerTenant",
    )
    .await?;
    let id = AgentId::new();
    let token = token::generate(TokenKind::Agent)?;
    let inserted = sqlx::query(
        "INSERT INTO agents (id, tenant_id, name, hostname, token_hash, created_at, \
         running_tasks, queue_depth, pending_retries) \
         VALUES ($1, $2, $3, $4, $5, $6, 0, 0, 0)",
    )
    .bind(*id.as_uuid())
    .bind(*tenant.as_uuid())
    .bind(&body.name)
    .bind(&body.hostname)
    .bind(token::hash(&token))
    .bind(now)
    .execute(&mut **tx)
    .await;
    if let Err(e) = &inserted
        && matches!(e, sqlx::Error::Database(db) if db.is_foreign_key_violation())
    {
        return Err(StoreError::NotFound("tenant"));
    }
    inserted?;
    store_settings(
        &mut **tx,
        *id.as_uuid(),
        &Settings::default(),
        SettingsSource::Agent,
        None,
    )
    .await?;
    Ok((id, token))
}

impl Pools {
    pub(crate) async fn create_agent(
        &self,
        ctx: &Ctx,
        tenant: TenantId,
        body: &CreateAgent,
    ) -> Result<AgentCreated> {
        let now = ctx.now();
        let mut tx = self.write().await?;
        let (id, token) = insert_agent(&mut tx, ctx, tenant, body).await?;
        let data = json!({"agentId": id, "name": body.name, "hostname": body.hostname});
        events::record(
            &mut tx,
            now,
            *tenant.as_uuid(),
            EventType::AgentCreated,
            Actor::Tenant,
            Some(*id.as_uuid()),
            data,
        )
        .await?;
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
        let row: Option<(Uuid, Uuid, String)> = sqlx::query_as(
            "SELECT id, tenant_id, token_hash FROM agents \
             WHERE token_hash = $1 AND deleted_at IS NULL",
        )
        .bind(token::hash(presented))
        .fetch_optional(self.read())
        .await?;
        let Some((agent, tenant, stored)) = row else {
            return Ok(None);
        };
        if !token::matches(presented, &stored) {
            return Ok(None);
        }
        Ok(Some(AgentPrincipal {
            agent_id: AgentId::from_uuid(agent),
            tenant_id: TenantId::from_uuid(tenant),
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
        // The tenant's row first, as creations lock it: one lock order, no deadlock.
        count_one_fewer(&mut tx, Counted::Agents, tenant).await?;
        let name: Option<String> = sqlx::query_scalar(
            "UPDATE agents SET deleted_at = $3, token_hash = NULL \
             WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL RETURNING name",
        )
        .bind(*tenant.as_uuid())
        .bind(*agent.as_uuid())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(name) = name else {
            return Err(StoreError::NotFound("agent"));
        };
        let data = json!({"agentId": agent, "name": name});
        events::record(
            &mut tx,
            now,
            *tenant.as_uuid(),
            EventType::AgentDeleted,
            Actor::Tenant,
            Some(*agent.as_uuid()),
            data,
        )
        .await?;
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
        ctx: &Ctx,
        tenant: TenantId,
        agent: AgentId,
    ) -> Result<String> {
        let token = token::generate(TokenKind::Agent)?;
        let now = ctx.now();
        let mut tx = self.write().await?;
        let name: Option<String> = sqlx::query_scalar(
            "UPDATE agents SET token_hash = $3 WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL \
             RETURNING name",
        )
        .bind(*tenant.as_uuid())
        .bind(*agent.as_uuid())
        .bind(token::hash(&token))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(name) = name else {
            return Err(StoreError::NotFound("agent"));
        };
        // Who and what, never the token.
        let data = json!({"agentId": agent, "name": name});
        events::record(
            &mut tx,
            now,
            *tenant.as_uuid(),
            EventType::AgentTokenRotated,
            Actor::Tenant,
            Some(*agent.as_uuid()),
            data,
        )
        .await?;
        tx.commit().await?;
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
        // Locked until the write: two PATCHes racing on two replicas would each merge over the
        // settings from before the other, and the second would undo the first.
        let sql = concat!(
            "SELECT id FROM agents WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL",
            for_update!("agents")
        );
        let found: Option<Uuid> = sqlx::query_scalar(sql)
            .bind(*agent.as_uuid())
            .bind(*tenant.as_uuid())
            .fetch_optional(&mut *tx)
            .await?;
        if found.is_none() {
            return Err(StoreError::NotFound("agent"));
        }
        let row = agent_row(&mut tx, *agent.as_uuid(), now).await?;
        let before = row.settings.settings();
        let settings = before.apply(patch)?;
        // Any PATCH takes the settings over for the API, unless it hands them back.
        let source = patch.source.unwrap_or(SettingsSource::Api);
        store_settings(&mut *tx, *agent.as_uuid(), &settings, source, None).await?;
        let mut changed = events::changed(
            &serde_json::to_value(before).unwrap_or_default(),
            &serde_json::to_value(settings).unwrap_or_default(),
        );
        let old_source = row.settings.source()?;
        if old_source != source {
            changed["settingsSource"] = json!({"old": old_source, "new": source});
        }
        let data = json!({"agentId": agent, "name": row.name, "changed": changed});
        events::record(
            &mut tx,
            now,
            *tenant.as_uuid(),
            EventType::AgentSettingsChanged,
            Actor::Tenant,
            Some(*agent.as_uuid()),
            data,
        )
        .await?;
        tx.commit().await?;
        Ok(settings)
    }
}

/// Writes `s` as coming from `source`; with `only_while` set, only if the agent's source still
/// is that one (a PATCH wins over a proposal that raced it). Returns whether the row was written.
pub(super) async fn store_settings<'e, E>(
    executor: E,
    agent: Uuid,
    s: &Settings,
    source: SettingsSource,
    only_while: Option<SettingsSource>,
) -> Result<bool>
where
    E: sqlx::Executor<'e, Database = Db>,
{
    let done = sqlx::query(
        "UPDATE agents SET max_concurrent_tasks = $2, max_concurrent_backups = $3, \
         max_concurrent_checks = $4, max_concurrent_prunes = $5, cpu_quota_percent = $6, \
         bandwidth_limit_mbps = $7, max_retries = $8, max_backoff_minutes = $9, \
         backoff_base_seconds = $10, backoff_failure_threshold = $11, settings_source = $12, \
         max_concurrent_restores = $14 \
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
    .bind(i32_of(s.max_concurrent_restores))
    .execute(executor)
    .await?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn agent_settings(tx: &mut Tx, agent: Uuid) -> Result<Settings> {
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
    Ok(row.settings.settings())
}

pub(super) async fn ensure_tenant_agent(
    tx: &mut Tx,
    tenant: TenantId,
    agent: AgentId,
) -> Result<()> {
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
