//! What the soak tells a person when something is wrong: why a policy did not succeed after the
//! faults, and the dumps kept beside the logs when an invariant broke.

use super::{Soak, observer};

impl Soak {
    /// A policy that did not succeed in the quiet period: the policy, its agent and its last
    /// tasks as the server sees them.
    pub(super) async fn why_stuck(&self, id: &str, agent: usize) -> String {
        let api = self.api();
        let policy = api.call("GET", &format!("/policies/{id}"), None).await.1;
        let view = api
            .call(
                "GET",
                &format!("/agents/{}", self.agents[agent].creds.id),
                None,
            )
            .await
            .1;
        let tasks = api.all(&format!("/tasks?policyId={id}")).await;
        // Newest first.
        let last: Vec<String> = tasks
            .iter()
            .take(3)
            .map(|t| {
                format!(
                    "{} {} attempt {} retry {}/{} nextRetryAt {} lastError {}",
                    t["id"],
                    t["status"],
                    t["attempt"],
                    t["retryCount"],
                    t["maxRetries"],
                    t["nextRetryAt"],
                    t["lastError"]
                )
            })
            .collect();
        format!(
            "policy {} ({id}) of {} did not succeed after the faults: nextDueAt {}, enabled {}; agent status {}, running {}, backoffUntil {}; last tasks: {last:#?}",
            policy["name"],
            self.agents[agent].name,
            policy["nextDueAt"],
            policy["enabled"],
            view["status"],
            view["runningTasks"],
            view["backoffUntil"],
        )
    }

    /// What a person needs to find out why an invariant broke, written beside the logs: the
    /// tasks, the runs, the policies, the events, every restic process seen and the journal.
    pub(super) async fn dump(&self, record: &observer::Record) {
        let api = self.api();
        for (file, path) in [
            ("tasks.json", "/tasks"),
            ("runs.json", "/backup-runs"),
            ("policies.json", "/policies"),
            ("events.json", "/events"),
        ] {
            let items = api.all(path).await;
            let text = serde_json::to_string_pretty(&items).unwrap_or_default();
            let _ = std::fs::write(self.world.path(file), text);
        }
        let t0 = self.started;
        let processes: Vec<String> = record
            .processes
            .values()
            .map(|p| {
                format!(
                    "+{:7.1} .. +{:7.1} s  {} pid {} {} task {} attempt {}",
                    p.first.saturating_duration_since(t0).as_secs_f64(),
                    p.last.saturating_duration_since(t0).as_secs_f64(),
                    p.agent,
                    p.pid,
                    p.operation,
                    p.task,
                    p.attempt
                )
            })
            .collect();
        let _ = std::fs::write(self.world.path("processes.txt"), processes.join("\n"));
        let _ = std::fs::write(self.world.path("journal.txt"), self.journal.join("\n"));
    }
}
