//! Restores and directory listings: tasks a person asks for, runnable at once like a run-now,
//! on a snapshot the server lists for that repository (made by any agent of the tenant: the
//! target machine may be another one that has the repository under the same name).

use backup_core::TaskRequest;

use super::*;

impl Pools {
    /// Creates a `restore` or `ls` task for `agent` on `repository`; `request.snapshot_id` is
    /// what the caller gave (a full or a short id) and is stored as restic's full id.
    pub(crate) async fn create_asked_task(
        &self,
        ctx: &Ctx,
        tenant: TenantId,
        agent: AgentId,
        repository: &str,
        kind: TaskKind,
        mut request: TaskRequest,
    ) -> Result<TaskView> {
        let now = ctx.now();
        let mut tx = self.write().await?;
        let max_retries: Option<i32> = sqlx::query_scalar(
            "SELECT max_retries FROM agents WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL",
        )
        .bind(*agent.as_uuid())
        .bind(*tenant.as_uuid())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(max_retries) = max_retries else {
            return Err(StoreError::Validation(backup_core::Error::invalid(
                "agentId",
                agent,
                "an agent of this tenant",
            )));
        };
        super::repositories::ensure_agent_has(&mut tx, *agent.as_uuid(), repository).await?;
        let asked = request.snapshot_id.clone().unwrap_or_default();
        let found: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT snapshot_id FROM snapshots WHERE tenant_id = $1 AND repository = $2 \
             AND substr(snapshot_id, 1, length($3)) = $3 \
             LIMIT 2",
        )
        .bind(*tenant.as_uuid())
        .bind(repository)
        .bind(&asked)
        .fetch_all(&mut *tx)
        .await?;
        let full = match found.as_slice() {
            [one] => one.clone(),
            [] => {
                return Err(StoreError::Validation(backup_core::Error::invalid(
                    "snapshotId",
                    &asked,
                    format!(
                        "a snapshot GET /snapshots lists for repository {repository:?} (the \
                         agents report theirs after every backup and at start)"
                    ),
                )));
            }
            _ => {
                return Err(StoreError::Validation(backup_core::Error::invalid(
                    "snapshotId",
                    &asked,
                    "an id that names one snapshot: this short id matches several, give the full id",
                )));
            }
        };
        request.snapshot_id = Some(full);
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO tasks (id, tenant_id, policy_id, agent_id, kind, status, created_at, \
             updated_at, retry_count, max_retries, failed_permanently, slot, repository, request) \
             VALUES ($1, $2, NULL, $3, $4, 'pending', $5, $5, 0, $6, FALSE, $5, $7, $8)",
        )
        .bind(id)
        .bind(*tenant.as_uuid())
        .bind(*agent.as_uuid())
        .bind(kind.as_str())
        .bind(now)
        .bind(max_retries)
        .bind(repository)
        .bind(to_json(&request))
        .execute(&mut *tx)
        .await?;
        if kind == TaskKind::Restore {
            let data = serde_json::json!({
                "taskId": id, "agentId": agent, "repository": repository, "request": request,
            });
            super::events::record(
                &mut tx,
                now,
                *tenant.as_uuid(),
                backup_core::EventType::RestoreRequested,
                backup_core::Actor::Tenant,
                Some(id),
                data,
            )
            .await?;
        }
        let view = task_by_id(&mut tx, id).await?.view()?;
        tx.commit().await?;
        Ok(view)
    }
}
