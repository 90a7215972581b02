//! What the store answers besides the API's views: who an agent token is, a result's decision,
//! the tenants for the CLI, what a scheduler tick and a lease sweep did.

use std::collections::BTreeMap;

use backup_core::{AgentId, AgentStatus, PerKind, SkipReason, TaskView, TenantId};
use chrono::{DateTime, Utc};

/// An authenticated agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentPrincipal {
    /// The agent.
    pub agent_id: AgentId,
    /// Its tenant.
    pub tenant_id: TenantId,
}

/// A tenant as the operator's CLI lists it (no token: it is only ever shown once).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantListing {
    /// Its id.
    pub id: TenantId,
    /// Its name.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Its agents (deleted ones aside).
    pub agents: u64,
}

/// The answer to a result: the task as decided, and what the decision was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultAnswer {
    /// The task view after the decision (for a repeat: as it was decided then).
    pub task: TaskView,
    /// The failure was answered with a retry.
    pub retried: bool,
    /// This was a repeat of a result already stored.
    pub replayed: bool,
}

impl ResultAnswer {
    /// A result decided now (not a repeat).
    pub(crate) fn decided(task: TaskView, retried: bool) -> Self {
        Self {
            task,
            retried,
            replayed: false,
        }
    }
}

/// What one scheduler tick did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Due policies looked at.
    pub evaluated: u64,
    /// Tasks created.
    pub created: u64,
    /// Slots missed (merged into the created tasks).
    pub missed_slots: u64,
    /// Due policies left due, by reason.
    pub skipped: BTreeMap<SkipReason, u64>,
    /// The agents that got a task in this tick (each once): their waiting claims can answer.
    pub claimable_agents: Vec<AgentId>,
}

impl TickReport {
    pub(crate) fn skipped_for_conflict(&mut self, n: usize) {
        if n > 0 {
            *self.skipped.entry(SkipReason::OpenTask).or_default() += n as u64;
        }
    }
}

/// What one lease sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LapseReport {
    /// Claimed tasks returned to pending (attempt given back, no budget spent).
    pub returned: u64,
    /// Running tasks whose attempt failed as "agent lost".
    pub lost: u64,
    /// Of those, how many were answered with a retry.
    pub retried: u64,
    /// Of those, how many failed permanently.
    pub failed_permanently: u64,
    /// The same, by task kind.
    pub failed_permanently_by_kind: PerKind<u64>,
    /// Agents that have a task claimable again (a claim returned, or a lost attempt retried):
    /// the server wakes their waiting claims.
    pub claimable_agents: Vec<AgentId>,
}

/// A webhook delivery claimed for one attempt (leased to this replica).
#[derive(Clone, Debug, PartialEq)]
pub struct DueDelivery {
    /// Where it goes.
    pub webhook_id: backup_core::WebhookId,
    /// What it delivers.
    pub event: backup_core::EventView,
    /// The webhook's URL.
    pub url: String,
    /// The webhook's secret (signs the body).
    pub secret: String,
    /// This attempt's number (1 for the first).
    pub attempt: u32,
}

/// How one delivery attempt went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// A 2xx answered.
    Delivered {
        /// The HTTP status.
        status: u16,
    },
    /// No answer, another status, or a target refused before sending.
    Failed {
        /// The HTTP status, if one answered.
        status: Option<u16>,
        /// What went wrong, for people.
        error: String,
    },
}

/// What one sweep of the scheduler's transitions recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransitionReport {
    /// `agent.offline` events recorded.
    pub offline: u64,
    /// `policy.overdue` events recorded.
    pub overdue: u64,
    /// Policies whose alert deadline was set for the first time.
    pub deadlines_set: u64,
}

/// The fleet at a glance (the server's gauges).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetSummary {
    /// Agents by derived status (every status present, 0 where none).
    pub agents: BTreeMap<AgentStatus, u64>,
    /// Enabled policies.
    pub enabled_policies: u64,
    /// Live policies by protection (every value present).
    pub policies: BTreeMap<backup_core::Protection, u64>,
    /// Among enabled policies, the oldest last success (a policy that never succeeded counts
    /// from its creation): how long the least protected one has gone unprotected.
    pub oldest_success: Option<DateTime<Utc>>,
}

/// A dashboard session. Its `id` is what the cookie carries (the store keeps only its hash);
/// `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct UiSession {
    /// The cookie's value.
    pub id: String,
    /// The tenant logged in.
    pub tenant: TenantId,
    /// The CSRF token every form of the session carries.
    pub csrf: String,
    /// When it ends, whatever happens.
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for UiSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UiSession")
            .field("id", &"<redacted>")
            .field("tenant", &self.tenant)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}
