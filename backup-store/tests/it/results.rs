use backup_core::{
    AgentId, AttemptOutcome, AttemptReport, BackupRunView, ClaimRequest, ErrorClass, Heartbeat,
    PerKind, PermanentReason, RunStatus, ScheduleSpec, TaskId, TaskKind, TaskStatus, TaskView,
    TenantId,
};
use backup_store::{BackupRunFilter, PageRequest, ResultAnswer, StoreError};
use chrono::TimeDelta;

use crate::harness::{
    Env, agent_backoff, backup_every_hour, backup_into, repository_backoff, start, store_test,
};

fn failed(attempt: u32, kind: Option<ErrorClass>) -> AttemptReport {
    AttemptReport {
        error_kind: kind,
        error: Some("repository is already locked".into()),
        exit_code: Some(1),
        ..AttemptReport::new(attempt, AttemptOutcome::Failed)
    }
}

/// A tenant, an online agent and one pending task of a policy with `max_task_retries`.
async fn one_task(env: &Env, max_task_retries: Option<u32>) -> (TenantId, AgentId, TaskId) {
    let t = env.tenant("acme").await;
    let a = env.agent(&t, "db-1").await;
    env.online(a.agent.id).await;
    let mut spec = backup_every_hour(a.agent.id);
    spec.max_task_retries = max_task_retries;
    let p = env.policy(&t, spec).await;
    let task = env.store.run_policy_now(t.id, p.id).await.expect("run now");
    (t.id, a.agent.id, task.id)
}

/// Claims the agent's one claimable task and starts it; its attempt number.
async fn claim_start(env: &Env, agent: AgentId) -> u32 {
    let claimed = env.claim_all(agent).await;
    assert_eq!(claimed.len(), 1, "one task to claim");
    let attempt = claimed[0].attempt;
    env.store
        .start_task(agent, claimed[0].id, attempt)
        .await
        .expect("start");
    attempt
}

/// [`one_task`], claimed and started: its ids and the attempt that runs.
async fn one_started_task(
    env: &Env,
    max_task_retries: Option<u32>,
) -> (TenantId, AgentId, TaskId, u32) {
    let (tenant, agent, task) = one_task(env, max_task_retries).await;
    let attempt = claim_start(env, agent).await;
    (tenant, agent, task, attempt)
}

/// The store's answer to the agent's `report` on `task` (accepted).
async fn accepted(env: &Env, agent: AgentId, task: TaskId, report: &AttemptReport) -> ResultAnswer {
    env.store
        .report_result(agent, task, report)
        .await
        .expect("result accepted")
}

/// A fresh task with `max_task_retries` after its first attempt failed with `class`.
async fn after_one_failure(
    env: &Env,
    max_task_retries: Option<u32>,
    class: ErrorClass,
) -> TaskView {
    let (_, agent, task, attempt) = one_started_task(env, max_task_retries).await;
    accepted(env, agent, task, &failed(attempt, Some(class)))
        .await
        .task
}

/// The store's refusal of the agent's `report` on `task`.
async fn refused(env: &Env, agent: AgentId, task: TaskId, report: &AttemptReport) -> StoreError {
    env.store
        .report_result(agent, task, report)
        .await
        .expect_err("result refused")
}

/// Every run of `task`.
async fn runs_of(env: &Env, tenant: TenantId, task: TaskId) -> Vec<BackupRunView> {
    env.store
        .list_backup_runs(
            tenant,
            &BackupRunFilter {
                task_id: Some(task),
                ..Default::default()
            },
            &PageRequest::default(),
        )
        .await
        .expect("runs")
        .items
}

store_test!(
    retriable_failures_retry_with_backoff_then_exhaust_the_budget,
    |env| async move {
        let (tenant, agent, task) = one_task(&env, Some(2)).await;
        for retry in 1..=2u32 {
            let attempt = claim_start(&env, agent).await;
            assert_eq!(attempt, retry);
            let answer = accepted(
                &env,
                agent,
                task,
                &failed(attempt, Some(ErrorClass::Retriable)),
            )
            .await;
            assert!(answer.retried);
            let v = answer.task;
            assert_eq!(
                (v.status, v.retry_count, v.max_retries),
                (TaskStatus::Pending, retry, 2)
            );
            let delay =
                v.next_retry_at.expect("next retry") - backup_core::Clock::now(env.clock.as_ref());
            let nominal = 60 * 2i64.pow(retry - 1);
            assert!(
                delay >= TimeDelta::seconds(nominal / 2) && delay <= TimeDelta::seconds(nominal),
                "{delay} for retry {retry}"
            );
            assert!(
                env.claim_all(agent).await.is_empty(),
                "not claimable before nextRetryAt"
            );
            env.advance_secs(nominal + 1);
            env.online(agent).await;
        }
        let attempt = claim_start(&env, agent).await;
        assert_eq!(attempt, 3);
        let answer = accepted(&env, agent, task, &failed(3, None)).await;
        assert!(!answer.retried);
        let v = answer.task;
        assert_eq!(v.status, TaskStatus::FailedPermanently);
        assert!(v.failed_permanently);
        assert_eq!(v.permanent_reason, Some(PermanentReason::RetriesExhausted));
        assert_eq!(
            v.last_error.as_deref(),
            Some("repository is already locked")
        );
        let runs = runs_of(&env, tenant, task).await;
        assert_eq!(runs.len(), 3, "one run per attempt");
        assert!(
            runs.iter()
                .all(|r| r.status == RunStatus::Failed
                    && r.error_kind == Some(ErrorClass::Retriable))
        );
        assert_eq!(
            runs.iter().filter(|r| r.failed_permanently).count(),
            1,
            "the last one ended the task"
        );
    }
);

store_test!(
    max_retries_zero_and_permanent_errors_fail_at_once,
    |env| async move {
        let v = after_one_failure(&env, Some(0), ErrorClass::Retriable).await;
        assert_eq!(
            (v.status, v.permanent_reason),
            (
                TaskStatus::FailedPermanently,
                Some(PermanentReason::RetriesExhausted)
            )
        );

        let v = after_one_failure(&env, Some(5), ErrorClass::Permanent).await;
        assert_eq!(
            (v.status, v.permanent_reason, v.retry_count),
            (
                TaskStatus::FailedPermanently,
                Some(PermanentReason::PermanentError),
                0
            )
        );
    }
);

store_test!(success_partial_and_interrupted, |env| async move {
    let (tenant, agent, task, attempt) = one_started_task(&env, None).await;
    let v = accepted(
        &env,
        agent,
        task,
        &AttemptReport::new(attempt, AttemptOutcome::Interrupted),
    )
    .await
    .task;
    assert_eq!(
        (v.status, v.retry_count, v.next_retry_at),
        (TaskStatus::Pending, 0, None),
        "no budget spent"
    );
    let attempt = claim_start(&env, agent).await;
    assert_eq!(attempt, 2, "a new attempt number, same retry count");
    let report = AttemptReport {
        snapshot_id: Some("1a2b3c4d".into()),
        files_new: Some(12),
        data_added: Some(4096),
        exit_code: Some(3),
        started_at: Some(start()),
        finished_at: Some(start() + TimeDelta::seconds(5)),
        ..AttemptReport::new(attempt, AttemptOutcome::Partial)
    };
    let v = accepted(&env, agent, task, &report).await.task;
    assert_eq!(
        v.status,
        TaskStatus::Succeeded,
        "partial counts as succeeded"
    );
    let runs = runs_of(&env, tenant, task).await;
    let partial = runs.iter().find(|r| r.attempt == 2).expect("run 2");
    assert_eq!(
        (
            partial.status,
            partial.snapshot_id.as_deref(),
            partial.files_new,
            partial.data_added,
            partial.duration_ms,
            partial.exit_code
        ),
        (
            RunStatus::Partial,
            Some("1a2b3c4d"),
            Some(12),
            Some(4096),
            Some(5000),
            Some(3)
        )
    );
    assert_eq!(
        runs.iter().find(|r| r.attempt == 1).map(|r| r.status),
        Some(RunStatus::Interrupted)
    );
});

store_test!(
    results_are_idempotent_per_task_and_attempt,
    |env| async move {
        let (_, agent, task, attempt) = one_started_task(&env, None).await;
        let first = accepted(&env, agent, task, &failed(attempt, None)).await;
        assert!(first.retried && !first.replayed);
        // The task moves on (a new claim after the retry delay) ...
        env.advance_secs(3600);
        env.online(agent).await;
        let next = claim_start(&env, agent).await;
        // ... and a repeat of the first result still answers what was decided then, changing nothing.
        let again = accepted(&env, agent, task, &failed(attempt, None)).await;
        assert!(again.replayed);
        assert_eq!(again.task, first.task);
        let current = env
            .store
            .start_task(agent, task, next)
            .await
            .expect("still running attempt 2");
        assert_eq!(
            (current.status, current.retry_count),
            (TaskStatus::Running, 1)
        );
        // A result for an attempt never claimed is a conflict.
        let err = refused(&env, agent, task, &failed(9, None)).await;
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        // Another agent's task is not found.
        let t2 = env.tenant("other").await;
        let stranger = env.agent(&t2, "x").await;
        let err = refused(&env, stranger.agent.id, task, &failed(next, None)).await;
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    }
);

store_test!(
    lapsed_claims_return_and_lapsed_runs_are_agent_lost,
    |env| async move {
        let (tenant, agent, task) = one_task(&env, Some(1)).await;
        let claimed = env.claim_all(agent).await;
        assert_eq!(claimed[0].attempt, 1);
        // Never started: the lease lapses, the task returns keeping its attempt number (for
        // the next claim), no budget spent.
        env.advance_secs(901);
        let lapse = env.store.lapse_leases().await.expect("lapse");
        assert_eq!((lapse.returned, lapse.lost), (1, 0));
        let v = env.store.get_task(tenant, task).await.expect("task");
        assert_eq!(
            (v.status, v.attempt, v.retry_count),
            (TaskStatus::Pending, 1, 0)
        );
        env.online(agent).await;
        let attempt = claim_start(&env, agent).await;
        assert_eq!(attempt, 1, "the lapsed claim gave its number back");

        // A heartbeat listing the task renews its lease.
        env.advance_secs(800);
        let running = Heartbeat {
            running_tasks: 1,
            running_task_ids: vec![task],
            ..Heartbeat::default()
        };
        env.heartbeat(agent, &running).await;
        env.advance_secs(800);
        assert_eq!(
            env.store.lapse_leases().await.expect("lapse").lost,
            0,
            "renewed 800 s ago"
        );

        // Started, then silence: the attempt fails as "agent lost" through the budget.
        env.advance_secs(200);
        let lapse = env.store.lapse_leases().await.expect("lapse");
        assert_eq!((lapse.lost, lapse.retried), (1, 1));
        let v = env.store.get_task(tenant, task).await.expect("task");
        assert_eq!((v.status, v.retry_count), (TaskStatus::Pending, 1));
        assert!(
            v.last_error
                .as_deref()
                .unwrap_or_default()
                .contains("agent lost")
        );
        let runs = runs_of(&env, tenant, task).await;
        assert_eq!(runs[0].status, RunStatus::Failed);
    }
);

store_test!(
    a_late_success_resolves_a_task_waiting_for_its_retry,
    |env| async move {
        let (tenant, agent, task, attempt) = one_started_task(&env, Some(3)).await;
        env.advance_secs(901);
        env.store.lapse_leases().await.expect("lapse");
        assert_eq!(env.task_status(tenant, task).await, TaskStatus::Pending);
        // The agent was only cut off; its result arrives late and says it worked.
        let report = AttemptReport {
            snapshot_id: Some("cafebabe".into()),
            ..AttemptReport::new(attempt, AttemptOutcome::Succeeded)
        };
        let answer = accepted(&env, agent, task, &report).await;
        assert_eq!(answer.task.status, TaskStatus::Succeeded);
        let runs = runs_of(&env, tenant, task).await;
        assert_eq!(
            (runs[0].status, runs[0].late, runs[0].snapshot_id.as_deref()),
            (RunStatus::Succeeded, true, Some("cafebabe"))
        );
    }
);

store_test!(
    a_late_result_that_cannot_change_the_task_is_a_stale_attempt,
    |env| async move {
        let (tenant, agent, task, first) = one_started_task(&env, Some(3)).await;
        env.advance_secs(901);
        env.store.lapse_leases().await.expect("lapse");
        env.advance_secs(3600);
        env.online(agent).await;
        let second = claim_start(&env, agent).await;
        assert_eq!(second, 2);
        // The first attempt's late failure: recorded, but the task is already on attempt 2.
        let err = refused(&env, agent, task, &failed(first, None)).await;
        let StoreError::StaleAttempt(view) = err else {
            panic!("expected stale_attempt, got {err:?}")
        };
        assert_eq!((view.status, view.attempt), (TaskStatus::Running, 2));
        let again = refused(&env, agent, task, &failed(first, None)).await;
        assert!(matches!(again, StoreError::StaleAttempt(_)));
        let runs = runs_of(&env, tenant, task).await;
        let late = runs.iter().find(|r| r.attempt == 1).expect("run 1");
        assert!(late.late);
        assert_eq!(
            late.error.as_deref(),
            Some("repository is already locked"),
            "the run records what happened"
        );
    }
);

store_test!(a_result_before_start_is_accepted, |env| async move {
    let (tenant, agent, task) = one_task(&env, Some(3)).await;
    let claimed = env.claim_all(agent).await;
    let report = AttemptReport {
        error: Some("unknown repository \"main\" in this agent's configuration".into()),
        ..AttemptReport::new(claimed[0].attempt, AttemptOutcome::Failed)
    };
    let report = AttemptReport {
        error_kind: Some(ErrorClass::Permanent),
        ..report
    };
    let v = accepted(&env, agent, task, &report).await.task;
    assert_eq!(
        (v.status, v.permanent_reason),
        (
            TaskStatus::FailedPermanently,
            Some(PermanentReason::PermanentError)
        )
    );
    let runs = runs_of(&env, tenant, task).await;
    assert_eq!(runs.len(), 1);
});

store_test!(
    cancelled_tasks_are_reported_to_their_agent_and_late_results_change_nothing,
    |env| async move {
        let (tenant, agent, task, attempt) = one_started_task(&env, None).await;
        let v = env.store.cancel_task(tenant, task).await.expect("cancel");
        assert_eq!(v.status, TaskStatus::Cancelled);
        assert_eq!(
            env.store
                .cancel_task(tenant, task)
                .await
                .expect("again")
                .status,
            TaskStatus::Cancelled
        );
        let answer = env.heartbeat(agent, &Heartbeat::default()).await;
        assert_eq!(
            answer.cancel_task_ids,
            vec![task],
            "told once because it held the task"
        );
        let answer = env.heartbeat(agent, &Heartbeat::default()).await;
        assert!(answer.cancel_task_ids.is_empty());
        let still_running = Heartbeat {
            running_task_ids: vec![task],
            ..Heartbeat::default()
        };
        let answer = env.heartbeat(agent, &still_running).await;
        assert_eq!(
            answer.cancel_task_ids,
            vec![task],
            "and whenever it still lists it"
        );
        let err = env
            .store
            .start_task(agent, task, attempt)
            .await
            .expect_err("cancelled");
        assert!(matches!(err, StoreError::Conflict(_)));
        let mut stopped = AttemptReport::new(attempt, AttemptOutcome::Failed);
        stopped.error = Some("restic was stopped".into());
        let v = accepted(&env, agent, task, &stopped).await.task;
        assert_eq!(v.status, TaskStatus::Cancelled, "changes nothing");
        let runs = runs_of(&env, tenant, task).await;
        assert_eq!(runs[0].status, RunStatus::Cancelled);
        let (t2, a2, finished, at) = one_started_task(&env, None).await;
        accepted(
            &env,
            a2,
            finished,
            &AttemptReport::new(at, AttemptOutcome::Succeeded),
        )
        .await;
        let err = env
            .store
            .cancel_task(t2, finished)
            .await
            .expect_err("already ended");
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    }
);

// Found by the chaos soak (seed 20261203, 30 minutes): the network cut an agent off after it
// claimed a backup; it could not report the start, ran restic anyway (its snapshot exists) and
// kept the result in its outbox; the claim's lease lapsed. That result was a 409 ("never
// claimed") while the task waited, pending again, so the snapshot was recorded by no run.
store_test!(
    a_result_for_a_claim_whose_lease_lapsed_is_recorded,
    |env| async move {
        let (tenant, agent, task) = one_task(&env, Some(1)).await;
        let claimed = env.claim_all(agent).await;
        let attempt = claimed[0].attempt;
        env.advance_secs(901);
        let lapse = env.store.lapse_leases().await.expect("lapse");
        assert_eq!(lapse.returned, 1);
        let mut report = AttemptReport::new(attempt, AttemptOutcome::Succeeded);
        report.snapshot_id = Some("feedc0de".into());
        let v = accepted(&env, agent, task, &report).await.task;
        assert_eq!(v.status, TaskStatus::Succeeded);
        let runs = runs_of(&env, tenant, task).await;
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].status, RunStatus::Succeeded);
        assert_eq!(runs[0].snapshot_id.as_deref(), Some("feedc0de"));
        // The next attempt, never handed out, is refused.
        let err = refused(
            &env,
            agent,
            task,
            &AttemptReport::new(attempt + 1, AttemptOutcome::Succeeded),
        )
        .await;
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    }
);

// Found by the chaos soak (seed 777): a backup cancelled while restic was writing its last
// pack made its snapshot anyway; the run said "cancelled", so a snapshot in the repository was
// recorded by no succeeded run.
store_test!(
    a_backup_that_finished_before_its_cancel_took_effect_is_recorded_as_succeeded,
    |env| async move {
        let (tenant, agent, task, attempt) = one_started_task(&env, None).await;
        env.store.cancel_task(tenant, task).await.expect("cancel");
        let mut report = AttemptReport::new(attempt, AttemptOutcome::Succeeded);
        report.snapshot_id = Some("0123abcd".into());
        let v = accepted(&env, agent, task, &report).await.task;
        assert_eq!(v.status, TaskStatus::Cancelled, "the task stays cancelled");
        let runs = runs_of(&env, tenant, task).await;
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].status, RunStatus::Succeeded, "the snapshot exists");
        assert_eq!(runs[0].snapshot_id.as_deref(), Some("0123abcd"));
        let again = accepted(&env, agent, task, &report).await;
        assert!(again.replayed, "a repeat is the same answer");
        assert_eq!(runs_of(&env, tenant, task).await.len(), 1);
    }
);

store_test!(claims_respect_limit_per_kind_and_age, |env| async move {
    let t = env.tenant("acme").await;
    let a = env.agent(&t, "db-1").await;
    let id = a.agent.id;
    env.online(id).await;
    let mut ids = Vec::new();
    for kind in [
        TaskKind::Backup,
        TaskKind::Backup,
        TaskKind::Check,
        TaskKind::Prune,
    ] {
        let mut spec = backup_every_hour(id);
        spec.kind = kind;
        if kind == TaskKind::Prune {
            spec.retention = Some(backup_core::Retention {
                keep_last: Some(3),
                ..Default::default()
            });
        }
        spec.schedule = ScheduleSpec::every("1h");
        let p = env.policy(&t, spec).await;
        ids.push(env.store.run_policy_now(t.id, p.id).await.expect("run").id);
        env.advance_secs(1);
    }
    let first = env
        .store
        .claim(
            id,
            &ClaimRequest {
                limit: 3,
                per_kind: Some(PerKind {
                    backup: 1,
                    check: 0,
                    prune: 5,
                    ..PerKind::default()
                }),
                wait_seconds: 0,
            },
        )
        .await
        .expect("claim")
        .tasks;
    let got: Vec<_> = first.iter().map(|c| (c.id, c.kind)).collect();
    assert_eq!(
        got,
        vec![(ids[0], TaskKind::Backup), (ids[3], TaskKind::Prune)],
        "oldest first, within per-kind limits"
    );
    assert_eq!(first[1].retention.and_then(|r| r.keep_last), Some(3));
    assert_eq!(first[0].paths, vec!["/srv".to_owned()]);
    assert_eq!(first[0].repository, "main");
    let rest = env
        .store
        .claim(
            id,
            &ClaimRequest {
                limit: 1,
                per_kind: None,
                wait_seconds: 0,
            },
        )
        .await
        .expect("claim")
        .tasks;
    assert_eq!(rest.iter().map(|c| c.id).collect::<Vec<_>>(), vec![ids[1]]);
    assert!(first.iter().chain(&rest).all(|c| c.attempt == 1));
    let err = env
        .store
        .start_task(id, ids[0], 2)
        .await
        .expect_err("wrong attempt");
    assert!(matches!(err, StoreError::Conflict(_)));
    let v = env.store.start_task(id, ids[0], 1).await.expect("start");
    assert_eq!(
        v.lease_expires_at,
        Some(start() + TimeDelta::seconds(4 + 900)),
        "leased at claim; start does not renew"
    );
    assert_eq!(
        env.store
            .start_task(id, ids[0], 1)
            .await
            .expect("repeat start")
            .status,
        TaskStatus::Running,
        "start is idempotent"
    );
});

store_test!(
    tasks_on_a_repository_in_backoff_are_not_handed_out,
    |env| async move {
        let tenant = env.tenant("acme").await;
        let agent = env.agent(&tenant, "db-1").await.agent.id;
        env.online(agent).await;
        let bad = env.policy(&tenant, backup_every_hour(agent)).await;
        let good = env
            .policy(&tenant, backup_into(agent, "other", "offsite"))
            .await;
        // The agent reports `main` in backoff for two minutes.
        let main_backs_off = Heartbeat {
            agent_backoff_seconds: Some(0),
            ..repository_backoff("main", 120)
        };
        env.heartbeat(agent, &main_backs_off).await;
        env.store.schedule_due(false).await.expect("tick");
        let claimed = env.claim_all(agent).await;
        assert_eq!(
            claimed.iter().map(|t| t.policy_id).collect::<Vec<_>>(),
            [Some(good.id)],
            "only the repository that is not in backoff"
        );
        // Once the backoff is over, the held-back task is claimable.
        env.advance_secs(121);
        let claimed = env.claim_all(agent).await;
        assert_eq!(
            claimed.iter().map(|t| t.policy_id).collect::<Vec<_>>(),
            [Some(bad.id)]
        );
        // A whole-agent backoff holds back everything.
        let third = env
            .policy(&tenant, backup_into(agent, "third", "local"))
            .await;
        let agent_backs_off = Heartbeat {
            backoff_repositories: Some(vec![]),
            ..agent_backoff(60)
        };
        env.heartbeat(agent, &agent_backs_off).await;
        env.store
            .run_policy_now(tenant.id, third.id)
            .await
            .expect("run now");
        assert!(env.claim_all(agent).await.is_empty());
        env.advance_secs(61);
        assert_eq!(env.claim_all(agent).await.len(), 1);
    }
);

store_test!(
    a_policy_keeps_its_last_run_and_last_success,
    |env| async move {
        let (tenant, agent, task, attempt) = one_started_task(&env, Some(3)).await;
        let policy_of = |env: &Env| {
            let store = env.store.clone();
            async move {
                let task = store.get_task(tenant, task).await.expect("task");
                store
                    .get_policy(tenant, task.policy_id.expect("a policy's task"))
                    .await
                    .expect("policy")
            }
        };
        let fresh = policy_of(&env).await;
        assert_eq!(
            (
                fresh.last_success_at,
                fresh.last_run_at,
                fresh.last_run_status
            ),
            (None, None, None)
        );
        let finished: chrono::DateTime<chrono::Utc> = "2026-03-01T00:05:00Z".parse().expect("time");
        let mut ok = AttemptReport::new(attempt, AttemptOutcome::Succeeded);
        ok.finished_at = Some(finished);
        accepted(&env, agent, task, &ok).await;
        let after = policy_of(&env).await;
        assert_eq!(
            (
                after.last_success_at,
                after.last_run_at,
                after.last_run_status
            ),
            (Some(finished), Some(finished), Some(RunStatus::Succeeded))
        );
        // A failure of a later run moves the last run, not the last success.
        env.advance_secs(1);
        let again = env
            .store
            .run_policy_now(tenant, after.id)
            .await
            .expect("run now");
        let attempt = claim_start(&env, agent).await;
        let mut failure = failed(attempt, Some(ErrorClass::Permanent));
        let later = finished + TimeDelta::minutes(10);
        failure.finished_at = Some(later);
        accepted(&env, agent, again.id, &failure).await;
        let after = policy_of(&env).await;
        assert_eq!(
            (
                after.last_success_at,
                after.last_run_at,
                after.last_run_status
            ),
            (Some(finished), Some(later), Some(RunStatus::Failed))
        );
    }
);
