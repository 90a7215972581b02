//! kill -9, of the agent and of the server.

use std::{collections::BTreeMap, time::Duration};

use serde_json::json;

use crate::harness::{e2e_test, one_agent, restic_processes, wait_for, working};

e2e_test!(kill_9_of_the_agent_during_a_backup, |world| async move {
    let mut w = one_agent(&world, "crashy", (1, 4_000_000), "bandwidthLimitMbps: 1\n").await;
    let marker = world.marker();
    w.backup_every("big", "1h").await;
    wait_for(60, "restic running", || async {
        working(&restic_processes(&marker)).len() == 1
    })
    .await;
    let orphan = working(&restic_processes(&marker))[0].pid;
    w.process.kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        restic_processes(&marker).iter().any(|p| p.pid == orphan),
        "restic outlived its agent"
    );
    // The retry need not crawl at 1 Mbit/s.
    w.patch_settings(json!({"bandwidthLimitMbps": null})).await;
    w.process.restart();
    wait_for(60, "the leftover restic killed at restart", || async {
        !restic_processes(&marker).iter().any(|p| p.pid == orphan)
    })
    .await;
    wait_for(120, "the task retried and succeeded", || async {
        w.api.all("/tasks?status=succeeded").await.len() == 1
    })
    .await;
    assert!(w.process.stop());
    let task = w.api.all("/tasks").await.remove(0);
    assert_eq!(
        (task["attempt"].clone(), task["retryCount"].clone()),
        (json!(2), json!(1)),
        "{task}"
    );
    assert!(
        w.api.all("/tasks?status=running").await.is_empty(),
        "nothing stuck in running"
    );
    assert!(restic_processes(&marker).is_empty(), "no orphaned restic");
    assert_eq!(w.snapshots(&world).len(), 1);
});

e2e_test!(kill_9_of_the_server_under_load, |world| async move {
    let mut w = one_agent(
        &world,
        "steady",
        (2, 200_000),
        "maxConcurrentTasks: 3\nmaxConcurrentBackups: 3\n",
    )
    .await;
    for i in 0..5 {
        w.backup_every(&format!("p{i}"), "3s").await;
    }
    wait_for(90, "a steady stream of backups", || async {
        w.api.all("/backup-runs?status=succeeded").await.len() >= 8
    })
    .await;
    w.server.kill9();
    // The agent finishes what it holds; its results wait in the outbox (and it has tried, and
    // failed, to deliver one).
    wait_for(60, "results waiting in the agent's outbox", || async {
        w.process.diagnostics()["outbox"].as_u64().unwrap_or(0) > 0
            && w.process.log().contains("cannot deliver a result")
    })
    .await;
    w.server.restart();
    wait_for(90, "the outbox delivered", || async {
        w.process.diagnostics()["outbox"].as_u64() == Some(0)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(w.process.stop());
    let log = w.process.log();
    for recovery in ["heartbeat OK after", "results from the outbox"] {
        assert!(
            log.contains(recovery),
            "the agent logs its recovery ({recovery:?})"
        );
    }
    assert!(
        log.contains("cannot reach the server at 127.0.0.1:"),
        "the failure names the server"
    );
    let tasks = w.api.all("/tasks").await;
    let runs = w.api.all("/backup-runs").await;
    let mut per_attempt: BTreeMap<(String, u64), usize> = BTreeMap::new();
    for r in &runs {
        *per_attempt
            .entry((
                r["taskId"].as_str().expect("task").to_owned(),
                r["attempt"].as_u64().expect("attempt"),
            ))
            .or_default() += 1;
    }
    assert!(
        per_attempt.values().all(|&n| n == 1),
        "every attempt recorded exactly once"
    );
    for t in &tasks {
        let id = t["id"].as_str().expect("id");
        let attempts = t["attempt"].as_u64().unwrap_or(0);
        let recorded = (1..=attempts)
            .filter(|n| per_attempt.contains_key(&(id.to_owned(), *n)))
            .count() as u64;
        if t["status"] == "succeeded" {
            assert_eq!(recorded, attempts, "every attempt of {id} has its run: {t}");
        }
        assert_ne!(t["status"], "running", "nothing stuck in running: {t}");
    }
    let succeeded = runs.iter().filter(|r| r["status"] == "succeeded").count();
    assert_eq!(
        w.snapshots(&world).len(),
        succeeded,
        "one snapshot per recorded success, none lost, none doubled"
    );
    assert!(
        w.process.log().contains("cannot deliver a result"),
        "the outage was real"
    );
});
