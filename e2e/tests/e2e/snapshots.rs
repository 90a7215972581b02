//! Scheduled backups land as the snapshots the server recorded.

use std::collections::BTreeSet;

use serde_json::json;

use crate::harness::{AgentProc, Api, ServerProc, e2e_test, snapshots, wait_for};

e2e_test!(
    scheduled_backups_land_as_the_snapshots_the_server_recorded,
    |world| async move {
        let server = ServerProc::start(&world, "server");
        let api = Api::new(&server).await;
        let (repo, pw) = world.repository("repo");
        let data = world.data("data", 3, 20_000);
        let agent = api.agent("host1").await;
        let mut a = AgentProc::start(
            &world,
            "agent",
            &server.url,
            &agent,
            &[("main", &repo, &pw)],
            "",
        );
        api.post("/policies", json!({"name": "often", "agentId": agent.id, "kind": "backup", "schedule": {"every": "4s"}, "paths": [data], "repository": "main"})).await;
        wait_for(90, "three scheduled backups", || async {
            api.all("/backup-runs?status=succeeded").await.len() >= 3
        })
        .await;
        assert!(a.stop(), "the agent stops cleanly on SIGTERM");
        let runs = api.all("/backup-runs?status=succeeded").await;
        let recorded: BTreeSet<String> = runs
            .iter()
            .map(|r| r["snapshotId"].as_str().expect("snapshot id").to_owned())
            .collect();
        let listed = snapshots(&repo, &pw, &world.path("cache"));
        let short: BTreeSet<String> = listed
            .iter()
            .map(|s| s["short_id"].as_str().expect("short id").to_owned())
            .collect();
        assert_eq!(
            recorded, short,
            "every snapshot restic lists is one the server recorded, and the other way round"
        );
        for run in &runs {
            let snapshot = listed
                .iter()
                .find(|s| s["short_id"] == run["snapshotId"])
                .expect("listed");
            let tag = format!("task:{}", run["taskId"].as_str().expect("task"));
            assert!(
                snapshot["tags"]
                    .as_array()
                    .expect("tags")
                    .iter()
                    .any(|t| t == tag.as_str()),
                "{snapshot}"
            );
        }
        let tasks = api.all("/tasks").await;
        assert!(
            tasks.iter().all(|t| t["status"] != "running"),
            "nothing left running"
        );
    }
);
