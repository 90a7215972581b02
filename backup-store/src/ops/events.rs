//! The event and audit log. [`record`] writes an event inside the caller's transaction, with
//! one pending delivery for each of the tenant's webhooks that wants its type: the change, its
//! event and its deliveries commit or roll back together. The scheduler's transitions (an
//! agent offline, a policy overdue) are conditional updates (`... WHERE offline_since IS
//! NULL`), so a transition is recorded once also when two replicas find it together.

use backup_core::{Actor, EventType, EventView, Summary};
use serde_json::{Value, json};

use super::*;
use crate::{EventFilter, TransitionReport};

/// Records an event of `tenant` at `now` in the caller's transaction, and its deliveries.
pub(super) async fn record(
    tx: &mut Tx,
    now: Ts,
    tenant: Uuid,
    event_type: EventType,
    actor: Actor,
    subject: Option<Uuid>,
    data: Value,
) -> Result<()> {
    // Time-ordered (v7, monotonic within this process): events of one millisecond list in
    // the order they happened.
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO events (id, tenant_id, type, time, actor, subject_id, data) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(tenant)
    .bind(event_type.as_str())
    .bind(now)
    .bind(actor.as_str())
    .bind(subject)
    .bind(data.to_string())
    .execute(&mut **tx)
    .await?;
    // The webhooks' `events` are JSON arrays of type names: a quoted name is found as text.
    sqlx::query(
        "INSERT INTO webhook_deliveries (webhook_id, event_id, tenant_id, status, attempts, \
         next_attempt_at, created_at) \
         SELECT w.id, $1, $2, 'pending', 0, $3, $3 FROM webhooks w \
         WHERE w.tenant_id = $2 AND w.deleted_at IS NULL \
         AND (w.events LIKE '%\"*\"%' OR w.events LIKE $4)",
    )
    .bind(id)
    .bind(tenant)
    .bind(now)
    .bind(format!("%\"{}\"%", event_type.as_str()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The keys whose values differ between two JSON objects, each with its old and new value.
pub(super) fn changed(old: &Value, new: &Value) -> Value {
    let empty = serde_json::Map::new();
    let (old, new) = (
        old.as_object().unwrap_or(&empty),
        new.as_object().unwrap_or(&empty),
    );
    let mut out = serde_json::Map::new();
    for key in old.keys().chain(new.keys()) {
        let (o, n) = (
            old.get(key).unwrap_or(&Value::Null),
            new.get(key).unwrap_or(&Value::Null),
        );
        if o != n && !out.contains_key(key) {
            out.insert(key.clone(), json!({"old": o, "new": n}));
        }
    }
    Value::Object(out)
}

/// One stored event, as the list reads it.
#[derive(sqlx::FromRow)]
struct EventRow {
    id: Uuid,
    #[sqlx(rename = "type")]
    event_type: String,
    time: Ts,
    actor: String,
    subject_id: Option<Uuid>,
    data: String,
}

impl EventRow {
    fn key(&self) -> Cursor {
        Cursor {
            at: self.time,
            id: self.id,
        }
    }

    fn view(&self) -> Result<EventView> {
        Ok(EventView {
            id: backup_core::EventId::from_uuid(self.id),
            event_type: crate::rows::parse("event type", &self.event_type)?,
            time: self.time.get(),
            actor: crate::rows::parse("actor", &self.actor)?,
            subject_id: self.subject_id,
            data: from_json("event data", &self.data)?,
        })
    }
}

/// A policy that may have turned overdue, as the sweep reads it.
#[derive(sqlx::FromRow)]
struct OverdueRow {
    id: Uuid,
    tenant_id: Uuid,
    agent_id: Uuid,
    name: String,
    last_success_at: Option<Ts>,
    alert_after_seconds: Option<i64>,
}

/// An agent that may have gone quiet, as the sweep reads it.
#[derive(sqlx::FromRow)]
struct QuietRow {
    id: Uuid,
    tenant_id: Uuid,
    name: String,
    last_heartbeat_at: Option<Ts>,
}

/// Transitions one sweep records at most, per kind.
const SWEEP_BATCH: i64 = 1000;

impl Pools {
    pub(crate) async fn list_events(
        &self,
        tenant: TenantId,
        filter: &EventFilter,
        page: &PageRequest,
    ) -> Result<Page<EventView>> {
        let cursor = page.cursor()?;
        let rows = sqlx::query_as::<_, EventRow>(
            "SELECT e.id, e.type, e.time, e.actor, e.subject_id, e.data FROM events e \
             WHERE e.tenant_id = $1 AND ($2 IS NULL OR e.type = $2) \
             AND ($3 IS NULL OR e.subject_id = $3) AND ($4 IS NULL OR e.time >= $4) \
             AND ($5 IS NULL OR e.time < $5 OR (e.time = $5 AND e.id < $6)) \
             ORDER BY e.time DESC, e.id DESC LIMIT $7",
        )
        .bind(*tenant.as_uuid())
        .bind(filter.event_type.map(EventType::as_str))
        .bind(filter.subject_id)
        .bind(filter.since.map(Ts::new))
        .bind(cursor.map(|c| c.at))
        .bind(cursor.map(|c| c.id))
        .bind(page.fetch_limit())
        .fetch_all(self.read())
        .await?;
        page.page_of(&rows, EventRow::key, EventRow::view)
    }

    /// The tenant's fleet at a glance.
    pub(crate) async fn summary(&self, ctx: &Ctx, tenant: TenantId) -> Result<Summary> {
        let now = ctx.now();
        let day_ago = Ts::new(now.get() - TimeDelta::hours(24));
        let mut summary = Summary::default();
        for status in AgentStatus::ALL {
            summary.agents.insert(status.as_str().to_owned(), 0);
        }
        for protection in backup_core::Protection::ALL {
            summary.policies.insert(protection.as_str().to_owned(), 0);
        }
        let sql = format!(
            "SELECT {} FROM agents a WHERE a.tenant_id = $2 AND a.deleted_at IS NULL",
            agent_columns!("$1")
        );
        let agents = sqlx::query_as::<_, AgentRow>(AssertSqlSafe(sql))
            .bind(now)
            .bind(*tenant.as_uuid())
            .fetch_all(self.read())
            .await?;
        for agent in &agents {
            let status = agent.view(&ctx.config, now.get())?.status;
            *summary
                .agents
                .entry(status.as_str().to_owned())
                .or_default() += 1;
        }
        let policies: Vec<(bool, bool, Option<Ts>, Option<Ts>)> = sqlx::query_as(
            "SELECT enabled, failing, last_success_at, alert_deadline FROM policies \
             WHERE tenant_id = $1 AND deleted_at IS NULL",
        )
        .bind(*tenant.as_uuid())
        .fetch_all(self.read())
        .await?;
        for (enabled, failing, last_success, deadline) in &policies {
            let p = backup_core::Protection::of(
                *enabled,
                *failing,
                last_success.map(Ts::get),
                deadline.map(Ts::get),
                now.get(),
            );
            *summary.policies.entry(p.as_str().to_owned()).or_default() += 1;
        }
        summary.oldest_last_success_at = policies
            .iter()
            .filter(|(enabled, ..)| *enabled)
            .filter_map(|(_, _, last, _)| *last)
            .min()
            .map(Ts::get);
        let (failed, added): (i64, Option<i64>) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM tasks WHERE tenant_id = $1 \
             AND status = 'failed_permanently' AND updated_at >= $2), \
             (SELECT SUM(data_added) FROM backup_runs WHERE tenant_id = $1 \
             AND finished_at >= $2 AND status IN ('succeeded', 'partial'))",
        )
        .bind(*tenant.as_uuid())
        .bind(day_ago)
        .fetch_one(self.read())
        .await?;
        summary.failed_permanently_24h = u64::try_from(failed).unwrap_or(0);
        summary.bytes_added_24h = added.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
        Ok(summary)
    }

    /// The scheduler's sweep: agents that went quiet (`agent.offline`) and policies past
    /// their `alertAfter` (`policy.overdue`), each recorded once; and the alert deadlines of
    /// policies that have none yet (rows from before protection, or a new lease).
    pub(crate) async fn sweep_transitions(&self, ctx: &Ctx) -> Result<TransitionReport> {
        let now = ctx.now();
        let mut report = TransitionReport {
            deadlines_set: self.fill_alert_deadlines(ctx).await?,
            ..TransitionReport::default()
        };
        let cutoff =
            Ts::new(now.get() - TimeDelta::seconds(i64::from(ctx.config.offline_after_seconds)));
        let quiet = sqlx::query_as::<_, QuietRow>(
            "SELECT id, tenant_id, name, last_heartbeat_at FROM agents WHERE deleted_at IS NULL \
             AND offline_since IS NULL AND last_heartbeat_at < $1 ORDER BY id LIMIT $2",
        )
        .bind(cutoff)
        .bind(SWEEP_BATCH)
        .fetch_all(self.read())
        .await?;
        let overdue = sqlx::query_as::<_, OverdueRow>(
            "SELECT id, tenant_id, agent_id, name, last_success_at, alert_after_seconds \
             FROM policies WHERE enabled AND deleted_at IS NULL AND overdue_since IS NULL \
             AND NOT failing AND alert_deadline < $1 ORDER BY id LIMIT $2",
        )
        .bind(now)
        .bind(SWEEP_BATCH)
        .fetch_all(self.read())
        .await?;
        if quiet.is_empty() && overdue.is_empty() {
            return Ok(report);
        }
        let mut tx = self.write().await?;
        for agent in &quiet {
            // Conditional: a heartbeat since the read, or another replica's sweep, wins.
            let done = sqlx::query(
                "UPDATE agents SET offline_since = $2 WHERE id = $1 AND offline_since IS NULL \
                 AND deleted_at IS NULL AND last_heartbeat_at < $3",
            )
            .bind(agent.id)
            .bind(now)
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                let data = json!({
                    "agentId": agent.id, "name": agent.name,
                    "lastHeartbeatAt": agent.last_heartbeat_at.map(Ts::get),
                    "offlineAfterSeconds": ctx.config.offline_after_seconds,
                });
                record(
                    &mut tx,
                    now,
                    agent.tenant_id,
                    EventType::AgentOffline,
                    Actor::System,
                    Some(agent.id),
                    data,
                )
                .await?;
                report.offline += 1;
            }
        }
        for policy in &overdue {
            let done = sqlx::query(
                "UPDATE policies SET overdue_since = $2 WHERE id = $1 AND overdue_since IS NULL \
                 AND enabled AND NOT failing AND alert_deadline < $2",
            )
            .bind(policy.id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                let alert_after = policy
                    .alert_after_seconds
                    .and_then(|s| u64::try_from(s).ok())
                    .map(|s| backup_core::human_duration(std::time::Duration::from_secs(s)));
                let data = json!({
                    "policyId": policy.id, "name": policy.name, "agentId": policy.agent_id,
                    "lastSuccessAt": policy.last_success_at.map(Ts::get),
                    "alertAfter": alert_after,
                });
                record(
                    &mut tx,
                    now,
                    policy.tenant_id,
                    EventType::PolicyOverdue,
                    Actor::System,
                    Some(policy.id),
                    data,
                )
                .await?;
                report.overdue += 1;
            }
        }
        tx.commit().await?;
        Ok(report)
    }
}
