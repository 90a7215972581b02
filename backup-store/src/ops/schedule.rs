//! The scheduler's tick: due policies become tasks (or stay due with a skip reason).

use std::collections::HashSet;

use super::*;

/// Tasks inserted per statement (one bound policy id each).
const INSERT_CHUNK: usize = 500;
/// Due times advanced per statement (a `CASE` of this many arms: small, it is linear per row).
const UPDATE_CHUNK: usize = 50;

/// A task to create (its row is made by the database from the policy's) and where the
/// policy's due time goes.
struct NewTask {
    policy: Uuid,
    agent: Uuid,
    slot: Ts,
    next_due: Ts,
    missed: u64,
}

/// A due policy with what the dispatch decision needs of its agent.
#[derive(sqlx::FromRow)]
struct DuePolicy {
    id: Uuid,
    agent_id: Uuid,
    schedule_every: Option<String>,
    schedule_cron: Option<String>,
    timezone: Option<String>,
    repository: String,
    next_due_at: Ts,
    last_heartbeat_at: Option<Ts>,
    queue_depth: i32,
    agent_backoff_until: Option<Ts>,
    backoff_repositories: String,
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
            "SELECT p.id, p.agent_id, p.schedule_every, p.schedule_cron, ",
            "p.timezone, p.repository, p.next_due_at, ",
            "a.last_heartbeat_at, COALESCE(a.queue_depth, 0) AS queue_depth, a.agent_backoff_until, ",
            "a.backoff_repositories, ",
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
                policy,
                agent,
                slot,
                next_due: Ts::new(next_due),
                missed,
            });
        }

        // The task rows are generated inside the database from the policies' own rows (one
        // bound id per task, not eight values): the driver's per-value cost dominated the tick
        // when every policy was due. The slot is the due time read above, in this transaction.
        for chunk in creates.chunks(INSERT_CHUNK) {
            let sql = format!(
                concat!(
                    "INSERT INTO tasks (id, tenant_id, policy_id, agent_id, kind, status, ",
                    "created_at, updated_at, retry_count, max_retries, failed_permanently, slot) ",
                    "SELECT ",
                    new_uuid!(),
                    ", p.tenant_id, p.id, p.agent_id, p.kind, 'pending', $1, $1, 0, ",
                    "COALESCE(p.max_task_retries, a.max_retries), FALSE, p.next_due_at ",
                    "FROM policies p JOIN agents a ON a.id = p.agent_id WHERE p.id IN ({}) ",
                    "ON CONFLICT DO NOTHING RETURNING policy_id"
                ),
                placeholders(2, chunk.len())
            );
            let mut q = sqlx::query_scalar(AssertSqlSafe(sql)).bind(now);
            for t in chunk {
                q = q.bind(t.policy);
            }
            let inserted: HashSet<Uuid> = q.fetch_all(&mut *tx).await?.into_iter().collect();
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
            for part in advanced.chunks(UPDATE_CHUNK) {
                advance_due_times(&mut tx, now, part).await?;
            }
        }
        tx.commit().await?;
        Ok(Some(last_key))
    }
}

/// Moves the policies' due times on, in one statement.
async fn advance_due_times(tx: &mut Tx, now: Ts, tasks: &[&NewTask]) -> Result<()> {
    let mut cases = String::new();
    let mut args = Args::default();
    add(&mut args, now)?;
    for (i, t) in tasks.iter().enumerate() {
        cases.push_str(&format!(" WHEN ${} THEN ${}", 2 * i + 2, 2 * i + 3));
        add(&mut args, t.policy)?;
        add(&mut args, t.next_due)?;
    }
    let ids = (0..tasks.len())
        .map(|i| format!("${}", 2 * i + 2))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "UPDATE policies SET next_due_at = CASE id{cases} END, updated_at = $1 WHERE id IN ({ids})"
    );
    sqlx::query_with(AssertSqlSafe(sql), args)
        .execute(&mut **tx)
        .await?;
    Ok(())
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
