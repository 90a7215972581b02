//! One held task, from claim to result: wait for the repository lock and a slot of the gate
//! (a task whose repository is in backoff is handed back instead, so that it does not hold a
//! slot while it waits); tell the server it starts; run restic; and put the result in the
//! outbox in the same state-file write that forgets restic's process and records what the
//! attempt did to the repository's backoff.

use std::time::Duration;

use backup_core::{AttemptOutcome, AttemptReport, ClaimedTask, ErrorClass, TaskKind};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::{Agent, Shared};
use crate::{
    ClientError,
    metrics::{KindLabels, TaskLabels},
    repo_backoff::{Entered, Scope},
    state::OutboxEntry,
};

/// An attempt that ended with a result to report.
#[derive(Debug)]
pub(super) struct Finished {
    pub(super) report: AttemptReport,
    /// What the attempt means for backoff.
    pub(super) backoff: Option<BackoffChange>,
}

/// What an attempt does to the backoff of its repository or of the whole agent.
#[derive(Debug)]
pub(super) enum BackoffChange {
    /// restic worked there: the repository's and the agent's failure counts reset.
    Success(String),
    /// A retriable failure counted against the scope.
    Failure {
        /// The repository, or the whole agent (restic missing, disk full).
        scope: Scope,
        /// restic's words, for the "Entering backoff" line.
        message: String,
    },
}

impl Finished {
    pub(super) fn new(report: AttemptReport, backoff: Option<BackoffChange>) -> Self {
        Self { report, backoff }
    }

    /// A failure before or instead of restic: a report of class `class`.
    pub(super) fn failed(
        attempt: u32,
        class: ErrorClass,
        message: String,
        backoff: Option<Scope>,
    ) -> Self {
        let mut report = AttemptReport::new(attempt, AttemptOutcome::Failed);
        report.error_kind = Some(class);
        report.error = Some(message.clone());
        Self::new(
            report,
            backoff.map(|scope| BackoffChange::Failure { scope, message }),
        )
    }
}

enum StartAnswer {
    Go,
    NotOurs,
}

impl Agent {
    pub(super) async fn work(self, task: ClaimedTask) {
        let id = task.id;
        let cancel = self
            .shared()
            .held
            .get(&id)
            .map(|h| h.cancel.clone())
            .unwrap_or_default();
        let finished = self.execute(&task, &cancel, true).await;
        self.count_outcome(&task, finished.as_ref().map(|f| &f.report));
        // A backup or prune that ran may have changed the repository's list of snapshots (a
        // failed prune may have forgotten some before it failed): the server gets it anew.
        let changed_snapshots =
            matches!(task.kind, TaskKind::Backup | TaskKind::Prune) && finished.is_some();
        // One write: restic's process record goes as its result enters the outbox (with the
        // backoff and counters it changes), so a crash leaves one or the other (a record is
        // reported as failed at the next start), never neither.
        let now = self.now();
        let (reported, entered) = self
            .persist(|shared| {
                shared.state.processes.retain(|p| p.task_id != id);
                // Only this worker's entry goes; an attempt the server handed out again while
                // this one ran (its lease had lapsed) is handed back now, unstarted.
                let rehanded = match shared.held.get(&id) {
                    Some(h) if h.attempt == task.attempt => {
                        shared.held.remove(&id).and_then(|h| h.rehanded)
                    }
                    _ => None,
                };
                let mut reported = false;
                let mut entered = None;
                if let Some(finished) = finished {
                    entered = shared.record(&task, finished, now);
                    reported = true;
                }
                if let Some(attempt) = rehanded {
                    let mut report = AttemptReport::new(attempt, AttemptOutcome::Interrupted);
                    report.error = Some(format!(
                        "handed back: this agent was still running attempt {} of the task",
                        task.attempt
                    ));
                    report.finished_at = Some(now);
                    shared.state.outbox.push(OutboxEntry::new(id, report));
                    reported = true;
                }
                (reported, entered)
            })
            .await;
        if let Some((scope, message, entered)) = entered {
            let target = match &scope {
                Scope::Repository(name) => format!("repository {name}"),
                Scope::Agent => "the whole agent".to_owned(),
            };
            tracing::warn!(scope = %target, until = %entered.until, last_error = %message, "Entering backoff for {} minutes", entered.minutes);
            // The server should hold back the repository's tasks at once, not at the next beat.
            self.inner.wake_heartbeat.notify_one();
        }
        if reported {
            self.inner.wake_outbox.notify_one();
        }
        if changed_snapshots {
            self.snapshots_changed(&task.repository);
        }
        self.refresh_gauges();
        self.inner.wake_poll.notify_one();
    }

    /// The end of the backoff of `repository` or of the whole agent, whichever is later.
    fn backoff_until(&self, repository: &str) -> Option<DateTime<Utc>> {
        let shared = self.shared();
        let now = self.now();
        shared
            .state
            .backoff
            .until(&Scope::Repository(repository.to_owned()), now)
            .max(shared.state.backoff.until(&Scope::Agent, now))
    }

    /// A task whose repository (or agent) is in backoff, given back to the server without
    /// spending budget: `interrupted`, so it returns to pending, where the claim holds it until
    /// the backoff the heartbeats report ends. Holding it here would take a slot the other
    /// repositories could use for the whole backoff.
    fn handed_back(&self, task: &ClaimedTask, until: DateTime<Utc>) -> Finished {
        let mut report = AttemptReport::new(task.attempt, AttemptOutcome::Interrupted);
        report.error = Some(format!(
            "handed back: repository {} is in backoff until {}",
            task.repository,
            until.format("%Y-%m-%d %H:%M:%S UTC")
        ));
        report.finished_at = Some(self.now());
        // The server should know of the backoff before this task comes back.
        self.inner.wake_heartbeat.notify_one();
        Finished::new(report, None)
    }

    /// What to report when a held task is given up before or while running: nothing for a
    /// cancelled task, `interrupted` at shutdown.
    pub(super) fn given_up(
        &self,
        task: &ClaimedTask,
        cancel: &CancellationToken,
    ) -> Option<Finished> {
        if cancel.is_cancelled() {
            None
        } else {
            let mut report = AttemptReport::new(task.attempt, AttemptOutcome::Interrupted);
            report.error = Some("the agent shut down".into());
            report.finished_at = Some(self.now());
            Some(Finished::new(report, None))
        }
    }

    /// Runs a held task up to its result; `from_server` says whether the server handed it out
    /// (and is told that it starts) or an embedder asked for it directly.
    pub(super) async fn execute(
        &self,
        task: &ClaimedTask,
        cancel: &CancellationToken,
        from_server: bool,
    ) -> Option<Finished> {
        let Some(repo) = self
            .inner
            .config
            .repositories
            .get(&task.repository)
            .cloned()
        else {
            return Some(Finished::failed(
                task.attempt,
                ErrorClass::Permanent,
                format!(
                    "unknown repository {:?}: this agent's configuration has {:?}",
                    task.repository,
                    self.inner.config.repositories.keys().collect::<Vec<_>>()
                ),
                None,
            ));
        };
        let targets = self.inner.config.restore_targets();
        if let Err(refused) = crate::guard::check_task(&task.repository, &repo, &targets, task) {
            tracing::error!(task = %task.id, kind = task.kind.as_str(), reason = %refused, "refused a task");
            return Some(Finished::failed(
                task.attempt,
                ErrorClass::Permanent,
                refused,
                None,
            ));
        }
        // Start nothing on a repository (or an agent) in backoff: before waiting for the
        // repository lock and a slot, and again once both are held, since a task that ran
        // meanwhile may have failed into a backoff. (The server does not hand out tasks for a
        // repository it knows is in backoff; this catches one that began since the last
        // heartbeat.) Nothing starts once the agent is shutting down either.
        let exclusive = task.kind.is_exclusive();
        if let Some(until) = self.backoff_until(&task.repository) {
            return Some(self.handed_back(task, until));
        }
        // A listing takes no lock: a person browsing waits for no prune.
        let repo_lock = if task.kind.locks_repository() {
            Some(tokio::select! {
                guard = self.inner.locks.acquire(&task.repository, exclusive) => guard,
                () = cancel.cancelled() => return None,
                () = self.inner.shutdown.cancelled() => return self.given_up(task, cancel),
            })
        } else {
            None
        };
        let slot = tokio::select! {
            guard = self.inner.gate.acquire(task.kind) => guard,
            () = cancel.cancelled() => return None,
            () = self.inner.shutdown.cancelled() => return self.given_up(task, cancel),
        };
        if let Some(until) = self.backoff_until(&task.repository) {
            return Some(self.handed_back(task, until));
        }
        if self.inner.shutdown.is_cancelled() || cancel.is_cancelled() {
            return self.given_up(task, cancel);
        }
        let (_repo_lock, _slot) = (repo_lock, slot);
        if let Some(held) = self.shared().held.get_mut(&task.id) {
            held.running = true;
        }
        self.refresh_gauges();
        if from_server {
            match self.report_start(task).await {
                StartAnswer::Go => {}
                StartAnswer::NotOurs => return None,
            }
        }
        let started_at = self.now();
        let unlock_first = self.shared().unlock_first.remove(&task.repository);
        if unlock_first {
            self.restic_unlock(&task.repository, &repo).await;
        }
        let mut finished = match self.ensure_repository(&task.repository, &repo).await {
            // A repository that cannot be reached or made counts toward its backoff.
            Err((class, message)) => Finished::failed(
                task.attempt,
                class,
                message,
                (class == ErrorClass::Retriable && task.kind.is_scheduled())
                    .then(|| Scope::Repository(task.repository.clone())),
            ),
            Ok(()) => self.run_restic(task, &repo, cancel).await?,
        };
        finished.report.started_at = Some(started_at);
        finished.report.finished_at = Some(self.now());
        Some(finished)
    }

    async fn report_start(&self, task: &ClaimedTask) -> StartAnswer {
        for attempt in 0..3 {
            match self.inner.client.start(task.id, task.attempt).await {
                Ok(_) | Err(ClientError::Unreadable(_)) => return StartAnswer::Go,
                Err(e) if !e.is_transient() => {
                    tracing::warn!(task = %task.id, error = %e, "the server refused the start; the task is no longer this agent's to run");
                    return StartAnswer::NotOurs;
                }
                Err(e) => {
                    if attempt == 2 {
                        // While the server is unreachable the agent still does its job; the
                        // result alone is accepted for a claimed attempt.
                        tracing::warn!(task = %task.id, error = %e, "cannot report the start; running anyway");
                        return StartAnswer::Go;
                    }
                    tokio::time::sleep(e.retry_after().unwrap_or(Duration::from_secs(1))).await;
                }
            }
        }
        StartAnswer::Go
    }

    /// The metrics of a finished attempt (the persisted counters go with the result's write).
    fn count_outcome(&self, task: &ClaimedTask, report: Option<&AttemptReport>) {
        let Some(report) = report else { return };
        let outcome = outcome_label(report);
        let kind = task.kind.as_str();
        self.inner
            .metrics
            .tasks_total
            .get_or_create(&TaskLabels {
                kind: kind.into(),
                outcome: outcome.into(),
            })
            .inc();
        if let (Some(start), Some(end)) = (report.started_at, report.finished_at) {
            let secs = (end - start).num_milliseconds().max(0) as f64 / 1000.0;
            self.inner
                .metrics
                .task_duration
                .get_or_create(&KindLabels { kind: kind.into() })
                .observe(secs);
        }
    }
}

/// The `outcome` label of `backup_agent_tasks_total`.
fn outcome_label(report: &AttemptReport) -> &'static str {
    match report.outcome {
        AttemptOutcome::Succeeded => "succeeded",
        AttemptOutcome::Partial => "partial",
        AttemptOutcome::Interrupted => "interrupted",
        _ => "failed",
    }
}

impl Shared {
    /// Puts a finished attempt's result in the outbox with what it changes: the counters and
    /// the backoff of its repository or of the agent. Returns the backoff it enters, if any.
    fn record(
        &mut self,
        task: &ClaimedTask,
        finished: Finished,
        now: DateTime<Utc>,
    ) -> Option<(Scope, String, Entered)> {
        let outcome = outcome_label(&finished.report);
        *self
            .state
            .counters
            .tasks_total
            .entry(format!("{}/{outcome}", task.kind.as_str()))
            .or_default() += 1;
        let entered = match finished.backoff {
            Some(BackoffChange::Success(repository)) => {
                self.state
                    .backoff
                    .record_success(&Scope::Repository(repository));
                self.state.backoff.record_success(&Scope::Agent);
                None
            }
            Some(BackoffChange::Failure { scope, message }) => self
                .state
                .backoff
                .record_failure(scope.clone(), &self.settings, now, &mut self.rng)
                .map(|entered| (scope, message, entered)),
            None => None,
        };
        self.state
            .outbox
            .push(OutboxEntry::new(task.id, finished.report));
        entered
    }
}
