//! Limits and quotas: the agent against the real server, restic scripted at the process seam.

use std::{sync::Arc, time::Duration};

use serde_json::json;

use crate::harness::{
    OneRepository, RunningAgent, Script, ScriptedRunner, TestServer, agent_config, backup_policy,
    env_of, one_repository, scratch,
};

fn flag(spec: &backup_core::ProcessSpec, name: &str) -> Option<String> {
    spec.args
        .iter()
        .find_map(|a| a.strip_prefix(&format!("{name}=")).map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_than_the_limits_total_and_per_kind() {
    let server = TestServer::start().await;
    let (dir, pw) = scratch();
    let agent = server.agent("limits").await;
    let runner = Arc::new(ScriptedRunner::default());
    let repos: Vec<(String, std::path::PathBuf)> = (0..3)
        .map(|i| (format!("r{i}"), dir.path().join(format!("repo{i}"))))
        .collect();
    for (_, url) in &repos {
        // Long enough that the limits are reached, not just respected, on a loaded machine.
        runner.script(&url.display().to_string(), vec![Script::ok(2000)]);
    }
    let mut config = agent_config(
        &server,
        &agent,
        &dir.path().join("state"),
        &repos
            .iter()
            .map(|(n, u)| (n.as_str(), u.as_path(), pw.as_path()))
            .collect::<Vec<_>>(),
    );
    config.max_concurrent_tasks = Some(3);
    config.max_concurrent_backups = Some(2);
    config.max_concurrent_checks = Some(1);
    for i in 0..6 {
        server
            .policy(backup_policy(agent.id, &format!("r{}", i % 3), &["/data"]))
            .await;
    }
    for i in 0..3 {
        server.policy(json!({"name": "check", "agentId": agent.id, "kind": "check", "schedule": {"every": "1h"}, "repository": format!("r{i}")})).await;
    }
    let running = RunningAgent::start(config, runner.clone()).await;
    server
        .wait_for(90, "all nine tasks to succeed", || async {
            server.tasks("status=succeeded").await.len() == 9
        })
        .await;
    running.stop().await;
    let (total, per_op) = runner.max_concurrent();
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
    let server = TestServer::start().await;
    let (dir, pw) = scratch();
    let agent = server.agent("quotas").await;
    let runner = Arc::new(ScriptedRunner::default());
    let repo = dir.path().join("repo");
    // Long enough that both backups surely overlap (the ledger's shares depend on it).
    runner.script(&repo.display().to_string(), vec![Script::ok(5000)]);
    let mut config = agent_config(
        &server,
        &agent,
        &dir.path().join("state"),
        &[("main", &repo, &pw)],
    );
    config.max_concurrent_tasks = Some(2);
    config.max_concurrent_backups = Some(2);
    config.bandwidth_limit_mbps = Some(20);
    config.cpu_quota_percent = Some(50);
    for _ in 0..2 {
        server
            .policy(backup_policy(agent.id, "main", &["/data"]))
            .await;
    }
    let running = RunningAgent::start(config, runner.clone()).await;
    server
        .wait_for(30, "both backups running at once", || async {
            runner.current() == 2
        })
        .await;
    server
        .wait_for(30, "both backups to succeed", || async {
            server.tasks("status=succeeded").await.len() == 2
        })
        .await;
    running.stop().await;
    let backups = runner.operations();
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
    let OneRepository {
        server,
        dir: _dir,
        agent,
        runner,
        mut config,
    } = one_repository("patch", vec![Script::ok(4000)]).await;
    config.max_concurrent_tasks = Some(1);
    config.max_concurrent_backups = Some(1);
    for _ in 0..4 {
        server
            .policy(backup_policy(agent.id, "main", &["/data"]))
            .await;
    }
    let running = RunningAgent::start(config, runner.clone()).await;
    server
        .wait_for(10, "one backup running", || async { runner.current() == 1 })
        .await;
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
    server
        .wait_for(30, "three backups at once after the PATCH", || async {
            runner.current() == 3
        })
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
    let server = TestServer::start().await;
    let (dir, pw) = scratch();
    let agent = server.agent("metrics").await;
    let runner = Arc::new(ScriptedRunner::default());
    let (good, partial) = (dir.path().join("good"), dir.path().join("partial"));
    runner.script(&good.display().to_string(), vec![Script::ok(50)]);
    runner.script(
        &partial.display().to_string(),
        vec![Script {
            exit: 3,
            ..Script::ok(50)
        }],
    );
    let mut config = agent_config(
        &server,
        &agent,
        &dir.path().join("state"),
        &[("good", &good, &pw), ("partial", &partial, &pw)],
    );
    config.max_concurrent_tasks = Some(2);
    for repo in ["good", "good", "partial"] {
        server
            .policy(backup_policy(agent.id, repo, &["/data"]))
            .await;
    }
    let running = RunningAgent::start(config, runner.clone()).await;
    server
        .wait_for(20, "three tasks done", || async {
            server.tasks("status=succeeded").await.len() == 3
        })
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
    let logs = backup_testkit::capture_logs(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let server = TestServer::start().await;
            let (dir, pw) = scratch();
            let agent = server.agent("logs").await;
            let runner = Arc::new(ScriptedRunner::default());
            let (x, y) = (dir.path().join("x"), dir.path().join("y"));
            runner.script(&x.display().to_string(), vec![Script::ok(3000), Script::ok(50)]);
            runner.script(&y.display().to_string(), vec![Script::ok(6000)]);
            let mut config = agent_config(&server, &agent, &dir.path().join("state"), &[("x", &x, &pw), ("y", &y, &pw)]);
            config.max_concurrent_tasks = Some(3);
            server.policy(backup_policy(agent.id, "x", &["/d"])).await;
            server.policy(json!({"name": "check", "agentId": agent.id, "kind": "check", "schedule": {"every": "1h"}, "repository": "y"})).await;
            server.policy(json!({"name": "prune", "agentId": agent.id, "kind": "prune", "schedule": {"every": "1h"}, "repository": "x", "retention": {"keepLast": 2}})).await;
            let running = RunningAgent::start(config, runner.clone()).await;
            server.wait_for(10, "backup and check running", || async { runner.current() == 2 }).await;
            server.patch_settings(agent.id, json!({"maxConcurrentTasks": 1})).await;
            server.wait_for(30, "all three done", || async { server.tasks("status=succeeded").await.len() == 3 }).await;
            assert_eq!(runner.max_concurrent().1.get("forget").copied(), Some(1));
            running.stop().await;
        });
    });
    assert!(logs.contains("Concurrency limit reached"), "{logs}");
}

#[test]
fn an_agent_at_its_limit_logs_concurrency_limit_reached() {
    let logs = backup_testkit::capture_logs(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let OneRepository {
                server,
                dir: _dir,
                agent,
                runner,
                mut config,
            } = one_repository("full", vec![Script::ok(3000)]).await;
            config.max_concurrent_tasks = Some(1);
            for _ in 0..2 {
                server
                    .policy(backup_policy(agent.id, "main", &["/d"]))
                    .await;
            }
            let running = RunningAgent::start(config, runner.clone()).await;
            server
                .wait_for(60, "both backups done", || async {
                    server.tasks("status=succeeded").await.len() == 2
                })
                .await;
            running.stop().await;
        });
    });
    assert!(
        logs.contains("Concurrency limit reached") && logs.contains("limit=1"),
        "{logs}"
    );
}
