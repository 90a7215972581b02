//! Policies: what to back up, check or prune, where and when; and run-now.

use super::*;

impl Pools {
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
        let row = policy_row_for_update(&mut tx, tenant, *policy.as_uuid()).await?;
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
}

async fn policy_row(tx: &mut Tx, tenant: TenantId, policy: Uuid) -> Result<PolicyRow> {
    let sql = format!(
        "SELECT {POLICY_COLUMNS} FROM policies p \
         WHERE p.tenant_id = $1 AND p.id = $2 AND p.deleted_at IS NULL"
    );
    policy_row_from(tx, sql, tenant, policy).await
}

/// The row, locked until the transaction ends: a read-then-write must not write back what a
/// scheduler batch on another replica changed in between (it would move `nextDueAt` back).
async fn policy_row_for_update(tx: &mut Tx, tenant: TenantId, policy: Uuid) -> Result<PolicyRow> {
    let sql = format!(
        "SELECT {POLICY_COLUMNS} FROM policies p \
         WHERE p.tenant_id = $1 AND p.id = $2 AND p.deleted_at IS NULL{}",
        for_update!("p")
    );
    policy_row_from(tx, sql, tenant, policy).await
}

async fn policy_row_from(
    tx: &mut Tx,
    sql: String,
    tenant: TenantId,
    policy: Uuid,
) -> Result<PolicyRow> {
    sqlx::query_as::<_, PolicyRow>(AssertSqlSafe(sql))
        .bind(*tenant.as_uuid())
        .bind(policy)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound("policy"))
}
