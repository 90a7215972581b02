//! The real restic binary, end to end. Skipped with a notice when restic is absent; a failure
//! under `BACKUP_TEST_REQUIRE=restic`.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use backup_agent::restic;
use backup_core::{ProcessControl, ProcessRunner, ProcessSpec};
use serde_json::json;

use crate::harness::{
    check_policy, id_of, policy_query, prune_policy, real_runner, run_to_end, scratch, setup,
};

use backup_testkit::{restic_command as restic_cmd, snapshots};

/// `restic init` of `repo`, which must succeed.
fn init_repository(repo: &Path, password: &Path, cache: &Path) {
    assert!(
        restic_cmd(repo, password, cache)
            .arg("init")
            .stdout(Stdio::null())
            .status()
            .expect("init")
            .success()
    );
}

/// The arguments the agent gives restic for a backup of `paths` at `limit_upload_kib`.
fn backup_arguments(paths: &[String], limit_upload_kib: u64) -> Vec<String> {
    restic::arguments(
        &restic::Command::Backup {
            paths,
            excludes: &[],
            host: "h",
            tags: &[],
            limit_upload_kib: Some(limit_upload_kib),
        },
        None,
    )
}

/// The environment the agent gives restic for `repo`.
fn restic_env(repo: &Path, password: &Path, cache: &Path) -> Vec<(String, String)> {
    vec![
        ("RESTIC_REPOSITORY".into(), repo.display().to_string()),
        (
            "RESTIC_PASSWORD_FILE".into(),
            password.display().to_string(),
        ),
        ("RESTIC_CACHE_DIR".into(), cache.display().to_string()),
    ]
}

pub(crate) fn sample_data(dir: &Path, random_bytes: usize) -> PathBuf {
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
    let mut s = setup("real", &["main"]).await;
    let data = sample_data(s.dir.path(), 200_000);
    s.config.max_concurrent_tasks = Some(2);
    // No floor here: the policy's keepLast 1 is what runs (the floor has its own tests).
    s.config
        .repositories
        .get_mut("main")
        .expect("main")
        .retention_floor = backup_core::Retention::default();
    let backup = s.backup_of("main", &data).await;
    let running = s.start_real().await;
    let server = &s.server;
    server
        .wait_for_success(60, "the backup to succeed", &backup)
        .await;
    // A second backup, then check and prune with keepLast 1.
    server.run_now(&backup).await;
    let q = policy_query(&backup);
    server
        .wait_for_tasks(60, "the second backup", &format!("{q}&status=succeeded"), 2)
        .await;
    let check = server.policy(check_policy(s.agent.id, "main")).await;
    let prune = server.policy(prune_policy(s.agent.id, "main", 1)).await;
    for p in [&check, &prune] {
        server
            .wait_for_success(90, "check and prune to succeed", p)
            .await;
    }
    running.stop().await;
    let runs = server.runs(&q).await;
    let recorded: Vec<String> = runs
        .iter()
        .filter_map(|r| r["snapshotId"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(recorded.len(), 2);
    let cache = s.dir.path().join("state/cache");
    let listed = snapshots(&s.repo("main"), &s.pw, &cache);
    assert_eq!(listed.len(), 1, "prune kept the last one");
    let kept = listed[0]["short_id"].as_str().expect("short id");
    // restic 0.14 reports the short id in its backup summary, later versions the full one.
    assert!(
        recorded.iter().any(|id| id.starts_with(kept)),
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
    init_repository(&repo, &pw, &cache);
    let limit_kib = 512;
    let paths = vec![data.display().to_string()];
    let mut spec = ProcessSpec::new("restic").args(backup_arguments(&paths, limit_kib));
    spec.env = restic_env(&repo, &pw, &cache);
    let started = Instant::now();
    let (out, events) = run_to_end(spec).await;
    let took = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", out.stderr_tail);
    let lines: Vec<String> = events
        .into_iter()
        .filter_map(|event| match event {
            backup_core::ProcessEvent::Line { line, .. } => Some(line),
            _ => None,
        })
        .collect();
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
    let s = setup("wrong", &["main"]).await;
    let other_pw = s.dir.path().join("other-password");
    std::fs::write(&other_pw, "another password\n").expect("pw");
    init_repository(&s.repo("main"), &other_pw, &s.dir.path().join("cache"));
    let data = sample_data(s.dir.path(), 1000);
    s.backup_of("main", &data).await;
    let running = s.start_real().await;
    let server = &s.server;
    server
        .wait_for_any_task(60, "a permanent failure", "status=failed_permanently")
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
    let mut s = setup("locked", &["main"]).await;
    let (repo, pw) = (s.repo("main"), s.pw.clone());
    let cache = s.dir.path().join("cache");
    let data = sample_data(s.dir.path(), 20 * 1024 * 1024);
    init_repository(&repo, &pw, &cache);
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

    s.config.backoff_failure_threshold = Some(1);
    s.config.backoff_base_seconds = Some(3);
    s.config.max_backoff_minutes = Some(1);
    // restic 0.16 and later wait for the lock themselves (--retry-lock) before they fail.
    s.config.lock_wait_seconds = 5;
    s.backup_of("main", &data.join("hello.txt")).await;
    let running = s.start_real().await;
    let server = &s.server;
    let view = format!("/agents/{}", s.agent.id);
    let within = 60;
    server
        .wait_for(within, "repository backoff reported", || async {
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
        .wait_for_tasks(90, "the retry to succeed", "status=succeeded", 1)
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
    init_repository(&repo, &pw, &cache);
    let runner: Arc<dyn ProcessRunner> = real_runner();
    let env = restic_env(&repo, &pw, &cache);
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
        let mut spec = ProcessSpec::new("restic").args(backup_arguments(&paths, 64));
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
    let s = setup("crash", &["main"]).await;
    let (server, dir, pw, agent) = (&s.server, &s.dir, &s.pw, &s.agent);
    let data = sample_data(dir.path(), 3 * 1024 * 1024);
    let repo = s.repo("main");
    let state_dir = s.config.state_dir.clone();
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
    s.backup_of("main", &data).await;
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
        .wait_for_tasks(120, "the retried task to succeed", "status=succeeded", 1)
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
        snapshots(&repo, pw, &dir.path().join("cache")).len(),
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
    let s = setup("writes", &["main"]).await;
    let data = sample_data(s.dir.path(), 10_000);
    let state_dir = s.config.state_dir.clone();
    let backup = s.backup_of("main", &data).await;
    let id = id_of(&backup).to_owned();
    let running = s.start_real().await;
    let server = &s.server;
    let q = format!("policyId={id}&status=succeeded");
    // The first backup makes the repository; learning its id is then one write of its own,
    // once per repository: the count starts after it.
    server
        .wait_for_tasks(60, "the first backup to succeed", &q, 1)
        .await;
    server
        .wait_for(60, "the repository's id learned", || async {
            // Read as a file: the running agent holds the state directory's lock.
            std::fs::read(state_dir.join(backup_agent::state::STATE_FILE))
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .is_some_and(|v| !v["repositoryIds"]["main"].is_null())
        })
        .await;
    server
        .wait_for(10, "the outbox empty", || async {
            running.agent.diagnostics().outbox == 0
        })
        .await;
    let before = running.agent.state_writes();
    for n in 2..=4 {
        server.run_now(&backup).await;
        server
            .wait_for_tasks(60, "the backup to succeed", &q, n)
            .await;
    }
    server
        .wait_for(10, "the outbox empty", || async {
            running.agent.diagnostics().outbox == 0
        })
        .await;
    let writes = running.agent.state_writes() - before;
    let attempts = server.runs(&format!("policyId={id}")).await.len() as u64 - 1;
    assert_eq!(attempts, 3, "three more attempts, each a success");
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
    assert!(
        state.repository_ids.contains_key("main"),
        "the learned id is kept for the next start"
    );
}

/// restic 0.17+ retries a backend that refuses connections for about a quarter of an hour;
/// `repositoryTimeoutSeconds` stops it and counts a failure of the repository (0.14 fails at
/// once by itself): for the backup itself (the watchdog) and for the `initIfMissing` probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_remote_fails_within_the_repository_timeout() {
    let Some(version) = crate::harness::local_restic() else {
        return;
    };
    for init_if_missing in [false, true] {
        let mut s = setup("unreachable", &["main"]).await;
        let data = sample_data(s.dir.path(), 1000);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let repo = s.config.repositories.get_mut("main").expect("main");
        repo.url = format!("rest:http://127.0.0.1:{port}/");
        repo.init_if_missing = init_if_missing;
        s.config.repository_timeout_seconds = 3;
        let backup = s.backup_of("main", &data).await;
        let running = s.start_real().await;
        let query = format!("{}&status=failed", policy_query(&backup));
        s.server
            .wait_for(60, "a failed attempt", || async {
                !s.server.runs(&query).await.is_empty()
            })
            .await;
        let run = s.server.runs(&query).await.remove(0);
        let error = run["error"].as_str().unwrap_or_default();
        assert_eq!(run["errorKind"], "retriable", "{run}");
        if version.has_exit_codes() {
            assert!(error.contains("repositoryTimeoutSeconds"), "{run}");
            assert!(error.contains("<config/>"), "restic's words: {run}");
        }
        assert!(
            run["durationMs"].as_i64().unwrap_or(i64::MAX) < 30_000,
            "stopped by the deadline, not by restic's own retries: {run}"
        );
        running.stop().await;
    }
}
