//! The heartbeat: the agent's load and backoff go out; the settings in force and the tasks to
//! stop come back.

use std::time::Duration;

use backup_core::{GateLimits, Heartbeat, HeartbeatAnswer, SettingsSource};

use super::{AGENT_VERSION, Agent};

impl Agent {
    pub(super) async fn heartbeat_loop(self) {
        let every = Duration::from_secs(u64::from(
            self.inner.config.heartbeat_interval_seconds.max(1),
        ));
        let mut failures = 0u32;
        let mut told_source = false;
        loop {
            let body = self.heartbeat_body();
            let wait = match self.inner.client.heartbeat(&body).await {
                Ok(answer) => {
                    if failures > 0 {
                        tracing::info!(failures, "heartbeat OK after {failures} failures");
                    }
                    failures = 0;
                    if !told_source && answer.settings_source.is_some() {
                        told_source = true;
                        self.tell_ignored_proposals(&answer);
                    }
                    self.apply(answer);
                    self.inner.heartbeat_done.send_replace(true);
                    every
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(10) {
                        tracing::warn!(error = %e, failures, "heartbeat failed; the agent keeps running what it holds");
                    }
                    // Until the first one succeeds, try again soon; afterwards keep the rhythm.
                    let retry = if *self.inner.heartbeat_done.borrow() {
                        every
                    } else {
                        every.min(Duration::from_secs(2))
                    };
                    e.retry_after().map_or(retry, |r| r.max(retry))
                }
            };
            self.write_diagnostics().await;
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.inner.wake_heartbeat.notified() => {}
                () = self.inner.shutdown.cancelled() => return,
            }
        }
    }

    fn heartbeat_body(&self) -> Heartbeat {
        let now = self.now();
        let shared = self.shared();
        let (running, queued): (Vec<_>, Vec<_>) = shared
            .held
            .iter()
            .map(|(id, h)| (*id, h.running))
            .partition(|(_, running)| *running);
        let (backoff_repositories, agent_backoff_seconds) = shared.state.backoff.report(now);
        let backoff_until = shared.state.backoff.latest(now);
        let repositories = shared
            .state
            .repository_ids
            .iter()
            .filter(|(name, _)| self.inner.config.repositories.contains_key(*name))
            .map(|(name, id)| backup_core::RepositoryIdentity {
                name: name.clone(),
                repository_id: id.clone(),
            })
            .collect();
        drop(shared);
        let proposed = self.inner.config.proposed_settings();
        Heartbeat {
            running_tasks: u32::try_from(running.len()).unwrap_or(u32::MAX),
            queue_depth: u32::try_from(queued.len()).unwrap_or(u32::MAX),
            running_task_ids: running.into_iter().map(|(id, _)| id).collect(),
            queued_task_ids: queued.into_iter().map(|(id, _)| id).collect(),
            backoff_until,
            backoff_repositories: Some(backoff_repositories),
            agent_backoff_seconds: Some(agent_backoff_seconds),
            pending_retries: None,
            proposed_settings: (!proposed.is_empty()).then_some(proposed),
            agent_version: Some(AGENT_VERSION.into()),
            restic_version: self.inner.restic_version.map(|v| v.to_string()),
            repositories: Some(repositories),
        }
    }

    /// Once, at the first answer: when the server's copy of the settings rules (someone
    /// PATCHed the agent), the settings keys of this agent's file are ignored; say which differ
    /// and how to hand control back.
    fn tell_ignored_proposals(&self, answer: &HeartbeatAnswer) {
        if answer.settings_source != Some(SettingsSource::Api) {
            return;
        }
        let proposed =
            serde_json::to_value(self.inner.config.proposed_settings()).unwrap_or_default();
        let in_force = serde_json::to_value(answer.settings).unwrap_or_default();
        let differ: Vec<String> = proposed
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(key, value)| in_force.get(key.as_str()) != Some(value))
            .map(|(key, value)| {
                format!(
                    "{key}: {value} in the file, {} in force",
                    in_force[key.as_str()]
                )
            })
            .collect();
        if !differ.is_empty() {
            tracing::warn!(
                differ = %differ.join("; "),
                "the settings in this agent's file are not in force: they were changed through the API (settingsSource: api); PATCH /agents/{{id}}/settings with {{\"source\": \"agent\"}} hands them back to the file"
            );
        }
    }

    fn apply(&self, answer: HeartbeatAnswer) {
        let now = self.now();
        let skew = (answer.server_time - now).num_seconds();
        if skew.abs() > 30 {
            tracing::warn!(
                skew_seconds = skew,
                "this machine's clock differs from the server's by more than 30 s"
            );
        }
        // Settings out of range (a broken or hostile server: `maxConcurrentTasks: 0` would stop
        // the agent) are not applied; the last good ones stay.
        let valid = match answer.settings.validate() {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, settings = %serde_json::to_string(&answer.settings).unwrap_or_default(), "the server sent settings out of range; ignoring them and keeping the settings in force");
                false
            }
        };
        let changed = {
            let mut shared = self.shared();
            shared.last_heartbeat = Some((now, skew));
            let changed = valid && shared.settings != answer.settings;
            if valid {
                shared.settings = answer.settings;
            }
            for id in &answer.cancel_task_ids {
                if let Some(task) = shared.held.get(id) {
                    tracing::info!(task = %id, "the task was cancelled; stopping it without a result");
                    task.cancel.cancel();
                }
            }
            changed
        };
        if changed {
            tracing::info!(settings = %serde_json::to_string(&answer.settings).unwrap_or_default(), "applying new settings");
            self.inner
                .gate
                .set_limits(GateLimits::from(&answer.settings));
            self.inner
                .metrics
                .concurrency_limit
                .set(i64::from(answer.settings.max_concurrent_tasks));
            self.inner.wake_poll.notify_one();
        }
    }
}
