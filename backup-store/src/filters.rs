//! The filters of the tenant's lists.

use backup_core::{AgentId, PolicyId, RunStatus, TaskId, TaskStatus};

/// Filters of `GET /policies`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyFilter {
    /// Only this agent's policies.
    pub agent_id: Option<AgentId>,
    /// Only policies with this protection now.
    pub protection: Option<backup_core::Protection>,
}

/// Filters of `GET /events`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only events of this type.
    pub event_type: Option<backup_core::EventType>,
    /// Only events about this object (an agent, a policy, a task, a webhook).
    pub subject_id: Option<uuid::Uuid>,
    /// Only events at or after this time.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
}

/// Filters of `GET /webhooks/{id}/deliveries`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    /// Only deliveries in this status.
    pub status: Option<backup_core::DeliveryStatus>,
}

/// Filters of `GET /tasks`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// Only tasks in this status.
    pub status: Option<TaskStatus>,
    /// Only this agent's tasks.
    pub agent_id: Option<AgentId>,
    /// Only this policy's tasks.
    pub policy_id: Option<PolicyId>,
}

/// Filters of `GET /backup-runs`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupRunFilter {
    /// Only this agent's runs.
    pub agent_id: Option<AgentId>,
    /// Only this policy's runs.
    pub policy_id: Option<PolicyId>,
    /// Only this task's runs.
    pub task_id: Option<TaskId>,
    /// Only runs in this status.
    pub status: Option<RunStatus>,
}

/// Filters of `GET /snapshots`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotFilter {
    /// Only snapshots this agent reported.
    pub agent_id: Option<AgentId>,
    /// Only snapshots in the repository of this name.
    pub repository: Option<String>,
    /// Only snapshots made by this policy's backups.
    pub policy_id: Option<PolicyId>,
}
