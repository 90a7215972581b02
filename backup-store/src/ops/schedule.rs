//! The scheduler's tick: due policies become tasks (or stay due with a skip reason).

use super::*;

/// A due policy with what the dispatch decision needs of its agent.
#[derive(sqlx::FromRow)]
struct DuePolicy {
    id: Uuid,
    tenant_id: Uuid,
    agent_id: Uuid,
    kind: String,
    schedule_every: Option<String>,
    schedule_cron: Option<String>,
    timezone: Option<String>,
    repository: String,
    max_task_retries: Option<i32>,
    next_due_at: Ts,
    last_heartbeat_at: Option<Ts>,
    queue_depth: i32,
    agent_backoff_until: Option<Ts>,
    backoff_repositories: String,
    agent_max_retries: i32,
    has_open: bool,
}

impl Pools {
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
        let rows = sqlx::query_as::<_, DuePolicy>(sql)
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
        let last_key: (Ts, Uuid) = (last.next_due_at, last.id);

        // Due pending counts of the agents in this batch that we have not counted yet.
        let mut unknown: Vec<Uuid> = Vec::new();
        for row in &rows {
            let agent = row.agent_id;
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
            let (policy, agent) = (row.id, row.agent_id);
            let repositories: Vec<RepositoryBackoffView> =
                from_json("backoff repositories", &row.backoff_repositories)?;
            let pending = due_pending.get(&agent).copied().unwrap_or(0);
            let inputs = DispatchInputs {
                now: now.get(),
                has_open_task: row.has_open,
                last_heartbeat_at: row.last_heartbeat_at.map(Ts::get),
                offline_after,
                agent_backoff_until: row.agent_backoff_until.map(Ts::get),
                repository_backoff_until: repositories
                    .iter()
                    .find(|r| r.repository == row.repository)
                    .map(|r| r.backoff_until),
                respect_agent_backoff,
                queue_depth: u32::try_from(i64::from(row.queue_depth.max(0)) + pending)
                    .unwrap_or(u32::MAX),
                queue_threshold: ctx.config.agent_queue_threshold,
            };
            if let Some(reason) = inputs.skip_reason() {
                *report.skipped.entry(reason).or_default() += 1;
                continue;
            }
            let spec = backup_core::ScheduleSpec {
                every: row.schedule_every.clone(),
                cron: row.schedule_cron.clone(),
                timezone: row.timezone.clone(),
            };
            let schedule = match Schedule::parse(&spec) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(policy = %policy, error = %e, "a stored schedule does not parse; policy skipped");
                    continue;
                }
            };
            let slot = row.next_due_at;
            let (next_due, missed) = schedule.advance(slot.get(), now.get());
            *due_pending.entry(agent).or_insert(0) += 1;
            creates.push(NewTask {
                id: Uuid::new_v4(),
                tenant: row.tenant_id,
                policy,
                agent,
                kind: row.kind.clone(),
                slot,
                max_retries: row.max_task_retries.unwrap_or(row.agent_max_retries),
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
            // A policy whose insert hit a conflict keeps its due time while the task it met is
            // open (a run-now task, or a racing replica's task for the same slot): the open task
            // is the skip reason. A closed task for the very slot means the slot was served
            // already (a run-now in the same millisecond, a due time written back by a race):
            // the policy moves on, or it would stay due, and skipped, for ever.
            let mut advanced: Vec<&NewTask> = Vec::with_capacity(chunk.len());
            let mut served: Vec<&NewTask> = Vec::new();
            for t in chunk {
                if inserted.contains(&t.policy) {
                    advanced.push(t);
                } else if slot_served(&mut tx, t.policy, t.slot).await? {
                    served.push(t);
                }
            }
            report.skipped_for_conflict(chunk.len() - advanced.len() - served.len());
            report.created += advanced.len() as u64;
            report
                .claimable_agents
                .extend(advanced.iter().map(|t| AgentId::from_uuid(t.agent)));
            report.missed_slots += advanced.iter().map(|t| t.missed).sum::<u64>();
            advanced.extend(served);
            if advanced.is_empty() {
                continue;
            }
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
}

/// Whether the policy's task for `slot` exists and is closed.
async fn slot_served(tx: &mut Tx, policy: Uuid, slot: Ts) -> Result<bool> {
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM tasks WHERE policy_id = $1 AND slot = $2")
            .bind(policy)
            .bind(slot)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(status.is_some_and(|s| !matches!(s.as_str(), "pending" | "claimed" | "running")))
}
