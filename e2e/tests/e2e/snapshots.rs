//! Scheduled backups land as the snapshots the server recorded.

use std::collections::BTreeSet;

use crate::harness::{e2e_test, one_agent, wait_for};

e2e_test!(
    scheduled_backups_land_as_the_snapshots_the_server_recorded,
    |world| async move {
        let mut w = one_agent(&world, "host1", (3, 20_000), "").await;
        w.backup_every("often", "4s").await;
        wait_for(90, "three scheduled backups", || async {
            w.api.all("/backup-runs?status=succeeded").await.len() >= 3
        })
        .await;
        assert!(w.process.stop(), "the agent stops cleanly on SIGTERM");
        let runs = w.api.all("/backup-runs?status=succeeded").await;
        // restic 0.14 reports the short id in its backup summary, 0.17 and later the full one.
        let short_of = |id: &serde_json::Value| -> String {
            id.as_str().expect("snapshot id").chars().take(8).collect()
        };
        let recorded: BTreeSet<String> = runs.iter().map(|r| short_of(&r["snapshotId"])).collect();
        let listed = w.snapshots(&world);
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
                .find(|s| s["short_id"] == short_of(&run["snapshotId"]).as_str())
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
        let tasks = w.api.all("/tasks").await;
        assert!(
            tasks.iter().all(|t| t["status"] != "running"),
            "nothing left running"
        );
    }
);
