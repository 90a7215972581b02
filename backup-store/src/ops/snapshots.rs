//! Snapshots: an agent's report replaces its list for one repository (so what a prune forgot
//! disappears); the tenant reads them newest first, with the sizes of the run that made each
//! where restic's own summary has none.

use backup_core::{SnapshotReport, SnapshotView, SnapshotsStored};

use super::*;
use crate::SnapshotFilter;

/// One stored snapshot, as the list reads it.
#[derive(sqlx::FromRow)]
struct SnapshotRow {
    row_id: Uuid,
    snapshot_id: String,
    agent_id: Uuid,
    repository: String,
    policy_id: Option<Uuid>,
    time: Ts,
    hostname: String,
    paths: String,
    tags: String,
    files_new: Option<i64>,
    data_added: Option<i64>,
    total_bytes: Option<i64>,
}

impl SnapshotRow {
    fn key(&self) -> Cursor {
        Cursor {
            at: self.time,
            id: self.row_id,
        }
    }

    fn view(&self) -> Result<SnapshotView> {
        let size = |v: Option<i64>| v.and_then(|n| u64::try_from(n).ok());
        Ok(SnapshotView {
            id: self.snapshot_id.clone(),
            short_id: self.snapshot_id.chars().take(8).collect(),
            agent_id: AgentId::from_uuid(self.agent_id),
            repository: self.repository.clone(),
            policy_id: self.policy_id.map(PolicyId::from_uuid),
            time: self.time.get(),
            hostname: self.hostname.clone(),
            paths: from_json("snapshot paths", &self.paths)?,
            tags: from_json("snapshot tags", &self.tags)?,
            files_new: size(self.files_new),
            data_added: size(self.data_added),
            total_bytes: size(self.total_bytes),
        })
    }
}

/// A size from the run that made the snapshot (restic 0.14 reports the 8-digit short id).
macro_rules! from_run {
    ($column:literal) => {
        concat!(
            "COALESCE(s.",
            $column,
            ", (SELECT r.",
            $column,
            " FROM backup_runs r WHERE r.agent_id = s.agent_id AND r.",
            $column,
            " IS NOT NULL AND r.snapshot_id IN (s.snapshot_id, substr(s.snapshot_id, 1, 8)) LIMIT 1)) AS ",
            $column
        )
    };
}

/// Rows per insert statement, and the columns of each.
const INSERT_CHUNK: usize = 50;
const COLUMNS: usize = 13;

impl Pools {
    pub(crate) async fn replace_snapshots(
        &self,
        agent: AgentId,
        repository: &str,
        snapshots: &[SnapshotReport],
        truncated: bool,
    ) -> Result<SnapshotsStored> {
        let mut tx = self.write().await?;
        let tenant: Uuid =
            sqlx::query_scalar("SELECT tenant_id FROM agents WHERE id = $1 AND deleted_at IS NULL")
                .bind(*agent.as_uuid())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound("agent"))?;
        sqlx::query("DELETE FROM snapshots WHERE agent_id = $1 AND repository = $2")
            .bind(*agent.as_uuid())
            .bind(repository)
            .execute(&mut *tx)
            .await?;
        for chunk in snapshots.chunks(INSERT_CHUNK) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| format!("({})", placeholders(i * COLUMNS + 1, COLUMNS)))
                .collect();
            let sql = format!(
                "INSERT INTO snapshots (row_id, tenant_id, agent_id, repository, snapshot_id, \
                 time, hostname, paths, tags, policy_id, files_new, data_added, total_bytes) \
                 VALUES {}",
                values.join(", ")
            );
            let mut args = Args::default();
            for s in chunk {
                let summary = s.summary.clone().unwrap_or_default();
                let size = |v: Option<u64>| v.and_then(|n| i64::try_from(n).ok());
                add(&mut args, Uuid::new_v4())?;
                add(&mut args, tenant)?;
                add(&mut args, *agent.as_uuid())?;
                add(&mut args, repository.to_owned())?;
                add(&mut args, s.id.clone())?;
                add(&mut args, Ts::new(s.time))?;
                add(&mut args, s.hostname.clone())?;
                add(&mut args, to_json(&s.paths))?;
                add(&mut args, to_json(&s.tags))?;
                add(&mut args, s.policy_id().map(|p| *p.as_uuid()))?;
                add(&mut args, size(summary.files_new))?;
                add(&mut args, size(summary.data_added))?;
                add(&mut args, size(summary.total_bytes))?;
            }
            sqlx::query_with(AssertSqlSafe(sql), args)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(SnapshotsStored {
            stored: u32::try_from(snapshots.len()).unwrap_or(u32::MAX),
            truncated,
        })
    }

    pub(crate) async fn list_snapshots(
        &self,
        tenant: TenantId,
        filter: &SnapshotFilter,
        page: &PageRequest,
    ) -> Result<Page<SnapshotView>> {
        let cursor = page.cursor()?;
        let sql = concat!(
            "SELECT s.row_id, s.snapshot_id, s.agent_id, s.repository, s.policy_id, s.time, ",
            "s.hostname, s.paths, s.tags, ",
            from_run!("files_new"),
            ", ",
            from_run!("data_added"),
            ", s.total_bytes FROM snapshots s WHERE s.tenant_id = $1 ",
            "AND ($2 IS NULL OR s.agent_id = $2) AND ($3 IS NULL OR s.repository = $3) ",
            "AND ($4 IS NULL OR s.policy_id = $4) ",
            "AND ($5 IS NULL OR s.time < $5 OR (s.time = $5 AND s.row_id < $6)) ",
            "ORDER BY s.time DESC, s.row_id DESC LIMIT $7"
        );
        let rows = sqlx::query_as::<_, SnapshotRow>(sql)
            .bind(*tenant.as_uuid())
            .bind(filter.agent_id.map(|a| *a.as_uuid()))
            .bind(filter.repository.as_deref())
            .bind(filter.policy_id.map(|p| *p.as_uuid()))
            .bind(cursor.map(|c| c.at))
            .bind(cursor.map(|c| c.id))
            .bind(page.fetch_limit())
            .fetch_all(self.read())
            .await?;
        page.page_of(&rows, SnapshotRow::key, SnapshotRow::view)
    }
}
