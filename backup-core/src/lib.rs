//! # backup-core: the pure heart of the restic fleet orchestrator
//!
//! Everything here is logic without IO, shared by the server, the store and the agent, and
//! usable on its own by anyone building their own orchestrator or agent:
//!
//! - [`ConcurrencyGate`]: a total limit plus one per [`TaskKind`], resizable at runtime.
//! - [`ExponentialBackoff`] and [`RetryBudget`]: when to try a failed task again, and when to stop.
//! - [`Settings`] with its ranges and cross-field rules; [`PolicySpec`] and [`Schedule`].
//! - The traits at the edges: [`Clock`] (wall time) and [`ProcessRunner`] (running restic).
//! - The wire types of the HTTP API ([`Heartbeat`], [`ClaimedTask`], [`AttemptReport`], views).
//!
//! It depends on no database, HTTP or process crate: the `mock` feature adds mockall mocks of
//! [`Clock`] and [`ProcessRunner`] for other crates' tests.
//!
//! ```
//! use std::time::Duration;
//! use backup_core::{
//!     ConcurrencyGate, ErrorClass, ExponentialBackoff, GateLimits, Jitter, ManualClock,
//!     RetryBudget, RetryDecision, Settings, SettingsPatch, SplitMix64, TaskKind,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // An agent's settings, patched and validated as a whole.
//! let patch: SettingsPatch = serde_json::from_str(r#"{"maxConcurrentTasks": 2}"#).unwrap();
//! let settings = Settings::default().apply(&patch).unwrap();
//!
//! // At most 2 tasks at once, at most 1 backup.
//! let gate = ConcurrencyGate::new(GateLimits::from(&settings));
//! let first = gate.acquire(TaskKind::Backup).await;
//! assert!(gate.try_acquire(TaskKind::Backup).is_none(), "one backup at a time");
//! let check = gate.try_acquire(TaskKind::Check).expect("a check fits beside it");
//! assert_eq!(gate.snapshot().running, 2);
//! drop((first, check));
//!
//! // A retriable failure with budget left is retried after the backoff delay.
//! let backoff = ExponentialBackoff::from_settings(&settings).with_jitter(Jitter::None);
//! let budget = RetryBudget::new(settings.max_retries, backoff);
//! let clock = ManualClock::new("2026-01-01T00:00:00Z".parse().unwrap());
//! let mut rng = SplitMix64::new(42);
//! let decision = budget.decide(0, ErrorClass::Retriable, &clock, &mut rng);
//! assert_eq!(
//!     decision,
//!     RetryDecision::Retry { retry_count: 1, next_retry_at: "2026-01-01T00:01:00Z".parse().unwrap() }
//! );
//! # }
//! ```
#![deny(missing_docs)]

mod backoff;
mod clock;
mod dispatch;
mod enroll;
mod error;
mod event;
pub mod exposition;
mod gate;
mod ids;
mod policy;
mod process;
mod protection;
mod restore;
mod retry;
mod schedule;
mod settings;
mod snapshot;
mod status;
mod task;
mod webhook;
mod wire;

pub use backoff::{ExponentialBackoff, Jitter, RandomSource, SplitMix64};
#[cfg(feature = "mock")]
pub use clock::MockClock;
pub use clock::{Clock, ManualClock, SystemClock};
pub use dispatch::{DispatchInputs, SkipReason};
pub use enroll::{
    CreateEnrollmentToken, EnrollRequest, Enrolled, EnrollmentTokenCreated, EnrollmentTokenId,
    EnrollmentTokenView, MAX_ENROLLMENT_TTL, MAX_ENROLLMENT_USES,
};
pub use error::{Error, ErrorClass, Result, in_api_words};
pub use event::{Actor, EventType, EventView};
pub use gate::{Acquire, ConcurrencyGate, GateGuard, GateLimits, GateSnapshot};
pub use ids::{AgentId, BackupRunId, EventId, PolicyId, TaskId, TenantId, WebhookId};
pub use policy::{
    MAX_NAME_CHARS, MAX_PATH_BYTES, MAX_PATHS, MAX_REPOSITORY_CHARS, MAX_TIMEOUT_MINUTES,
    PolicyPatch, PolicySpec, Retention, validate_name, validate_repository_name,
};
#[cfg(feature = "mock")]
pub use process::MockProcessRunner;
pub use process::{
    ExitStatus, IoClass, ProcessControl, ProcessEvent, ProcessOutcome, ProcessRunner, ProcessSpec,
    StopSignal, Stopper, Stream, Termination,
};
pub use protection::{
    MAX_ALERT_AFTER, Protection, Summary, default_alert_after, human_duration, parse_alert_after,
};
pub use restore::{
    EntryType, LsEntry, LsRequest, MAX_LS_ENTRIES, RestoreRequest, TaskOutput, TaskRequest,
    validate_snapshot_id,
};
pub use retry::{RetryBudget, RetryDecision};
pub use schedule::{Schedule, ScheduleSpec};
pub use settings::{
    BACKOFF_BASE_SECONDS_RANGE, BANDWIDTH_RANGE, CONCURRENCY_RANGE, CPU_QUOTA_RANGE,
    FAILURE_THRESHOLD_RANGE, MAX_BACKOFF_MINUTES_RANGE, MAX_RETRIES_RANGE, Range, SETTING_FIELDS,
    Settings, SettingsPatch,
};
pub use snapshot::{
    MAX_SNAPSHOTS_PER_REPOSITORY, POLICY_TAG_PREFIX, SnapshotList, SnapshotReport, SnapshotSummary,
    SnapshotView, SnapshotsStored,
};
pub use status::{AgentStatus, SettingsSource, StatusInputs};
#[cfg(feature = "openapi")]
pub use task::PerKindCounts;
pub use task::{AttemptOutcome, PerKind, PermanentReason, RunStatus, TaskKind, TaskStatus};
pub use webhook::{
    CreateWebhook, DeliveryStatus, DeliveryView, HEADER_EVENT_ID, HEADER_EVENT_TYPE,
    HEADER_SIGNATURE, HEADER_TIMESTAMP, WebhookCreated, WebhookView, sign_webhook, verify_webhook,
};
pub use wire::{
    AgentCreated, AgentView, AttemptReport, BackupRunView, ClaimAnswer, ClaimRequest, ClaimedTask,
    CreateAgent, CreateTenant, ErrorBody, ErrorCode, ErrorDetail, Heartbeat, HeartbeatAnswer,
    MAX_CLAIM_WAIT_SECONDS, Page, PolicyView, RepositoryBackoff, RepositoryBackoffView,
    RepositoryIdentity, StartRequest, TaskView, TenantCreated, TokenIssued,
};
