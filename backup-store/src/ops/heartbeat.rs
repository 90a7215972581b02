//! The heartbeat: an agent's load, backoff and proposals in; its settings, renewed leases and
//! cancellations out.

use super::*;

impl Pools {
    /// One heartbeat. Not one transaction: the common case (nothing held, no backoff, no new
    /// proposal) is a single `UPDATE ... RETURNING` in autocommit, which is what lets one
    /// server take a large fleet's heartbeats. Each further step is one idempotent statement,
    /// and the settings adoption is conditional on the source still being `agent`, so a PATCH
    /// that lands in between wins.
    pub(crate) async fn heartbeat(
        &self,
        ctx: &Ctx,
        agent: AgentId,
        hb: &Heartbeat,
    ) -> Result<HeartbeatAnswer> {
        let now = ctx.now();
        let agent_uuid = *agent.as_uuid();
        let pool = self.read_write();
        let (probe_agent, probe_repositories) = backoff_state(
            hb,
            &Settings {
                max_backoff_minutes: u32::MAX / 60,
                ..Settings::default()
            },
            now.get(),
        );
        let reports_backoff = probe_agent.is_some() || !probe_repositories.is_empty();
        let sql = if reports_backoff {
            concat!(
                "UPDATE agents SET running_tasks = $2, queue_depth = $3, pending_retries = $4, ",
                "agent_version = COALESCE($5, agent_version), restic_version = COALESCE($6, restic_version), ",
                "last_heartbeat_at = $7 WHERE id = $1 AND deleted_at IS NULL RETURNING ",
                settings_columns!(""),
                ", (SELECT COUNT(*) FROM tasks t WHERE t.agent_id = agents.id AND t.cancel_notify) AS pending_cancels",
                ", tenant_id, name, offline_since, backoff_announced, reported_repositories"
            )
        } else {
            concat!(
                "UPDATE agents SET running_tasks = $2, queue_depth = $3, pending_retries = $4, ",
                "agent_version = COALESCE($5, agent_version), restic_version = COALESCE($6, restic_version), ",
                "last_heartbeat_at = $7, backoff_until = NULL, agent_backoff_until = NULL, ",
                "backoff_repositories = '[]', backoff_announced = FALSE ",
                "WHERE id = $1 AND deleted_at IS NULL RETURNING ",
                settings_columns!(""),
                ", (SELECT COUNT(*) FROM tasks t WHERE t.agent_id = agents.id AND t.cancel_notify) AS pending_cancels",
                ", tenant_id, name, offline_since, backoff_announced, reported_repositories"
            )
        };
        let row = sqlx::query_as::<_, SettingsRow>(sql)
            .bind(agent_uuid)
            .bind(i32_of(hb.running_tasks))
            .bind(i32_of(hb.queue_depth))
            .bind(i32_of(hb.pending_retries.unwrap_or(0)))
            .bind(hb.agent_version.as_deref())
            .bind(hb.restic_version.as_deref())
            .bind(now)
            .fetch_optional(pool)
            .await?
            .ok_or(StoreError::NotFound("agent"))?;
        let current = row.settings.settings();
        // Written only when it changed (the common heartbeat writes nothing more).
        if let Some(reported) = &hb.repositories
            && repositories::storable_json(reported) != row.reported_repositories
        {
            self.note_repositories(agent_uuid, row.tenant_id, reported)
                .await?;
        }
        if row.offline_since.is_some() || (reports_backoff && !row.backoff_announced) {
            self.heartbeat_transitions(now, agent_uuid, &row, hb, reports_backoff)
                .await?;
        }
        if reports_backoff {
            // Clamped to maxBackoffMinutes from now, replacing the previous state.
            let (agent_until, repositories) = backoff_state(hb, &current, now.get());
            let latest = repositories
                .iter()
                .map(|r| r.backoff_until)
                .chain(agent_until)
                .max();
            sqlx::query(
                "UPDATE agents SET backoff_until = $2, agent_backoff_until = $3, \
                 backoff_repositories = $4 WHERE id = $1",
            )
            .bind(agent_uuid)
            .bind(latest.map(Ts::new))
            .bind(agent_until.map(Ts::new))
            .bind(to_json(&repositories))
            .execute(pool)
            .await?;
        }
        let mut settings = current;
        let source = row.settings.source()?;
        if source == SettingsSource::Agent
            && let Some(proposal) = &hb.proposed_settings
        {
            match current.apply(proposal) {
                Ok(adopted) if adopted != current => {
                    // Adopted with its audit event, in one transaction (actor: the agent).
                    let mut tx = self.write().await?;
                    let done = store_settings(
                        &mut *tx,
                        agent_uuid,
                        &adopted,
                        SettingsSource::Agent,
                        Some(SettingsSource::Agent),
                    )
                    .await?;
                    if done {
                        let changed = events::changed(
                            &serde_json::to_value(current).unwrap_or_default(),
                            &serde_json::to_value(adopted).unwrap_or_default(),
                        );
                        let data = serde_json::json!({
                            "agentId": agent_uuid, "name": row.name, "changed": changed,
                            "proposed": true,
                        });
                        events::record(
                            &mut tx,
                            now,
                            row.tenant_id,
                            backup_core::EventType::AgentSettingsChanged,
                            backup_core::Actor::Agent,
                            Some(agent_uuid),
                            data,
                        )
                        .await?;
                    }
                    tx.commit().await?;
                    if done {
                        settings = adopted;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(agent = %agent, error = %e, "ignoring the agent's invalid settings proposal")
                }
            }
        }

        let held: Vec<Uuid> = hb
            .running_task_ids
            .iter()
            .chain(&hb.queued_task_ids)
            .map(|t| *t.as_uuid())
            .collect();
        let lease = Ts::new(now.get() + ctx.lease());
        let mut cancel_task_ids = Vec::new();
        for chunk in held.chunks(500) {
            let sql = format!(
                "UPDATE tasks SET lease_expires_at = $2 WHERE agent_id = $1 \
                 AND status IN ('claimed', 'running') AND id IN ({})",
                placeholders(3, chunk.len())
            );
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(agent_uuid).bind(lease);
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(pool).await?;
            let sql = format!(
                "SELECT id FROM tasks WHERE agent_id = $1 AND status = 'cancelled' AND id IN ({})",
                placeholders(2, chunk.len())
            );
            let mut q = sqlx::query_scalar::<_, Uuid>(AssertSqlSafe(sql)).bind(agent_uuid);
            for id in chunk {
                q = q.bind(*id);
            }
            cancel_task_ids.extend(q.fetch_all(pool).await?);
        }
        if row.pending_cancels > 0 {
            let notified: Vec<Uuid> = sqlx::query_scalar(
                "UPDATE tasks SET cancel_notify = FALSE WHERE agent_id = $1 AND cancel_notify RETURNING id",
            )
            .bind(agent_uuid)
            .fetch_all(pool)
            .await?;
            for id in notified {
                if !cancel_task_ids.contains(&id) {
                    cancel_task_ids.push(id);
                }
            }
        }
        Ok(HeartbeatAnswer {
            settings,
            settings_source: Some(source),
            server_time: now.get(),
            cancel_task_ids: cancel_task_ids.into_iter().map(TaskId::from_uuid).collect(),
        })
    }
}

impl Pools {
    /// What a heartbeat changes that the log records once: an offline agent is back
    /// (`agent.online`), a backoff begins (`agent.backoff_started`). Each is a conditional
    /// update in one transaction with its event: only the first of two racing heartbeats
    /// records it.
    async fn heartbeat_transitions(
        &self,
        now: Ts,
        agent: Uuid,
        row: &SettingsRow,
        hb: &Heartbeat,
        reports_backoff: bool,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        if let Some(since) = row.offline_since {
            let done = sqlx::query(
                "UPDATE agents SET offline_since = NULL WHERE id = $1 AND offline_since IS NOT NULL",
            )
            .bind(agent)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                let data = serde_json::json!({
                    "agentId": agent, "name": row.name, "offlineSince": since.get(),
                });
                events::record(
                    &mut tx,
                    now,
                    row.tenant_id,
                    backup_core::EventType::AgentOnline,
                    backup_core::Actor::Agent,
                    Some(agent),
                    data,
                )
                .await?;
            }
        }
        if reports_backoff && !row.backoff_announced {
            let done = sqlx::query(
                "UPDATE agents SET backoff_announced = TRUE WHERE id = $1 AND NOT backoff_announced",
            )
            .bind(agent)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                let repositories: Vec<&str> = hb
                    .backoff_repositories
                    .iter()
                    .flatten()
                    .filter(|r| r.remaining_seconds > 0)
                    .map(|r| r.repository.as_str())
                    .collect();
                let data = serde_json::json!({
                    "agentId": agent, "name": row.name, "repositories": repositories,
                    "wholeAgentSeconds": hb.agent_backoff_seconds,
                });
                events::record(
                    &mut tx,
                    now,
                    row.tenant_id,
                    backup_core::EventType::AgentBackoffStarted,
                    backup_core::Actor::Agent,
                    Some(agent),
                    data,
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

/// The backoff state a heartbeat reports, clamped to `maxBackoffMinutes` from now.
fn backoff_state(
    hb: &Heartbeat,
    settings: &Settings,
    now: DateTime<Utc>,
) -> (Option<DateTime<Utc>>, Vec<RepositoryBackoffView>) {
    let cap = i64::from(settings.max_backoff_minutes) * 60;
    let after =
        |secs: u64| now + TimeDelta::seconds(i64::try_from(secs).unwrap_or(i64::MAX).min(cap));
    if hb.backoff_repositories.is_some() || hb.agent_backoff_seconds.is_some() {
        let repositories = hb
            .backoff_repositories
            .iter()
            .flatten()
            .filter(|r| r.remaining_seconds > 0)
            .map(|r| RepositoryBackoffView {
                repository: r.repository.clone(),
                backoff_until: Ts::new(after(r.remaining_seconds)).get(),
            })
            .collect();
        let agent = hb
            .agent_backoff_seconds
            .filter(|s| *s > 0)
            .map(|s| Ts::new(after(s)).get());
        (agent, repositories)
    } else {
        let cap_at = now + TimeDelta::seconds(cap);
        let agent = hb
            .backoff_until
            .filter(|t| *t > now)
            .map(|t| Ts::new(t.min(cap_at)).get());
        (agent, Vec::new())
    }
}
