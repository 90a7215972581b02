//! Policies: what to back up, check or prune, where and when; and run-now.

use backup_core::{Actor, EventType};
use serde_json::json;

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
        agents::count_one_more(
            &mut tx,
            agents::Counted::Policies,
            tenant,
            ctx.config.max_policies_per_tenant,
            "limits.maxPoliciesPerTenant",
        )
        .await?;
        ensure_tenant_agent(&mut tx, tenant, spec.agent_id).await?;
        repositories::ensure_agent_has(&mut tx, *spec.agent_id.as_uuid(), &spec.repository).await?;
        let next_due = spec.enabled.then(|| Ts::new(schedule.first_due(now.get())));
        let sql = format!(
            "INSERT INTO policies (id, tenant_id, created_at, updated_at, next_due_at, {SPEC_COLUMNS}) \
             VALUES ($1, $2, $3, $3, $4, {})",
            placeholders(5, SPEC_FIELDS)
        );
        let q = sqlx::query(AssertSqlSafe(sql))
            .bind(*id.as_uuid())
            .bind(*tenant.as_uuid())
            .bind(now)
            .bind(next_due);
        bind_spec(q, spec).execute(&mut *tx).await?;
        let alert_after = protection::alert_after(spec, &schedule, ctx, now);
        protection::set_alert(&mut tx, *id.as_uuid(), alert_after, now, now).await?;
        let data = json!({
            "policyId": id, "name": spec.name, "agentId": spec.agent_id, "kind": spec.kind.as_str(),
            "repository": spec.repository,
        });
        events::record(
            &mut tx,
            now,
            *tenant.as_uuid(),
            EventType::PolicyCreated,
            Actor::Tenant,
            Some(*id.as_uuid()),
            data,
        )
        .await?;
        let view = policy_row(&mut tx, tenant, *id.as_uuid())
            .await?
            .view(now.get())?;
        tx.commit().await?;
        Ok(view)
    }

    pub(crate) async fn get_policy(
        &self,
        ctx: &Ctx,
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
            .view(ctx.now().get())
    }

    pub(crate) async fn list_policies(
        &self,
        ctx: &Ctx,
        tenant: TenantId,
        filter: &PolicyFilter,
        page: &PageRequest,
    ) -> Result<Page<PolicyView>> {
        let cursor = page.cursor()?;
        let sql = format!(
            "SELECT {POLICY_COLUMNS} FROM policies p WHERE p.tenant_id = $1 AND p.deleted_at IS NULL \
             AND ($2 IS NULL OR p.agent_id = $2) \
             AND ($3 IS NULL OR p.created_at < $3 OR (p.created_at = $3 AND p.id < $4)) \
             AND ($6 IS NULL OR {} = $6) \
             ORDER BY p.created_at DESC, p.id DESC LIMIT $5",
            protection_case!("$7")
        );
        let rows = sqlx::query_as::<_, PolicyRow>(AssertSqlSafe(sql))
            .bind(*tenant.as_uuid())
            .bind(filter.agent_id.map(|a| *a.as_uuid()))
            .bind(cursor.map(|c| c.at))
            .bind(cursor.map(|c| c.id))
            .bind(page.fetch_limit())
            .bind(filter.protection.map(backup_core::Protection::as_str))
            .bind(ctx.now())
            .fetch_all(self.read())
            .await?;
        let now = ctx.now().get();
        page.page_of(&rows, PolicyRow::key, |row| row.view(now))
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
        if spec.agent_id != current.agent_id || spec.repository != current.repository {
            repositories::ensure_agent_has(&mut tx, *spec.agent_id.as_uuid(), &spec.repository)
                .await?;
        }
        let next_due = if !spec.enabled {
            None
        } else if !current.enabled || spec.schedule != current.schedule || row.next_due_at.is_none()
        {
            Some(Ts::new(schedule.first_due(now.get())))
        } else {
            row.next_due_at
        };
        let sql = format!(
            "UPDATE policies SET updated_at = $2, next_due_at = $3, ({SPEC_COLUMNS}) = ({}) \
             WHERE id = $1",
            placeholders(4, SPEC_FIELDS)
        );
        let q = sqlx::query(AssertSqlSafe(sql))
            .bind(row.id)
            .bind(now)
            .bind(next_due);
        bind_spec(q, &spec).execute(&mut *tx).await?;
        // The alert counts from the last success, or from now for a policy enabled again (its
        // disabled months are not its fault).
        let alert_after = protection::alert_after(&spec, &schedule, ctx, now);
        let base = if spec.enabled && !current.enabled {
            now
        } else {
            row.last_success_at.unwrap_or(row.created_at)
        };
        protection::set_alert(&mut tx, row.id, alert_after, base, now).await?;
        let changed = events::changed(
            &serde_json::to_value(&current).unwrap_or_default(),
            &serde_json::to_value(&spec).unwrap_or_default(),
        );
        if changed.as_object().is_some_and(|c| !c.is_empty()) {
            let data = json!({"policyId": row.id, "name": spec.name, "changed": changed});
            events::record(
                &mut tx,
                now,
                *tenant.as_uuid(),
                EventType::PolicyUpdated,
                Actor::Tenant,
                Some(row.id),
                data,
            )
            .await?;
        }
        let view = policy_row(&mut tx, tenant, row.id).await?.view(now.get())?;
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
        // The tenant's row first, as creations lock it: one lock order, no deadlock.
        agents::count_one_fewer(&mut tx, agents::Counted::Policies, tenant).await?;
        let name: Option<String> = sqlx::query_scalar(
            "UPDATE policies SET deleted_at = $3, enabled = FALSE, next_due_at = NULL, updated_at = $3 \
             WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL RETURNING name",
        )
        .bind(*tenant.as_uuid())
        .bind(*policy.as_uuid())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(name) = name else {
            return Err(StoreError::NotFound("policy"));
        };
        let data = json!({"policyId": policy, "name": name});
        events::record(
            &mut tx,
            now,
            *tenant.as_uuid(),
            EventType::PolicyDeleted,
            Actor::Tenant,
            Some(*policy.as_uuid()),
            data,
        )
        .await?;
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
        // Name the open task, if there is one: a 409 that says what to wait for or cancel.
        let open: Option<(Uuid, String)> = sqlx::query_as(
            "SELECT id, status FROM tasks WHERE policy_id = $1 \
             AND status IN ('pending', 'claimed', 'running')",
        )
        .bind(row.id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((task, status)) = open {
            return Err(StoreError::Conflict(format!(
                "the policy has an open task: {task} ({status}); wait for it, or cancel it with POST /tasks/{task}/cancel"
            )));
        }
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
                // A task that opened since the check above (another replica's), or one for
                // this very millisecond.
                return Err(StoreError::Conflict(
                    "the policy has an open task, or one for this very moment".into(),
                ));
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

/// The columns a [`PolicySpec`] is stored in, in [`bind_spec`]'s order.
const SPEC_COLUMNS: &str = "agent_id, name, kind, max_task_retries, schedule_every, \
    schedule_cron, timezone, paths, excludes, repository, retention, timeout_minutes, enabled, \
    alert_after";
const SPEC_FIELDS: usize = 14;

/// Binds a policy's fields, in [`SPEC_COLUMNS`]'s order.
fn bind_spec<'q>(
    q: sqlx::query::Query<'q, Db, Args>,
    spec: &'q PolicySpec,
) -> sqlx::query::Query<'q, Db, Args> {
    q.bind(*spec.agent_id.as_uuid())
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
        .bind(spec.alert_after.as_deref())
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
