//! The fleet at a glance, for the server's gauges: agents by status, and how long the least
//! recently protected policy has gone without a success.

use backup_core::Protection;

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
        let counts: Vec<(String, i64)> = sqlx::query_as(concat!(
            "SELECT ",
            protection_case!("$1"),
            " AS protection, COUNT(*) FROM policies p WHERE p.deleted_at IS NULL GROUP BY 1"
        ))
        .bind(now)
        .fetch_all(self.read())
        .await?;
        let mut policies: BTreeMap<Protection, u64> =
            Protection::ALL.into_iter().map(|p| (p, 0)).collect();
        for (name, n) in counts {
            policies.insert(
                crate::rows::parse("protection", &name)?,
                u64::try_from(n).unwrap_or(0),
            );
        }
        Ok(FleetSummary {
            agents: by_status,
            enabled_policies: u64::try_from(enabled).unwrap_or(0),
            oldest_success: oldest.map(Ts::get),
            policies,
        })
    }

    /// Every live policy's last success, for the per-policy gauges.
    pub(crate) async fn policy_last_successes(
        &self,
    ) -> Result<Vec<(PolicyId, Option<DateTime<Utc>>)>> {
        let rows: Vec<(Uuid, Option<Ts>)> = sqlx::query_as(
            "SELECT id, last_success_at FROM policies WHERE deleted_at IS NULL ORDER BY id",
        )
        .fetch_all(self.read())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, at)| (PolicyId::from_uuid(id), at.map(Ts::get)))
            .collect())
    }
}
