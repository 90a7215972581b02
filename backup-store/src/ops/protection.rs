//! A policy's protection in the database: the `alertAfter` in force and the deadline past
//! which the policy is overdue (from its last success, its creation, or its re-enabling), the
//! `failing` flag, and what a task's end records (a permanent failure, a success after
//! retries, a recovery, a restore's outcome).

use std::time::Duration;

use backup_core::{Actor, EventType, default_alert_after, parse_alert_after};
use serde_json::json;

use super::events::record;
use super::*;

/// The `alertAfter` in force for a policy: its own, else the default of its schedule.
pub(super) fn alert_after(spec: &PolicySpec, schedule: &Schedule, ctx: &Ctx, now: Ts) -> Duration {
    spec.alert_after
        .as_deref()
        .and_then(|text| parse_alert_after(text).ok())
        .unwrap_or_else(|| {
            let lease = Duration::from_secs(u64::from(ctx.config.lease_seconds));
            default_alert_after(schedule, now.get(), lease)
        })
}

/// `base + alert_after`, saturating.
fn deadline(base: Ts, alert_after: Duration) -> Ts {
    let delta = TimeDelta::from_std(alert_after).unwrap_or(TimeDelta::MAX);
    Ts::new(
        base.get()
            .checked_add_signed(delta)
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
    )
}

/// Writes a policy's `alertAfter` in force and its deadline, counted from `base`; a policy no
/// longer past it is no longer overdue (its next overdue spell is announced again).
pub(super) async fn set_alert(
    tx: &mut Tx,
    policy: Uuid,
    alert_after: Duration,
    base: Ts,
    now: Ts,
) -> Result<()> {
    let at = deadline(base, alert_after);
    sqlx::query(
        "UPDATE policies SET alert_after_seconds = $2, alert_deadline = $3, \
         overdue_since = CASE WHEN $3 < $4 THEN overdue_since ELSE NULL END WHERE id = $1",
    )
    .bind(policy)
    .bind(i64::try_from(alert_after.as_secs()).unwrap_or(i64::MAX))
    .bind(at)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// What the protection needs of a policy when its task ends.
#[derive(sqlx::FromRow)]
struct PolicyState {
    tenant_id: Uuid,
    name: String,
    alert_after_seconds: Option<i64>,
    overdue_since: Option<Ts>,
    failing: bool,
}

async fn policy_state(tx: &mut Tx, policy: Uuid) -> Result<Option<PolicyState>> {
    Ok(sqlx::query_as::<_, PolicyState>(
        "SELECT tenant_id, name, alert_after_seconds, overdue_since, failing FROM policies \
         WHERE id = $1",
    )
    .bind(policy)
    .fetch_optional(&mut **tx)
    .await?)
}

impl Pools {
    /// Sets the alert deadline of enabled policies that have none (rows from before
    /// protection); at most a batch per call. Returns how many.
    pub(crate) async fn fill_alert_deadlines(&self, ctx: &Ctx) -> Result<u64> {
        let now = ctx.now();
        let sql = format!(
            "SELECT {POLICY_COLUMNS} FROM policies p WHERE p.enabled AND p.deleted_at IS NULL \
             AND p.alert_deadline IS NULL ORDER BY p.id LIMIT 1000"
        );
        let rows = sqlx::query_as::<_, PolicyRow>(AssertSqlSafe(sql))
            .fetch_all(self.read())
            .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut tx = self.write().await?;
        for row in &rows {
            let spec = row.spec()?;
            let Ok(schedule) = Schedule::parse(&spec.schedule) else {
                continue;
            };
            let base = row.last_success_at.unwrap_or(row.created_at);
            set_alert(
                &mut tx,
                row.id,
                alert_after(&spec, &schedule, ctx, now),
                base,
                now,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(u64::try_from(rows.len()).unwrap_or(u64::MAX))
    }
}

/// A task ended in success at `at`: the policy's deadline moves on, it is no longer failing
/// or overdue (`policy.recovered` if it was), and a success after retries or a restore is
/// recorded.
pub(super) async fn task_succeeded(tx: &mut Tx, now: Ts, at: Ts, task: &TaskRow) -> Result<()> {
    let kind = task.kind()?;
    let data = json!({
        "taskId": task.id, "policyId": task.policy_id, "agentId": task.agent_id,
        "kind": kind.as_str(), "attempt": task.started_attempt.max(task.attempt),
        "retries": task.retry_count,
    });
    let tenant = task_tenant(tx, task.id).await?;
    if kind == TaskKind::Restore {
        let mut data = data.clone();
        data["request"] = serde_json::to_value(task.request()?).unwrap_or_default();
        record(
            tx,
            now,
            tenant,
            EventType::RestoreSucceeded,
            Actor::Agent,
            Some(task.id),
            data,
        )
        .await?;
    } else if task.retry_count > 0 {
        record(
            tx,
            now,
            tenant,
            EventType::TaskSucceededAfterRetry,
            Actor::Agent,
            Some(task.id),
            data,
        )
        .await?;
    }
    let Some(policy) = task.policy_id else {
        return Ok(());
    };
    let Some(state) = policy_state(tx, policy).await? else {
        return Ok(());
    };
    if let Some(seconds) = state
        .alert_after_seconds
        .and_then(|s| u64::try_from(s).ok())
    {
        let at_deadline = deadline(at, Duration::from_secs(seconds));
        sqlx::query(
            "UPDATE policies SET alert_deadline = $2 WHERE id = $1 \
             AND (alert_deadline IS NULL OR alert_deadline < $2)",
        )
        .bind(policy)
        .bind(at_deadline)
        .execute(&mut **tx)
        .await?;
    }
    let done = sqlx::query(
        "UPDATE policies SET overdue_since = NULL, failing = FALSE WHERE id = $1 \
         AND (overdue_since IS NOT NULL OR failing)",
    )
    .bind(policy)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 1 {
        let from = if state.failing { "failing" } else { "overdue" };
        let data = json!({
            "policyId": policy, "name": state.name, "from": from,
            "overdueSince": state.overdue_since.map(Ts::get), "taskId": task.id,
        });
        record(
            tx,
            now,
            state.tenant_id,
            EventType::PolicyRecovered,
            Actor::Agent,
            Some(policy),
            data,
        )
        .await?;
    }
    Ok(())
}

/// A task failed for good: `task.failed_permanently` (and `restore.failed` for a restore), and
/// its policy is failing.
pub(super) async fn task_failed_permanently(
    tx: &mut Tx,
    now: Ts,
    task: &TaskRow,
    reason: &str,
    error: Option<&str>,
    actor: Actor,
) -> Result<()> {
    let kind = task.kind()?;
    let tenant = task_tenant(tx, task.id).await?;
    let data = json!({
        "taskId": task.id, "policyId": task.policy_id, "agentId": task.agent_id,
        "kind": kind.as_str(), "reason": reason, "error": error,
        "attempt": task.started_attempt.max(task.attempt), "retries": task.retry_count,
    });
    record(
        tx,
        now,
        tenant,
        EventType::TaskFailedPermanently,
        actor,
        Some(task.id),
        data.clone(),
    )
    .await?;
    if kind == TaskKind::Restore {
        record(
            tx,
            now,
            tenant,
            EventType::RestoreFailed,
            actor,
            Some(task.id),
            data,
        )
        .await?;
    }
    if let Some(policy) = task.policy_id {
        sqlx::query("UPDATE policies SET failing = TRUE WHERE id = $1")
            .bind(policy)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

async fn task_tenant(tx: &mut Tx, task: Uuid) -> Result<Uuid> {
    Ok(
        sqlx::query_scalar("SELECT tenant_id FROM tasks WHERE id = $1")
            .bind(task)
            .fetch_one(&mut **tx)
            .await?,
    )
}
