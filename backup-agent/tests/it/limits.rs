//! Limits and quotas: the agent against the real server, restic scripted at the process seam.

use std::time::Duration;

use serde_json::json;

use crate::harness::{
    Script, Setup, check_policy, env_of, logs_of, one_repository, prune_policy, setup,
};

fn flag(spec: &backup_core::ProcessSpec, name: &str) -> Option<String> {
    spec.args
        .iter()
        .find_map(|a| a.strip_prefix(&format!("{name}=")).map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_than_the_limits_total_and_per_kind() {
    let repos = ["r0", "r1", "r2"];
    let mut s = setup("limits", &repos).await;
    for repo in repos {
        // Long enough that the limits are reached, not just respected, on a loaded machine.
        s.script(repo, vec![Script::ok(2000)]);
    }
    s.config.max_concurrent_tasks = Some(3);
    s.config.max_concurrent_backups = Some(2);
    s.config.max_concurrent_checks = Some(1);
    for i in 0..6 {
        s.backup(repos[i % 3]).await;
    }
    for repo in repos {
        s.server.policy(check_policy(s.agent.id, repo)).await;
    }
    let running = s.start().await;
    s.server
        .wait_for_tasks(90, "all nine tasks to succeed", "status=succeeded", 9)
        .await;
    running.stop().await;
    let (total, per_op) = s.runner.max_concurrent();
    assert!(total <= 3, "at most maxConcurrentTasks at once: {total}");
    assert_eq!(
        per_op.get("backup").copied(),
        Some(2),
        "backups reached their limit of 2 and never passed it"
    );
    assert_eq!(per_op.get("check").copied(), Some(1), "one check at a time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_reach_restic_as_flags_niceness_and_gomaxprocs() {
    // Long enough that both backups surely overlap (the ledger's shares depend on it).
    let mut s = one_repository("quotas", vec![Script::ok(5000)]).await;
    s.config.max_concurrent_tasks = Some(2);
    s.config.max_concurrent_backups = Some(2);
    s.config.bandwidth_limit_mbps = Some(20);
    s.config.cpu_quota_percent = Some(50);
    for _ in 0..2 {
        s.backup("main").await;
    }
    let running = s.start().await;
    s.wait_running(30, "both backups running at once", 2).await;
    s.server
        .wait_for_tasks(30, "both backups to succeed", "status=succeeded", 2)
        .await;
    running.stop().await;
    let backups = s.runner.operations();
    assert_eq!(backups.len(), 2);
    let mut limits: Vec<u64> = backups
        .iter()
        .map(|s| {
            flag(s, "--limit-upload")
                .expect("limited")
                .parse()
                .expect("KiB/s")
        })
        .collect();
    limits.sort_unstable();
    assert_eq!(
        limits,
        vec![1220, 1221],
        "20 Mbit/s = 2441 KiB/s shared by two backups, never more"
    );
    for spec in &backups {
        assert_eq!(spec.nice, Some(10), "cpuQuotaPercent 50 -> niceness 10");
        let procs: usize = env_of(spec, "GOMAXPROCS")
            .expect("set")
            .parse()
            .expect("number");
        assert!(
            procs == 4 || procs == 2,
            "8 cpus at 50% shared by the running processes: {procs}"
        );
        assert_eq!(spec.io_class, None, "backups keep the normal I/O class");
        assert!(spec.args.contains(&"--host=test-host".to_owned()));
        assert!(
            spec.args.iter().any(|a| a.starts_with("--tag=policy:"))
                && spec.args.iter().any(|a| a.starts_with("--tag=task:"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settings_patch_changes_what_runs_within_one_heartbeat() {
    let mut s = one_repository("patch", vec![Script::ok(4000)]).await;
    s.config.max_concurrent_tasks = Some(1);
    s.config.max_concurrent_backups = Some(1);
    for _ in 0..4 {
        s.backup("main").await;
    }
    let running = s.start().await;
    s.wait_running(10, "one backup running", 1).await;
    let Setup {
        server,
        runner,
        agent,
        ..
    } = &s;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(runner.current(), 1, "the limit holds");
    let patched = server
        .patch_settings(
            agent.id,
            json!({"maxConcurrentTasks": 3, "maxConcurrentBackups": 3}),
        )
        .await;
    assert_eq!(patched["maxConcurrentTasks"], 3);
    let patched_at = chrono::Utc::now();
    // Within one heartbeat, counted in heartbeats rather than seconds: one heartbeat may have
    // been in flight during the PATCH; the next one carries the settings, and it has been
    // applied once a third is.
    let mut seen = std::collections::BTreeSet::new();
    server
        .wait_for(30, "three heartbeats after the PATCH", || {
            if let Some(at) = running.agent.diagnostics().last_heartbeat_at
                && at > patched_at
            {
                seen.insert(at);
            }
            let enough = seen.len() >= 3;
            async move { enough }
        })
        .await;
    assert_eq!(
        running.agent.settings().max_concurrent_tasks,
        3,
        "applied by the first heartbeat sent after the PATCH"
    );
    s.wait_running(30, "three backups at once after the PATCH", 3)
        .await;
    let metrics = running.agent.render_metrics();
    assert!(
        metrics.contains("backup_agent_concurrency_limit 3"),
        "{metrics}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_outcomes_and_the_concurrency_limit() {
    let mut s = setup("metrics", &["good", "partial"]).await;
    s.script("good", vec![Script::ok(50)]);
    s.script(
        "partial",
        vec![Script {
            exit: 3,
            ..Script::ok(50)
        }],
    );
    s.config.max_concurrent_tasks = Some(2);
    for repo in ["good", "good", "partial"] {
        s.backup(repo).await;
    }
    let running = s.start().await;
    let server = &s.server;
    server
        .wait_for_tasks(20, "three tasks done", "status=succeeded", 3)
        .await;
    let text = running.agent.render_metrics();
    for line in [
        "backup_agent_tasks_total{kind=\"backup\",outcome=\"succeeded\"} 2",
        "backup_agent_tasks_total{kind=\"backup\",outcome=\"partial\"} 1",
        "backup_agent_concurrency_limit 2",
        "backup_agent_concurrency_current 0",
        "backup_agent_queue_depth 0",
        "backup_agent_backoff_active 0",
        "backup_agent_retries_total 0",
        "backup_agent_task_duration_seconds_count{kind=\"backup\"} 3",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    let runs = server.runs("").await;
    let partial_run = runs
        .iter()
        .find(|r| r["status"] == "partial")
        .expect("a partial run");
    assert_eq!(
        partial_run["snapshotId"], "abcd1234",
        "the summary's snapshot id is recorded"
    );
    let diagnostics = running.agent.diagnostics();
    assert_eq!(diagnostics.tasks_total.get("backup/partial"), Some(&1));
    assert!(
        diagnostics.quotas.nice.starts_with("active")
            || diagnostics.quotas.nice.starts_with("unavailable")
    );
    running.stop().await;
}

#[test]
fn waiting_for_a_slot_logs_concurrency_limit_reached() {
    // The agent claims only what its limits admit, so its gate waits when a limit goes down
    // while it holds tasks: here a prune queued behind a backup's repository lock meets a
    // total limit lowered to 1 while a check still runs.
    let logs = logs_of(async {
        let mut s = setup("logs", &["x", "y"]).await;
        s.script("x", vec![Script::ok(3000), Script::ok(50)]);
        s.script("y", vec![Script::ok(6000)]);
        s.config.max_concurrent_tasks = Some(3);
        s.backup("x").await;
        s.server.policy(check_policy(s.agent.id, "y")).await;
        s.server.policy(prune_policy(s.agent.id, "x", 2)).await;
        let running = s.start().await;
        s.wait_running(10, "backup and check running", 2).await;
        s.server
            .patch_settings(s.agent.id, json!({"maxConcurrentTasks": 1}))
            .await;
        s.server
            .wait_for_tasks(30, "all three done", "status=succeeded", 3)
            .await;
        assert_eq!(s.runner.max_concurrent().1.get("forget").copied(), Some(1));
        running.stop().await;
    });
    assert!(logs.contains("Concurrency limit reached"), "{logs}");
}

#[test]
fn an_agent_at_its_limit_logs_concurrency_limit_reached() {
    let logs = logs_of(async {
        let mut s = one_repository("full", vec![Script::ok(3000)]).await;
        s.config.max_concurrent_tasks = Some(1);
        for _ in 0..2 {
            s.backup("main").await;
        }
        let running = s.start().await;
        s.server
            .wait_for_tasks(60, "both backups done", "status=succeeded", 2)
            .await;
        running.stop().await;
    });
    assert!(
        logs.contains("Concurrency limit reached") && logs.contains("limit=1"),
        "{logs}"
    );
}
