use backup_core::{
    Heartbeat, PolicyPatch, Retention, ScheduleSpec, SkipReason, TaskKind, TaskStatus,
};
use backup_store::{PageRequest, StoreConfig, StoreError, TaskFilter};
use chrono::TimeDelta;

use crate::harness::{agent_backoff, backup_every_hour, repository_backoff, start, store_test};

store_test!(policy_crud_validates_and_round_trips, |env| async move {
    let t = env.tenant("acme").await;
    let a = env.agent(&t, "db-1").await;
    let mut spec = backup_every_hour(a.agent.id);
    spec.excludes = vec!["*.tmp".into()];
    let p = env.policy(&t, spec.clone()).await;
    assert_eq!(p.spec, spec);
    assert_eq!(
        p.next_due_at,
        Some(start()),
        "an every-policy is due when created"
    );
    assert_eq!(env.store.get_policy(t.id, p.id).await.expect("get"), p);

    let mut prune = backup_every_hour(a.agent.id);
    prune.kind = TaskKind::Prune;
    prune.paths.clear();
    let err = env
        .store
        .create_policy(t.id, &prune)
        .await
        .expect_err("prune without keep rules");
    assert!(
        matches!(&err, StoreError::Validation(e) if e.field() == Some("retention")),
        "{err:?}"
    );
    prune.retention = Some(Retention {
        keep_daily: Some(7),
        ..Retention::default()
    });
    prune.schedule = ScheduleSpec::cron("0 3 * * *", "Europe/Berlin");
    let pp = env.policy(&t, prune).await;
    assert_eq!(
        pp.next_due_at,
        Some("2026-03-01T02:00:00Z".parse().expect("ts")),
        "03:00 CET"
    );

    let patched = env
        .store
        .update_policy(
            t.id,
            p.id,
            &serde_json::from_str::<PolicyPatch>(r#"{"enabled": false, "maxTaskRetries": 2}"#)
                .expect("json"),
        )
        .await
        .expect("patch");
    assert!(!patched.spec.enabled);
    assert_eq!(patched.next_due_at, None, "disabled policies are not due");
    assert_eq!(patched.spec.max_task_retries, Some(2));
    assert_eq!(patched.spec.paths, spec.paths, "absent fields unchanged");
    env.advance_secs(30);
    let enabled = env
        .store
        .update_policy(
            t.id,
            p.id,
            &PolicyPatch {
                enabled: Some(true),
                ..PolicyPatch::default()
            },
        )
        .await
        .expect("patch");
    assert_eq!(
        enabled.next_due_at,
        Some(start() + TimeDelta::seconds(30)),
        "due again when re-enabled"
    );
    let err = env
        .store
        .update_policy(
            t.id,
            p.id,
            &PolicyPatch {
                schedule: Some(ScheduleSpec::every("0s")),
                ..PolicyPatch::default()
            },
        )
        .await
        .expect_err("bad schedule");
    assert!(
        matches!(&err, StoreError::Validation(e) if e.field() == Some("schedule.every")),
        "{err:?}"
    );

    env.store.delete_policy(t.id, p.id).await.expect("delete");
    assert!(matches!(
        env.store.get_policy(t.id, p.id).await,
        Err(StoreError::NotFound(_))
    ));
});

store_test!(
    run_now_creates_a_task_even_when_disabled_and_409s_while_one_is_open,
    |env| async move {
        let t = env.tenant("acme").await;
        let a = env.agent(&t, "db-1").await;
        let mut spec = backup_every_hour(a.agent.id);
        spec.enabled = false;
        let p = env.policy(&t, spec).await;
        let task = env
            .store
            .run_policy_now(t.id, p.id)
            .await
            .expect("run now while disabled and offline");
        assert_eq!(
            (task.status, task.slot, task.attempt, task.max_retries),
            (TaskStatus::Pending, start(), 0, 5)
        );
        let err = env
            .store
            .run_policy_now(t.id, p.id)
            .await
            .expect_err("open task");
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        assert_eq!(
            env.next_due_at(t.id, p.id).await,
            None,
            "nextDueAt unchanged"
        );
        // Deleting the policy cancels its pending task.
        env.store.delete_policy(t.id, p.id).await.expect("delete");
        assert_eq!(env.task_status(t.id, task.id).await, TaskStatus::Cancelled);
    }
);

store_test!(
    scheduler_creates_one_task_per_slot_and_merges_missed_slots,
    |env| async move {
        let t = env.tenant("acme").await;
        let a = env.agent(&t, "db-1").await;
        let id = a.agent.id;
        env.online(id).await;
        let p = env.policy(&t, backup_every_hour(id)).await;
        let tick = env.store.schedule_due(true).await.expect("tick");
        assert_eq!((tick.evaluated, tick.created, tick.missed_slots), (1, 1, 0));
        let after = env.store.get_policy(t.id, p.id).await.expect("get");
        assert_eq!(after.next_due_at, Some(start() + TimeDelta::hours(1)));
        let again = env.store.schedule_due(true).await.expect("tick");
        assert_eq!(again.evaluated, 0, "not due again until its next slot");

        // The task finishes; the server was down for 3.5 hours: one task, 3 missed slots.
        let claimed = env.claim_all(id).await;
        env.store
            .start_task(id, claimed[0].id, 1)
            .await
            .expect("start");
        env.store
            .report_result(
                id,
                claimed[0].id,
                &backup_core::AttemptReport::new(1, backup_core::AttemptOutcome::Succeeded),
            )
            .await
            .expect("result");
        env.advance_secs(4 * 3600 + 1800);
        env.online(id).await;
        let tick = env.store.schedule_due(true).await.expect("tick");
        assert_eq!((tick.created, tick.missed_slots), (1, 3));
        let tasks = env
            .store
            .list_tasks(t.id, &TaskFilter::default(), &PageRequest::default())
            .await
            .expect("tasks");
        assert_eq!(tasks.items.len(), 2);
        assert_eq!(
            tasks.items[0].slot,
            start() + TimeDelta::hours(1),
            "the task runs for the oldest missed slot"
        );
        assert_eq!(
            env.next_due_at(t.id, p.id).await,
            Some(start() + TimeDelta::hours(5)),
            "next slot on the grid after now"
        );
    }
);

store_test!(
    scheduler_skips_by_reason_and_leaves_the_policy_due,
    |env| async move {
        let t = env.tenant("acme").await;
        let a = env.agent(&t, "db-1").await;
        let id = a.agent.id;
        let p = env.policy(&t, backup_every_hour(id)).await;
        let skipped =
            |r: &backup_store::TickReport, reason| r.skipped.get(&reason).copied().unwrap_or(0);

        // Offline: never seen. No pile-up while it stays offline.
        for _ in 0..3 {
            let tick = env.store.schedule_due(true).await.expect("tick");
            assert_eq!((tick.created, skipped(&tick, SkipReason::Offline)), (0, 1));
            env.advance_secs(3600);
        }
        assert_eq!(
            env.next_due_at(t.id, p.id).await,
            Some(start()),
            "still due"
        );

        // Repository backoff, then whole-agent backoff.
        env.heartbeat(id, &repository_backoff("main", 600)).await;
        let tick = env.store.schedule_due(true).await.expect("tick");
        assert_eq!(skipped(&tick, SkipReason::RepositoryBackoff), 1);
        env.heartbeat(id, &agent_backoff(600)).await;
        let tick = env.store.schedule_due(true).await.expect("tick");
        assert_eq!(skipped(&tick, SkipReason::AgentBackoff), 1);

        // Saturated: queue above the threshold.
        env.heartbeat(
            id,
            &Heartbeat {
                queue_depth: 11,
                ..Heartbeat::default()
            },
        )
        .await;
        let tick = env.store.schedule_due(true).await.expect("tick");
        assert_eq!(skipped(&tick, SkipReason::Saturated), 1);

        // Cleared: the policy runs on the first tick after the reason clears.
        env.online(id).await;
        let tick = env.store.schedule_due(true).await.expect("tick");
        assert_eq!(tick.created, 1);

        // Open task: the next slot comes while the task is still pending.
        env.advance_secs(3 * 3600);
        env.online(id).await;
        let tick = env.store.schedule_due(true).await.expect("tick");
        assert_eq!((tick.created, skipped(&tick, SkipReason::OpenTask)), (0, 1));
    }
);

store_test!(
    respect_agent_backoff_false_dispatches_anyway,
    |env| async move {
        let t = env.tenant("acme").await;
        let a = env.agent(&t, "db-1").await;
        env.policy(&t, backup_every_hour(a.agent.id)).await;
        env.heartbeat(a.agent.id, &agent_backoff(600)).await;
        assert_eq!(env.store.schedule_due(true).await.expect("tick").created, 0);
        assert_eq!(
            env.store.schedule_due(false).await.expect("tick").created,
            1
        );
    }
);

store_test!(
    max_task_retries_overrides_the_agents_max_retries,
    |env| async move {
        let t = env.tenant("acme").await;
        let a = env.agent(&t, "db-1").await;
        env.online(a.agent.id).await;
        env.store
            .patch_settings(
                t.id,
                a.agent.id,
                &serde_json::from_str(r#"{"maxRetries": 7}"#).expect("json"),
            )
            .await
            .expect("patch");
        let plain = env.policy(&t, backup_every_hour(a.agent.id)).await;
        let mut spec = backup_every_hour(a.agent.id);
        spec.max_task_retries = Some(0);
        let strict = env.policy(&t, spec).await;
        env.store.schedule_due(true).await.expect("tick");
        let tasks = env
            .store
            .list_tasks(t.id, &TaskFilter::default(), &PageRequest::default())
            .await
            .expect("list");
        let max_of = |policy| {
            tasks
                .items
                .iter()
                .find(|x| x.policy_id == Some(policy))
                .map(|x| x.max_retries)
        };
        assert_eq!(max_of(plain.id), Some(7), "the agent's maxRetries");
        assert_eq!(max_of(strict.id), Some(0), "the policy's maxTaskRetries");
    }
);

store_test!(
    saturation_is_reached_within_one_tick,
    StoreConfig {
        agent_queue_threshold: 2,
        ..StoreConfig::default()
    },
    |env| async move {
        let t = env.tenant("acme").await;
        let a = env.agent(&t, "db-1").await;
        env.online(a.agent.id).await;
        for _ in 0..5 {
            env.policy(&t, backup_every_hour(a.agent.id)).await;
        }
        let tick = env.store.schedule_due(true).await.expect("tick");
        assert_eq!(
            tick.created, 3,
            "2 is the threshold; the third makes the queue 3 > 2"
        );
        assert_eq!(tick.skipped.get(&SkipReason::Saturated).copied(), Some(2));
    }
);

store_test!(
    a_due_time_on_a_slot_already_served_moves_on,
    |env| async move {
        let t = env.tenant("acme").await;
        let agent = env.agent(&t, "db-1").await.agent.id;
        env.online(agent).await;
        let policy = env.policy(&t, backup_every_hour(agent)).await;
        env.store.schedule_due(true).await.expect("first tick");
        // A run-now, done at once; then, in the same millisecond, a new schedule makes the
        // policy due at "now": the slot of the run-now task, which is closed.
        let task = env.store.run_policy_now(t.id, policy.id).await;
        assert!(task.is_err(), "the first task is still open");
        for claimed in env.claim_all(agent).await {
            env.store
                .cancel_task(t.id, claimed.id)
                .await
                .expect("cancel");
        }
        env.advance_secs(1);
        let run_now = env
            .store
            .run_policy_now(t.id, policy.id)
            .await
            .expect("run now");
        env.store
            .cancel_task(t.id, run_now.id)
            .await
            .expect("closed");
        let patched = env
            .store
            .update_policy(
                t.id,
                policy.id,
                &backup_core::PolicyPatch {
                    schedule: Some(backup_core::ScheduleSpec::every("2h")),
                    ..Default::default()
                },
            )
            .await
            .expect("patch");
        assert_eq!(patched.next_due_at, Some(run_now.slot));
        env.store.schedule_due(true).await.expect("tick");
        let after = env.store.get_policy(t.id, policy.id).await.expect("policy");
        assert!(
            after.next_due_at > Some(run_now.slot),
            "the scheduler moved past the served slot: {:?}",
            after.next_due_at
        );
        // And the policy runs at its next slot.
        env.advance_secs(2 * 3600);
        env.online(agent).await;
        let tick = env.store.schedule_due(true).await.expect("tick");
        assert_eq!(tick.created, 1);
    }
);
