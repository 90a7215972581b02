//! Many hosts in one remote repository, served by restic's own rest-server on loopback: three
//! agents back up into it side by side; a prune on one host never overlaps a backup there (seen
//! in the server's runs and in rest-server's lock files), is not starved by the stream of
//! backups, and forgets its own host's snapshots only. With rest-server's `--append-only`, the
//! agent's `appendOnly` refuses the prune and every snapshot stays.
//!
//! Needs rest-server (`rest-server` or Debian's `restic-rest-server` on `PATH`, or
//! `BACKUP_REST_SERVER`); skipped with a notice without it, a failure under
//! `BACKUP_TEST_REQUIRE=rest-server`.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::harness::{
    Api, Db, ServerProc, World, agent_yaml, backup_every, free_port, restic, snapshots, wait_for,
};

/// A rest-server process serving `<dir>` on a loopback port, killed on drop.
pub(crate) struct RestServer {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl RestServer {
    pub(crate) fn start(world: &World, append_only: bool) -> Option<RestServer> {
        let binary = backup_testkit::rest_server()?;
        let dir = world.path(if append_only { "rest-ao" } else { "rest" });
        let port = free_port();
        let mut command = Command::new(binary);
        command
            .arg("--path")
            .arg(&dir)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--no-auth"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if append_only {
            command.arg("--append-only");
        }
        let child = command.spawn().expect("rest-server");
        wait_until(|| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        Some(RestServer { child, dir, port })
    }

    /// The `rest:` URL of repository `name`, initialized, and its password file.
    pub(crate) fn repository(&self, world: &World, name: &str) -> (PathBuf, PathBuf) {
        let url = PathBuf::from(format!("rest:http://127.0.0.1:{}/{name}", self.port));
        let password = world.init_repository(&url, name);
        (url, password)
    }
}

impl Drop for RestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until(ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < deadline, "rest-server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Samples the repository's lock files every 20 ms until stopped: (when, how many).
struct LockWatch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(DateTime<Utc>, usize)>>,
}

impl LockWatch {
    fn start(rest: &RestServer, name: &str) -> LockWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let (dir, name, flag) = (rest.dir.clone(), name.to_owned(), stop.clone());
        // rest-server keeps a repository's files as they are: `<path>/<repository>/locks/<id>`.
        let thread = std::thread::spawn(move || {
            let locks = dir.join(name).join("locks");
            let mut samples = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let n = std::fs::read_dir(&locks).map_or(0, Iterator::count);
                samples.push((Utc::now(), n));
                std::thread::sleep(Duration::from_millis(20));
            }
            samples
        });
        LockWatch { stop, thread }
    }

    fn finish(self) -> Vec<(DateTime<Utc>, usize)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the lock watch")
    }
}

/// A run's [start, end] as the server saw it (start report to result).
fn span(run: &Value) -> (DateTime<Utc>, DateTime<Utc>) {
    let at = |key: &str| {
        run[key]
            .as_str()
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("{key} of {run}"))
    };
    (at("startedAt"), at("finishedAt"))
}

fn overlap(a: (DateTime<Utc>, DateTime<Utc>), b: (DateTime<Utc>, DateTime<Utc>)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// The finished runs of the tenant, with `kind`.
async fn finished_runs(api: &Api, kind: &str) -> Vec<Value> {
    api.all("/backup-runs")
        .await
        .into_iter()
        .filter(|r| r["kind"] == kind && !r["finishedAt"].is_null())
        .collect()
}

fn by_host(repo: &Path, pw: &Path, cache: &Path, host: &str) -> BTreeSet<String> {
    snapshots(repo, pw, cache)
        .into_iter()
        .filter(|s| s["hostname"] == host)
        .filter_map(|s| s["id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_share_a_rest_repository_and_a_prune_never_overlaps_their_backups() {
    let Some(world) = World::new(Db::Sqlite).await else {
        return;
    };
    let Some(rest) = RestServer::start(&world, false) else {
        return;
    };
    let (repo, pw) = rest.repository(&world, "shared");
    let cache = world.path("cache");
    let server = ServerProc::start(&world, "server");
    let api = server.tenant_api().await;
    let hosts = ["host-a", "host-b", "host-c"];
    let mut agents = Vec::new();
    let mut processes = Vec::new();
    for host in hosts {
        let agent = api.agent(host).await;
        let mut yaml = agent_yaml(
            &world,
            host,
            &server.url,
            &agent,
            &[("main", &repo, &pw)],
            &format!("host: {host}\n"),
        );
        if host == "host-a" {
            yaml.yaml.push_str("    retentionFloor: {keepLast: 1}\n");
        }
        processes.push(yaml.start(&world));
        agents.push(agent);
    }

    // Each agent learns restic's id of the repository and reports it: the same for all three.
    let out = restic(&repo, &pw, &cache)
        .args(["cat", "config"])
        .output()
        .expect("restic cat config");
    let config: Value = serde_json::from_slice(&out.stdout).expect("config JSON");
    let id = config["id"].as_str().expect("id").to_owned();
    for agent in &agents {
        let path = format!("/agents/{}", agent.id);
        wait_for(60, "the agent reports the repository's id", || async {
            api.get(&path).await["repositories"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["repositoryId"] == id.as_str()))
        })
        .await;
    }

    // Backups keep coming: every 2 s on each host.
    let watch = LockWatch::start(&rest, "shared");
    for (host, agent) in hosts.iter().zip(&agents) {
        let data = world.data(host, 20, 16 * 1024);
        api.post("/policies", backup_every(host, agent, "2s", &data, "main"))
            .await;
    }
    wait_for(120, "two backups of every host", || async {
        let runs = finished_runs(&api, "backup").await;
        agents.iter().all(|a| {
            runs.iter()
                .filter(|r| r["agentId"] == a.id.to_string().as_str() && r["status"] == "succeeded")
                .count()
                >= 2
        })
    })
    .await;
    let before: Vec<_> = hosts
        .iter()
        .map(|h| by_host(&repo, &pw, &cache, h))
        .collect();

    // A prune on host A: due at once, while the backups go on.
    let prune = api
        .post(
            "/policies",
            json!({"name": "prune", "agentId": agents[0].id, "kind": "prune", "schedule": {"every": "1h"}, "repository": "main", "retention": {"keepLast": 1}}),
        )
        .await;
    let prune_policy = prune["id"].as_str().expect("id").to_owned();
    let made = Instant::now();
    wait_for(120, "the prune, between the backups", || async {
        finished_runs(&api, "prune")
            .await
            .iter()
            .any(|r| r["policyId"] == prune_policy.as_str())
    })
    .await;
    let waited = made.elapsed();
    let prune_run = finished_runs(&api, "prune").await.remove(0);
    assert_eq!(prune_run["status"], "succeeded", "{prune_run}");
    assert_eq!(
        prune_run["attempt"], 1,
        "no lock conflict, no retry: {prune_run}"
    );
    let pruned = span(&prune_run);

    // The backups go on after it, on every host.
    wait_for(60, "a backup of every host after the prune", || async {
        let runs = finished_runs(&api, "backup").await;
        agents.iter().all(|a| {
            runs.iter()
                .any(|r| r["agentId"] == a.id.to_string().as_str() && span(r).0 > pruned.1)
        })
    })
    .await;
    let samples = watch.finish();
    // Listed before the agents stop (a stop interrupts the backups under way).
    let backups = finished_runs(&api, "backup").await;
    drop(processes);
    for b in &backups {
        assert_eq!(b["status"], "succeeded", "no backup failed: {b}");
        assert!(
            !overlap(span(b), pruned),
            "a backup overlapped the prune: {b} {prune_run}"
        );
    }
    // Backups of different hosts did run side by side.
    let side_by_side = backups.iter().any(|a| {
        backups
            .iter()
            .any(|b| a["agentId"] != b["agentId"] && overlap(span(a), span(b)))
    });
    assert!(side_by_side, "no two hosts' backups overlapped");
    // rest-server's view: while the prune ran, its own lock was the only one.
    let during: Vec<usize> = samples
        .iter()
        .filter(|(at, _)| *at > pruned.0 && *at < pruned.1)
        .map(|(_, n)| *n)
        .collect();
    assert!(
        during.iter().all(|n| *n <= 1),
        "another lock beside the prune's: {during:?}"
    );
    assert!(
        samples.iter().any(|(_, n)| *n >= 2),
        "the backups' locks were never seen side by side"
    );

    // Host A's prune forgot host A's older snapshots and nothing of B's or C's.
    let after: Vec<_> = hosts
        .iter()
        .map(|h| by_host(&repo, &pw, &cache, h))
        .collect();
    assert!(
        before[0].iter().any(|s| !after[0].contains(s)),
        "A's prune forgot some of A's snapshots"
    );
    for i in [1, 2] {
        assert!(
            before[i].is_subset(&after[i]),
            "{}'s snapshots all stay",
            hosts[i]
        );
    }
    #[allow(clippy::print_stdout)]
    {
        println!(
            "the prune waited {:.1?} from its policy to its end while {} backups ran; {} lock samples",
            waited,
            backups.len(),
            samples.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_only_rest_server_and_the_agents_append_only_keep_every_snapshot() {
    let Some(world) = World::new(Db::Sqlite).await else {
        return;
    };
    let Some(rest) = RestServer::start(&world, true) else {
        return;
    };
    let (repo, pw) = rest.repository(&world, "vault");
    let cache = world.path("cache");
    let server = ServerProc::start(&world, "server");
    let api = server.tenant_api().await;
    let agent = api.agent("fenced").await;
    let mut yaml = agent_yaml(
        &world,
        "agent",
        &server.url,
        &agent,
        &[("main", &repo, &pw)],
        "",
    );
    yaml.yaml.push_str("    appendOnly: true\n");
    let _process = yaml.start(&world);
    let data = world.data("data", 3, 4096);
    let backup = api
        .post(
            "/policies",
            backup_every("data", &agent, "1h", &data, "main"),
        )
        .await;
    let backup = backup["id"].as_str().expect("id").to_owned();
    wait_for(90, "a backup into the append-only server", || async {
        api.all(&format!("/tasks?policyId={backup}"))
            .await
            .iter()
            .any(|t| t["status"] == "succeeded")
    })
    .await;
    let kept = snapshots(&repo, &pw, &cache).len();
    assert_eq!(kept, 1);

    let prune = api
        .post(
            "/policies",
            json!({"name": "prune", "agentId": agent.id, "kind": "prune", "schedule": {"every": "1h"}, "repository": "main", "retention": {"keepLast": 1}}),
        )
        .await;
    let prune = prune["id"].as_str().expect("id").to_owned();
    wait_for(90, "the prune refused", || async {
        api.all(&format!("/tasks?policyId={prune}"))
            .await
            .iter()
            .any(|t| t["status"] == "failed_permanently")
    })
    .await;
    let runs = api.all(&format!("/backup-runs?policyId={prune}")).await;
    assert!(
        runs.iter().any(|r| r["error"]
            .as_str()
            .is_some_and(|e| e.contains("repositories.main.appendOnly"))),
        "{runs:#?}"
    );
    assert_eq!(snapshots(&repo, &pw, &cache).len(), kept);
}
