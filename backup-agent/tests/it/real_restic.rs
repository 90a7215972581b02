//! The real restic binary, end to end. Skipped with a notice when restic is absent; a failure
//! under `BACKUP_TEST_REQUIRE=restic`.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use backup_agent::{TokioProcessRunner, restic};
use backup_core::{ProcessControl, ProcessRunner, ProcessSpec};
use serde_json::json;

use crate::harness::{RunningAgent, TestServer, agent_config, backup_policy, real_runner, scratch};

use backup_testkit::{restic_command as restic_cmd, snapshots};

fn sample_data(dir: &Path, random_bytes: usize) -> PathBuf {
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("sub")).expect("data");
    std::fs::write(data.join("hello.txt"), "hello, restic\n").expect("file");
    std::fs::write(data.join("sub/notes.md"), "# notes\n").expect("file");
    std::fs::write(
        data.join("random.bin"),
        backup_testkit::pseudo_random(0, random_bytes),
    )
    .expect("file");
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_check_and_prune_through_the_agent() {
    if backup_testkit::restic().is_none() {
        return;
    }
    let server = TestServer::start().await;
    let (dir, pw) = scratch();
    let data = sample_data(dir.path(), 200_000);
    let repo = dir.path().join("repo");
    let agent = server.agent("real").await;
    let mut config = agent_config(
        &server,
        &agent,
        &dir.path().join("state"),
        &[("main", &repo, &pw)],
    );
    config.max_concurrent_tasks = Some(2);
    let backup = server
        .policy(backup_policy(
            agent.id,
            "main",
            &[data.to_str().expect("utf8")],
        ))
        .await;
    let running = RunningAgent::start(config, real_runner()).await;
    let q = format!("policyId={}", backup["id"].as_str().expect("id"));
    server
        .wait_for(60, "the backup to succeed", || async {
            server
                .tasks(&q)
                .await
                .iter()
                .any(|t| t["status"] == "succeeded")
        })
        .await;
    // A second backup, then check and prune with keepLast 1.
    let (status, _) = server
        .call(
            reqwest::Method::POST,
            &format!("/policies/{}/run", backup["id"].as_str().expect("id")),
            None,
        )
        .await;
    assert_eq!(status, 201);
    server
        .wait_for(60, "the second backup", || async {
            server.tasks(&format!("{q}&status=succeeded")).await.len() == 2
        })
        .await;
    let check = server.policy(json!({"name": "check", "agentId": agent.id, "kind": "check", "schedule": {"every": "1h"}, "repository": "main"})).await;
    let prune = server.policy(json!({"name": "prune", "agentId": agent.id, "kind": "prune", "schedule": {"every": "1h"}, "repository": "main", "retention": {"keepLast": 1}})).await;
    for p in [&check, &prune] {
        let q = format!("policyId={}", p["id"].as_str().expect("id"));
        server
            .wait_for(90, "check and prune to succeed", || async {
                server
                    .tasks(&q)
                    .await
                    .iter()
                    .any(|t| t["status"] == "succeeded")
            })
            .await;
    }
    running.stop().await;
    let runs = server.runs(&q).await;
    let recorded: Vec<String> = runs
        .iter()
        .filter_map(|r| r["snapshotId"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(recorded.len(), 2);
    let cache = dir.path().join("state/cache");
    let listed = snapshots(&repo, &pw, &cache);
    assert_eq!(listed.len(), 1, "prune kept the last one");
    let kept = listed[0]["short_id"].as_str().expect("short id");
    assert!(
        recorded.iter().any(|id| id == kept),
        "the snapshot restic lists is the one the server recorded: {kept} in {recorded:?}"
    );
    assert!(
        listed[0]["tags"]
            .as_array()
            .expect("tags")
            .iter()
            .any(|t| t.as_str().is_some_and(|t| t.starts_with("policy:")))
    );
    let first_run = runs.last().expect("the oldest run");
    assert!(
        first_run["filesNew"].as_u64().unwrap_or(0) >= 3
            && first_run["dataAdded"].as_u64().unwrap_or(0) > 0,
        "{first_run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_upload_really_slows_an_upload() {
    if backup_testkit::restic().is_none() {
        return;
    }
    let (dir, pw) = scratch();
    let data = sample_data(dir.path(), 3 * 1024 * 1024);
    let repo = dir.path().join("repo");
    let cache = dir.path().join("cache");
    assert!(
        restic_cmd(&repo, &pw, &cache)
            .arg("init")
            .stdout(Stdio::null())
            .status()
            .expect("init")
            .success()
    );
    let runner = TokioProcessRunner::new();
    let limit_kib = 512;
    let paths = vec![data.display().to_string()];
    let args = restic::arguments(
        &restic::Command::Backup {
            paths: &paths,
            excludes: &[],
            host: "h",
            tags: &[],
            limit_upload_kib: Some(limit_kib),
        },
        None,
    );
    let mut spec = ProcessSpec::new("restic").args(args);
    spec.env = vec![
        ("RESTIC_REPOSITORY".into(), repo.display().to_string()),
        ("RESTIC_PASSWORD_FILE".into(), pw.display().to_string()),
        ("RESTIC_CACHE_DIR".into(), cache.display().to_string()),
    ];
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let started = Instant::now();
    let out = runner
        .run(
            spec,
            ProcessControl {
                events: Some(tx),
                stop: backup_core::StopSignal::never(),
            },
        )
        .await
        .expect("runs");
    let took = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", out.stderr_tail);
    let mut lines = Vec::new();
    while let Ok(event) = rx.try_recv() {
        if let backup_core::ProcessEvent::Line { line, .. } = event {
            lines.push(line);
        }
    }
    let summary = restic::parse_summary(lines.iter().map(String::as_str)).expect("summary");
    let predicted = summary.data_added as f64 / (limit_kib as f64 * 1024.0);
    assert!(predicted > 4.0, "enough data to measure: {predicted:.1} s");
    let ratio = took / predicted;
    eprintln!(
        "limit-upload: {} bytes at {limit_kib} KiB/s: predicted {predicted:.2} s, took {took:.2} s ({ratio:.2}x)",
        summary.data_added
    );
    assert!(
        (0.85..=1.15).contains(&ratio),
        "took {took:.2} s, the limit predicts {predicted:.2} s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_permanently_at_once() {
    if backup_testkit::restic().is_none() {
        return;
    }
    let server = TestServer::start().await;
    let (dir, pw) = scratch();
    let repo = dir.path().join("repo");
    let cache = dir.path().join("cache");
    let other_pw = dir.path().join("other-password");
    std::fs::write(&other_pw, "another password\n").expect("pw");
    assert!(
        restic_cmd(&repo, &other_pw, &cache)
            .arg("init")
            .stdout(Stdio::null())
            .status()
            .expect("init")
            .success()
    );
    let data = sample_data(dir.path(), 1000);
    let agent = server.agent("wrong").await;
    let config = agent_config(
        &server,
        &agent,
        &dir.path().join("state"),
        &[("main", &repo, &pw)],
    );
    server
        .policy(backup_policy(
            agent.id,
            "main",
            &[data.to_str().expect("utf8")],
        ))
        .await;
    let running = RunningAgent::start(config, real_runner()).await;
    server
        .wait_for(60, "a permanent failure", || async {
            !server.tasks("status=failed_permanently").await.is_empty()
        })
        .await;
    running.stop().await;
    let task = server.tasks("").await.remove(0);
    assert_eq!(
        (task["permanentReason"].clone(), task["attempt"].clone()),
        (json!("permanent_error"), json!(1))
    );
    assert!(
        task["lastError"]
            .as_str()
            .unwrap_or_default()
            .contains("wrong password"),
        "{task}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_repository_backs_off_then_succeeds_once_the_holder_is_gone() {
    if backup_testkit::restic().is_none() {
        return;
    }
    let server = TestServer::start().await;
    let (dir, pw) = scratch();
    let repo = dir.path().join("repo");
    let cache = dir.path().join("cache");
    let data = sample_data(dir.path(), 20 * 1024 * 1024);
    assert!(
        restic_cmd(&repo, &pw, &cache)
            .arg("init")
            .stdout(Stdio::null())
            .status()
            .expect("init")
            .success()
    );
    assert!(
        restic_cmd(&repo, &pw, &cache)
            .args(["backup", "-q"])
            .arg(&data)
            .status()
            .expect("seed backup")
            .success()
    );
    // An exclusive lock holder: check --read-data, stopped once its lock file exists. restic
    // writes a file under a temporary name and renames it to its id: only a name of 64 hex
    // digits is a lock other restic processes see (stopping the holder while the file still
    // had its temporary name let the backup through on a loaded machine).
    let mut holder = restic_cmd(&repo, &pw, &cache)
        .args(["check", "--read-data"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("check");
    let locks = repo.join("locks");
    let t0 = Instant::now();
    while complete_locks(&locks) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the check never locked"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(holder.id() as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .expect("stop holder");

    let agent = server.agent("locked").await;
    let mut config = agent_config(
        &server,
        &agent,
        &dir.path().join("state"),
        &[("main", &repo, &pw)],
    );
    config.backoff_failure_threshold = Some(1);
    config.backoff_base_seconds = Some(3);
    config.max_backoff_minutes = Some(1);
    server
        .policy(backup_policy(
            agent.id,
            "main",
            &[data.join("hello.txt").to_str().expect("utf8")],
        ))
        .await;
    let running = RunningAgent::start(config, real_runner()).await;
    let view = format!("/agents/{}", agent.id);
    server
        .wait_for(60, "repository backoff reported", || async {
            server.get(&view).await["backoffRepositories"][0]["repository"] == "main"
        })
        .await;
    let task = server.tasks("").await.remove(0);
    // Pending for its retry, or already claimed again (waiting out the backoff).
    assert!(
        matches!(task["status"].as_str(), Some("pending" | "claimed"))
            && task["retryCount"].as_u64() >= Some(1),
        "a lock conflict is retriable: {task}"
    );
    assert!(
        task["lastError"]
            .as_str()
            .unwrap_or_default()
            .contains("locked"),
        "{task}"
    );
    // The holder dies; the agent's unlock removes its stale lock; the retry succeeds.
    holder.kill().expect("kill holder");
    let _ = holder.wait();
    server
        .wait_for(90, "the retry to succeed", || async {
            server.tasks("status=succeeded").await.len() == 1
        })
        .await;
    running.stop().await;
    let task = server.tasks("").await.remove(0);
    assert!(task["retryCount"].as_u64().unwrap_or(0) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_restic_leaves_no_lock_behind() {
    if backup_testkit::restic().is_none() {
        return;
    }
    let (dir, pw) = scratch();
    let repo = dir.path().join("repo");
    let cache = dir.path().join("cache");
    let data = sample_data(dir.path(), 4 * 1024 * 1024);
    assert!(
        restic_cmd(&repo, &pw, &cache)
            .arg("init")
            .stdout(Stdio::null())
            .status()
            .expect("init")
            .success()
    );
    let runner: Arc<dyn ProcessRunner> = real_runner();
    let env = vec![
        ("RESTIC_REPOSITORY".to_owned(), repo.display().to_string()),
        ("RESTIC_PASSWORD_FILE".to_owned(), pw.display().to_string()),
        ("RESTIC_CACHE_DIR".to_owned(), cache.display().to_string()),
    ];
    let paths = vec![data.display().to_string()];
    // `restic unlock` with the arguments the agent uses after a timeout.
    let unlock = || {
        let mut spec =
            ProcessSpec::new("restic").args(restic::arguments(&restic::Command::Unlock, None));
        spec.env = env.clone();
        let runner = runner.clone();
        async move {
            runner
                .run(spec, ProcessControl::none())
                .await
                .expect("unlock");
        }
    };
    for grace_ms in [5000, 0] {
        let args = restic::arguments(
            &restic::Command::Backup {
                paths: &paths,
                excludes: &[],
                host: "h",
                tags: &[],
                limit_upload_kib: Some(64),
            },
            None,
        );
        let mut spec = ProcessSpec::new("restic").args(args);
        spec.env = env.clone();
        spec.timeout = Some(Duration::from_secs(6));
        spec.grace = Duration::from_millis(grace_ms);
        // Watches for restic's lock while it runs, so that "no lock left" is not vacuous.
        let locked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = {
            let (locked, locks) = (locked.clone(), repo.join("locks"));
            tokio::spawn(async move {
                loop {
                    if complete_locks(&locks) > 0 {
                        locked.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let out = runner
            .run(spec, ProcessControl::none())
            .await
            .expect("runs");
        watcher.abort();
        assert_eq!(out.terminated, Some(backup_core::Termination::TimedOut));
        assert!(
            locked.load(std::sync::atomic::Ordering::SeqCst),
            "restic held its lock when the timeout came (grace {grace_ms} ms)"
        );
        if grace_ms == 0 {
            // SIGKILL right after SIGINT: whether restic removed its lock in between is a race;
            // the agent runs `restic unlock` after every timeout (with these arguments).
            unlock().await;
        }
        assert_eq!(
            complete_locks(&repo.join("locks")),
            0,
            "no lock left after a timeout with grace {grace_ms} ms"
        );
    }
    // And the unlock really removes a dead process's lock: a restic killed by SIGKILL alone
    // (as when the machine's OOM killer strikes) leaves its lock behind.
    let mut victim = restic_cmd(&repo, &pw, &cache)
        .args(["backup", "-q", "--limit-upload", "64"])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("restic backup");
    let t0 = Instant::now();
    while complete_locks(&repo.join("locks")) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the backup never locked"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    victim.kill().expect("SIGKILL");
    let _ = victim.wait();
    assert!(
        complete_locks(&repo.join("locks")) > 0,
        "a SIGKILLed restic leaves its lock"
    );
    unlock().await;
    assert_eq!(
        complete_locks(&repo.join("locks")),
        0,
        "the agent's unlock removed the dead process's lock"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_agent_during_a_backup_then_restart() {
    if backup_testkit::restic().is_none() {
        return;
    }
    let server = TestServer::start().await;
    let (dir, pw) = scratch();
    let data = sample_data(dir.path(), 3 * 1024 * 1024);
    let repo = dir.path().join("repo");
    let state_dir = dir.path().join("state");
    let agent = server.agent("crash").await;
    // A slow upload (1 Mbit/s) keeps restic busy long enough to kill the agent under it.
    let yaml = format!(
        "orchestratorUrl: {}\npollingIntervalSeconds: 1\nheartbeatIntervalSeconds: 1\nagentId: {}\ntoken: {}\nstateDir: {}\nstopGraceSeconds: 2\nbandwidthLimitMbps: 1\nbackoffBaseSeconds: 1\nrepositories:\n  main:\n    url: {}\n    passwordFile: {}\n    initIfMissing: true\n",
        server.url,
        agent.id,
        agent.token,
        state_dir.display(),
        repo.display(),
        pw.display()
    );
    let config_path = dir.path().join("agent.yaml");
    std::fs::write(&config_path, yaml).expect("config");
    let spawn_agent = |log: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_backup-agent"))
            .arg("--config")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join(log)).expect("log"))
            .spawn()
            .expect("agent binary")
    };
    server
        .policy(backup_policy(
            agent.id,
            "main",
            &[data.to_str().expect("utf8")],
        ))
        .await;
    let mut first = spawn_agent("first.log");
    let state_file = backup_agent::state::StateFile::new(&state_dir).expect("state");
    let mut pgid = None;
    server
        .wait_for(60, "restic running under the agent", || {
            let found = state_file
                .load()
                .ok()
                .and_then(|l| l.state.processes.first().map(|p| p.pgid));
            pgid = found;
            async move { found.is_some() }
        })
        .await;
    let pgid = pgid.expect("recorded");
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.kill().expect("kill -9 the agent");
    let _ = first.wait();
    assert!(
        backup_agent::state::process_start_ticks(pgid).is_some(),
        "restic outlived its agent (an orphan)"
    );
    let running = server.tasks("status=running").await;
    assert_eq!(running.len(), 1, "the server still thinks it runs");
    // Make the retry quick: the next attempt uploads without a limit.
    server
        .patch_settings(agent.id, json!({"bandwidthLimitMbps": null}))
        .await;

    let mut second = spawn_agent("second.log");
    server
        .wait_for(60, "the orphan killed at restart", || async move {
            backup_agent::state::process_start_ticks(pgid).is_none()
        })
        .await;
    server
        .wait_for(120, "the retried task to succeed", || async {
            server.tasks("status=succeeded").await.len() == 1
        })
        .await;
    let task = server.tasks("").await.remove(0);
    assert_eq!(
        (task["attempt"].clone(), task["retryCount"].clone()),
        (json!(2), json!(1)),
        "{task}"
    );
    assert!(
        server.tasks("status=running").await.is_empty(),
        "nothing stuck in running"
    );
    let runs = server.runs("").await;
    assert_eq!(runs.len(), 2);
    let lost = runs
        .iter()
        .find(|r| r["attempt"] == 1)
        .expect("first attempt");
    assert_eq!(lost["status"], "failed");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(second.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("sigterm");
    let status = tokio::task::spawn_blocking(move || second.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "a SIGTERM is a clean exit: {status:?}");
    assert_eq!(
        snapshots(&repo, &pw, &dir.path().join("cache")).len(),
        1,
        "the retry made the snapshot"
    );
}

/// Locks restic has finished writing (a name of 64 hex digits; it writes under a temporary
/// name first).
fn complete_locks(locks: &Path) -> usize {
    std::fs::read_dir(locks)
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
                })
                .count()
        })
        .unwrap_or(0)
}

/// DESIGN §5: at most two state-file writes per successful attempt (restic's process group when
/// it starts, the result when it ends); a settled result leaves the file with the next write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_attempt_costs_at_most_two_state_writes() {
    if backup_testkit::restic().is_none() {
        return;
    }
    let server = TestServer::start().await;
    let (dir, pw) = scratch();
    let data = sample_data(dir.path(), 10_000);
    let repo = dir.path().join("repo");
    let agent = server.agent("writes").await;
    let state_dir = dir.path().join("state");
    let config = agent_config(&server, &agent, &state_dir, &[("main", &repo, &pw)]);
    let backup = server
        .policy(backup_policy(
            agent.id,
            "main",
            &[data.to_str().expect("utf8")],
        ))
        .await;
    let id = backup["id"].as_str().expect("id").to_owned();
    let running = RunningAgent::start(config, real_runner()).await;
    let before = running.agent.state_writes();
    let q = format!("policyId={id}&status=succeeded");
    for n in 1..=3 {
        if n > 1 {
            let (status, body) = server
                .call(reqwest::Method::POST, &format!("/policies/{id}/run"), None)
                .await;
            assert_eq!(status, 201, "{body}");
        }
        server
            .wait_for(60, "the backup to succeed", || async {
                server.tasks(&q).await.len() == n
            })
            .await;
    }
    server
        .wait_for(10, "the outbox empty", || async {
            running.agent.diagnostics().outbox == 0
        })
        .await;
    let writes = running.agent.state_writes() - before;
    let attempts = server.runs(&format!("policyId={id}")).await.len() as u64;
    assert_eq!(attempts, 3, "three attempts, each a success");
    assert!(
        (attempts..=2 * attempts).contains(&writes),
        "{writes} state writes for {attempts} successful attempts"
    );
    running.stop().await;
    let state = backup_agent::state::StateFile::new(&state_dir)
        .expect("state")
        .load()
        .expect("load")
        .state;
    assert!(
        state.outbox.is_empty() && state.processes.is_empty(),
        "the settled results left the file at shutdown: {state:?}"
    );
}
