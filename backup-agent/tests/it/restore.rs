//! Restores and listings through the agent, with real restic: the data comes back byte for
//! byte, only under `restoreTargets`, a listing shows what `restic ls` shows for that level, a
//! dry run writes nothing (and is refused by a restic too old for it), and an embedder gets the
//! same through the library.

use std::path::Path;

use backup_testkit::tree_digest;
use serde_json::{Value, json};

use crate::harness::{Setup, setup};
use crate::real_restic::sample_data;

use crate::harness::local_restic;

/// The setup with `data` backed up once by the agent: the snapshot's short id.
async fn backed_up(s: &Setup, data: &Path) -> String {
    let backup = s.backup_of("main", data).await;
    s.server.wait_for_success(60, "the backup", &backup).await;
    let listed = || async {
        s.server.get("/snapshots?repository=main").await["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    s.server
        .wait_for(30, "the snapshot listed", || async {
            !listed().await.is_empty()
        })
        .await;
    let listed = listed().await;
    listed[0]["shortId"].as_str().expect("short id").to_owned()
}

fn restore_body(s: &Setup, snapshot: &str, target: &Path) -> Value {
    json!({
        "agentId": s.agent.id,
        "repository": "main",
        "snapshotId": snapshot,
        "target": target,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_brings_the_tree_back_byte_for_byte_under_restore_targets_only() {
    let Some(version) = local_restic() else {
        return;
    };
    let mut s = setup("restore", &["main"]).await;
    let data = sample_data(s.dir.path(), 300_000);
    std::os::unix::fs::symlink("hello.txt", data.join("link")).expect("symlink");
    let targets = s.dir.path().join("restores");
    s.config.restore_targets = vec![targets.clone()];
    let original = tree_digest(&data);
    let running = s.start_real().await;
    let snapshot = backed_up(&s, &data).await;

    // The incident: a file deleted, another altered.
    std::fs::remove_file(data.join("sub/notes.md")).expect("delete");
    std::fs::write(data.join("hello.txt"), "ransomware was here").expect("alter");

    let target = targets.join("first");
    let task = s
        .server
        .create("/restores", restore_body(&s, &snapshot, &target))
        .await;
    assert_eq!(task["kind"], "restore");
    let done = s.server.wait_for_end(60, "the restore", &task).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let restored = target.join(data.strip_prefix("/").expect("absolute"));
    assert_eq!(tree_digest(&restored), original, "byte for byte");
    // restic counts directories as restored entries too (0.17+); 0.14's count is the agent's.
    assert!(done["filesRestored"].as_u64().unwrap_or(0) >= 4, "{done}");
    assert!(
        done["bytesRestored"].as_u64().unwrap_or(0) >= 300_000,
        "{done}"
    );

    // Outside restoreTargets: refused at once, naming the key, nothing written.
    let outside = s.dir.path().join("elsewhere");
    let task = s
        .server
        .create("/restores", restore_body(&s, &snapshot, &outside))
        .await;
    let done = s
        .server
        .wait_for_end(60, "the refused restore", &task)
        .await;
    assert_eq!(done["status"], "failed_permanently", "{done}");
    assert_eq!(done["attempt"], 1, "{done}");
    assert!(
        done["lastError"]
            .as_str()
            .unwrap_or_default()
            .contains("restoreTargets"),
        "{done}"
    );
    assert!(!outside.exists());

    // A dry run writes nothing; a restic before 0.17 cannot do one and says so.
    let dry = targets.join("dry");
    let mut body = restore_body(&s, &snapshot, &dry);
    body["dryRun"] = json!(true);
    let task = s.server.create("/restores", body).await;
    let done = s.server.wait_for_end(60, "the dry run", &task).await;
    if version.has_restore_summary() {
        assert_eq!(done["status"], "succeeded", "{done}");
        assert!(done["filesRestored"].as_u64().unwrap_or(0) >= 4, "{done}");
    } else {
        assert_eq!(done["status"], "failed_permanently", "{done}");
        assert!(
            done["lastError"]
                .as_str()
                .unwrap_or_default()
                .contains("dryRun"),
            "{done}"
        );
    }
    assert!(!dry.join("tmp").exists() && !dry.join(data.strip_prefix("/").expect("abs")).exists());

    // One file, by the library, without the orchestrator.
    let one = targets.join("library");
    let output = running
        .agent
        .restore(
            "main",
            backup_core::TaskRequest {
                snapshot_id: Some(snapshot.clone()),
                include: vec![data.join("sub/notes.md").display().to_string()],
                target: Some(one.display().to_string()),
                ..backup_core::TaskRequest::default()
            },
        )
        .await
        .expect("restored by the library");
    assert!(output.files_restored.unwrap_or(0) >= 1, "{output:?}");
    let notes = one
        .join(data.strip_prefix("/").expect("abs"))
        .join("sub/notes.md");
    assert_eq!(std::fs::read_to_string(&notes).expect("notes"), "# notes\n");
    assert!(
        !one.join(data.strip_prefix("/").expect("abs"))
            .join("hello.txt")
            .exists()
    );
    let refused = running
        .agent
        .restore(
            "main",
            backup_core::TaskRequest {
                snapshot_id: Some(snapshot.clone()),
                target: Some("/etc".into()),
                ..backup_core::TaskRequest::default()
            },
        )
        .await
        .expect_err("outside restoreTargets");
    assert!(refused.to_string().contains("restoreTargets"), "{refused}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_shows_what_restic_ls_shows_for_that_level() {
    if local_restic().is_none() {
        return;
    }
    let s = setup("listing", &["main"]).await;
    let data = sample_data(s.dir.path(), 1000);
    let running = s.start_real().await;
    let snapshot = backed_up(&s, &data).await;
    let cache = s.dir.path().join("outside-cache");
    for dir in [data.clone(), data.join("sub")] {
        let dir = dir.display().to_string();
        let task = s
            .server
            .create(
                &format!("/snapshots/{snapshot}/ls"),
                json!({"agentId": s.agent.id, "repository": "main", "path": dir}),
            )
            .await;
        let done = s.server.wait_for_end(60, "the listing", &task).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        let mut listed: Vec<(String, String)> = done["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| {
                (
                    e["path"].as_str().unwrap_or_default().to_owned(),
                    e["type"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let mut by_restic: Vec<(String, String)> =
            backup_testkit::ls(&s.repo("main"), &s.pw, &cache, &snapshot, &dir)
                .iter()
                .map(|e| {
                    (
                        e["path"].as_str().unwrap_or_default().to_owned(),
                        e["type"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
        listed.sort();
        by_restic.sort();
        assert!(!listed.is_empty());
        assert_eq!(listed, by_restic, "the level of {dir}");
        assert!(done["truncated"].is_null(), "{done}");
    }
    let (entries, truncated) = running
        .agent
        .list_directory("main", &snapshot, &data.display().to_string())
        .await
        .expect("listed by the library");
    assert!(!truncated);
    assert!(entries.iter().any(|e| e.path.ends_with("/hello.txt")
        && e.entry_type == backup_core::EntryType::File
        && e.size == Some(14)));
    running.stop().await;
}
