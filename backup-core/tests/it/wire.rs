//! The wire types carry exactly the field names of DESIGN §3 and survive a JSON round trip.

use std::collections::BTreeSet;

use backup_core::*;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
    s.parse().expect("rfc3339")
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().expect("object").keys().cloned().collect()
}

fn set(names: &str) -> BTreeSet<String> {
    names.split(", ").map(str::to_owned).collect()
}

/// Serializes, checks the key set, deserializes, and checks it came back equal.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    value: &T,
    expected_keys: &str,
) -> Value {
    let json = serde_json::to_value(value).expect("serializes");
    assert_eq!(keys(&json), set(expected_keys), "{json}");
    let back: T = serde_json::from_value(json.clone()).expect("deserializes");
    assert_eq!(&back, value);
    json
}

fn agent_view() -> AgentView {
    AgentView {
        id: AgentId::new(),
        name: "db-1".into(),
        hostname: "db-1.example".into(),
        status: AgentStatus::Backoff,
        last_heartbeat_at: Some(at("2026-01-01T00:00:00Z")),
        settings: Settings::default(),
        settings_source: SettingsSource::Agent,
        running_tasks: 1,
        queue_depth: 3,
        backoff_until: Some(at("2026-01-01T00:30:00Z")),
        backoff_repositories: vec![RepositoryBackoffView {
            repository: "main".into(),
            backoff_until: at("2026-01-01T00:30:00Z"),
        }],
        pending_retries: 2,
        saturated: false,
        agent_version: Some("0.1.0".into()),
        restic_version: Some("0.14.0".into()),
        repositories: vec![RepositoryIdentity {
            name: "main".into(),
            repository_id: "ab".repeat(32),
        }],
    }
}

#[test]
fn agent_view_and_created() {
    let json = round_trip(
        &agent_view(),
        "id, name, hostname, status, lastHeartbeatAt, settings, settingsSource, runningTasks, \
         queueDepth, backoffUntil, backoffRepositories, pendingRetries, saturated, agentVersion, \
         resticVersion, repositories",
    );
    assert_eq!(keys(&json["repositories"][0]), set("name, repositoryId"));
    assert_eq!(json["status"], "backoff");
    assert_eq!(json["settingsSource"], "agent");
    assert_eq!(json["backoffUntil"], "2026-01-01T00:30:00Z");
    assert_eq!(
        keys(&json["backoffRepositories"][0]),
        set("repository, backoffUntil")
    );
    let created = AgentCreated {
        agent: agent_view(),
        token: "t0ken".into(),
    };
    let json = serde_json::to_value(&created).expect("serializes");
    assert_eq!(json["token"], "t0ken");
    assert_eq!(json["name"], "db-1");
}

#[test]
fn heartbeat_and_answer() {
    let hb = Heartbeat {
        running_tasks: 1,
        queue_depth: 2,
        running_task_ids: vec![TaskId::new()],
        queued_task_ids: vec![TaskId::new(), TaskId::new()],
        backoff_until: Some(at("2026-01-01T01:00:00Z")),
        backoff_repositories: Some(vec![RepositoryBackoff {
            repository: "main".into(),
            remaining_seconds: 120,
        }]),
        agent_backoff_seconds: Some(0),
        pending_retries: Some(1),
        proposed_settings: Some(SettingsPatch {
            max_concurrent_tasks: Some(2),
            ..SettingsPatch::default()
        }),
        agent_version: Some("0.1.0".into()),
        restic_version: Some("0.14.0".into()),
        repositories: Some(vec![]),
    };
    let json = round_trip(
        &hb,
        "runningTasks, queueDepth, runningTaskIds, queuedTaskIds, backoffUntil, backoffRepositories, \
         agentBackoffSeconds, pendingRetries, proposedSettings, agentVersion, resticVersion, \
         repositories",
    );
    assert_eq!(
        keys(&json["backoffRepositories"][0]),
        set("repository, remainingSeconds")
    );
    // Only the two counters are required; unknown fields are ignored (rolling upgrades).
    let minimal: Heartbeat =
        serde_json::from_value(json!({"runningTasks": 0, "queueDepth": 0, "fromTheFuture": 1}))
            .expect("minimal");
    assert_eq!(minimal.backoff_repositories, None);
    assert!(serde_json::from_value::<Heartbeat>(json!({"runningTasks": 0})).is_err());

    round_trip(
        &HeartbeatAnswer {
            settings: Settings::default(),
            settings_source: None,
            server_time: at("2026-01-01T00:00:00Z"),
            cancel_task_ids: vec![TaskId::new()],
        },
        "settings, serverTime, cancelTaskIds",
    );
}

#[test]
fn claim_start_and_result() {
    let json = round_trip(
        &ClaimRequest {
            limit: 3,
            per_kind: Some(PerKind {
                backup: 2,
                check: 1,
                prune: 0,
                restore: 1,
                ls: 3,
            }),
            wait_seconds: 0,
        },
        "limit, perKind",
    );
    assert_eq!(
        keys(&json["perKind"]),
        set("backup, check, prune, restore, ls")
    );
    // An agent from before restores names three kinds: it is handed none of the others.
    let old: ClaimRequest = serde_json::from_value(
        json!({"limit": 2, "perKind": {"backup": 1, "check": 1, "prune": 1}}),
    )
    .expect("an older agent's claim");
    let per_kind = old.per_kind.expect("perKind");
    assert_eq!((per_kind.restore, per_kind.ls), (0, 0));
    round_trip(
        &ClaimedTask {
            id: TaskId::new(),
            policy_id: Some(PolicyId::new()),
            kind: TaskKind::Prune,
            attempt: 2,
            retry_count: 1,
            max_retries: 5,
            next_retry_at: Some(at("2026-01-01T00:02:00Z")),
            timeout_minutes: Some(30),
            paths: vec![],
            excludes: vec![],
            repository: "main".into(),
            retention: Some(Retention {
                keep_last: Some(3),
                ..Retention::default()
            }),
            request: TaskRequest::default(),
        },
        "id, policyId, kind, attempt, retryCount, maxRetries, nextRetryAt, timeoutMinutes, paths, \
         excludes, repository, retention",
    );
    round_trip(
        &ClaimedTask {
            id: TaskId::new(),
            policy_id: None,
            kind: TaskKind::Restore,
            attempt: 1,
            retry_count: 0,
            max_retries: 5,
            next_retry_at: None,
            timeout_minutes: None,
            paths: vec![],
            excludes: vec![],
            repository: "main".into(),
            retention: None,
            request: TaskRequest {
                snapshot_id: Some("0123abcd".repeat(8)),
                include: vec!["/etc/hosts".into()],
                target: Some("/var/restores/x".into()),
                dry_run: true,
                path: None,
            },
        },
        "id, policyId, kind, attempt, retryCount, maxRetries, nextRetryAt, timeoutMinutes, paths, \
         excludes, repository, retention, snapshotId, include, target, dryRun",
    );
    round_trip(&StartRequest { attempt: 1 }, "attempt");
    let report = AttemptReport {
        error_kind: Some(ErrorClass::Retriable),
        error: Some("repository is already locked".into()),
        exit_code: Some(1),
        started_at: Some(at("2026-01-01T00:00:00Z")),
        finished_at: Some(at("2026-01-01T00:00:05Z")),
        snapshot_id: Some("1a2b3c4d".into()),
        files_new: Some(10),
        data_added: Some(4096),
        ..AttemptReport::new(1, AttemptOutcome::Failed)
    };
    let json = round_trip(
        &report,
        "attempt, outcome, errorKind, error, exitCode, startedAt, finishedAt, snapshotId, filesNew, dataAdded",
    );
    assert_eq!(json["outcome"], "failed");
    assert_eq!(json["errorKind"], "retriable");
    let listed = AttemptReport {
        output: TaskOutput {
            entries: Some(vec![LsEntry {
                path: "/srv/a".into(),
                entry_type: EntryType::Dir,
                size: None,
                mtime: Some(at("2026-01-01T00:00:00Z")),
            }]),
            truncated: true,
            ..TaskOutput::none()
        },
        ..AttemptReport::new(1, AttemptOutcome::Succeeded)
    };
    let json = round_trip(
        &listed,
        "attempt, outcome, errorKind, error, exitCode, startedAt, finishedAt, snapshotId, filesNew, \
         dataAdded, entries, truncated",
    );
    assert_eq!(keys(&json["entries"][0]), set("path, type, mtime"));
    assert_eq!(json["entries"][0]["type"], "dir");
}

#[test]
fn task_run_and_policy_views() {
    let json = round_trip(
        &TaskView {
            id: TaskId::new(),
            policy_id: Some(PolicyId::new()),
            agent_id: AgentId::new(),
            kind: TaskKind::Backup,
            status: TaskStatus::FailedPermanently,
            attempt: 6,
            retry_count: 5,
            max_retries: 5,
            next_retry_at: None,
            failed_permanently: true,
            permanent_reason: Some(PermanentReason::RetriesExhausted),
            last_error: Some("boom".into()),
            slot: at("2026-01-01T00:00:00Z"),
            lease_expires_at: None,
            created_at: at("2026-01-01T00:00:00Z"),
            updated_at: at("2026-01-01T00:00:00Z"),
            repository: None,
            request: TaskRequest::default(),
            output: TaskOutput::none(),
        },
        "id, policyId, agentId, kind, status, attempt, retryCount, maxRetries, nextRetryAt, \
         failedPermanently, permanentReason, lastError, slot, leaseExpiresAt, createdAt, updatedAt",
    );
    assert_eq!(json["status"], "failed_permanently");
    assert_eq!(json["permanentReason"], "retries_exhausted");

    round_trip(
        &BackupRunView {
            id: BackupRunId::new(),
            task_id: TaskId::new(),
            policy_id: Some(PolicyId::new()),
            agent_id: AgentId::new(),
            kind: TaskKind::Backup,
            attempt: 1,
            status: RunStatus::Partial,
            started_at: Some(at("2026-01-01T00:00:00Z")),
            finished_at: Some(at("2026-01-01T00:00:01Z")),
            snapshot_id: Some("1a2b3c4d".into()),
            files_new: Some(1),
            data_added: Some(2),
            duration_ms: Some(1000),
            exit_code: Some(3),
            error: None,
            error_kind: None,
            late: false,
            failed_permanently: false,
        },
        "id, taskId, policyId, agentId, kind, attempt, status, startedAt, finishedAt, snapshotId, \
         filesNew, dataAdded, durationMs, exitCode, error, errorKind, late, failedPermanently",
    );

    let spec = PolicySpec {
        name: "nightly".into(),
        agent_id: AgentId::new(),
        kind: TaskKind::Backup,
        schedule: ScheduleSpec::cron("0 3 * * *", "Europe/Berlin"),
        paths: vec!["/srv".into()],
        excludes: vec!["*.tmp".into()],
        repository: "main".into(),
        retention: None,
        max_task_retries: Some(2),
        timeout_minutes: None,
        enabled: true,
        alert_after: None,
    };
    spec.validate().expect("valid policy");
    let json = round_trip(
        &PolicyView {
            id: PolicyId::new(),
            spec,
            next_due_at: Some(at("2026-01-02T02:00:00Z")),
            created_at: at("2026-01-01T00:00:00Z"),
            updated_at: at("2026-01-01T00:00:00Z"),
            last_success_at: Some(at("2026-01-01T03:00:00Z")),
            last_run_at: Some(at("2026-01-01T03:00:00Z")),
            last_run_status: Some(backup_core::RunStatus::Succeeded),
            protection: backup_core::Protection::Ok,
            effective_alert_after: Some("2days 15m".into()),
        },
        "id, name, agentId, kind, schedule, paths, excludes, repository, retention, maxTaskRetries, \
         timeoutMinutes, enabled, alertAfter, nextDueAt, createdAt, updatedAt, lastSuccessAt, \
         lastRunAt, lastRunStatus, protection, effectiveAlertAfter",
    );
    assert_eq!(json["protection"], "ok");
    assert_eq!(
        json["schedule"],
        json!({"cron": "0 3 * * *", "timezone": "Europe/Berlin"})
    );
}

#[test]
fn tenant_agent_page_and_error_bodies() {
    round_trip(
        &CreateTenant {
            name: "acme".into(),
        },
        "name",
    );
    round_trip(
        &TenantCreated {
            id: TenantId::new(),
            name: "acme".into(),
            token: "x".into(),
        },
        "id, name, token",
    );
    round_trip(&TokenIssued { token: "x".into() }, "token");
    round_trip(
        &CreateAgent {
            name: "a".into(),
            hostname: "h".into(),
        },
        "name, hostname",
    );
    round_trip(
        &Page {
            items: vec![1, 2],
            next_cursor: Some("c".into()),
        },
        "items, nextCursor",
    );
    let json = round_trip(
        &ErrorBody {
            error: ErrorDetail {
                code: ErrorCode::ValidationFailed,
                message: "maxConcurrentTasks: 0 is not allowed; expected 1-64".into(),
                field: Some("maxConcurrentTasks".into()),
            },
        },
        "error",
    );
    assert_eq!(keys(&json["error"]), set("code, message, field"));
    assert_eq!(json["error"]["code"], "validation_failed");
    for (code, status) in [
        (ErrorCode::MalformedJson, 400),
        (ErrorCode::StaleAttempt, 409),
        (ErrorCode::PayloadTooLarge, 413),
        (ErrorCode::RateLimited, 429),
        (ErrorCode::DatabaseUnavailable, 503),
    ] {
        assert_eq!(code.http_status(), status);
    }
}

#[test]
fn policy_patch_tells_null_from_absent() {
    let p: PolicyPatch =
        serde_json::from_value(json!({"maxTaskRetries": null, "enabled": false})).expect("json");
    assert_eq!(p.max_task_retries, Some(None));
    assert_eq!(p.timeout_minutes, None);
    assert_eq!(p.enabled, Some(false));
}

#[test]
fn task_status_transitions() {
    use TaskStatus::*;
    for from in TaskStatus::ALL {
        for to in TaskStatus::ALL {
            if !from.is_open() {
                assert!(!from.can_transition_to(to), "{from:?} is final");
            }
        }
        assert!(
            !from.can_transition_to(from),
            "{from:?} -> itself is no transition"
        );
    }
    assert!(Pending.can_transition_to(Claimed));
    assert!(Claimed.can_transition_to(Pending), "a lapsed claim returns");
    assert!(Running.can_transition_to(Pending), "a retry returns");
    assert!(
        !Pending.can_transition_to(Running),
        "start needs a claim first"
    );
    assert!(!Pending.can_transition_to(FailedPermanently));
    assert_eq!(
        "failed_permanently".parse::<TaskStatus>().expect("parses"),
        FailedPermanently
    );
    assert!("done".parse::<TaskStatus>().is_err());
}
