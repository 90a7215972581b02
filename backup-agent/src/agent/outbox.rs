//! The outbox: results wait in the state file until the server settles them (any 2xx, or a
//! refusal that sending again would not change), retried with capped exponential backoff plus
//! jitter while the server is unreachable.

use std::{collections::HashSet, time::Duration};

use backup_core::{
    AttemptOutcome, AttemptReport, ExponentialBackoff, Jitter, PermanentReason, TaskStatus,
    TaskView,
};
use chrono::{DateTime, TimeDelta, Utc};

use super::Agent;
use crate::ClientError;

/// How long a result is kept while the server answers 401 (a token being rotated): then it is
/// dropped, with an error, so that a revoked agent does not grow its outbox for ever.
const REFUSED_FOR: TimeDelta = TimeDelta::hours(24);

impl Agent {
    pub(super) async fn outbox_loop(self) {
        loop {
            let next = self.deliver_due(false).await;
            let wait = next.map_or(Duration::from_secs(3600), |at| {
                (at - self.now()).to_std().unwrap_or(Duration::ZERO)
            });
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.inner.wake_outbox.notified() => {}
                () = self.inner.shutdown.cancelled() => return,
            }
        }
    }

    /// Delivers every entry that is due; returns when the next one is. `final_pass` tries each
    /// entry once more regardless of its schedule (shutdown).
    pub(super) async fn deliver_due(&self, final_pass: bool) -> Option<DateTime<Utc>> {
        let mut tried = HashSet::new();
        // Results delivered in this pass that had waited (failed deliveries before).
        let mut recovered = 0u32;
        loop {
            let now = self.now();
            let entry = {
                let shared = self.shared();
                let state = &shared.state;
                state
                    .outbox
                    .iter()
                    .find(|e| {
                        !tried.contains(&(e.task_id, e.report.attempt))
                            && (final_pass || e.next_try_at.is_none_or(|t| t <= now))
                    })
                    .cloned()
            };
            let Some(entry) = entry else {
                if recovered > 0 {
                    tracing::info!(
                        delivered = recovered,
                        "delivered {recovered} results from the outbox"
                    );
                }
                let shared = self.shared();
                let state = &shared.state;
                return state.outbox.iter().filter_map(|e| e.next_try_at).min();
            };
            tried.insert((entry.task_id, entry.report.attempt));
            let key = (entry.task_id, entry.report.attempt);
            match self.inner.client.report(entry.task_id, &entry.report).await {
                Ok(view) => {
                    if entry.tries > 0 {
                        recovered += 1;
                    }
                    self.persist_lazily(|s| {
                        s.state
                            .outbox
                            .retain(|e| (e.task_id, e.report.attempt) != key)
                    });
                    self.settled(&entry.report, &view);
                }
                Err(ClientError::Unreadable(e)) => {
                    // Any 2xx settles a result: the server has it.
                    tracing::warn!(task = %entry.task_id, attempt = entry.report.attempt, error = %e, "the server accepted a result but its answer could not be read; it leaves the outbox");
                    self.persist_lazily(|s| {
                        s.state
                            .outbox
                            .retain(|e| (e.task_id, e.report.attempt) != key)
                    });
                }
                Err(e)
                    if e.status() == Some(401)
                        && entry
                            .refused_since
                            .is_some_and(|since| now - since > REFUSED_FOR) =>
                {
                    tracing::error!(task = %entry.task_id, attempt = entry.report.attempt, error = %e, "the server has refused this agent's token for 24 hours; dropping the result (check tokenFile)");
                    self.persist_lazily(|s| {
                        s.state
                            .outbox
                            .retain(|e| (e.task_id, e.report.attempt) != key)
                    });
                }
                Err(e) if e.is_transient() => {
                    let tries = entry.tries + 1;
                    // A 401 is kept (a token being rotated), for at most REFUSED_FOR.
                    let refused_since =
                        (e.status() == Some(401)).then(|| entry.refused_since.unwrap_or(now));
                    let delay = e.retry_after().unwrap_or_else(|| {
                        let backoff = ExponentialBackoff::new(
                            Duration::from_secs(1),
                            2.0,
                            Duration::from_secs(300),
                            Jitter::Equal,
                        )
                        .unwrap_or_default();
                        backoff.delay(tries, &mut self.shared().rng)
                    });
                    let at = now + TimeDelta::from_std(delay).unwrap_or(TimeDelta::seconds(300));
                    if tries == 1 || tries % 10 == 0 {
                        tracing::warn!(task = %entry.task_id, attempt = entry.report.attempt, tries, error = %e, "cannot deliver a result; keeping it in the outbox");
                    }
                    self.persist_lazily(|s| {
                        if let Some(e) = s
                            .state
                            .outbox
                            .iter_mut()
                            .find(|e| (e.task_id, e.report.attempt) == key)
                        {
                            e.tries = tries;
                            e.next_try_at = Some(at);
                            e.refused_since = refused_since;
                        }
                    });
                }
                Err(e) => {
                    tracing::error!(task = %entry.task_id, attempt = entry.report.attempt, error = %e, "the server refused a result; dropping it");
                    self.persist_lazily(|s| {
                        s.state
                            .outbox
                            .retain(|e| (e.task_id, e.report.attempt) != key)
                    });
                }
            }
        }
    }

    /// The server's decision on a delivered result.
    fn settled(&self, report: &AttemptReport, view: &TaskView) {
        if report.outcome == AttemptOutcome::Failed && view.status == TaskStatus::Pending {
            self.inner.metrics.retries_total.inc();
            self.persist_lazily(|s| s.state.counters.retries_total += 1);
            tracing::info!(task = %view.id, retry = view.retry_count, of = view.max_retries, next_retry_at = %view.next_retry_at.map_or_else(|| "now".to_owned(), |t| t.to_rfc3339()), "the server will retry the task");
        }
        if view.failed_permanently
            && view.permanent_reason == Some(PermanentReason::RetriesExhausted)
        {
            tracing::error!(task = %view.id, last_error = view.last_error.as_deref().unwrap_or(""), "Retry exhausted for task {}", view.id);
        } else if view.failed_permanently {
            tracing::error!(task = %view.id, last_error = view.last_error.as_deref().unwrap_or(""), "the task failed permanently");
        }
    }
}
