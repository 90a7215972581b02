//! Rows as the database returns them, and their conversion to the API's views.
//!
//! Enums are stored as their wire names, lists and retention as JSON text, so both databases
//! hold the same values and a row read back converts the same way.

use backup_core::{
    AgentId, AgentView, BackupRunId, BackupRunView, ErrorClass, PermanentReason, PolicyId,
    PolicySpec, PolicyView, RepositoryBackoffView, Retention, RunStatus, ScheduleSpec, Settings,
    SettingsSource, StatusInputs, TaskId, TaskKind, TaskOutput, TaskRequest, TaskStatus, TaskView,
};
use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

use crate::{Result, StoreConfig, StoreError, cursor::Cursor, ts::Ts};

fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("stored {what} is unreadable: {detail}"))
}

pub(crate) fn parse<T: std::str::FromStr>(what: &str, s: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse().map_err(|e| corrupt(what, e))
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| corrupt(what, e))
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

fn unsigned(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

/// An agent with its settings, its last report and the server-side counts of its tasks.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AgentRow {
    pub id: Uuid,
    pub name: String,
    pub hostname: String,
    #[sqlx(flatten)]
    pub settings: SettingsColumns,
    pub agent_version: Option<String>,
    pub restic_version: Option<String>,
    pub last_heartbeat_at: Option<Ts>,
    pub running_tasks: i32,
    pub queue_depth: i32,
    pub backoff_until: Option<Ts>,
    pub backoff_repositories: String,
    pub reported_repositories: String,
    pub due_pending: i64,
    pub retry_pending: i64,
}

/// An agent's settings columns (`$p` is the table's qualifier, `"a."` or `""`). Rows older
/// than the seed's migrations may hold NULLs; [`SettingsColumns::settings`] fills them from
/// `Settings::default()`, the one place the defaults live.
macro_rules! settings_columns {
    ($p:literal) => {
        concat!(
            $p,
            "max_concurrent_tasks, ",
            $p,
            "max_concurrent_backups, ",
            $p,
            "max_concurrent_checks, ",
            $p,
            "max_concurrent_prunes, ",
            $p,
            "max_concurrent_restores, ",
            $p,
            "cpu_quota_percent, ",
            $p,
            "bandwidth_limit_mbps, ",
            $p,
            "max_retries, ",
            $p,
            "max_backoff_minutes, ",
            $p,
            "backoff_base_seconds, ",
            $p,
            "backoff_failure_threshold, ",
            $p,
            "settings_source"
        )
    };
}
pub(crate) use settings_columns;

/// The agent columns of [`AgentRow`]. `$now` is the parameter holding the current time (for the
/// counts of due and retry-waiting tasks).
macro_rules! agent_columns {
    ($now:literal) => {
        concat!(
            "a.id, a.tenant_id, a.name, a.hostname, ",
            $crate::rows::settings_columns!("a."),
            ", a.agent_version, a.restic_version, a.last_heartbeat_at, ",
            "COALESCE(a.running_tasks, 0) AS running_tasks, COALESCE(a.queue_depth, 0) AS queue_depth, ",
            "a.backoff_until, a.backoff_repositories, a.reported_repositories, ",
            "(SELECT COUNT(*) FROM tasks t WHERE t.agent_id = a.id AND t.status = 'pending' ",
            "AND (t.next_retry_at IS NULL OR t.next_retry_at <= ",
            $now,
            ")) AS due_pending, ",
            "(SELECT COUNT(*) FROM tasks t WHERE t.agent_id = a.id AND t.status = 'pending' ",
            "AND t.next_retry_at > ",
            $now,
            ") AS retry_pending"
        )
    };
}
pub(crate) use agent_columns;

/// A policy's protection (`p.` columns) at `$now`, in SQL: the order of
/// [`backup_core::Protection::of`].
macro_rules! protection_case {
    ($now:literal) => {
        concat!(
            "(CASE WHEN NOT p.enabled THEN 'disabled' WHEN p.failing THEN 'failing' ",
            "WHEN p.alert_deadline < ",
            $now,
            " THEN 'overdue' WHEN p.last_success_at IS NULL THEN 'never_run' ELSE 'ok' END)"
        )
    };
}
pub(crate) use protection_case;

/// What a heartbeat needs of its agent: the settings, where they come from, and whether any
/// cancelled task waits to be told.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SettingsRow {
    #[sqlx(flatten)]
    pub settings: SettingsColumns,
    pub pending_cancels: i64,
    pub tenant_id: Uuid,
    pub name: String,
    /// Set while the scheduler counts the agent offline: this heartbeat brings it back.
    pub offline_since: Option<Ts>,
    /// Whether its current backoff was announced (`agent.backoff_started`).
    pub backoff_announced: bool,
    /// Its repositories as last reported (JSON).
    pub reported_repositories: String,
}

/// An agent's settings columns ([`settings_columns`]) and where the settings come from.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SettingsColumns {
    pub max_concurrent_tasks: Option<i32>,
    pub max_concurrent_backups: Option<i32>,
    pub max_concurrent_checks: Option<i32>,
    pub max_concurrent_prunes: Option<i32>,
    pub max_concurrent_restores: Option<i32>,
    pub cpu_quota_percent: Option<i32>,
    pub bandwidth_limit_mbps: Option<i32>,
    pub max_retries: i32,
    pub max_backoff_minutes: i32,
    pub backoff_base_seconds: i32,
    pub backoff_failure_threshold: i32,
    pub settings_source: String,
}

impl SettingsColumns {
    /// The settings; a NULL (a row from before the seed's migrations) takes the default.
    pub(crate) fn settings(&self) -> Settings {
        let d = Settings::default();
        let or = |v: Option<i32>, default: u32| v.map_or(default, unsigned);
        Settings {
            max_concurrent_tasks: or(self.max_concurrent_tasks, d.max_concurrent_tasks),
            max_concurrent_backups: or(self.max_concurrent_backups, d.max_concurrent_backups),
            max_concurrent_checks: or(self.max_concurrent_checks, d.max_concurrent_checks),
            max_concurrent_prunes: or(self.max_concurrent_prunes, d.max_concurrent_prunes),
            max_concurrent_restores: or(self.max_concurrent_restores, d.max_concurrent_restores),
            cpu_quota_percent: or(self.cpu_quota_percent, d.cpu_quota_percent),
            bandwidth_limit_mbps: self.bandwidth_limit_mbps.map(unsigned),
            max_retries: unsigned(self.max_retries),
            max_backoff_minutes: unsigned(self.max_backoff_minutes),
            backoff_base_seconds: unsigned(self.backoff_base_seconds),
            backoff_failure_threshold: unsigned(self.backoff_failure_threshold),
        }
    }

    pub(crate) fn source(&self) -> Result<SettingsSource> {
        match self.settings_source.as_str() {
            "agent" => Ok(SettingsSource::Agent),
            "api" => Ok(SettingsSource::Api),
            other => Err(corrupt("settings source", other)),
        }
    }
}

impl AgentRow {
    pub(crate) fn repository_backoffs(&self) -> Result<Vec<RepositoryBackoffView>> {
        from_json("backoff repositories", &self.backoff_repositories)
    }

    /// The agent's view at `now`: derived status, queue depth, saturation.
    pub(crate) fn view(&self, config: &StoreConfig, now: DateTime<Utc>) -> Result<AgentView> {
        let queue_depth = unsigned(self.queue_depth).saturating_add(count(self.due_pending));
        let backoff_until = self.backoff_until.map(Ts::get);
        let inputs = StatusInputs {
            now,
            last_heartbeat_at: self.last_heartbeat_at.map(Ts::get),
            offline_after: TimeDelta::seconds(i64::from(config.offline_after_seconds)),
            backoff_until,
            queue_depth,
            queue_threshold: config.agent_queue_threshold,
        };
        Ok(AgentView {
            id: AgentId::from_uuid(self.id),
            name: self.name.clone(),
            hostname: self.hostname.clone(),
            status: inputs.status(),
            last_heartbeat_at: inputs.last_heartbeat_at,
            settings: self.settings.settings(),
            settings_source: self.settings.source()?,
            running_tasks: unsigned(self.running_tasks),
            queue_depth,
            backoff_until,
            backoff_repositories: self.repository_backoffs()?,
            pending_retries: count(self.retry_pending),
            saturated: inputs.saturated(),
            agent_version: self.agent_version.clone(),
            restic_version: self.restic_version.clone(),
            repositories: from_json("reported repositories", &self.reported_repositories)?,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PolicyRow {
    pub id: Uuid,
    pub agent_id: Uuid,
    pub name: String,
    pub kind: String,
    pub schedule_every: Option<String>,
    pub schedule_cron: Option<String>,
    pub timezone: Option<String>,
    pub paths: String,
    pub excludes: String,
    pub repository: String,
    pub retention: Option<String>,
    pub max_task_retries: Option<i32>,
    pub timeout_minutes: Option<i32>,
    pub enabled: bool,
    pub next_due_at: Option<Ts>,
    pub created_at: Ts,
    pub updated_at: Ts,
    pub last_success_at: Option<Ts>,
    pub last_run_at: Option<Ts>,
    pub last_run_status: Option<String>,
    /// The explicit `alertAfter` (`None`: the default).
    pub alert_after: Option<String>,
    /// The `alertAfter` in force, in seconds (`None` until the policy's first sweep).
    pub alert_after_seconds: Option<i64>,
    pub alert_deadline: Option<Ts>,
    pub failing: bool,
}

pub(crate) const POLICY_COLUMNS: &str = "p.id, p.agent_id, p.name, p.kind, p.schedule_every, \
    p.schedule_cron, p.timezone, p.paths, p.excludes, p.repository, p.retention, \
    p.max_task_retries, p.timeout_minutes, p.enabled, p.next_due_at, p.created_at, p.updated_at, \
    p.last_success_at, p.last_run_at, p.last_run_status, p.alert_after, p.alert_after_seconds, \
    p.alert_deadline, p.failing";

impl PolicyRow {
    /// Its key in the newest-first lists.
    pub(crate) fn key(&self) -> Cursor {
        Cursor {
            at: self.created_at,
            id: self.id,
        }
    }

    pub(crate) fn spec(&self) -> Result<PolicySpec> {
        Ok(PolicySpec {
            name: self.name.clone(),
            agent_id: AgentId::from_uuid(self.agent_id),
            kind: parse("policy kind", &self.kind)?,
            schedule: ScheduleSpec {
                every: self.schedule_every.clone(),
                cron: self.schedule_cron.clone(),
                // A cron schedule's view names its zone, `UTC` when none was given.
                timezone: self
                    .timezone
                    .clone()
                    .or_else(|| self.schedule_cron.as_ref().map(|_| "UTC".to_owned())),
            },
            paths: from_json("policy paths", &self.paths)?,
            excludes: from_json("policy excludes", &self.excludes)?,
            repository: self.repository.clone(),
            retention: self
                .retention
                .as_deref()
                .map(|r| from_json::<Retention>("retention", r))
                .transpose()?,
            max_task_retries: self.max_task_retries.map(unsigned),
            timeout_minutes: self.timeout_minutes.map(unsigned),
            enabled: self.enabled,
            alert_after: self.alert_after.clone(),
        })
    }

    /// The view at `now` (its protection depends on the time).
    pub(crate) fn view(&self, now: DateTime<Utc>) -> Result<PolicyView> {
        let spec = self.spec()?;
        Ok(PolicyView {
            id: PolicyId::from_uuid(self.id),
            effective_alert_after: self
                .alert_after_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map(|s| backup_core::human_duration(std::time::Duration::from_secs(s))),
            protection: backup_core::Protection::of(
                self.enabled,
                self.failing,
                self.last_success_at.map(Ts::get),
                self.alert_deadline.map(Ts::get),
                now,
            ),
            spec,
            next_due_at: self.next_due_at.map(Ts::get),
            created_at: self.created_at.get(),
            updated_at: self.updated_at.get(),
            last_success_at: self.last_success_at.map(Ts::get),
            last_run_at: self.last_run_at.map(Ts::get),
            last_run_status: self
                .last_run_status
                .as_deref()
                .map(|s| parse("run status", s))
                .transpose()?,
        })
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct TaskRow {
    pub id: Uuid,
    pub policy_id: Option<Uuid>,
    pub agent_id: Uuid,
    pub kind: String,
    pub status: String,
    pub attempt: i32,
    pub started_attempt: i32,
    pub retry_count: i32,
    pub max_retries: i32,
    pub next_retry_at: Option<Ts>,
    pub failed_permanently: bool,
    pub permanent_reason: Option<String>,
    pub last_error: Option<String>,
    pub slot: Ts,
    pub lease_expires_at: Option<Ts>,
    pub created_at: Ts,
    pub updated_at: Ts,
    /// A restore's or a listing's repository (a policy's task runs on its policy's).
    pub repository: Option<String>,
    /// A restore's or a listing's [`TaskRequest`], as JSON.
    pub request: Option<String>,
    /// What its successful attempt found ([`TaskOutput`]), as JSON.
    pub output: Option<String>,
}

pub(crate) const TASK_COLUMNS: &str = "t.id, t.policy_id, t.agent_id, t.kind, t.status, \
    t.attempt, t.started_attempt, COALESCE(t.retry_count, 0) AS retry_count, \
    COALESCE(t.max_retries, 5) AS max_retries, t.next_retry_at, \
    COALESCE(t.failed_permanently, FALSE) AS failed_permanently, t.permanent_reason, \
    t.last_error, t.slot, t.lease_expires_at, t.created_at, t.updated_at, t.repository, \
    t.request, t.output";

impl TaskRow {
    /// Its key in the newest-first lists.
    pub(crate) fn key(&self) -> Cursor {
        Cursor {
            at: self.created_at,
            id: self.id,
        }
    }

    pub(crate) fn status(&self) -> Result<TaskStatus> {
        parse("task status", &self.status)
    }

    pub(crate) fn kind(&self) -> Result<TaskKind> {
        parse("task kind", &self.kind)
    }

    /// A restore's or a listing's request (empty for the scheduled kinds).
    pub(crate) fn request(&self) -> Result<TaskRequest> {
        self.request
            .as_deref()
            .map_or(Ok(TaskRequest::default()), |r| from_json("task request", r))
    }

    pub(crate) fn view(&self) -> Result<TaskView> {
        Ok(TaskView {
            id: TaskId::from_uuid(self.id),
            policy_id: self.policy_id.map(PolicyId::from_uuid),
            agent_id: AgentId::from_uuid(self.agent_id),
            kind: self.kind()?,
            status: self.status()?,
            attempt: unsigned(self.attempt),
            retry_count: unsigned(self.retry_count),
            max_retries: unsigned(self.max_retries),
            next_retry_at: self.next_retry_at.map(Ts::get),
            failed_permanently: self.failed_permanently,
            permanent_reason: self
                .permanent_reason
                .as_deref()
                .map(|r| parse::<PermanentReason>("permanent reason", r))
                .transpose()?,
            last_error: self.last_error.clone(),
            slot: self.slot.get(),
            lease_expires_at: self.lease_expires_at.map(Ts::get),
            created_at: self.created_at.get(),
            updated_at: self.updated_at.get(),
            repository: self.repository.clone(),
            request: self.request()?,
            output: self
                .output
                .as_deref()
                .map_or(Ok(TaskOutput::none()), |o| from_json("task output", o))?,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RunRow {
    pub id: Uuid,
    pub task_id: Uuid,
    pub policy_id: Option<Uuid>,
    pub agent_id: Uuid,
    pub kind: String,
    pub attempt: i32,
    pub status: String,
    pub started_at: Option<Ts>,
    pub finished_at: Option<Ts>,
    pub snapshot_id: Option<String>,
    pub files_new: Option<i64>,
    pub data_added: Option<i64>,
    pub duration_ms: Option<i64>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub error_kind: Option<String>,
    pub late: bool,
    pub failed_permanently: bool,
    pub created_at: Ts,
}

pub(crate) const RUN_COLUMNS: &str = "r.id, r.task_id, r.policy_id, r.agent_id, r.kind, \
    r.attempt, r.status, r.started_at, r.finished_at, r.snapshot_id, r.files_new, r.data_added, \
    r.duration_ms, r.exit_code, r.error, r.error_kind, r.late, r.failed_permanently, r.created_at";

impl RunRow {
    /// Its key in the newest-first lists.
    pub(crate) fn key(&self) -> Cursor {
        Cursor {
            at: self.created_at,
            id: self.id,
        }
    }

    pub(crate) fn view(&self) -> Result<BackupRunView> {
        Ok(BackupRunView {
            id: BackupRunId::from_uuid(self.id),
            task_id: TaskId::from_uuid(self.task_id),
            policy_id: self.policy_id.map(PolicyId::from_uuid),
            agent_id: AgentId::from_uuid(self.agent_id),
            kind: parse("run kind", &self.kind)?,
            attempt: unsigned(self.attempt),
            status: parse::<RunStatus>("run status", &self.status)?,
            started_at: self.started_at.map(Ts::get),
            finished_at: self.finished_at.map(Ts::get),
            snapshot_id: self.snapshot_id.clone(),
            files_new: self.files_new.and_then(|n| u64::try_from(n).ok()),
            data_added: self.data_added.and_then(|n| u64::try_from(n).ok()),
            duration_ms: self.duration_ms,
            exit_code: self.exit_code,
            error: self.error.clone(),
            error_kind: self
                .error_kind
                .as_deref()
                .map(|k| match k {
                    "permanent" => Ok(ErrorClass::Permanent),
                    "retriable" => Ok(ErrorClass::Retriable),
                    other => Err(corrupt("error kind", other)),
                })
                .transpose()?,
            late: self.late,
            failed_permanently: self.failed_permanently,
        })
    }
}

/// The wire name of an error class.
pub(crate) fn class_name(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::Permanent => "permanent",
        _ => "retriable",
    }
}
