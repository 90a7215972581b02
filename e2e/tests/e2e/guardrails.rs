//! The agent as the last line of defence, with real restic and the real binaries: a tenant
//! token (stolen, or a compromised server) cannot wipe a machine's history, back up the agent's
//! own secrets, forget another host's snapshots, read outside `allowedPaths` or prune an
//! `appendOnly` repository; and two agents cannot share a state directory.

use std::{collections::BTreeSet, path::Path};

use serde_json::{Value, json};

use crate::harness::{
    Api, ServerProc, World, agent_yaml, backup_every, e2e_test, one_agent, restic, snapshots,
    wait_for,
};

/// The tasks of `policy` that have finished (succeeded or failed for good).
async fn finished(api: &Api, policy: &str) -> Vec<Value> {
    api.all(&format!("/tasks?policyId={policy}"))
        .await
        .into_iter()
        .filter(|t| {
            matches!(
                t["status"].as_str(),
                Some("succeeded" | "failed_permanently")
            )
        })
        .collect()
}

/// Waits up to `secs` for the first task of `policy` to finish: that task.
async fn first_finished(api: &Api, policy: &str, what: &str, secs: u64) -> Value {
    wait_for(secs, what, || async {
        !finished(api, policy).await.is_empty()
    })
    .await;
    finished(api, policy).await.remove(0)
}

/// Runs `policy` now and waits for the run to finish: its task.
async fn run_and_wait(api: &Api, policy: &str, what: &str) -> Value {
    let before = finished(api, policy).await.len();
    let (status, body) = api
        .call("POST", &format!("/policies/{policy}/run"), Some(json!({})))
        .await;
    // 409: a task of the policy is already pending (the schedule made one); it is the one run.
    assert!(matches!(status, 200..=299 | 409), "{status} {body}");
    wait_for(120, what, || async {
        finished(api, policy).await.len() > before
    })
    .await;
    let mut tasks = finished(api, policy).await;
    tasks.sort_by(|a, b| a["updatedAt"].as_str().cmp(&b["updatedAt"].as_str()));
    tasks.pop().expect("the task")
}

async fn patch(api: &Api, policy: &str, body: Value) {
    let (status, answer) = api
        .call("PATCH", &format!("/policies/{policy}"), Some(body))
        .await;
    assert_eq!(status, 200, "{answer}");
}

/// Waits until no task of `policy` is open.
async fn settled(api: &Api, policy: &str) {
    wait_for(60, "nothing running", || async {
        api.all(&format!("/tasks?policyId={policy}"))
            .await
            .iter()
            .all(|t| {
                matches!(
                    t["status"].as_str(),
                    Some("succeeded" | "failed_permanently")
                )
            })
    })
    .await;
}

fn ids(snapshots: &[Value]) -> BTreeSet<String> {
    snapshots
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_owned())
        .collect()
}

e2e_test!(
    three_calls_with_a_tenant_token_cannot_wipe_a_machines_history,
    |world| async move {
        let w = one_agent(&world, "guarded", (3, 2000), "").await;
        let policy = w.backup_every("nightly", "3s").await;
        let id = policy["id"].as_str().expect("id").to_owned();
        wait_for(90, "four real backups", || async {
            w.snapshots(&world).len() >= 4
        })
        .await;
        // The attacker's first call: the backup now excludes everything (and runs hourly, so
        // the schedule adds nothing while the test looks).
        let everything = format!("{}/*", w.data.display());
        patch(
            &w.api,
            &id,
            json!({"excludes": [everything], "schedule": {"every": "1h"}}),
        )
        .await;
        settled(&w.api, &id).await;
        let before = ids(&w.snapshots(&world));
        // Second: run it (a near-empty snapshot). Third: make it a prune keeping one, and run.
        let empty = run_and_wait(&w.api, &id, "the near-empty backup").await;
        assert_eq!(empty["status"], "succeeded", "{empty}");
        patch(
            &w.api,
            &id,
            json!({"kind": "prune", "retention": {"keepLast": 1}}),
        )
        .await;
        // A backup the old schedule made meanwhile finishes first: the run is the prune's.
        settled(&w.api, &id).await;
        let prune = run_and_wait(&w.api, &id, "the prune").await;
        assert_eq!(prune["status"], "succeeded", "{prune}");
        assert_eq!(prune["kind"], "prune");
        let after = ids(&w.snapshots(&world));
        assert!(
            before.is_subset(&after),
            "every earlier snapshot is still there: {} before, missing {:?}",
            before.len(),
            before.difference(&after).collect::<Vec<_>>()
        );
    }
);

/// The paths of the latest snapshot of `repo`.
fn listed(world: &World, repo: &Path, pw: &Path) -> Vec<String> {
    backup_testkit::ls_nodes(repo, pw, &world.path("cache"), "latest", None)
        .iter()
        .filter_map(|v| v["path"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_the_agents_own_secrets_yields_a_snapshot_without_them() {
    let Some(world) = World::new(crate::harness::Db::Sqlite).await else {
        return;
    };
    let server = ServerProc::start(&world, "server");
    let api = server.tenant_api().await;
    let data = world.data("home", 3, 1000);
    // The agent's token, repository password and state all live inside what the policy backs up.
    let token_file = data.join("agent.token");
    let password = data.join("restic.password");
    std::fs::write(&password, "inside the data\n").expect("password");
    let repo = world.path("repo");
    let init = restic(&repo, &password, &world.path("cache"))
        .arg("init")
        .output()
        .expect("init");
    assert!(init.status.success());
    let agent = api.agent("self").await;
    std::fs::write(&token_file, &agent.token).expect("token file");
    let mut yaml = agent_yaml(
        &world,
        "agent",
        &server.url,
        &agent,
        &[("main", &repo, &password)],
        "",
    );
    yaml.yaml = yaml
        .yaml
        .replace(
            &format!("token: {}\n", agent.token),
            &format!("tokenFile: {}\n", token_file.display()),
        )
        .replace(
            &format!("stateDir: {}", world.path("agent-state").display()),
            &format!("stateDir: {}", data.join(".agent-state").display()),
        );
    let mut process = yaml.start(&world);
    api.post(
        "/policies",
        backup_every("home", &agent, "1h", &data, "main"),
    )
    .await;
    wait_for(60, "the backup", || async {
        !api.all("/backup-runs?status=succeeded").await.is_empty()
    })
    .await;
    assert!(process.stop());
    let paths = listed(&world, &repo, &password);
    let file = |name: &str| format!("{}/{name}", data.display());
    assert!(
        paths.contains(&file("file-0.bin")),
        "the data is in: {paths:#?}"
    );
    for secret in ["agent.token", "restic.password", ".agent-state"] {
        assert!(
            !paths.iter().any(|p| p.starts_with(&file(secret))),
            "{secret} left out: {paths:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_in_a_shared_repository_leaves_the_other_hosts_snapshots() {
    let Some(world) = World::new(crate::harness::Db::Sqlite).await else {
        return;
    };
    let server = ServerProc::start(&world, "server");
    let api = server.tenant_api().await;
    let (repo, pw) = world.repository("shared");
    let data = world.data("data", 2, 1000);
    let mut processes = Vec::new();
    let mut agents = Vec::new();
    for host in ["host-a", "host-b"] {
        let agent = api.agent(host).await;
        let mut yaml = agent_yaml(
            &world,
            host,
            &server.url,
            &agent,
            &[("main", &repo, &pw)],
            &format!("host: {host}\n"),
        );
        // Host A's floor keeps one: without `--host`, its keepLast 1 would cut B's history too.
        if host == "host-a" {
            yaml.yaml.push_str("    retentionFloor: {keepLast: 1}\n");
        }
        processes.push(yaml.start(&world));
        let policy = api
            .post("/policies", backup_every(host, &agent, "1h", &data, "main"))
            .await;
        let id = policy["id"].as_str().expect("id").to_owned();
        first_finished(&api, &id, "the first backup", 60).await;
        run_and_wait(&api, &id, "the second backup").await;
        agents.push(agent);
    }
    let by_host = |host: &str| {
        snapshots(&repo, &pw, &world.path("cache"))
            .into_iter()
            .filter(|s| s["hostname"] == host)
            .count()
    };
    assert_eq!((by_host("host-a"), by_host("host-b")), (2, 2));
    let prune = api
        .post(
            "/policies",
            json!({"name": "prune", "agentId": agents[0].id, "kind": "prune", "schedule": {"every": "1h"}, "repository": "main", "retention": {"keepLast": 1}}),
        )
        .await;
    let id = prune["id"].as_str().expect("id").to_owned();
    let task = first_finished(&api, &id, "the prune", 90).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(
        (by_host("host-a"), by_host("host-b")),
        (1, 2),
        "A's prune forgot one of A's snapshots and none of B's"
    );
    // The server's inventory follows: each agent lists its own host's snapshots only.
    for (agent, host, n) in [(&agents[0], "host-a", 1), (&agents[1], "host-b", 2)] {
        let path = format!("/snapshots?agentId={}&repository=main", agent.id);
        wait_for(30, "the inventory after the prune", || async {
            api.all(&path).await.len() == n
        })
        .await;
        assert!(api.all(&path).await.iter().all(|s| s["hostname"] == host));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_paths_and_append_only_refuse_with_the_key_named() {
    let Some(world) = World::new(crate::harness::Db::Sqlite).await else {
        return;
    };
    let server = ServerProc::start(&world, "server");
    let api = server.tenant_api().await;
    let (repo, pw) = world.repository("repo");
    let data = world.data("data", 2, 1000);
    let agent = api.agent("fenced").await;
    let mut yaml = agent_yaml(
        &world,
        "agent",
        &server.url,
        &agent,
        &[("main", &repo, &pw)],
        "",
    );
    yaml.yaml.push_str(&format!(
        "    allowedPaths: [{}]\n    appendOnly: true\n",
        data.display()
    ));
    let _process = yaml.start(&world);
    let outside = api
        .post(
            "/policies",
            backup_every("etc", &agent, "1h", Path::new("/etc"), "main"),
        )
        .await;
    let prune = api
        .post(
            "/policies",
            json!({"name": "prune", "agentId": agent.id, "kind": "prune", "schedule": {"every": "1h"}, "repository": "main", "retention": {"keepLast": 1}}),
        )
        .await;
    let inside = api
        .post(
            "/policies",
            backup_every("data", &agent, "1h", &data, "main"),
        )
        .await;
    for (policy, key) in [
        (&outside, "repositories.main.allowedPaths"),
        (&prune, "repositories.main.appendOnly"),
    ] {
        let id = policy["id"].as_str().expect("id");
        let task = &first_finished(&api, id, "the refusal", 60).await;
        assert_eq!(task["status"], "failed_permanently", "{task}");
        assert_eq!(task["failedPermanently"], true, "{task}");
        assert_eq!(task["attempt"], 1, "never retried: {task}");
        assert!(
            task["lastError"].as_str().unwrap_or_default().contains(key),
            "{key} named: {task}"
        );
    }
    let id = inside["id"].as_str().expect("id");
    let task = first_finished(&api, id, "the backup inside", 60).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(snapshots(&repo, &pw, &world.path("cache")).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_agent_on_the_same_state_directory_exits_and_the_first_keeps_working() {
    let Some(world) = World::new(crate::harness::Db::Sqlite).await else {
        return;
    };
    let server = ServerProc::start(&world, "server");
    let api = server.tenant_api().await;
    let (repo, pw) = world.repository("repo");
    let data = world.data("data", 2, 1000);
    let agent = api.agent("one").await;
    let yaml = agent_yaml(
        &world,
        "first",
        &server.url,
        &agent,
        &[("main", &repo, &pw)],
        "",
    );
    let mut first = yaml.start(&world);
    wait_for(30, "the first agent running", || async {
        first.log().contains("backup-agent running")
    })
    .await;
    let mut second = yaml.renamed("second").start(&world);
    let status = second.exit_within(30).expect("the second agent exits");
    assert!(!status.success(), "non-zero: {status}");
    let log = second.log();
    assert!(
        log.contains("another agent is already running") && log.contains("agent.lock"),
        "{log}"
    );
    let policy = api
        .post(
            "/policies",
            backup_every("data", &agent, "1h", &data, "main"),
        )
        .await;
    let id = policy["id"].as_str().expect("id");
    let task = first_finished(&api, id, "a backup by the first", 60).await;
    assert_eq!(task["status"], "succeeded", "{task}");
    assert!(first.stop(), "the first agent ran on and stops cleanly");
}
