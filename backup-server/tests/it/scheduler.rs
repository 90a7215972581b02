//! The scheduler through the server, with a manual clock, on SQLite and PostgreSQL.

use backup_core::SkipReason;
use serde_json::json;

use crate::harness::{Auth, backup_policy, server_test, start};

fn skipped(tick: &backup_server::TickSummary, reason: SkipReason) -> u64 {
    tick.schedule.skipped.get(&reason).copied().unwrap_or(0)
}

server_test!(
    saturated_agents_are_skipped_and_resume_when_they_clear,
    |h| async move {
        let t = h.tenant("acme").await;
        let agent = h.agent(&t, "db-1").await;
        h.heartbeat(&agent, json!({"runningTasks": 2, "queueDepth": 11}))
            .await;
        h.policy(&t, backup_policy(agent.id)).await;
        let tick = h.tick().await;
        assert_eq!(
            (tick.schedule.created, skipped(&tick, SkipReason::Saturated)),
            (0, 1)
        );
        let view = h
            .get(&format!("/agents/{}", agent.id), &Auth::tenant(&t))
            .await;
        assert_eq!(
            (view.body["status"].clone(), view.body["saturated"].clone()),
            (json!("saturated"), json!(true))
        );
        h.heartbeat(&agent, json!({"runningTasks": 2, "queueDepth": 3}))
            .await;
        assert_eq!(
            h.tick().await.schedule.created,
            1,
            "resumes on the first tick after it clears"
        );
    }
);

server_test!(
    no_dispatch_during_backoff_unless_told_not_to_care,
    |h| async move {
        let t = h.tenant("acme").await;
        let agent = h.agent(&t, "db-1").await;
        h.policy(&t, backup_policy(agent.id)).await;
        h.heartbeat(&agent, json!({"runningTasks": 0, "queueDepth": 0, "backoffRepositories": [{"repository": "main", "remainingSeconds": 300}]})).await;
        let tick = h.tick().await;
        assert_eq!(skipped(&tick, SkipReason::RepositoryBackoff), 1);
        let view = h
            .get(&format!("/agents/{}", agent.id), &Auth::tenant(&t))
            .await;
        assert_eq!(view.body["status"], "backoff");
        assert_eq!(view.body["backoffRepositories"][0]["repository"], "main");
        h.heartbeat(
            &agent,
            json!({"runningTasks": 0, "queueDepth": 0, "agentBackoffSeconds": 300}),
        )
        .await;
        assert_eq!(skipped(&h.tick().await, SkipReason::AgentBackoff), 1);
        // The agent's backoff deadline passes: dispatch resumes.
        h.advance_secs(301);
        h.heartbeat(
            &agent,
            json!({"runningTasks": 0, "queueDepth": 0, "agentBackoffSeconds": 0}),
        )
        .await;
        assert_eq!(h.tick().await.schedule.created, 1);
    }
);

server_test!(
    respect_agent_backoff_false_dispatches_during_backoff,
    backup_server::ServerConfig {
        scheduler: backup_server::SchedulerConfig {
            respect_agent_backoff: false,
            ..backup_server::SchedulerConfig::default()
        },
        ..backup_server::ServerConfig::default()
    },
    |h| async move {
        let t = h.tenant("acme").await;
        let agent = h.agent(&t, "db-1").await;
        h.policy(&t, backup_policy(agent.id)).await;
        h.heartbeat(
            &agent,
            json!({"runningTasks": 0, "queueDepth": 0, "agentBackoffSeconds": 300}),
        )
        .await;
        assert_eq!(h.tick().await.schedule.created, 1);
    }
);

server_test!(an_offline_agent_gets_no_pile_up, |h| async move {
    let t = h.tenant("acme").await;
    let agent = h.agent(&t, "db-1").await;
    let mut spec = backup_policy(agent.id);
    spec["schedule"] = json!({"every": "1m"});
    h.policy(&t, spec).await;
    for _ in 0..10 {
        let tick = h.tick().await;
        assert_eq!(
            (tick.schedule.created, skipped(&tick, SkipReason::Offline)),
            (0, 1)
        );
        h.advance_secs(60);
    }
    h.online(&agent).await;
    let tick = h.tick().await;
    assert_eq!(tick.schedule.created, 1, "one task, not ten");
    assert_eq!(tick.schedule.missed_slots, 10);
});

server_test!(
    max_task_retries_overrides_and_missed_slots_merge,
    |h| async move {
        let t = h.tenant("acme").await;
        let auth = Auth::tenant(&t);
        let agent = h.agent(&t, "db-1").await;
        h.online(&agent).await;
        let mut spec = backup_policy(agent.id);
        spec["maxTaskRetries"] = json!(1);
        h.policy(&t, spec).await;
        h.tick().await;
        let tasks = h.get("/tasks", &auth).await;
        assert_eq!(tasks.body["items"][0]["maxRetries"], 1);
    }
);

server_test!(cron_in_a_time_zone_across_a_dst_change, |h| async move {
    let t = h.tenant("acme").await;
    let agent = h.agent(&t, "db-1").await;
    let mut spec = backup_policy(agent.id);
    spec["schedule"] = json!({"cron": "30 2 * * *", "timezone": "Europe/Berlin"});
    let winter = h.policy(&t, spec.clone()).await;
    assert_eq!(
        winter["nextDueAt"], "2026-03-01T01:30:00Z",
        "02:30 CET is 01:30 UTC"
    );
    // The day before the spring-forward change (2026-03-29, 02:00 -> 03:00 in Berlin).
    h.clock.set("2026-03-28T12:00:00Z".parse().expect("ts"));
    let p = h.policy(&t, spec).await;
    assert_eq!(
        p["nextDueAt"], "2026-03-29T01:00:00Z",
        "02:30 does not exist that night: the first instant after the gap"
    );
    h.clock.set("2026-03-29T01:01:00Z".parse().expect("ts"));
    h.online(&agent).await;
    assert_eq!(h.tick().await.schedule.created, 2, "both policies are due");
    let after = h
        .get(
            &format!("/policies/{}", p["id"].as_str().expect("id")),
            &Auth::tenant(&t),
        )
        .await;
    assert_eq!(
        after.body["nextDueAt"], "2026-03-30T00:30:00Z",
        "02:30 CEST is 00:30 UTC"
    );
    let _ = 200;
});

server_test!(
    leases_lapse_for_claimed_and_running_tasks_but_not_right_after_start,
    |h| async move {
        let t = h.tenant("acme").await;
        let auth = Auth::tenant(&t);
        let agent = h.agent(&t, "db-1").await;
        h.online(&agent).await;
        let p1 = h.policy(&t, backup_policy(agent.id)).await;
        let p2 = h.policy(&t, backup_policy(agent.id)).await;
        h.tick().await;
        let claimed = h.claim(&agent, 2).await;
        assert_eq!(claimed.len(), 2);
        let running = claimed[0]["id"].as_str().expect("id").to_owned();
        let waiting = claimed[1]["id"].as_str().expect("id").to_owned();
        h.post(
            &format!("/tasks/{running}/start"),
            &Auth::Agent(agent.token.clone()),
            json!({"attempt": 1}),
        )
        .await;
        h.advance_secs(901);
        // A server that starts now (a restart) gives agents one lease to renew theirs first.
        let (replica_state, _) = h.replica().await;
        let tick = backup_server::scheduler_tick(&replica_state)
            .await
            .expect("tick");
        assert_eq!(
            tick.lapses, None,
            "no lease lapses within leaseSeconds of the server's start"
        );
        let tick = h.tick().await;
        let lapses = tick
            .lapses
            .expect("the original server is past its grace period");
        assert_eq!((lapses.returned, lapses.lost, lapses.retried), (1, 1, 1));
        let r = h.get(&format!("/tasks/{running}"), &auth).await;
        assert_eq!(
            (r.body["status"].clone(), r.body["retryCount"].clone()),
            (json!("pending"), json!(1))
        );
        let w = h.get(&format!("/tasks/{waiting}"), &auth).await;
        assert_eq!(
            (
                w.body["status"].clone(),
                w.body["retryCount"].clone(),
                w.body["attempt"].clone()
            ),
            (json!("pending"), json!(0), json!(1)),
            "back to pending, its attempt number kept for the next claim (or a late result)"
        );
        let _ = (p1, p2, start());
    }
);

server_test!(
    the_fleet_gauges_count_agents_and_the_oldest_success,
    |h| async move {
        let t = h.tenant("acme").await;
        let quiet = h.agent(&t, "quiet").await;
        let busy = h.agent(&t, "busy").await;
        h.online(&busy).await;
        let p = h.policy(&t, backup_policy(busy.id)).await;
        let _ = quiet;
        h.advance_secs(120);
        h.online(&busy).await;
        backup_server::refresh_fleet_gauges(&h.state)
            .await
            .expect("gauges");
        let text = h.metrics_text().await;
        for line in [
            "backup_server_agents{status=\"offline\"} 1",
            "backup_server_agents{status=\"online\"} 1",
            "backup_server_agents{status=\"backoff\"} 0",
            "backup_server_enabled_policies 1",
            // The policy never succeeded: it counts from its creation, two minutes ago.
            "backup_server_oldest_success_age_seconds 120",
        ] {
            assert!(text.contains(line), "{line} in:\n{text}");
        }
        // A task that fails permanently is counted by kind.
        let id = p["id"].as_str().expect("id");
        let run = h
            .post(&format!("/policies/{id}/run"), &Auth::tenant(&t), json!({}))
            .await;
        assert_eq!(run.status, 201, "{run:?}");
        let task = h.claim(&busy, 1).await.remove(0);
        let task_id = task["id"].as_str().expect("task");
        let report = json!({"attempt": task["attempt"], "outcome": "failed", "errorKind": "permanent", "error": "wrong password"});
        let a = h
            .post(&format!("/tasks/{task_id}/result"), &busy.auth(), report)
            .await;
        assert_eq!(a.body["failedPermanently"], true, "{a:?}");
        let text = h.metrics_text().await;
        assert!(
            text.contains("backup_server_tasks_failed_permanently_total{kind=\"backup\"} 1"),
            "{text}"
        );
    }
);
