//! History retention: finished tasks (with their runs) and events older than
//! `retention.historyDays` are deleted, a batch at a time, so the tables stop growing and no
//! long transaction holds the writer. Open tasks, pending deliveries' events and snapshots stay.

use super::*;

impl Pools {
    /// Deletes up to `batch` finished tasks (and their runs) and `batch` events older than
    /// `before`; returns how many of each.
    pub(crate) async fn purge_history(&self, before: Ts, batch: i64) -> Result<(u64, u64)> {
        let mut tx = self.write().await?;
        let tasks: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM tasks WHERE status IN ('succeeded', 'failed_permanently', 'cancelled') \
             AND updated_at < $1 LIMIT $2",
        )
        .bind(before)
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        delete_ids(
            &mut tx,
            &tasks,
            &["backup_runs WHERE task_id", "tasks WHERE id"],
        )
        .await?;
        // An event goes with its deliveries once none of them is still pending.
        let events: Vec<Uuid> = sqlx::query_scalar(
            "SELECT e.id FROM events e WHERE e.time < $1 AND NOT EXISTS (SELECT 1 FROM \
             webhook_deliveries d WHERE d.event_id = e.id AND d.status = 'pending') LIMIT $2",
        )
        .bind(before)
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        delete_ids(
            &mut tx,
            &events,
            &["webhook_deliveries WHERE event_id", "events WHERE id"],
        )
        .await?;
        tx.commit().await?;
        let n = |v: &Vec<Uuid>| u64::try_from(v.len()).unwrap_or(u64::MAX);
        Ok((n(&tasks), n(&events)))
    }
}

/// `DELETE FROM <table WHERE column> IN (ids)` for each of `wheres` in turn, 500 ids a statement.
async fn delete_ids(tx: &mut Tx, ids: &[Uuid], wheres: &[&str]) -> Result<()> {
    for chunk in ids.chunks(500) {
        let list = placeholders(1, chunk.len());
        for target in wheres {
            let mut q = sqlx::query(AssertSqlSafe(format!("DELETE FROM {target} IN ({list})")));
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(&mut **tx).await?;
        }
    }
    Ok(())
}
