//! The data comes back: the real binaries and real restic restore a snapshot through the API,
//! on the host that made it and on a second host that shares the repository, byte for byte;
//! a target outside `restoreTargets` fails at once naming the key; a listing of a directory is
//! what `restic ls` lists for that level.

use std::path::Path;

use backup_testkit::tree_digest;
use serde_json::{Value, json};

use crate::harness::{Api, agent_yaml, e2e_test, one_agent, wait_for};

/// Waits until the task ends; its view then.
async fn ended(api: &Api, task: &Value, what: &str) -> Value {
    let path = format!("/tasks/{}", task["id"].as_str().expect("task id"));
    wait_for(90, what, || async {
        let status = api.get(&path).await["status"].clone();
        status == "succeeded" || status == "failed_permanently"
    })
    .await;
    api.get(&path).await
}

fn restore(agent: &backup_testkit::TestAgent, snapshot: &str, target: &Path) -> Value {
    json!({"agentId": agent.id, "repository": "main", "snapshotId": snapshot, "target": target})
}

e2e_test!(
    a_snapshot_comes_back_byte_for_byte_on_its_host_and_on_another,
    |world| async move {
        let targets = world.path("restores");
        let extra = format!("restoreTargets: [{}]\n", targets.display());
        let w = one_agent(&world, "host1", (4, 40_000), &extra).await;
        std::fs::create_dir_all(w.data.join("deeper")).expect("mkdir");
        std::fs::write(w.data.join("deeper/notes.txt"), "keep me\n").expect("write");
        let original = tree_digest(&w.data);
        w.backup_every("nightly", "24h").await;
        wait_for(90, "the snapshot listed", || async {
            !w.api.all("/snapshots?repository=main").await.is_empty()
        })
        .await;
        let snapshot = w.api.all("/snapshots?repository=main").await[0]["shortId"]
            .as_str()
            .expect("short id")
            .to_owned();

        // The incident: a file deleted, another altered.
        std::fs::remove_file(w.data.join("deeper/notes.txt")).expect("delete");
        std::fs::write(w.data.join("file-0.bin"), "encrypted by someone else").expect("alter");
        assert_ne!(tree_digest(&w.data), original);

        let in_target = |target: &Path| target.join(w.data.strip_prefix("/").expect("absolute"));
        let here = targets.join("host1");
        let task = w
            .api
            .post("/restores", restore(&w.agent, &snapshot, &here))
            .await;
        let done = ended(&w.api, &task, "the restore on host1").await;
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(tree_digest(&in_target(&here)), original, "byte for byte");

        // A second host with the same repository under the same name restores it too.
        let host2 = w.api.agent("host2").await;
        let mut second = agent_yaml(
            &world,
            "agent2",
            &w.server.url,
            &host2,
            &[("main", &w.repo, &w.pw)],
            &extra,
        )
        .start(&world);
        let there = targets.join("host2");
        let task = w
            .api
            .post("/restores", restore(&host2, &snapshot, &there))
            .await;
        let done = ended(&w.api, &task, "the restore on host2").await;
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(done["agentId"], host2.id.to_string());
        assert_eq!(tree_digest(&in_target(&there)), original, "byte for byte");

        // Outside restoreTargets: failed permanently at the first attempt, naming the key.
        let outside = world.path("not-allowed");
        let task = w
            .api
            .post("/restores", restore(&host2, &snapshot, &outside))
            .await;
        let done = ended(&w.api, &task, "the refused restore").await;
        assert_eq!(
            (done["status"].as_str(), done["attempt"].as_u64()),
            (Some("failed_permanently"), Some(1)),
            "{done}"
        );
        assert!(
            done["lastError"]
                .as_str()
                .unwrap_or_default()
                .contains("restoreTargets"),
            "{done}"
        );
        assert!(!outside.exists());

        // A listing of one level is what restic lists for it.
        let dir = w.data.display().to_string();
        let task = w
            .api
            .post(
                &format!("/snapshots/{snapshot}/ls"),
                json!({"agentId": host2.id, "repository": "main", "path": dir}),
            )
            .await;
        let done = ended(&w.api, &task, "the listing").await;
        assert_eq!(done["status"], "succeeded", "{done}");
        let paths = |entries: &[Value]| -> Vec<String> {
            let mut p: Vec<String> = entries
                .iter()
                .filter_map(|e| e["path"].as_str().map(str::to_owned))
                .collect();
            p.sort();
            p
        };
        let by_restic = backup_testkit::ls(&w.repo, &w.pw, &world.path("cache"), &snapshot, &dir);
        let listed = done["entries"].as_array().cloned().unwrap_or_default();
        assert_eq!(paths(&listed), paths(&by_restic));
        assert_eq!(listed.len(), 5, "four files and a directory: {done}");
        assert!(second.stop(), "the second agent stops cleanly");
    }
);
