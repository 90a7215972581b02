//! What survives a restart: backoff timers, the outbox, leftover restic processes.

use std::{os::unix::process::CommandExt, sync::Arc, time::Duration};

use backup_agent::{
    Agent, AgentOptions,
    state::process_start_ticks,
    state::{AgentState, ProcessRecord, StateFile},
};
use backup_core::{SystemClock, TaskId, TaskKind};

use crate::harness::{Script, ScriptedRunner, Setup, http_client, one_repository, scratch, setup};

async fn start_only(config: backup_agent::AgentConfig, runner: Arc<ScriptedRunner>) -> Agent {
    let client = http_client(&config);
    Agent::start(
        config,
        AgentOptions::default(),
        runner,
        Arc::new(client),
        Arc::new(SystemClock),
    )
    .await
    .expect("starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_timers_and_the_outbox_survive_a_restart() {
    let mut s = one_repository(
        "restart",
        vec![Script {
            millis: 2000,
            ..Script::fail(1, "Fatal: connection reset by peer\n")
        }],
    )
    .await;
    s.config.backoff_failure_threshold = Some(1);
    s.config.backoff_base_seconds = Some(600);
    s.config.max_backoff_minutes = Some(60);
    s.backup("main").await;
    let first = s.start().await;
    s.wait_running(15, "the backup running", 1).await;
    s.server.stop().await;
    let Setup {
        server,
        runner,
        config,
        ..
    } = &mut s;
    server
        .wait_for(30, "the failed attempt in the outbox", || async {
            runner.current() == 0 && first.agent.diagnostics().outbox == 1
        })
        .await;
    let before = first.agent.diagnostics();
    assert_eq!(before.outbox, 1, "the failure waits for the server");
    let until = before
        .backoff
        .iter()
        .find(|b| b.scope == "main")
        .and_then(|b| b.until)
        .expect("in backoff");
    first.stop().await;

    // A new agent process on the same state directory.
    let second = start_only(config.clone(), runner.clone()).await;
    let after = second.diagnostics();
    assert_eq!(after.outbox, 1, "the outbox survived");
    assert_eq!(
        after
            .backoff
            .iter()
            .find(|b| b.scope == "main")
            .and_then(|b| b.until),
        Some(until),
        "the backoff timer survived"
    );
    server.restart().await;
    let run = {
        let a = second.clone();
        tokio::spawn(async move { a.run(std::future::pending()).await })
    };
    server
        .wait_for(20, "the stored result delivered", || async {
            second.diagnostics().outbox == 0
        })
        .await;
    let task = server.tasks("").await.remove(0);
    assert_eq!(
        (task["retryCount"].clone(), task["status"].clone()),
        (serde_json::json!(1), serde_json::json!("pending"))
    );
    second.stop();
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("stops")
        .expect("joined")
        .expect("ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_state_file_is_moved_aside_and_the_agent_starts() {
    let s = setup("garbage", &["main"]).await;
    let state_dir = s.config.state_dir.clone();
    std::fs::create_dir_all(&state_dir).expect("dir");
    for garbage in [
        &b"{\"backoff\": {\"entries\": [[{\"repos"[..],
        b"\x7fELF not a state file",
    ] {
        std::fs::write(state_dir.join("state.json"), garbage).expect("garbage");
        let started = start_only(s.config.clone(), Arc::new(ScriptedRunner::default())).await;
        assert_eq!(started.diagnostics().outbox, 0);
        let aside: Vec<_> = std::fs::read_dir(&state_dir)
            .expect("list")
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("state.json.corrupt-")
            })
            .map(|e| std::fs::read(e.path()).expect("read"))
            .collect();
        assert!(
            aside.iter().any(|bytes| bytes == garbage),
            "the corrupt file is kept aside"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restic_left_over_by_a_crashed_agent_is_killed_at_start_and_its_attempt_reported() {
    let s = setup("leftover", &["main"]).await;
    let state_dir = s.config.state_dir.clone();
    // A "restic" of the previous agent: a process group of its own, still running.
    let mut leftover = std::process::Command::new("sleep")
        .arg("1000")
        .process_group(0)
        .spawn()
        .expect("spawn");
    let pid = leftover.id();
    let task = TaskId::new();
    let mut state = AgentState::default();
    state.processes.push(ProcessRecord {
        pgid: pid,
        start_ticks: process_start_ticks(pid),
        task_id: task,
        attempt: 3,
        kind: TaskKind::Backup,
        repository: "main".into(),
    });
    StateFile::new(&state_dir)
        .expect("state")
        .save(&state)
        .expect("save");
    let runner = s.runner.clone();
    let started = start_only(s.config.clone(), runner.clone()).await;
    let status = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::task::spawn_blocking(move || leftover.wait()),
    )
    .await
    .expect("the leftover dies")
    .expect("joined")
    .expect("waited");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "killed"
    );
    let reloaded = StateFile::new(&state_dir)
        .expect("state")
        .load()
        .expect("load")
        .state;
    assert!(reloaded.processes.is_empty());
    let entry = reloaded
        .outbox
        .iter()
        .find(|e| e.task_id == task)
        .expect("its attempt is reported");
    assert_eq!(entry.report.attempt, 3);
    assert_eq!(
        entry.report.error_kind,
        Some(backup_core::ErrorClass::Retriable)
    );
    assert!(
        runner
            .calls
            .lock()
            .expect("lock")
            .iter()
            .any(|s| s.args.first().map(String::as_str) == Some("unlock")),
        "its repository was unlocked"
    );
    drop(started);
}

#[tokio::test]
async fn a_recorded_pid_now_used_by_another_program_is_left_alone() {
    let (dir, pw) = scratch();
    let mut innocent = std::process::Command::new("sleep")
        .arg("1000")
        .process_group(0)
        .spawn()
        .expect("spawn");
    let pid = innocent.id();
    let mut state = AgentState::default();
    state.processes.push(ProcessRecord {
        pgid: pid,
        start_ticks: process_start_ticks(pid).map(|t| t + 12345),
        task_id: TaskId::new(),
        attempt: 1,
        kind: TaskKind::Check,
        repository: "main".into(),
    });
    let state_dir = dir.path().join("state");
    StateFile::new(&state_dir)
        .expect("state")
        .save(&state)
        .expect("save");
    let mut config = backup_agent::AgentConfig {
        state_dir: state_dir.clone(),
        agent_id: Some(uuid::Uuid::new_v4().to_string()),
        token: Some("t".into()),
        ..backup_agent::AgentConfig::default()
    };
    config.repositories.insert(
        "main".into(),
        backup_agent::RepositoryConfig::new(dir.path().join("repo").display().to_string(), pw),
    );
    let _agent = start_only(config, Arc::new(ScriptedRunner::default())).await;
    assert!(
        innocent.try_wait().expect("try_wait").is_none(),
        "a different process with a reused pid survives"
    );
    innocent.kill().expect("cleanup");
    let _ = innocent.wait();
}
