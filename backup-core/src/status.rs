//! An agent's derived status: what an operator sees at a glance.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// Derived status of an agent; the first that applies wins, in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AgentStatus {
    /// Never seen, or no heartbeat for `offlineAfterSeconds`.
    Offline,
    /// `backoffUntil` is in the future.
    Backoff,
    /// `queueDepth > agentQueueThreshold`.
    Saturated,
    /// Healthy.
    Online,
}

impl AgentStatus {
    /// Every status, in the order they are derived.
    pub const ALL: [AgentStatus; 4] = [
        AgentStatus::Offline,
        AgentStatus::Backoff,
        AgentStatus::Saturated,
        AgentStatus::Online,
    ];

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Offline => "offline",
            AgentStatus::Backoff => "backoff",
            AgentStatus::Saturated => "saturated",
            AgentStatus::Online => "online",
        }
    }
}

/// Where an agent's settings come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SettingsSource {
    /// Adopted from the agent's YAML proposals (nobody PATCHed it yet).
    Agent,
    /// Set through the API; proposals are ignored from then on.
    Api,
}

impl SettingsSource {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            SettingsSource::Agent => "agent",
            SettingsSource::Api => "api",
        }
    }
}

/// What the status derivation looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusInputs {
    /// Now.
    pub now: DateTime<Utc>,
    /// The last heartbeat.
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    /// The scheduler's `offlineAfterSeconds`.
    pub offline_after: TimeDelta,
    /// The latest backoff deadline.
    pub backoff_until: Option<DateTime<Utc>>,
    /// Reported queue plus due pending tasks.
    pub queue_depth: u32,
    /// The scheduler's `agentQueueThreshold`.
    pub queue_threshold: u32,
}

impl StatusInputs {
    /// `queueDepth > agentQueueThreshold`.
    pub const fn saturated(&self) -> bool {
        self.queue_depth > self.queue_threshold
    }

    /// Whether the agent counts as offline now.
    pub fn offline(&self) -> bool {
        self.last_heartbeat_at
            .is_none_or(|seen| self.now - seen > self.offline_after)
    }

    /// The derived status: offline, backoff, saturated, online (first match wins).
    pub fn status(&self) -> AgentStatus {
        if self.offline() {
            AgentStatus::Offline
        } else if self.backoff_until.is_some_and(|until| until > self.now) {
            AgentStatus::Backoff
        } else if self.saturated() {
            AgentStatus::Saturated
        } else {
            AgentStatus::Online
        }
    }
}
