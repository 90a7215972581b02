//! Lapsed leases: a claimed task goes back to pending, a running one is an attempt lost.

use super::*;

/// Adds `agent` to the agents whose waiting claims the server wakes, once.
fn note_claimable(report: &mut LapseReport, agent: Uuid) {
    let agent = AgentId::from_uuid(agent);
    if !report.claimable_agents.contains(&agent) {
        report.claimable_agents.push(agent);
    }
}

impl Pools {
    /// Lapses up to `batch` expired leases: a claimed task returns to pending, its attempt
    /// number kept for the next claim (and for a late result of this one: an agent that could
    /// not report the start may have run it); a running task's attempt fails as "agent lost" through the budget.
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
                        "UPDATE tasks SET status = 'pending', \
                         lease_expires_at = NULL, updated_at = $2 WHERE id = $1",
                    )
                    .bind(task.id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    report.returned += 1;
                    note_claimable(report, task.agent_id);
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
                    note_policy_run(&mut tx, task.policy_id, RunStatus::Failed, now).await?;
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
                        note_claimable(report, task.agent_id);
                    } else {
                        sqlx::query(
                            "UPDATE backup_runs SET failed_permanently = TRUE WHERE task_id = $1 AND attempt = $2",
                        )
                        .bind(task.id)
                        .bind(task.started_attempt)
                        .execute(&mut *tx)
                        .await?;
                        report.failed_permanently += 1;
                        protection::task_failed_permanently(
                            &mut tx,
                            now,
                            task,
                            "retries_exhausted",
                            Some(error),
                            backup_core::Actor::System,
                        )
                        .await?;
                        if let Ok(kind) = task.kind.parse::<TaskKind>() {
                            *report.failed_permanently_by_kind.get_mut(kind) += 1;
                        }
                    }
                    report.lost += 1;
                }
            }
        }
        tx.commit().await?;
        Ok(rows.len())
    }
}
