//! Whether the scheduler may create a due policy's task now, or why not.
//!
//! A skipped policy stays due: it runs on the first tick after the reason clears. Reasons are
//! checked in a fixed order and the first that applies is the one counted.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// Why a due policy got no task this tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SkipReason {
    /// The policy already has a pending, claimed or running task (also one waiting to retry).
    OpenTask,
    /// The agent has not sent a heartbeat for `offlineAfterSeconds` (or never).
    Offline,
    /// The whole agent is in backoff (with `respectAgentBackoff`).
    AgentBackoff,
    /// The policy's repository is in backoff on its agent (with `respectAgentBackoff`).
    RepositoryBackoff,
    /// The agent's queue is deeper than `agentQueueThreshold`.
    Saturated,
}

impl SkipReason {
    /// Every reason, in the order they are checked.
    pub const ALL: [SkipReason; 5] = [
        SkipReason::OpenTask,
        SkipReason::Offline,
        SkipReason::AgentBackoff,
        SkipReason::RepositoryBackoff,
        SkipReason::Saturated,
    ];

    /// The metric label (`open_task`, `offline`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            SkipReason::OpenTask => "open_task",
            SkipReason::Offline => "offline",
            SkipReason::AgentBackoff => "agent_backoff",
            SkipReason::RepositoryBackoff => "repository_backoff",
            SkipReason::Saturated => "saturated",
        }
    }
}

/// What the scheduler knows about a due policy and its agent.
#[derive(Clone, Copy, Debug)]
pub struct DispatchInputs {
    /// Now.
    pub now: DateTime<Utc>,
    /// The policy has an open task.
    pub has_open_task: bool,
    /// The agent's last heartbeat.
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    /// `offlineAfterSeconds`.
    pub offline_after: TimeDelta,
    /// The agent's whole-agent backoff deadline.
    pub agent_backoff_until: Option<DateTime<Utc>>,
    /// The deadline of the policy's repository's backoff on that agent, if any.
    pub repository_backoff_until: Option<DateTime<Utc>>,
    /// `respectAgentBackoff`.
    pub respect_agent_backoff: bool,
    /// Reported queue plus due pending tasks.
    pub queue_depth: u32,
    /// `agentQueueThreshold`.
    pub queue_threshold: u32,
}

impl DispatchInputs {
    /// `None` when the task may be created now; else the first reason that applies.
    pub fn skip_reason(&self) -> Option<SkipReason> {
        let future = |t: Option<DateTime<Utc>>| t.is_some_and(|t| t > self.now);
        if self.has_open_task {
            Some(SkipReason::OpenTask)
        } else if self
            .last_heartbeat_at
            .is_none_or(|seen| self.now - seen > self.offline_after)
        {
            Some(SkipReason::Offline)
        } else if self.respect_agent_backoff && future(self.agent_backoff_until) {
            Some(SkipReason::AgentBackoff)
        } else if self.respect_agent_backoff && future(self.repository_backoff_until) {
            Some(SkipReason::RepositoryBackoff)
        } else if self.queue_depth > self.queue_threshold {
            Some(SkipReason::Saturated)
        } else {
            None
        }
    }
}
