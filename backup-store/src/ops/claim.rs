//! Handing due tasks to their agent (leased, with the next attempt number) and marking the
//! claimed attempt running.

use super::*;

/// A claimed task with what the agent needs of its policy (none for a restore or a listing).
#[derive(sqlx::FromRow)]
struct ClaimedRow {
    #[sqlx(flatten)]
    task: TaskRow,
    timeout_minutes: Option<i32>,
    paths: Option<String>,
    excludes: Option<String>,
    policy_repository: Option<String>,
    retention: Option<String>,
}

/// A task's repository: its own (a restore or a listing) or its policy's.
const TASK_REPOSITORY: &str =
    "COALESCE(t.repository, (SELECT p.repository FROM policies p WHERE p.id = t.policy_id))";

/// How often a waiting claim looks again while one of its agent's due tasks is held back by
/// the coordination of a shared repository.
const HELD_BACK_RECHECK: TimeDelta = TimeDelta::seconds(2);

/// The coordination of a repository shared across hosts (agents reporting the same restic
/// id): an exclusive task (check, prune) is not handed out while any other task on that
/// repository is claimed or running on any agent; a backup or restore is not handed out while
/// an exclusive task on it is claimed, running, or due for an online agent (so that a waiting
/// prune is not starved by a stream of backups). `$online` is the parameter holding the time
/// after which a heartbeat counts as online.
fn shared_repository_clause(online: usize) -> String {
    let same_repository = format!(
        "SELECT o.id, o.kind, o.status, o.next_retry_at, o.agent_id FROM agent_repositories me \
         JOIN agent_repositories other ON other.tenant_id = me.tenant_id \
         AND other.repository_id = me.repository_id \
         JOIN tasks o ON o.agent_id = other.agent_id AND o.id <> t.id \
         AND other.name = COALESCE(o.repository, (SELECT p2.repository FROM policies p2 WHERE p2.id = o.policy_id)) \
         WHERE me.agent_id = t.agent_id AND me.name = {TASK_REPOSITORY}"
    );
    format!(
        " AND NOT (t.kind IN ('check', 'prune') AND EXISTS (SELECT 1 FROM ({same_repository}) s \
         WHERE s.status IN ('claimed', 'running') AND s.kind <> 'ls')) \
         AND NOT (t.kind IN ('backup', 'restore') AND EXISTS (SELECT 1 FROM ({same_repository}) s \
         WHERE s.kind IN ('check', 'prune') AND (s.status IN ('claimed', 'running') \
         OR (s.status = 'pending' AND (s.next_retry_at IS NULL OR s.next_retry_at <= $3) \
         AND EXISTS (SELECT 1 FROM agents oa WHERE oa.id = s.agent_id AND oa.last_heartbeat_at >= ${online})))))"
    )
}

impl Pools {
    /// The earliest time one of the agent's pending tasks may become claimable by the passing
    /// of time: a retry's backoff ends, or a backoff the agent reported (its own or a
    /// repository's), if any. A due task that a claim just left where it is (held back by a
    /// shared repository's check or prune, which no wake-up announces when it ends) is looked
    /// at again after `HELD_BACK_RECHECK`.
    pub(crate) async fn next_claimable_at(&self, ctx: &Ctx, agent: AgentId) -> Result<Option<Ts>> {
        let now = ctx.now();
        let retry: Option<Ts> = sqlx::query_scalar(
            "SELECT MIN(next_retry_at) FROM tasks WHERE agent_id = $1 AND status = 'pending' \
             AND next_retry_at > $2",
        )
        .bind(*agent.as_uuid())
        .bind(now)
        .fetch_one(self.read())
        .await?;
        let backoff: Option<(Option<Ts>, String)> = sqlx::query_as(
            "SELECT agent_backoff_until, backoff_repositories FROM agents WHERE id = $1",
        )
        .bind(*agent.as_uuid())
        .fetch_optional(self.read())
        .await?;
        let mut ends: Vec<Ts> = retry.into_iter().collect();
        if let Some((whole, repositories)) = backoff {
            ends.extend(whole);
            let repositories: Vec<RepositoryBackoffView> =
                from_json("backoff repositories", &repositories)?;
            ends.extend(repositories.iter().map(|r| Ts::new(r.backoff_until)));
        }
        // Without a backoff of its own, a due task the claim did not hand out is held back by
        // a repository shared with a check or a prune: that ends with a result, maybe on
        // another replica or for another agent, which wakes no one here.
        if !ends.iter().any(|t| *t > now) && self.any_due(agent, now).await? {
            ends.push(Ts::new(now.get() + HELD_BACK_RECHECK));
        }
        Ok(ends.into_iter().filter(|t| *t > now).min())
    }

    /// Whether the agent has a pending task whose retry (if any) is due, read from a reader.
    async fn any_due(&self, agent: AgentId, now: Ts) -> Result<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM tasks t WHERE t.agent_id = $1 AND t.status = 'pending' \
             AND (t.next_retry_at IS NULL OR t.next_retry_at <= $2))",
        )
        .bind(*agent.as_uuid())
        .bind(now)
        .fetch_one(self.read())
        .await?)
    }

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
        if !self.any_due(agent, now).await? {
            return Ok(ClaimAnswer::default());
        }
        let mut tx = self.write().await?;
        // Tasks on a repository the agent reported in backoff stay here until it ends: the
        // agent would only hold them (and their slots) while it waits.
        let backoff: Option<(Option<Ts>, String)> = sqlx::query_as(
            "SELECT agent_backoff_until, backoff_repositories FROM agents WHERE id = $1",
        )
        .bind(agent_uuid)
        .fetch_optional(&mut *tx)
        .await?;
        let mut backed_off: Vec<String> = Vec::new();
        if let Some((whole, repositories)) = backoff {
            if whole.is_some_and(|until| until > now) {
                tx.commit().await?;
                return Ok(ClaimAnswer::default());
            }
            let repositories: Vec<RepositoryBackoffView> =
                from_json("backoff repositories", &repositories)?;
            backed_off = repositories
                .into_iter()
                .filter(|r| r.backoff_until > now.get())
                .map(|r| r.repository)
                .collect();
        }
        let online_since =
            Ts::new(now.get() - TimeDelta::seconds(i64::from(ctx.config.offline_after_seconds)));
        let caps = TaskKind::ALL.map(|kind| req.per_kind.map_or(limit, |p| p.get(kind).min(limit)));
        // One query when no kind is capped below the limit, else one per kind.
        let queries: Vec<(Option<TaskKind>, u32)> = if caps.iter().all(|&cap| cap == limit) {
            vec![(None, limit)]
        } else {
            TaskKind::ALL
                .into_iter()
                .zip(caps)
                .filter(|(_, cap)| *cap > 0)
                .map(|(kind, cap)| (Some(kind), cap))
                .collect()
        };
        let mut candidates: Vec<(Ts, Uuid)> = Vec::new();
        for (kind, cap) in queries {
            let excluded = if backed_off.is_empty() {
                String::new()
            } else {
                format!(
                    " AND {TASK_REPOSITORY} NOT IN ({})",
                    placeholders(5, backed_off.len())
                )
            };
            let shared = shared_repository_clause(5 + backed_off.len());
            let sql = format!(
                "SELECT t.slot, t.id FROM tasks t WHERE t.agent_id = $1 AND t.status = 'pending' \
                 AND ($2 IS NULL OR t.kind = $2) AND (t.next_retry_at IS NULL OR t.next_retry_at <= $3)\
                 {excluded}{shared} ORDER BY t.slot, t.id LIMIT $4{}",
                skip_locked!("t")
            );
            let mut q = sqlx::query_as::<_, (Ts, Uuid)>(AssertSqlSafe(sql))
                .bind(agent_uuid)
                .bind(kind.map(TaskKind::as_str))
                .bind(now)
                .bind(i64::from(cap));
            for repository in &backed_off {
                q = q.bind(repository);
            }
            q = q.bind(online_since);
            candidates.extend(q.fetch_all(&mut *tx).await?);
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
            "SELECT {TASK_COLUMNS}, p.timeout_minutes, p.paths, p.excludes, \
             p.repository AS policy_repository, p.retention \
             FROM tasks t LEFT JOIN policies p ON p.id = t.policy_id WHERE t.id IN ({}) \
             ORDER BY t.slot, t.id",
            placeholders(1, ids.len())
        );
        let mut q = sqlx::query_as::<_, ClaimedRow>(AssertSqlSafe(sql));
        for id in &ids {
            q = q.bind(*id);
        }
        let rows = q.fetch_all(&mut *tx).await?;
        tx.commit().await?;
        let mut tasks = Vec::with_capacity(rows.len());
        let list = |what: &str, json: Option<&str>| -> Result<Vec<String>> {
            json.map_or(Ok(Vec::new()), |j| from_json(what, j))
        };
        for row in rows {
            let view = row.task.view()?;
            tasks.push(ClaimedTask {
                id: view.id,
                policy_id: view.policy_id,
                kind: view.kind,
                attempt: view.attempt,
                retry_count: view.retry_count,
                max_retries: view.max_retries,
                next_retry_at: view.next_retry_at,
                timeout_minutes: row.timeout_minutes.and_then(|t| u32::try_from(t).ok()),
                paths: list("policy paths", row.paths.as_deref())?,
                excludes: list("policy excludes", row.excludes.as_deref())?,
                repository: view
                    .repository
                    .or(row.policy_repository)
                    .unwrap_or_default(),
                retention: row
                    .retention
                    .as_deref()
                    .map(|r| from_json("retention", r))
                    .transpose()?,
                request: view.request,
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
}
