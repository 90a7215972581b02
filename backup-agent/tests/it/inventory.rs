//! The snapshot inventory with real restic: the server lists what restic holds for this host,
//! after backups and after a prune, with the policy and the sizes of the run that made each.

use serde_json::Value;

use crate::harness::{Setup, check_policy, policy_query, prune_policy, setup};
use crate::real_restic::sample_data;
use backup_testkit::snapshots;

/// The server's snapshots of the setup's agent in `main`.
async fn listed(s: &Setup) -> Vec<Value> {
    let page = s
        .server
        .get(&format!(
            "/snapshots?agentId={}&repository=main",
            s.agent.id
        ))
        .await;
    page["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_lists_what_restic_holds_after_backups_and_a_prune() {
    if backup_testkit::restic().is_none() {
        return;
    }
    let mut s = setup("inventory", &["main"]).await;
    let data = sample_data(s.dir.path(), 100_000);
    s.config
        .repositories
        .get_mut("main")
        .expect("main")
        .retention_floor = backup_core::Retention::default();
    let backup = s.backup_of("main", &data).await;
    let running = s.start_real().await;
    s.server.wait_for_success(60, "the backup", &backup).await;
    s.server.run_now(&backup).await;
    let q = policy_query(&backup);
    s.server
        .wait_for_tasks(60, "the second backup", &format!("{q}&status=succeeded"), 2)
        .await;
    s.server
        .wait_for(30, "both snapshots listed", || async {
            listed(&s).await.len() == 2
        })
        .await;
    let cache = s.dir.path().join("state/cache");
    let in_restic = snapshots(&s.repo("main"), &s.pw, &cache);
    let ids = |list: &[Value], key: &str| -> Vec<String> {
        let mut ids: Vec<String> = list
            .iter()
            .filter_map(|v| v[key].as_str().map(str::to_owned))
            .collect();
        ids.sort();
        ids
    };
    let on_server = listed(&s).await;
    assert_eq!(ids(&on_server, "id"), ids(&in_restic, "id"));
    for snapshot in &on_server {
        assert_eq!(snapshot["policyId"], backup["id"], "{snapshot}");
        assert_eq!(
            snapshot["paths"][0],
            data.display().to_string(),
            "{snapshot}"
        );
        assert!(
            snapshot["dataAdded"].is_u64(),
            "sizes from the run: {snapshot}"
        );
    }
    let oldest = &on_server[1];
    assert!(oldest["filesNew"].as_u64().unwrap_or(0) >= 3, "{oldest}");

    // A check changes nothing; a prune keeping one removes the other from the list.
    let check = s.server.policy(check_policy(s.agent.id, "main")).await;
    s.server.wait_for_success(60, "the check", &check).await;
    let prune = s.server.policy(prune_policy(s.agent.id, "main", 1)).await;
    s.server.wait_for_success(90, "the prune", &prune).await;
    s.server
        .wait_for(30, "the forgotten snapshot gone from the list", || async {
            listed(&s).await.len() == 1
        })
        .await;
    let kept = snapshots(&s.repo("main"), &s.pw, &cache);
    assert_eq!(ids(&listed(&s).await, "id"), ids(&kept, "id"));
    // The agent reports restic's id of the repository (from its config).
    let config = backup_testkit::restic_command(&s.repo("main"), &s.pw, &cache)
        .args(["cat", "config", "--no-lock"])
        .output()
        .expect("restic cat config");
    let config: Value = serde_json::from_slice(&config.stdout).expect("config json");
    s.server
        .wait_for(30, "the repository's id reported", || async {
            s.server.get(&format!("/agents/{}", s.agent.id)).await["repositories"]
                == serde_json::json!([{"name": "main", "repositoryId": config["id"]}])
        })
        .await;
    running.stop().await;
}
