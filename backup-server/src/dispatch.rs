//! Prompt dispatch: claims held open (an agent's `waitSeconds`) until a task of that agent
//! becomes claimable, so that run-now, and the tick's new tasks, start within a second instead
//! of at the agent's next poll.
//!
//! Each waiting agent has a [`Notify`]; whatever makes a task claimable wakes it: run-now and
//! the scheduler's tick on this replica, and, on PostgreSQL, every other replica's through
//! `LISTEN` / `NOTIFY` ([`listen`]). A wake-up only makes the claim look again, so a spurious
//! one costs one claim query. Tasks that become claimable by time alone (a retry's backoff
//! ending, a lapsed lease) are found when the wait ends.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use backup_core::AgentId;
use tokio::sync::Notify;

use crate::AppState;

/// The claims held open, by agent.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    agents: Mutex<HashMap<AgentId, (Arc<Notify>, u32)>>,
    waiting: AtomicU32,
    /// Set when the server stops: no claim waits any more, and those waiting answer.
    closing: AtomicBool,
    closed: Notify,
}

/// One claim's place among the waiters; leaves on drop (also when the client goes away).
pub(crate) struct Waiting<'a> {
    waiters: &'a Waiters,
    agent: AgentId,
    pub(crate) notify: Arc<Notify>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.waiters.waiting.fetch_sub(1, Ordering::AcqRel);
        let mut agents = self
            .waiters
            .agents
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = agents.get_mut(&self.agent) {
            entry.1 -= 1;
            if entry.1 == 0 {
                agents.remove(&self.agent);
            }
        }
    }
}

impl Waiters {
    /// A place for `agent`'s claim, or `None` when `max` claims wait already.
    pub(crate) fn enter(&self, agent: AgentId, max: u32) -> Option<Waiting<'_>> {
        if self.closing.load(Ordering::Acquire) {
            return None;
        }
        let taken = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            });
        taken.ok()?;
        let mut agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        let entry = agents
            .entry(agent)
            .or_insert_with(|| (Arc::new(Notify::new()), 0));
        entry.1 += 1;
        Some(Waiting {
            waiters: self,
            agent,
            notify: entry.0.clone(),
        })
    }

    /// Wakes `agent`'s waiting claims (none: nothing happens).
    pub(crate) fn wake(&self, agent: AgentId) {
        let agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((notify, _)) = agents.get(&agent) {
            notify.notify_waiters();
        }
    }

    /// Ends every wait (the server is stopping: graceful shutdown must not wait for them).
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.closed.notify_waiters();
    }

    /// Resolves when [`Waiters::close`] is called.
    pub(crate) async fn closed(&self) {
        let closed = self.closed.notified();
        if self.closing.load(Ordering::Acquire) {
            return;
        }
        closed.await;
    }

    /// Claims held open now.
    pub(crate) fn waiting(&self) -> u32 {
        self.waiting.load(Ordering::Acquire)
    }
}

/// Wakes the waiting claims of `agents` on this replica and, on PostgreSQL, on every other.
pub(crate) async fn announce(state: &AppState, agents: &[AgentId]) {
    if agents.is_empty() {
        return;
    }
    for agent in agents {
        state.waiters().wake(*agent);
    }
    if let Err(e) = state.store().announce_claimable(agents).await {
        // The other replicas' claims answer at the end of their wait instead.
        tracing::warn!(error = %e, "cannot tell the other replicas about claimable tasks");
    }
}

/// On PostgreSQL: wakes this replica's waiting claims when any replica announces a task,
/// until `stop`. Reconnects after a lost connection.
pub(crate) async fn listen(state: AppState, stop: tokio::sync::watch::Receiver<bool>) {
    let mut stop = stop;
    loop {
        let listener = tokio::select! {
            l = state.store().claimable_listener() => l,
            _ = stop.wait_for(|s| *s) => return,
        };
        let mut listener = match listener {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for other replicas' tasks; trying again in 5 s");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(5)) => continue,
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        };
        loop {
            let next = tokio::select! {
                n = listener.next() => n,
                _ = stop.wait_for(|s| *s) => return,
            };
            match next {
                Ok(Some(agent)) => state.waiters().wake(agent),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "lost the listening connection; reconnecting");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_bounded_and_given_back_on_drop() {
        let waiters = Waiters::default();
        let (a, b) = (AgentId::new(), AgentId::new());
        let first = waiters.enter(a, 2).expect("room");
        let second = waiters.enter(b, 2).expect("room");
        assert!(waiters.enter(a, 2).is_none(), "full");
        assert_eq!(waiters.waiting(), 2);
        drop(first);
        let again = waiters.enter(a, 2).expect("room again");
        assert!(waiters.enter(a, 0).is_none(), "0 switches long polls off");
        drop((second, again));
        assert_eq!(waiters.waiting(), 0);
        assert!(waiters.agents.lock().expect("lock").is_empty());
    }
}
