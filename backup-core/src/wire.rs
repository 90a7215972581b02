//! The JSON bodies of the HTTP API: camelCase, RFC 3339 UTC timestamps, UUID ids.
//!
//! These types accept unknown fields, as agent routes must (rolling upgrades: a newer agent may
//! send more). The server rejects unknown fields on tenant routes before a body reaches them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    AgentId, AgentStatus, AttemptOutcome, BackupRunId, ErrorClass, PerKind, PermanentReason,
    PolicyId, PolicySpec, Retention, RunStatus, Settings, SettingsPatch, SettingsSource, TaskId,
    TaskKind, TaskOutput, TaskRequest, TaskStatus, TenantId,
};

/// `POST /tenants` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CreateTenant {
    /// A name for people.
    pub name: String,
}

/// `POST /tenants` answer; the token is shown once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TenantCreated {
    /// The tenant's id (the `X-Tenant-ID` header).
    pub id: TenantId,
    /// Its name.
    pub name: String,
    /// Its API token.
    pub token: String,
}

/// The answer of a token rotation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TokenIssued {
    /// The new token; the old one stopped working.
    pub token: String,
}

/// `POST /agents` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CreateAgent {
    /// A name for people.
    pub name: String,
    /// The machine's host name (restic's `--host`).
    pub hostname: String,
}

/// One repository's backoff as the agent reports it (a duration: immune to clock skew).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RepositoryBackoff {
    /// The repository's name.
    pub repository: String,
    /// Seconds until the agent tries it again.
    pub remaining_seconds: u64,
}

/// A repository an agent has, by its name there and restic's own id of it (from its config):
/// two agents with the same id share one repository, whatever they call it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RepositoryIdentity {
    /// The repository's name in the agent's configuration.
    pub name: String,
    /// restic's repository id (64 hex digits).
    pub repository_id: String,
}

/// One repository's backoff as the agent view shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RepositoryBackoffView {
    /// The repository's name.
    pub repository: String,
    /// When the backoff ends.
    pub backoff_until: DateTime<Utc>,
}

/// An agent as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AgentView {
    /// Its id.
    pub id: AgentId,
    /// Its name.
    pub name: String,
    /// Its host name.
    pub hostname: String,
    /// Derived: offline, backoff, saturated or online.
    pub status: AgentStatus,
    /// When it last sent a heartbeat.
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    /// Its authoritative settings.
    pub settings: Settings,
    /// Whether the settings still follow the agent's YAML (`agent`) or were set by the API (`api`).
    pub settings_source: SettingsSource,
    /// Tasks it runs now (as last reported).
    pub running_tasks: u32,
    /// Tasks it holds but has not started, plus its due pending tasks on the server.
    pub queue_depth: u32,
    /// The latest backoff deadline, agent-wide or of any repository.
    pub backoff_until: Option<DateTime<Utc>>,
    /// Repositories in backoff.
    pub backoff_repositories: Vec<RepositoryBackoffView>,
    /// Its tasks waiting for their `nextRetryAt`, counted by the server.
    pub pending_retries: u32,
    /// `queueDepth > agentQueueThreshold`.
    pub saturated: bool,
    /// The agent's version, as reported.
    pub agent_version: Option<String>,
    /// restic's version on the agent, as reported.
    pub restic_version: Option<String>,
    /// The repositories the agent reported, with restic's ids of them.
    #[serde(default)]
    pub repositories: Vec<RepositoryIdentity>,
}

/// `POST /agents` answer: the view plus the agent's token, shown once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AgentCreated {
    /// The new agent.
    #[serde(flatten)]
    pub agent: AgentView,
    /// Its token.
    pub token: String,
}

/// `POST /agents/{id}/heartbeat` body. All optional but the two counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    /// Tasks running now.
    pub running_tasks: u32,
    /// Tasks held but not started.
    pub queue_depth: u32,
    /// Ids of running tasks (their leases are renewed).
    #[serde(default)]
    pub running_task_ids: Vec<TaskId>,
    /// Ids of held, not started tasks (their leases are renewed).
    #[serde(default)]
    pub queued_task_ids: Vec<TaskId>,
    /// Whole-agent backoff deadline; used only when neither duration field is present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_until: Option<DateTime<Utc>>,
    /// Repositories in backoff, with the seconds left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_repositories: Option<Vec<RepositoryBackoff>>,
    /// Seconds left of a whole-agent backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_backoff_seconds: Option<u64>,
    /// Retries the agent knows of (diagnostics only; the view shows the server's count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_retries: Option<u32>,
    /// Settings from the agent's YAML, adopted while nobody PATCHed the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposed_settings: Option<SettingsPatch>,
    /// The agent's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// restic's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restic_version: Option<String>,
    /// The repositories the agent has, with restic's ids (replaces the previous report;
    /// absent: unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repositories: Option<Vec<RepositoryIdentity>>,
}

/// The heartbeat's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatAnswer {
    /// The settings to apply now.
    pub settings: Settings,
    /// Where they come from: `agent` (its file's proposals are adopted) or `api` (a PATCH
    /// took them over; the file's settings keys are ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings_source: Option<crate::SettingsSource>,
    /// The server's clock, to measure skew.
    pub server_time: DateTime<Utc>,
    /// Cancelled tasks to stop without a result.
    #[serde(default)]
    pub cancel_task_ids: Vec<TaskId>,
}

/// `POST /agents/{id}/tasks/claim` body: the agent's free slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ClaimRequest {
    /// Most tasks to hand out (1-500).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 500))]
    pub limit: u32,
    /// Most tasks per kind; absent means only `limit` applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::task::PerKindCounts>))]
    pub per_kind: Option<PerKind<u32>>,
    /// Seconds the server may hold the request when nothing is claimable, answering as soon
    /// as a task of this agent becomes claimable (0-60; 0, the default, answers at once).
    #[serde(default, skip_serializing_if = "is_zero")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 60))]
    pub wait_seconds: u32,
}

/// The most a claim may ask the server to wait.
pub const MAX_CLAIM_WAIT_SECONDS: u32 = 60;

#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if signature"
)]
fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A task handed to an agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ClaimedTask {
    /// The task.
    pub id: TaskId,
    /// Its policy (`null` for a restore or a listing, which people ask for).
    pub policy_id: Option<PolicyId>,
    /// What to run.
    pub kind: TaskKind,
    /// This attempt's number (1 for the first); report it back with start and result.
    pub attempt: u32,
    /// Failed attempts that spent budget so far.
    pub retry_count: u32,
    /// The task's retry budget.
    pub max_retries: u32,
    /// Not to be started before this time.
    pub next_retry_at: Option<DateTime<Utc>>,
    /// The policy's time limit; `null` uses the agent's `taskTimeoutMinutes`.
    pub timeout_minutes: Option<u32>,
    /// What to back up.
    #[serde(default)]
    pub paths: Vec<String>,
    /// restic `--exclude` patterns.
    #[serde(default)]
    pub excludes: Vec<String>,
    /// The repository's name in the agent's configuration.
    pub repository: String,
    /// Keep rules for prune.
    #[serde(default)]
    pub retention: Option<Retention>,
    /// A restore's or a listing's snapshot and what to do with it.
    #[serde(flatten)]
    pub request: TaskRequest,
}

/// The claim's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ClaimAnswer {
    /// Due tasks, now leased to the agent.
    pub tasks: Vec<ClaimedTask>,
}

/// `POST /tasks/{id}/start` body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct StartRequest {
    /// The claimed attempt.
    pub attempt: u32,
}

/// `POST /tasks/{id}/result` body: one attempt's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AttemptReport {
    /// The attempt this reports (the idempotency key, with the task id).
    pub attempt: u32,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// For `failed`: whether retrying may help (`null` counts as retriable).
    #[serde(default)]
    pub error_kind: Option<ErrorClass>,
    /// What went wrong, for people.
    #[serde(default)]
    pub error: Option<String>,
    /// restic's exit code.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// When restic started.
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    /// The snapshot made (0.14 reports the 8-hex short id).
    #[serde(default)]
    pub snapshot_id: Option<String>,
    /// Files new in this snapshot.
    #[serde(default)]
    pub files_new: Option<u64>,
    /// Bytes added to the repository.
    #[serde(default)]
    pub data_added: Option<u64>,
    /// What a restore restored, or a listing's entries.
    #[serde(flatten)]
    pub output: TaskOutput,
}

impl AttemptReport {
    /// A report of `outcome` for `attempt` with every optional field empty.
    pub const fn new(attempt: u32, outcome: AttemptOutcome) -> Self {
        Self {
            attempt,
            outcome,
            error_kind: None,
            error: None,
            exit_code: None,
            started_at: None,
            finished_at: None,
            snapshot_id: None,
            files_new: None,
            data_added: None,
            output: TaskOutput::none(),
        }
    }
}

/// A task as the API shows it, with its retry metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TaskView {
    /// Its id.
    pub id: TaskId,
    /// Its policy (`null` for a restore or a listing).
    pub policy_id: Option<PolicyId>,
    /// Its agent.
    pub agent_id: AgentId,
    /// What it runs.
    pub kind: TaskKind,
    /// Where it stands.
    pub status: TaskStatus,
    /// The latest attempt number handed out (0 before the first claim).
    pub attempt: u32,
    /// Failed attempts that spent budget.
    pub retry_count: u32,
    /// The budget.
    pub max_retries: u32,
    /// When it may be claimed again.
    pub next_retry_at: Option<DateTime<Utc>>,
    /// Whether it failed for good.
    pub failed_permanently: bool,
    /// Why, if it did.
    pub permanent_reason: Option<PermanentReason>,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// The schedule slot it runs for.
    pub slot: DateTime<Utc>,
    /// When its lease lapses, while claimed or running.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// The repository of a restore or a listing (a policy's task runs on its policy's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// A restore's or a listing's snapshot and what to do with it.
    #[serde(flatten)]
    pub request: TaskRequest,
    /// What its successful attempt restored or listed.
    #[serde(flatten)]
    pub output: TaskOutput,
}

/// One attempt, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BackupRunView {
    /// Its id.
    pub id: BackupRunId,
    /// Its task.
    pub task_id: TaskId,
    /// Its policy (`null` for a restore or a listing).
    pub policy_id: Option<PolicyId>,
    /// Its agent.
    pub agent_id: AgentId,
    /// What ran.
    pub kind: TaskKind,
    /// The attempt number.
    pub attempt: u32,
    /// How it went.
    pub status: RunStatus,
    /// Start.
    pub started_at: Option<DateTime<Utc>>,
    /// End.
    pub finished_at: Option<DateTime<Utc>>,
    /// The snapshot made.
    pub snapshot_id: Option<String>,
    /// Files new.
    pub files_new: Option<u64>,
    /// Bytes added.
    pub data_added: Option<u64>,
    /// `finishedAt - startedAt`.
    pub duration_ms: Option<i64>,
    /// restic's exit code.
    pub exit_code: Option<i32>,
    /// The error, if any.
    pub error: Option<String>,
    /// Its class, if it failed.
    pub error_kind: Option<ErrorClass>,
    /// The result arrived after the attempt was closed as "agent lost".
    pub late: bool,
    /// This attempt ended the task as failed permanently.
    pub failed_permanently: bool,
}

/// A policy as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PolicyView {
    /// Its id.
    pub id: PolicyId,
    /// What it asks for.
    #[serde(flatten)]
    pub spec: PolicySpec,
    /// When the scheduler next creates a task (`null` while disabled).
    pub next_due_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When its last success finished (`null`: never).
    pub last_success_at: Option<DateTime<Utc>>,
    /// When its last finished attempt (succeeded, partial or failed) finished.
    pub last_run_at: Option<DateTime<Utc>>,
    /// That attempt's status.
    pub last_run_status: Option<RunStatus>,
    /// Is it protected: `ok`, `never_run`, `overdue`, `failing` or `disabled`.
    pub protection: crate::Protection,
    /// The `alertAfter` in force: the policy's own, or the default (twice the schedule's gap
    /// plus the lease); `null` until the scheduler's next tick for policies from before.
    pub effective_alert_after: Option<String>,
}

/// A page of a list: newest first; pass `nextCursor` as `cursor` for the next page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// This page's items.
    pub items: Vec<T>,
    /// `null` on the last page.
    pub next_cursor: Option<String>,
}

/// The machine-readable error codes of the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// 400: the body is not JSON.
    MalformedJson,
    /// 401: missing, malformed or wrong token.
    Unauthorized,
    /// 404: no such object for this caller.
    NotFound,
    /// 405: the route exists, the method does not.
    MethodNotAllowed,
    /// 409: the request conflicts with the object's state.
    Conflict,
    /// 409: a result for an attempt already closed.
    StaleAttempt,
    /// 403: the tenant is at one of its limits (`limits.maxAgentsPerTenant`, ...).
    QuotaExceeded,
    /// 413: body over 1 MiB.
    PayloadTooLarge,
    /// 422: a field is missing, unknown or out of range.
    ValidationFailed,
    /// 429: slow down; see `Retry-After`.
    RateLimited,
    /// 503: the database is unreachable; see `Retry-After`.
    DatabaseUnavailable,
    /// 500: a bug; the details are in the server's log.
    InternalError,
}

impl ErrorCode {
    /// The HTTP status that goes with the code.
    pub const fn http_status(self) -> u16 {
        match self {
            ErrorCode::MalformedJson => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict | ErrorCode::StaleAttempt => 409,
            ErrorCode::QuotaExceeded => 403,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::ValidationFailed => 422,
            ErrorCode::RateLimited => 429,
            ErrorCode::DatabaseUnavailable => 503,
            ErrorCode::InternalError => 500,
        }
    }
}

/// The body of every error answer: `{"error": {"code", "message", "field"}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// For people.
    pub message: String,
    /// The offending field, for validation errors.
    pub field: Option<String>,
}
