//! The fleet at a glance, for the server's gauges: agents by status, and how long the least
//! recently protected policy has gone without a success.

use super::*;

impl Pools {
    pub(crate) async fn fleet_summary(&self, ctx: &Ctx) -> Result<FleetSummary> {
        let now = ctx.now();
        let agents: Vec<(Option<Ts>, Option<Ts>, i32, i64)> = sqlx::query_as(
            "SELECT a.last_heartbeat_at, a.backoff_until, COALESCE(a.queue_depth, 0), \
             COALESCE(d.n, 0) FROM agents a LEFT JOIN \
             (SELECT agent_id, COUNT(*) AS n FROM tasks WHERE status = 'pending' \
              AND (next_retry_at IS NULL OR next_retry_at <= $1) GROUP BY agent_id) d \
             ON d.agent_id = a.id WHERE a.deleted_at IS NULL",
        )
        .bind(now)
        .fetch_all(self.read())
        .await?;
        let offline_after = TimeDelta::seconds(i64::from(ctx.config.offline_after_seconds));
        let mut by_status: BTreeMap<AgentStatus, u64> =
            AgentStatus::ALL.into_iter().map(|s| (s, 0)).collect();
        for (seen, backoff_until, queued, due) in agents {
            let inputs = StatusInputs {
                now: now.get(),
                last_heartbeat_at: seen.map(Ts::get),
                offline_after,
                backoff_until: backoff_until.map(Ts::get),
                queue_depth: u32::try_from(i64::from(queued.max(0)) + due).unwrap_or(u32::MAX),
                queue_threshold: ctx.config.agent_queue_threshold,
            };
            *by_status.entry(inputs.status()).or_default() += 1;
        }
        let (oldest, enabled): (Option<Ts>, i64) = sqlx::query_as(
            "SELECT MIN(COALESCE(last_success_at, created_at)), COUNT(*) FROM policies \
             WHERE enabled AND deleted_at IS NULL",
        )
        .fetch_one(self.read())
        .await?;
        Ok(FleetSummary {
            agents: by_status,
            enabled_policies: u64::try_from(enabled).unwrap_or(0),
            oldest_success: oldest.map(Ts::get),
        })
    }
}
