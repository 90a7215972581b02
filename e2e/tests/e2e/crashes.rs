//! kill -9, of the agent and of the server.

use std::{collections::BTreeMap, time::Duration};

use serde_json::json;

use crate::harness::{
    AgentProc, Api, ServerProc, e2e_test, restic_processes, snapshots, wait_for, working,
};

e2e_test!(kill_9_of_the_agent_during_a_backup, |world| async move {
    let server = ServerProc::start(&world, "server");
    let api = Api::new(&server).await;
    let (repo, pw) = world.repository("repo");
    let data = world.data("data", 1, 4_000_000);
    let agent = api.agent("crashy").await;
    let marker = world.dir.path().display().to_string();
    let mut a = AgentProc::start(
        &world,
        "agent",
        &server.url,
        &agent,
        &[("main", &repo, &pw)],
        "bandwidthLimitMbps: 1\n",
    );
    api.post("/policies", json!({"name": "big", "agentId": agent.id, "kind": "backup", "schedule": {"every": "1h"}, "paths": [data], "repository": "main"})).await;
    wait_for(60, "restic running", || async {
        working(&restic_processes(&marker)).len() == 1
    })
    .await;
    let orphan = working(&restic_processes(&marker))[0].pid;
    a.kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        restic_processes(&marker).iter().any(|p| p.pid == orphan),
        "restic outlived its agent"
    );
    // The retry need not crawl at 1 Mbit/s.
    let (status, _) = api
        .call(
            reqwest::Method::PATCH,
            &format!("/agents/{}/settings", agent.id),
            Some(json!({"bandwidthLimitMbps": null})),
        )
        .await;
    assert_eq!(status, 200);
    a.restart();
    wait_for(60, "the leftover restic killed at restart", || async {
        !restic_processes(&marker).iter().any(|p| p.pid == orphan)
    })
    .await;
    wait_for(120, "the task retried and succeeded", || async {
        api.all("/tasks?status=succeeded").await.len() == 1
    })
    .await;
    assert!(a.stop());
    let task = api.all("/tasks").await.remove(0);
    assert_eq!(
        (task["attempt"].clone(), task["retryCount"].clone()),
        (json!(2), json!(1)),
        "{task}"
    );
    assert!(
        api.all("/tasks?status=running").await.is_empty(),
        "nothing stuck in running"
    );
    assert!(restic_processes(&marker).is_empty(), "no orphaned restic");
    assert_eq!(snapshots(&repo, &pw, &world.path("cache")).len(), 1);
});

e2e_test!(kill_9_of_the_server_under_load, |world| async move {
    let mut server = ServerProc::start(&world, "server");
    let api = Api::new(&server).await;
    let (repo, pw) = world.repository("repo");
    let data = world.data("data", 2, 200_000);
    let agent = api.agent("steady").await;
    let mut a = AgentProc::start(
        &world,
        "agent",
        &server.url,
        &agent,
        &[("main", &repo, &pw)],
        "maxConcurrentTasks: 3\nmaxConcurrentBackups: 3\n",
    );
    for i in 0..5 {
        api.post("/policies", json!({"name": format!("p{i}"), "agentId": agent.id, "kind": "backup", "schedule": {"every": "3s"}, "paths": [data], "repository": "main"})).await;
    }
    wait_for(90, "a steady stream of backups", || async {
        api.all("/backup-runs?status=succeeded").await.len() >= 8
    })
    .await;
    server.kill9();
    // The agent finishes what it holds; its results wait in the outbox (and it has tried, and
    // failed, to deliver one).
    wait_for(60, "results waiting in the agent's outbox", || async {
        a.diagnostics()["outbox"].as_u64().unwrap_or(0) > 0
            && a.log().contains("cannot deliver a result")
    })
    .await;
    server.restart();
    wait_for(90, "the outbox delivered", || async {
        a.diagnostics()["outbox"].as_u64() == Some(0)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(a.stop());
    let tasks = api.all("/tasks").await;
    let runs = api.all("/backup-runs").await;
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
        snapshots(&repo, &pw, &world.path("cache")).len(),
        succeeded,
        "one snapshot per recorded success, none lost, none doubled"
    );
    assert!(
        a.log().contains("cannot deliver a result"),
        "the outage was real"
    );
});
