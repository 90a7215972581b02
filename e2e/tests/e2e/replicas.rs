//! Two server replicas on one PostgreSQL with several agents.

use std::collections::{BTreeMap, BTreeSet};

use crate::harness::{Db, ServerProc, World, agent_yaml, backup_every, snapshots, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_every_slot_once_no_task_claimed_twice() {
    let Some(world) = World::new(Db::Postgres).await else {
        return;
    };
    let a_server = ServerProc::start(&world, "replica-a");
    let b_server = ServerProc::start(&world, "replica-b");
    let api = a_server.tenant_api().await;
    let via_b = api.via(b_server.client());
    let data = world.data("data", 1, 50_000);
    let mut agents = Vec::new();
    let mut repos = Vec::new();
    for i in 0..4 {
        let (repo, pw) = world.repository(&format!("repo-{i}"));
        let creds = api.agent(&format!("host-{i}")).await;
        let server_url = if i % 2 == 0 {
            &a_server.url
        } else {
            &b_server.url
        };
        let proc = agent_yaml(
            &world,
            &format!("agent-{i}"),
            server_url,
            &creds,
            &[("main", &repo, &pw)],
            "maxConcurrentTasks: 2\nmaxConcurrentBackups: 2\n",
        )
        .start(&world);
        for j in 0..2 {
            let target = if j == 0 { &api } else { &via_b };
            let body = backup_every(&format!("p{i}-{j}"), &creds, "4s", &data, "main");
            target.post("/policies", body).await;
        }
        agents.push(proc);
        repos.push((repo, pw));
    }
    wait_for(120, "a few slots of every policy", || async {
        api.all("/backup-runs?status=succeeded").await.len() >= 24
    })
    .await;
    for a in &mut agents {
        assert!(a.stop());
    }
    let tasks = api.all("/tasks").await;
    let runs = api.all("/backup-runs").await;
    let slots: BTreeSet<(String, String)> = tasks
        .iter()
        .map(|t| {
            (
                t["policyId"].as_str().expect("p").to_owned(),
                t["slot"].as_str().expect("s").to_owned(),
            )
        })
        .collect();
    assert_eq!(slots.len(), tasks.len(), "one task per policy slot");
    let mut succeeded_per_task: BTreeMap<String, usize> = BTreeMap::new();
    for r in runs.iter().filter(|r| r["status"] == "succeeded") {
        *succeeded_per_task
            .entry(r["taskId"].as_str().expect("task").to_owned())
            .or_default() += 1;
    }
    assert!(
        succeeded_per_task.values().all(|&n| n == 1),
        "no task succeeded twice"
    );
    // A task claimed twice would have run restic twice: count the snapshots tagged with it.
    let mut snapshots_per_task: BTreeMap<String, usize> = BTreeMap::new();
    for (repo, pw) in &repos {
        for s in snapshots(repo, pw, &world.path("cache")) {
            for tag in s["tags"].as_array().cloned().unwrap_or_default() {
                if let Some(task) = tag.as_str().and_then(|t| t.strip_prefix("task:")) {
                    *snapshots_per_task.entry(task.to_owned()).or_default() += 1;
                }
            }
        }
    }
    assert!(
        snapshots_per_task.values().all(|&n| n == 1),
        "every task ran restic once: {snapshots_per_task:?}"
    );
    assert_eq!(snapshots_per_task.len(), succeeded_per_task.len());
    // Both replicas did scheduling and served claims.
    for server in [&a_server, &b_server] {
        let metrics = reqwest::get(format!("{}/metrics", server.url))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        assert!(
            metrics.contains("route=\"/agents/{id}/tasks/claim\",status=\"200\""),
            "{} served claims",
            server.url
        );
    }
}
