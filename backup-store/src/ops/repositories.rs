//! Repository identity: which repositories an agent has, by its name for them and restic's
//! own id. Two agents with the same id share one repository (across hosts, whatever they
//! call it); the claim coordinates tasks on it (`claim.rs`), and a policy or a restore naming
//! a repository the agent does not report is refused once it reported any.

use backup_core::RepositoryIdentity;

use super::*;

/// The most repositories one report keeps.
const MAX_REPORTED: usize = 1000;

/// A report made storable: valid names, 64-hex ids (lowercase), each name once, sorted.
fn storable(reported: &[RepositoryIdentity]) -> Vec<RepositoryIdentity> {
    let mut clean: Vec<RepositoryIdentity> = reported
        .iter()
        .filter(|r| backup_core::validate_repository_name(&r.name).is_ok())
        .filter(|r| {
            r.repository_id.len() == 64 && r.repository_id.bytes().all(|b| b.is_ascii_hexdigit())
        })
        .map(|r| RepositoryIdentity {
            name: r.name.clone(),
            repository_id: r.repository_id.to_ascii_lowercase(),
        })
        .collect();
    clean.sort_by(|a, b| a.name.cmp(&b.name));
    clean.dedup_by(|a, b| a.name == b.name);
    clean.truncate(MAX_REPORTED);
    clean
}

/// The stored form of a report, to compare with what is stored.
pub(super) fn storable_json(reported: &[RepositoryIdentity]) -> String {
    to_json(&storable(reported))
}

impl Pools {
    /// Replaces what `agent` reported of its repositories, when it changed.
    pub(crate) async fn note_repositories(
        &self,
        agent: Uuid,
        tenant: Uuid,
        reported: &[RepositoryIdentity],
    ) -> Result<()> {
        let clean = storable(reported);
        let json = to_json(&clean);
        let mut tx = self.write().await?;
        let changed = sqlx::query(
            "UPDATE agents SET reported_repositories = $2 WHERE id = $1 AND reported_repositories <> $2",
        )
        .bind(agent)
        .bind(&json)
        .execute(&mut *tx)
        .await?;
        if changed.rows_affected() == 0 {
            return Ok(());
        }
        sqlx::query("DELETE FROM agent_repositories WHERE agent_id = $1")
            .bind(agent)
            .execute(&mut *tx)
            .await?;
        for r in &clean {
            sqlx::query(
                "INSERT INTO agent_repositories (agent_id, name, tenant_id, repository_id) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(agent)
            .bind(&r.name)
            .bind(tenant)
            .bind(&r.repository_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Refuses `name` for `agent` when the agent reported its repositories and `name` is not one
/// of them (an agent that reported none yet may have it: its first report tells).
pub(super) async fn ensure_agent_has(tx: &mut Tx, agent: Uuid, name: &str) -> Result<()> {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT name FROM agent_repositories WHERE agent_id = $1 ORDER BY name")
            .bind(agent)
            .fetch_all(&mut **tx)
            .await?;
    if names.is_empty() || names.iter().any(|n| n == name) {
        return Ok(());
    }
    Err(StoreError::Validation(backup_core::Error::invalid(
        "repository",
        name,
        format!("a repository the agent reports: {}", names.join(", ")),
    )))
}
