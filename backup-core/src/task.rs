//! What a task is (its kind), where it stands (its status) and how an attempt ended.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::Error;

/// The restic operations the orchestrator runs: three that policies schedule, and two that a
/// person asks for (restore, and `ls` for the snapshot browser).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TaskKind {
    /// `restic backup`: shares its repository with other backups.
    Backup,
    /// `restic check`: needs its repository to itself.
    Check,
    /// `restic forget --prune`: needs its repository to itself.
    Prune,
    /// `restic restore`: shares its repository, like a backup.
    Restore,
    /// `restic ls` of one directory level: takes no repository lock.
    Ls,
}

impl TaskKind {
    /// Every kind, in a fixed order (`index()` order).
    pub const ALL: [TaskKind; 5] = [
        TaskKind::Backup,
        TaskKind::Check,
        TaskKind::Prune,
        TaskKind::Restore,
        TaskKind::Ls,
    ];

    /// The kinds a policy schedules.
    pub const SCHEDULED: [TaskKind; 3] = [TaskKind::Backup, TaskKind::Check, TaskKind::Prune];

    /// A dense index (0 to 4) for per-kind arrays.
    pub const fn index(self) -> usize {
        match self {
            TaskKind::Backup => 0,
            TaskKind::Check => 1,
            TaskKind::Prune => 2,
            TaskKind::Restore => 3,
            TaskKind::Ls => 4,
        }
    }

    /// The wire name (`backup`, `check`, `prune`, `restore`, `ls`).
    pub const fn as_str(self) -> &'static str {
        match self {
            TaskKind::Backup => "backup",
            TaskKind::Check => "check",
            TaskKind::Prune => "prune",
            TaskKind::Restore => "restore",
            TaskKind::Ls => "ls",
        }
    }

    /// Whether the task needs its repository to itself (check and prune do).
    pub const fn is_exclusive(self) -> bool {
        matches!(self, TaskKind::Check | TaskKind::Prune)
    }

    /// Whether the task takes the agent's lock of its repository at all (`ls` only reads, and
    /// a person browsing waits for no prune).
    pub const fn locks_repository(self) -> bool {
        !matches!(self, TaskKind::Ls)
    }

    /// Whether a policy schedules this kind (restore and ls are asked for by people).
    pub const fn is_scheduled(self) -> bool {
        matches!(self, TaskKind::Backup | TaskKind::Check | TaskKind::Prune)
    }
}

/// Where a task stands. `pending`, `claimed` and `running` are open; the rest are final.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TaskStatus {
    /// Waiting to be claimed (possibly until its `nextRetryAt`).
    Pending,
    /// Handed to an agent under a lease, not started yet.
    Claimed,
    /// The agent said it started.
    Running,
    /// An attempt succeeded (or was partial).
    Succeeded,
    /// No more attempts: a permanent error, or the retry budget is spent.
    FailedPermanently,
    /// Cancelled by the tenant, by deleting its policy or its agent.
    Cancelled,
}

impl TaskStatus {
    /// Whether the task still needs an agent's work (pending, claimed or running).
    pub const fn is_open(self) -> bool {
        matches!(
            self,
            TaskStatus::Pending | TaskStatus::Claimed | TaskStatus::Running
        )
    }

    /// Whether `self -> to` is an allowed transition.
    ///
    /// ```text
    /// pending  -> claimed (claim) | cancelled
    ///          -> succeeded        (a late success of an attempt closed as "agent lost")
    /// claimed  -> running (start) | pending (lease lapsed, attempt given back) | cancelled
    ///          -> succeeded | failed_permanently   (a result before start)
    /// running  -> succeeded | failed_permanently | cancelled
    ///          -> pending          (a retry, an interrupted attempt, an agent lost)
    /// ```
    /// `succeeded`, `failed_permanently` and `cancelled` are final.
    pub const fn can_transition_to(self, to: TaskStatus) -> bool {
        use TaskStatus::*;
        matches!(
            (self, to),
            (Pending, Claimed)
                | (Pending, Succeeded)
                | (Pending, Cancelled)
                | (Claimed, Running)
                | (Claimed, Pending)
                | (Claimed, Succeeded)
                | (Claimed, FailedPermanently)
                | (Claimed, Cancelled)
                | (Running, Succeeded)
                | (Running, FailedPermanently)
                | (Running, Pending)
                | (Running, Cancelled)
        )
    }

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Claimed => "claimed",
            TaskStatus::Running => "running",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::FailedPermanently => "failed_permanently",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    /// Every status.
    pub const ALL: [TaskStatus; 6] = [
        TaskStatus::Pending,
        TaskStatus::Claimed,
        TaskStatus::Running,
        TaskStatus::Succeeded,
        TaskStatus::FailedPermanently,
        TaskStatus::Cancelled,
    ];
}

/// How one attempt ended, as the agent reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AttemptOutcome {
    /// restic finished and made its snapshot (or its check / prune passed).
    Succeeded,
    /// restic exit 3: the snapshot exists but some files could not be read. Counts as success.
    Partial,
    /// The attempt failed; `errorKind` says whether retrying may help.
    Failed,
    /// The agent stopped it (shutdown). Spends no retry budget.
    Interrupted,
}

impl AttemptOutcome {
    /// Whether the outcome completes the task.
    pub const fn is_success(self) -> bool {
        matches!(self, AttemptOutcome::Succeeded | AttemptOutcome::Partial)
    }
}

/// The status of one backup run (one attempt).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunStatus {
    /// Started, no result yet.
    Running,
    /// Succeeded.
    Succeeded,
    /// Succeeded with unreadable files.
    Partial,
    /// Failed (including "agent lost").
    Failed,
    /// Stopped by the agent's shutdown.
    Interrupted,
    /// Stopped because the task was cancelled.
    Cancelled,
}

impl RunStatus {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Partial => "partial",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// Every status.
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Running,
        RunStatus::Succeeded,
        RunStatus::Partial,
        RunStatus::Failed,
        RunStatus::Interrupted,
        RunStatus::Cancelled,
    ];
}

impl From<AttemptOutcome> for RunStatus {
    fn from(outcome: AttemptOutcome) -> Self {
        match outcome {
            AttemptOutcome::Succeeded => RunStatus::Succeeded,
            AttemptOutcome::Partial => RunStatus::Partial,
            AttemptOutcome::Failed => RunStatus::Failed,
            AttemptOutcome::Interrupted => RunStatus::Interrupted,
        }
    }
}

/// Why a task failed for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PermanentReason {
    /// The error will not go away by retrying (wrong password, no repository).
    PermanentError,
    /// Every attempt of the budget (`maxRetries + 1`) failed.
    RetriesExhausted,
}

impl PermanentReason {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            PermanentReason::PermanentError => "permanent_error",
            PermanentReason::RetriesExhausted => "retries_exhausted",
        }
    }
}

macro_rules! wire_enum_text {
    ($ty:ty, $what:literal, $all:expr) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                $all.into_iter().find(|v| v.as_str() == s).ok_or_else(|| {
                    let names: Vec<&str> = $all.iter().map(|v| v.as_str()).collect();
                    Error::invalid($what, s, format!("one of {}", names.join(", ")))
                })
            }
        }
    };
}

wire_enum_text!(TaskKind, "kind", TaskKind::ALL);
wire_enum_text!(TaskStatus, "status", TaskStatus::ALL);
wire_enum_text!(RunStatus, "status", RunStatus::ALL);
wire_enum_text!(
    PermanentReason,
    "permanentReason",
    [
        PermanentReason::PermanentError,
        PermanentReason::RetriesExhausted
    ]
);

/// Per-kind numbers (limits, counts, free slots), with the wire shape `{backup, check, prune,
/// restore, ls}`. A kind missing from a body reads as the default (0): an agent from before
/// restore existed claims no restore it could not run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct PerKind<T> {
    /// For backups.
    pub backup: T,
    /// For checks.
    pub check: T,
    /// For prunes.
    pub prune: T,
    /// For restores.
    pub restore: T,
    /// For directory listings.
    pub ls: T,
}

impl<T: Copy> PerKind<T> {
    /// The same value for every kind.
    pub const fn splat(value: T) -> Self {
        Self {
            backup: value,
            check: value,
            prune: value,
            restore: value,
            ls: value,
        }
    }

    /// The value for `kind`.
    pub const fn get(&self, kind: TaskKind) -> T {
        match kind {
            TaskKind::Backup => self.backup,
            TaskKind::Check => self.check,
            TaskKind::Prune => self.prune,
            TaskKind::Restore => self.restore,
            TaskKind::Ls => self.ls,
        }
    }

    /// A mutable reference to the value for `kind`.
    pub fn get_mut(&mut self, kind: TaskKind) -> &mut T {
        match kind {
            TaskKind::Backup => &mut self.backup,
            TaskKind::Check => &mut self.check,
            TaskKind::Prune => &mut self.prune,
            TaskKind::Restore => &mut self.restore,
            TaskKind::Ls => &mut self.ls,
        }
    }

    /// Builds from a function of the kind.
    pub fn from_fn(mut f: impl FnMut(TaskKind) -> T) -> Self {
        Self {
            backup: f(TaskKind::Backup),
            check: f(TaskKind::Check),
            prune: f(TaskKind::Prune),
            restore: f(TaskKind::Restore),
            ls: f(TaskKind::Ls),
        }
    }
}

/// The OpenAPI schema of `PerKind<u32>` (utoipa cannot derive it for the generic type).
#[cfg(feature = "openapi")]
#[derive(Debug, utoipa::ToSchema)]
#[schema(
    description = "A number for each task kind: backup, check, prune, restore, ls (a kind left out counts 0)."
)]
pub struct PerKindCounts {
    /// For backups.
    pub backup: Option<u32>,
    /// For checks.
    pub check: Option<u32>,
    /// For prunes.
    pub prune: Option<u32>,
    /// For restores.
    pub restore: Option<u32>,
    /// For directory listings.
    pub ls: Option<u32>,
}
