//! What the agent checks and cleans up before it works: restic's version, and the restic
//! processes and locks a crashed predecessor left behind.

use std::{collections::HashSet, time::Duration};

use backup_core::{
    AttemptOutcome, AttemptReport, ErrorClass, ProcessControl, ProcessRunner, ProcessSpec,
};

use super::Agent;
use crate::{
    AgentError,
    restic::{self, Command, ResticVersion},
    runner,
    state::{OutboxEntry, ProcessRecord},
};

impl Agent {
    /// Kills restic processes recorded by a previous run that are still alive, reports their
    /// attempts as failed (so the server retries them now instead of after a lease), and
    /// removes the locks they left.
    pub(super) async fn clean_up_after_a_crash(&self) {
        let leftovers: Vec<ProcessRecord> = self.shared().state.processes.clone();
        if leftovers.is_empty() {
            return;
        }
        let mut repositories = HashSet::new();
        for record in &leftovers {
            let alive = crate::state::process_start_ticks(record.pgid);
            // Only the very process recorded is killed: a pid the system has given to another
            // process since (a different start time, or none recorded to compare) is left alone.
            let same_process = match (alive, record.start_ticks) {
                (Some(now), Some(then)) => now == then,
                (Some(_), None) | (None, _) => false,
            };
            if alive.is_some() && !same_process {
                tracing::info!(pgid = record.pgid, task = %record.task_id, "a process with a recorded restic's pid runs, but it is not that restic (its start time differs); left alone");
            }
            if same_process && runner::signal_group(record.pgid, nix::sys::signal::Signal::SIGKILL)
            {
                tracing::warn!(pgid = record.pgid, task = %record.task_id, "killed a restic process left over by a previous agent");
            }
            repositories.insert(record.repository.clone());
        }
        let now = self.now();
        self.persist(|shared| {
            let s = &mut shared.state;
            for record in &leftovers {
                let already = s
                    .outbox
                    .iter()
                    .any(|e| e.task_id == record.task_id && e.report.attempt == record.attempt);
                if !already {
                    let mut report = AttemptReport::new(record.attempt, AttemptOutcome::Failed);
                    report.error_kind = Some(ErrorClass::Retriable);
                    report.error = Some("the agent stopped during this attempt (crash or kill); its restic process was killed at restart".into());
                    report.finished_at = Some(now);
                    s.outbox.push(OutboxEntry::new(record.task_id, report));
                }
            }
            s.processes.clear();
        })
        .await;
        for name in repositories {
            if let Some(repo) = self.inner.config.repositories.get(&name) {
                self.restic_unlock(&name, repo).await;
            }
        }
    }
}

/// restic's version, from `restic version`: also the proof that the binary is restic.
pub(super) async fn detect_version(
    runner: &dyn ProcessRunner,
    binary: &std::path::Path,
) -> Result<ResticVersion, AgentError> {
    let mut spec = ProcessSpec::new(binary).args(restic::arguments(&Command::Version, None));
    spec.timeout = Some(Duration::from_secs(30));
    let outcome = runner.run(spec, ProcessControl::none()).await.map_err(|e| {
        AgentError::Restic(format!(
            "cannot run restic ({}): {e}; install it (Debian: apt-get install restic) or set resticBinary",
            binary.display()
        ))
    })?;
    ResticVersion::parse(&outcome.stdout_tail).ok_or_else(|| {
        AgentError::Restic(format!(
            "{} does not look like restic: `version` printed {:?}",
            binary.display(),
            outcome.stdout_tail.trim()
        ))
    })
}
