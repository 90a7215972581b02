use backup_core::{
    AgentStatus, Heartbeat, RepositoryBackoff, Settings, SettingsPatch, SettingsSource, TaskStatus,
};
use backup_store::{PageRequest, PolicyFilter, StoreError};

use crate::harness::{backup_every_hour, start, store_test};

fn patch(json: &str) -> SettingsPatch {
    serde_json::from_str(json).expect("patch json")
}

store_test!(
    new_agents_have_the_documented_defaults_and_are_offline,
    |env| async move {
        let t = env.tenant("acme").await;
        let a = env.agent(&t, "db-1").await;
        assert_eq!(a.agent.settings, Settings::default());
        assert_eq!(a.agent.settings_source, SettingsSource::Agent);
        assert_eq!(a.agent.status, AgentStatus::Offline);
        assert_eq!(a.agent.last_heartbeat_at, None);
        env.online(a.agent.id).await;
        let v = env.store.get_agent(t.id, a.agent.id).await.expect("get");
        assert_eq!(v.status, AgentStatus::Online);
        assert_eq!(v.last_heartbeat_at, Some(start()));
        env.advance_secs(181);
        let v = env.store.get_agent(t.id, a.agent.id).await.expect("get");
        assert_eq!(
            v.status,
            AgentStatus::Offline,
            "no heartbeat for offlineAfterSeconds"
        );
    }
);

store_test!(
    proposals_are_adopted_only_until_the_first_patch,
    |env| async move {
        let t = env.tenant("acme").await;
        let a = env.agent(&t, "db-1").await;
        let id = a.agent.id;
        let hb = |p: &str| Heartbeat {
            proposed_settings: Some(patch(p)),
            ..Heartbeat::default()
        };
        let answer = env
            .store
            .heartbeat(
                id,
                &hb(r#"{"maxConcurrentTasks": 4, "maxConcurrentBackups": 2}"#),
            )
            .await
            .expect("hb");
        assert_eq!(
            (
                answer.settings.max_concurrent_tasks,
                answer.settings.max_concurrent_backups
            ),
            (4, 2)
        );
        // An invalid proposal is ignored as a whole.
        let answer = env
            .store
            .heartbeat(
                id,
                &hb(r#"{"maxConcurrentTasks": 1, "cpuQuotaPercent": 70}"#),
            )
            .await
            .expect("hb");
        assert_eq!(
            answer.settings.max_concurrent_tasks, 4,
            "1 < maxConcurrentBackups 2: rejected"
        );
        assert_eq!(
            answer.settings.cpu_quota_percent, 50,
            "the whole proposal was ignored"
        );

        let patched = env
            .store
            .patch_settings(t.id, id, &patch(r#"{"cpuQuotaPercent": 80}"#))
            .await
            .expect("patch");
        assert_eq!(patched.cpu_quota_percent, 80);
        assert_eq!(patched.max_concurrent_tasks, 4, "absent fields unchanged");
        let answer = env
            .store
            .heartbeat(id, &hb(r#"{"cpuQuotaPercent": 10}"#))
            .await
            .expect("hb");
        assert_eq!(
            answer.settings.cpu_quota_percent, 80,
            "proposals ignored after a PATCH"
        );
        let view = env.store.get_agent(t.id, id).await.expect("get");
        assert_eq!(view.settings_source, SettingsSource::Api);
        assert_eq!(view.settings, patched);

        let err = env
            .store
            .patch_settings(t.id, id, &patch(r#"{"maxConcurrentTasks": 1}"#))
            .await
            .expect_err("cross field");
        assert!(
            matches!(&err, StoreError::Validation(e) if e.field() == Some("maxConcurrentTasks")),
            "{err:?}"
        );
        assert_eq!(
            env.store.get_agent(t.id, id).await.expect("get").settings,
            patched,
            "nothing stored"
        );
    }
);

store_test!(
    heartbeat_backoff_durations_are_clamped_and_replace_the_previous_state,
    |env| async move {
        let t = env.tenant("acme").await;
        let a = env.agent(&t, "db-1").await;
        let id = a.agent.id;
        let hb = Heartbeat {
            backoff_repositories: Some(vec![
                RepositoryBackoff {
                    repository: "main".into(),
                    remaining_seconds: 120,
                },
                RepositoryBackoff {
                    repository: "offsite".into(),
                    remaining_seconds: 999_999,
                },
            ]),
            ..Heartbeat::default()
        };
        env.store.heartbeat(id, &hb).await.expect("hb");
        let v = env.store.get_agent(t.id, id).await.expect("get");
        assert_eq!(v.status, AgentStatus::Backoff);
        let until = |repo: &str| {
            v.backoff_repositories
                .iter()
                .find(|r| r.repository == repo)
                .map(|r| r.backoff_until)
        };
        assert_eq!(
            until("main"),
            Some(start() + chrono::TimeDelta::seconds(120))
        );
        assert_eq!(
            until("offsite"),
            Some(start() + chrono::TimeDelta::minutes(60)),
            "clamped to maxBackoffMinutes"
        );
        assert_eq!(v.backoff_until, until("offsite"), "the latest deadline");

        // Only a whole-agent deadline (clock skew is the agent's problem: still clamped).
        let far = start() + chrono::TimeDelta::days(3);
        env.store
            .heartbeat(
                id,
                &Heartbeat {
                    backoff_until: Some(far),
                    ..Heartbeat::default()
                },
            )
            .await
            .expect("hb");
        let v = env.store.get_agent(t.id, id).await.expect("get");
        assert!(v.backoff_repositories.is_empty(), "replaced, not merged");
        assert_eq!(
            v.backoff_until,
            Some(start() + chrono::TimeDelta::minutes(60))
        );

        env.online(id).await;
        let v = env.store.get_agent(t.id, id).await.expect("get");
        assert_eq!(
            (v.backoff_until, v.status),
            (None, AgentStatus::Online),
            "a clean heartbeat clears it"
        );
    }
);

store_test!(
    saturation_counts_reported_queue_and_due_pending_tasks,
    |env| async move {
        let t = env.tenant("acme").await;
        let a = env.agent(&t, "db-1").await;
        let id = a.agent.id;
        env.store
            .heartbeat(
                id,
                &Heartbeat {
                    running_tasks: 1,
                    queue_depth: 9,
                    ..Heartbeat::default()
                },
            )
            .await
            .expect("hb");
        let v = env.store.get_agent(t.id, id).await.expect("get");
        assert_eq!(
            (v.queue_depth, v.saturated, v.status, v.running_tasks),
            (9, false, AgentStatus::Online, 1)
        );
        let p1 = env.policy(&t, backup_every_hour(id)).await;
        let p2 = env.policy(&t, backup_every_hour(id)).await;
        env.store.run_policy_now(t.id, p1.id).await.expect("run");
        let v = env.store.get_agent(t.id, id).await.expect("get");
        assert_eq!(
            (v.queue_depth, v.saturated),
            (10, false),
            "10 is not above the threshold 10"
        );
        env.store.run_policy_now(t.id, p2.id).await.expect("run");
        let v = env.store.get_agent(t.id, id).await.expect("get");
        assert_eq!(
            (v.queue_depth, v.saturated, v.status),
            (11, true, AgentStatus::Saturated)
        );
    }
);

store_test!(
    deleting_an_agent_revokes_cancels_and_disables,
    |env| async move {
        let t = env.tenant("acme").await;
        let a = env.agent(&t, "db-1").await;
        let id = a.agent.id;
        env.online(id).await;
        let p1 = env.policy(&t, backup_every_hour(id)).await;
        let p2 = env.policy(&t, backup_every_hour(id)).await;
        let pending = env.store.run_policy_now(t.id, p1.id).await.expect("run");
        env.store.run_policy_now(t.id, p2.id).await.expect("run");
        let claimed = env
            .store
            .claim(
                id,
                &backup_core::ClaimRequest {
                    limit: 1,
                    per_kind: None,
                    wait_seconds: 0,
                },
            )
            .await
            .expect("claim")
            .tasks;
        env.store
            .start_task(id, claimed[0].id, 1)
            .await
            .expect("start");

        env.store.delete_agent(t.id, id).await.expect("delete");
        assert!(
            env.store
                .authenticate_agent(&a.token)
                .await
                .expect("auth")
                .is_none(),
            "token revoked"
        );
        assert!(matches!(
            env.store.get_agent(t.id, id).await,
            Err(StoreError::NotFound(_))
        ));
        for task in [pending.id, claimed[0].id] {
            assert_eq!(
                env.store.get_task(t.id, task).await.expect("task").status,
                TaskStatus::Cancelled
            );
        }
        let policies = env
            .store
            .list_policies(t.id, &PolicyFilter::default(), &PageRequest::default())
            .await
            .expect("list");
        assert!(
            policies
                .items
                .iter()
                .all(|p| !p.spec.enabled && p.next_due_at.is_none())
        );
        assert!(
            matches!(
                env.store.delete_agent(t.id, id).await,
                Err(StoreError::NotFound(_))
            ),
            "gone"
        );
        let tick = env.store.schedule_due(true).await.expect("tick");
        assert_eq!(tick.evaluated, 0, "disabled policies are not due");
    }
);
