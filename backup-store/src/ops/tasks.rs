//! The tenant's side of tasks and runs: view, list, cancel.

use super::*;

impl Pools {
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
        page.page_of(&rows, TaskRow::key, TaskRow::view)
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
        page.page_of(&rows, RunRow::key, RunRow::view)
    }
}
