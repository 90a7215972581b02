//! Claiming: as many due tasks as the agent has free slots for, each handed to its own worker.

use std::{collections::hash_map::Entry, time::Duration};

use backup_core::{ClaimRequest, ClaimedTask, PerKind};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{Agent, Held};
use crate::repo_backoff::Scope;

impl Agent {
    pub(super) async fn poll_loop(self, workers: TaskTracker) {
        // The first claim waits for the first heartbeat: the server must know the agent's load.
        let mut done = self.inner.heartbeat_done.subscribe();
        tokio::select! {
            _ = done.wait_for(|d| *d) => {}
            () = self.inner.shutdown.cancelled() => return,
        }
        let every =
            Duration::from_secs(u64::from(self.inner.config.polling_interval_seconds.max(1)));
        // A 429 or 503 with Retry-After: no claim before then, whatever wakes the loop.
        let mut not_before = tokio::time::Instant::now();
        // "Concurrency limit reached" once each time every slot fills, not at every poll.
        let mut was_full = false;
        loop {
            let (limit, held) = {
                let shared = self.shared();
                (shared.settings.max_concurrent_tasks, shared.held.len())
            };
            let full = u32::try_from(held).unwrap_or(u32::MAX) >= limit;
            if full && !was_full {
                tracing::info!(limit, held, "Concurrency limit reached");
            }
            was_full = full;
            // Claim again at once (no pause): after a long poll that waited, or that got tasks.
            let mut again = false;
            if let Some(mut request) = self.free_slots() {
                // Only an idle agent waits at the server: while tasks run, a freed slot must
                // lead to a claim with the new counts at once, not after the wait.
                if held == 0 {
                    request.wait_seconds = self.inner.config.claim_wait_seconds;
                }
                let asked = tokio::time::Instant::now();
                // A shutdown does not wait for a claim in flight; tasks it claimed anyway go
                // back to pending when their lease lapses. An answer that arrives first is
                // taken: its workers see the shutdown and report their tasks interrupted.
                let answer = tokio::select! {
                    answer = self.inner.client.claim(&request) => answer,
                    () = self.inner.shutdown.cancelled() => return,
                };
                match answer {
                    Ok(answer) => {
                        // An empty answer well before the wait ended comes from a server
                        // without long polls (or one holding too many): poll as before.
                        again = request.wait_seconds > 0
                            && (!answer.tasks.is_empty()
                                || asked.elapsed() >= Duration::from_secs(1));
                        // A hostile or confused server could send more than was asked for.
                        for task in answer.tasks.into_iter().take(request.limit as usize) {
                            if self.hold(&task) {
                                workers.spawn(self.clone().work(task));
                            }
                        }
                    }
                    Err(e) => {
                        if let Some(after) = e.retry_after() {
                            not_before = tokio::time::Instant::now() + after;
                        }
                        tracing::warn!(error = %e, retry_after_seconds = e.retry_after().map(|d| d.as_secs()), "claiming tasks failed; trying again next poll");
                    }
                }
            }
            if !again {
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = self.inner.wake_poll.notified() => {}
                    () = self.inner.shutdown.cancelled() => return,
                }
            }
            tokio::select! {
                () = tokio::time::sleep_until(not_before) => {}
                () = self.inner.shutdown.cancelled() => return,
            }
        }
    }

    /// The claim for the free slots, or `None` when there are none or the whole agent backs
    /// off. (The server holds back tasks for repositories in backoff itself: it knows them from
    /// the heartbeats.)
    fn free_slots(&self) -> Option<ClaimRequest> {
        let now = self.now();
        let shared = self.shared();
        if shared.state.backoff.until(&Scope::Agent, now).is_some() {
            return None;
        }
        let settings = shared.settings;
        let busy = u32::try_from(shared.held.len()).unwrap_or(u32::MAX);
        let total = settings.max_concurrent_tasks.saturating_sub(busy);
        if total == 0 {
            return None;
        }
        let per_kind = PerKind::from_fn(|kind| {
            let mine = shared.held.values().filter(|h| h.kind == kind).count();
            settings
                .limit_for(kind)
                .saturating_sub(u32::try_from(mine).unwrap_or(u32::MAX))
                .min(total)
        });
        Some(ClaimRequest {
            limit: total,
            per_kind: Some(per_kind),
            wait_seconds: 0,
        })
    }

    /// Takes a claimed task in. A task the agent already holds (the server handed it out again
    /// after its lease lapsed, while its first worker still runs) is not started a second
    /// time: returns false.
    fn hold(&self, task: &ClaimedTask) -> bool {
        let mut shared = self.shared();
        // This very attempt already ran and its result waits in the outbox: the server handed it
        // out again because the start never reached it and the claim's lease lapsed. Running it
        // twice would make a second snapshot; the result goes out instead.
        if shared
            .state
            .outbox
            .iter()
            .any(|e| e.task_id == task.id && e.report.attempt == task.attempt)
        {
            drop(shared);
            tracing::info!(task = %task.id, attempt = task.attempt, "handed out again, but this attempt already ran: its result is in the outbox");
            self.inner.wake_outbox.notify_one();
            return false;
        }
        let taken = match shared.held.entry(task.id) {
            Entry::Occupied(mut held) => {
                if held.get().attempt != task.attempt {
                    held.get_mut().rehanded = Some(task.attempt);
                }
                false
            }
            Entry::Vacant(slot) => {
                slot.insert(Held {
                    kind: task.kind,
                    attempt: task.attempt,
                    running: false,
                    cancel: CancellationToken::new(),
                    rehanded: None,
                });
                true
            }
        };
        drop(shared);
        if taken {
            self.refresh_gauges();
        } else {
            tracing::warn!(task = %task.id, attempt = task.attempt, "the server handed out again a task this agent still runs; it is not started twice, and is handed back when the first run ends");
        }
        taken
    }
}
