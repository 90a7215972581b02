//! Failures: outcomes, retries decided by the server, repository backoff, the outbox across an
//! outage, the log lines operators search for.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use backup_agent::{ClientError, HttpClient, OrchestratorClient};
use backup_core::{
    AttemptReport, ClaimAnswer, ClaimRequest, ClaimedTask, ErrorCode, Heartbeat, HeartbeatAnswer,
    TaskId, TaskView,
};
use serde_json::json;

use crate::harness::{
    RunningAgent, Script, Setup, Tampered, backup_policy, check_policy, env_of, http_client, id_of,
    logs_of, one_repository, policy_query, setup,
};

const LOCKED: &str = "unable to create lock in backend: repository is already locked exclusively by PID 14748 on vm by root (UID 0, GID 0)\nlock was created at 2026-11-26 06:59:43 (571.893064ms ago)\nstorage ID c9f33674\nthe `unlock` command can be used to remove stale locks\n";
const WRONG_PASSWORD: &str = "Fatal: wrong password or no key found\n";

/// An agent `name` running the one backup of its repository `main`, which follows `script`.
async fn one_backup_running(name: &str, script: Script) -> (Setup, RunningAgent) {
    let s = one_repository(name, vec![script]).await;
    s.backup("main").await;
    let running = s.start().await;
    s.wait_running(15, "the backup running", 1).await;
    (s, running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_retriable_partial_and_unknown_repository_outcomes() {
    let mut s = setup("outcomes", &["wrong", "locked", "partial"]).await;
    s.script("wrong", vec![Script::fail(1, WRONG_PASSWORD)]);
    s.script("locked", vec![Script::fail(1, LOCKED), Script::ok(50)]);
    s.script(
        "partial",
        vec![Script {
            exit: 3,
            ..Script::ok(50)
        }],
    );
    let locked = s.repo("locked");
    s.config.max_concurrent_tasks = Some(4);
    s.config.max_concurrent_backups = Some(4);
    s.config.backoff_base_seconds = Some(1);
    let p_wrong = s.backup("wrong").await;
    let p_locked = s.backup("locked").await;
    let p_partial = s.backup("partial").await;
    let p_unknown = s.backup("nowhere").await;
    let running = s.start().await;
    let Setup { server, runner, .. } = &s;
    server
        .wait_for(30, "all four tasks to settle", || async {
            let mut settled = 0;
            for p in [&p_wrong, &p_locked, &p_partial, &p_unknown] {
                let tasks = server.tasks(&policy_query(p)).await;
                if tasks
                    .iter()
                    .any(|t| t["status"] == "succeeded" || t["status"] == "failed_permanently")
                {
                    settled += 1;
                }
            }
            settled == 4
        })
        .await;
    running.stop().await;
    let only = |tasks: Vec<serde_json::Value>| tasks.into_iter().next().expect("a task");
    let t = only(server.tasks(&policy_query(&p_wrong)).await);
    assert_eq!(
        (
            t["status"].clone(),
            t["permanentReason"].clone(),
            t["attempt"].clone()
        ),
        (
            json!("failed_permanently"),
            json!("permanent_error"),
            json!(1)
        ),
        "wrong password fails at once"
    );
    let t = only(server.tasks(&policy_query(&p_locked)).await);
    assert_eq!(
        (
            t["status"].clone(),
            t["retryCount"].clone(),
            t["attempt"].clone()
        ),
        (json!("succeeded"), json!(1), json!(2)),
        "a lock conflict is retried"
    );
    let t = only(server.tasks(&policy_query(&p_partial)).await);
    assert_eq!(t["status"], "succeeded", "partial counts as success");
    let t = only(server.tasks(&policy_query(&p_unknown)).await);
    assert_eq!(t["permanentReason"], "permanent_error");
    assert!(
        t["lastError"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown repository"),
        "{t}"
    );
    // restic unlock ran on the locked repository before its second attempt, and its output was ignored.
    let calls: Vec<String> = runner
        .calls
        .lock()
        .expect("lock")
        .iter()
        .filter(|s| env_of(s, "RESTIC_REPOSITORY") == Some(locked.to_str().expect("utf8")))
        .map(|s| s.args[0].clone())
        .collect();
    let backups: Vec<usize> = calls
        .iter()
        .enumerate()
        .filter(|(_, op)| *op == "backup")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(backups.len(), 2);
    assert!(
        calls[backups[0]..backups[1]].contains(&"unlock".to_owned()),
        "{calls:?}"
    );
}

#[test]
fn repository_backoff_is_entered_reported_and_reset() {
    let logs = logs_of(async {
        let mut s = setup("backoff", &["flaky"]).await;
        s.script(
            "flaky",
            vec![
                Script::fail(1, LOCKED),
                Script::fail(1, "Fatal: connection reset by peer\n"),
                Script::ok(50),
            ],
        );
        s.config.backoff_failure_threshold = Some(2);
        s.config.backoff_base_seconds = Some(4);
        s.config.max_backoff_minutes = Some(1);
        let policy = s.backup("flaky").await;
        let running = s.start().await;
        let server = &s.server;
        let view = format!("/agents/{}", s.agent.id);
        server
            .wait_for(30, "the repository backoff in the agent view", || async {
                let v = server.get(&view).await;
                v["status"] == "backoff" && v["backoffRepositories"][0]["repository"] == "flaky"
            })
            .await;
        let diagnostics = running.agent.diagnostics();
        let entry = diagnostics
            .backoff
            .iter()
            .find(|b| b.scope == "flaky")
            .expect("backoff entry");
        assert_eq!(entry.backoffs, 1);
        assert!(entry.until.is_some());
        assert!(
            running
                .agent
                .render_metrics()
                .contains("backup_agent_backoff_active 1")
        );
        server
            .wait_for_success(40, "the retry after the backoff to succeed", &policy)
            .await;
        // A success resets the repository: no backoff entry remains.
        assert!(
            running
                .agent
                .diagnostics()
                .backoff
                .iter()
                .all(|b| b.scope != "flaky")
        );
        running.stop().await;
    });
    assert!(logs.contains("Entering backoff for 1 minutes"), "{logs}");
}

#[test]
fn an_exhausted_budget_logs_retry_exhausted_and_counts_retries() {
    let mut task_id = String::new();
    let logs = logs_of(async {
        let mut s = setup("exhaust", &["broken"]).await;
        s.script(
            "broken",
            vec![Script::fail(1, "Fatal: something unknown went wrong\n")],
        );
        s.config.backoff_base_seconds = Some(1);
        s.config.backoff_failure_threshold = Some(0);
        let mut body = backup_policy(s.agent.id, "broken", &["/d"]);
        body["maxTaskRetries"] = json!(2);
        s.server.policy(body).await;
        let running = s.start().await;
        let server = &s.server;
        server
            .wait_for_any_task(
                30,
                "the task to fail permanently",
                "status=failed_permanently",
            )
            .await;
        let task = server.tasks("status=failed_permanently").await.remove(0);
        task_id = id_of(&task).to_owned();
        assert_eq!(
            (
                task["permanentReason"].clone(),
                task["retryCount"].clone(),
                task["attempt"].clone()
            ),
            (json!("retries_exhausted"), json!(2), json!(3))
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            running
                .agent
                .render_metrics()
                .contains("backup_agent_retries_total 2"),
            "two attempts answered with a retry"
        );
        running.stop().await;
    });
    assert!(
        logs.contains(&format!("Retry exhausted for task {task_id}")),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_delivers_every_result_exactly_once_after_an_outage() {
    let mut s = one_repository("outbox", vec![Script::ok(2500)]).await;
    s.config.max_concurrent_tasks = Some(3);
    s.config.max_concurrent_backups = Some(3);
    for _ in 0..3 {
        s.backup("main").await;
    }
    let running = s.start().await;
    s.wait_running(15, "three backups running", 3).await;
    // The server goes down while the backups run; the agent finishes them anyway.
    s.server.stop().await;
    let Setup { server, runner, .. } = &mut s;
    server
        .wait_for(30, "the agent to finish what it held", || async {
            runner.current() == 0 && running.agent.diagnostics().outbox == 3
        })
        .await;
    assert_eq!(
        running.agent.diagnostics().outbox,
        3,
        "three results wait in the outbox"
    );
    server.restart().await;
    server
        .wait_for(30, "all results delivered", || async {
            running.agent.diagnostics().outbox == 0
        })
        .await;
    let tasks = server.tasks("").await;
    assert_eq!(tasks.len(), 3);
    assert!(
        tasks
            .iter()
            .all(|t| t["status"] == "succeeded" && t["attempt"] == 1),
        "{tasks:?}"
    );
    let runs = server.runs("").await;
    assert_eq!(
        runs.len(),
        3,
        "one run per attempt: every result recorded exactly once"
    );
    assert!(
        runs.iter()
            .all(|r| r["snapshotId"] == "abcd1234" && r["late"] == false)
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_task_is_stopped_without_a_result() {
    let (s, running) = one_backup_running("cancel", Script::ok(60_000)).await;
    let server = &s.server;
    let task = server.tasks("status=running").await.remove(0);
    let cancel = format!("/tasks/{}/cancel", id_of(&task));
    let (status, _) = server.api.call("POST", &cancel, None).await;
    assert_eq!(status, 200);
    s.wait_running(5, "restic stopped", 0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        running.agent.diagnostics().outbox,
        0,
        "no result for a cancelled task"
    );
    let runs = server.runs("").await;
    assert_eq!(runs[0]["status"], "cancelled");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_reports_interrupted_and_spends_no_budget() {
    let (s, running) = one_backup_running("shutdown", Script::ok(60_000)).await;
    running.stop().await;
    let server = &s.server;
    let task = server.tasks("").await.remove(0);
    assert_eq!(
        (
            task["status"].clone(),
            task["retryCount"].clone(),
            task["nextRetryAt"].clone()
        ),
        (json!("pending"), json!(0), json!(null))
    );
    assert_eq!(server.runs("").await[0]["status"], "interrupted");
}

/// The HTTP client, except that the first claims are answered 429 with `Retry-After`; records
/// when each claim was made.
struct Throttled {
    inner: HttpClient,
    refusals: Mutex<u32>,
    retry_after: Duration,
    claims: Mutex<Vec<Instant>>,
}

#[async_trait]
impl OrchestratorClient for Throttled {
    async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<HeartbeatAnswer, ClientError> {
        self.inner.heartbeat(heartbeat).await
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<ClaimAnswer, ClientError> {
        self.claims.lock().expect("lock").push(Instant::now());
        {
            let mut refusals = self.refusals.lock().expect("lock");
            if *refusals > 0 {
                *refusals -= 1;
                return Err(ClientError::Status {
                    status: 429,
                    code: Some(ErrorCode::RateLimited),
                    message: "slow down".into(),
                    retry_after: Some(self.retry_after),
                });
            }
        }
        self.inner.claim(request).await
    }

    async fn start(&self, task: TaskId, attempt: u32) -> Result<TaskView, ClientError> {
        self.inner.start(task, attempt).await
    }

    async fn report(&self, task: TaskId, report: &AttemptReport) -> Result<TaskView, ClientError> {
        self.inner.report(task, report).await
    }

    async fn report_snapshots(
        &self,
        repository: &str,
        list: &backup_core::SnapshotList,
    ) -> Result<backup_core::SnapshotsStored, ClientError> {
        self.inner.report_snapshots(repository, list).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_on_claim_holds_the_next_claim_until_retry_after() {
    let s = one_repository("throttled", vec![Script::ok(10)]).await;
    assert_eq!(s.config.polling_interval_seconds, 1, "polls every second");
    let client = Arc::new(Throttled {
        inner: http_client(&s.config),
        refusals: Mutex::new(2),
        retry_after: Duration::from_secs(3),
        claims: Mutex::new(Vec::new()),
    });
    let policy = s.backup("main").await;
    let running = s.start_with_client(client.clone()).await;
    s.server
        .wait_for_success(30, "the backup to succeed once claims are allowed", &policy)
        .await;
    running.stop().await;
    let claims = client.claims.lock().expect("lock").clone();
    assert!(claims.len() >= 3, "two refused claims, then one served");
    for (i, pair) in claims.windows(2).take(2).enumerate() {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_secs(3),
            "claim {} came {gap:?} after a 429 asking for 3 s, though the agent polls every second",
            i + 2
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_waiting_for_its_repository_does_not_start_into_a_fresh_backoff() {
    // The backup holds the repository for 4 s, then fails on a lock: with a threshold of 1 the
    // repository enters a backoff of 30-60 s.
    let mut s = one_repository(
        "waiting",
        vec![
            Script {
                millis: 4000,
                ..Script::fail(1, LOCKED)
            },
            Script::ok(50),
        ],
    )
    .await;
    s.config.max_concurrent_tasks = Some(2);
    s.config.backoff_failure_threshold = Some(1);
    s.config.backoff_base_seconds = Some(60);
    s.backup("main").await;
    let running = s.start().await;
    s.wait_running(15, "the backup running", 1).await;
    let Setup {
        server,
        runner,
        agent,
        ..
    } = &s;
    // A check is claimed while the backup runs and waits for the exclusive repository lock.
    server.policy(check_policy(agent.id, "main")).await;
    server
        .wait_for_tasks(15, "the check claimed", "status=claimed", 1)
        .await;
    server
        .wait_for(
            15,
            "the repository in backoff (a check run into it would have reset it)",
            || async { !running.agent.diagnostics().backoff.is_empty() },
        )
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let operations: Vec<String> = runner
        .operations()
        .iter()
        .map(|s| s.args[0].clone())
        .collect();
    assert_eq!(
        operations,
        ["backup"],
        "the check got the lock after the failure but must wait out the backoff"
    );
    running.stop().await;
}

/// Delivers results, then answers as if the server's 2xx body could not be read.
struct Garbled {
    inner: HttpClient,
    reports: Mutex<u32>,
}

#[async_trait]
impl OrchestratorClient for Garbled {
    async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<HeartbeatAnswer, ClientError> {
        self.inner.heartbeat(heartbeat).await
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<ClaimAnswer, ClientError> {
        self.inner.claim(request).await
    }

    async fn start(&self, task: TaskId, attempt: u32) -> Result<TaskView, ClientError> {
        self.inner.start(task, attempt).await?;
        Err(ClientError::Unreadable("a proxy's page".into()))
    }

    async fn report(&self, task: TaskId, report: &AttemptReport) -> Result<TaskView, ClientError> {
        *self.reports.lock().expect("lock") += 1;
        self.inner.report(task, report).await?;
        Err(ClientError::Unreadable("a proxy's page".into()))
    }

    async fn report_snapshots(
        &self,
        repository: &str,
        list: &backup_core::SnapshotList,
    ) -> Result<backup_core::SnapshotsStored, ClientError> {
        self.inner.report_snapshots(repository, list).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2xx_with_an_unreadable_body_settles_a_result() {
    let s = one_repository("garbled", vec![]).await;
    let client = Arc::new(Garbled {
        inner: http_client(&s.config),
        reports: Mutex::new(0),
    });
    s.backup("main").await;
    let running = s.start_with_client(client.clone()).await;
    s.server
        .wait_for_tasks(15, "the backup recorded", "status=succeeded", 1)
        .await;
    let runner = &s.runner;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        running.agent.diagnostics().outbox,
        0,
        "the result left the outbox"
    );
    assert_eq!(
        *client.reports.lock().expect("lock"),
        1,
        "and was sent once"
    );
    assert_eq!(
        runner.operations().len(),
        1,
        "the start's garbled answer did not stop the run"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_in_backoff_does_not_hold_the_agent_from_the_others() {
    let mut s = setup("one-slot", &["bad", "good"]).await;
    s.script("bad", vec![Script::fail(1, LOCKED)]);
    let (bad, good) = (s.repo("bad"), s.repo("good"));
    s.config.max_concurrent_tasks = Some(1);
    s.config.backoff_failure_threshold = Some(1);
    s.config.backoff_base_seconds = Some(120);
    s.backup("bad").await;
    let running = s.start().await;
    let Setup {
        server,
        runner,
        agent,
        ..
    } = &s;
    server
        .wait_for(15, "the bad repository in backoff", || async {
            !running.agent.diagnostics().backoff.is_empty()
        })
        .await;
    // A run-now on the bad repository waits on the server, which knows from the heartbeats that
    // the repository backs off (a minute or more); meanwhile the one slot serves the good one.
    let mut second = backup_policy(agent.id, "bad", &["/d"]);
    second["name"] = json!("bad, run now");
    let second = server.policy(second).await;
    let run_now = id_of(&server.run_now(&second).await).to_owned();
    s.backup("good").await;
    server
        .wait_for_tasks(20, "the good repository's backup", "status=succeeded", 1)
        .await;
    let operations: Vec<_> = runner.operations().iter().map(repository_of).collect();
    assert_eq!(
        operations,
        [bad.display().to_string(), good.display().to_string()],
        "nothing ran on the bad repository during its backoff"
    );
    let held_back = server.get(&format!("/tasks/{run_now}")).await;
    assert_eq!(
        held_back["status"], "pending",
        "the server does not hand out a task for a repository in backoff: {held_back}"
    );
    running.stop().await;
}

fn repository_of(spec: &backup_core::ProcessSpec) -> String {
    env_of(spec, "RESTIC_REPOSITORY")
        .unwrap_or_default()
        .to_owned()
}

/// The HTTP client, except that its next claims hand out again the first task it claimed (and
/// accept its start), as a server does when that task's lease lapsed while the agent still runs
/// it.
struct Replaying {
    inner: HttpClient,
    first: Mutex<Option<ClaimedTask>>,
    started: Mutex<Option<TaskView>>,
    replays: Mutex<u32>,
}

#[async_trait]
impl OrchestratorClient for Replaying {
    async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<HeartbeatAnswer, ClientError> {
        self.inner.heartbeat(heartbeat).await
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<ClaimAnswer, ClientError> {
        let replay = {
            let first = self.first.lock().expect("lock");
            let mut replays = self.replays.lock().expect("lock");
            match first.as_ref() {
                Some(task) if *replays > 0 => {
                    *replays -= 1;
                    let mut again = task.clone();
                    again.attempt += 1;
                    Some(again)
                }
                _ => None,
            }
        };
        if let Some(task) = replay {
            return Ok(ClaimAnswer { tasks: vec![task] });
        }
        let answer = self.inner.claim(request).await?;
        if let Some(task) = answer.tasks.first() {
            self.first.lock().expect("lock").get_or_insert(task.clone());
        }
        Ok(answer)
    }

    async fn start(&self, task: TaskId, attempt: u32) -> Result<TaskView, ClientError> {
        if let Some(view) = self.started.lock().expect("lock").clone() {
            return Ok(view);
        }
        let view = self.inner.start(task, attempt).await?;
        *self.started.lock().expect("lock") = Some(view.clone());
        Ok(view)
    }

    async fn report(&self, task: TaskId, report: &AttemptReport) -> Result<TaskView, ClientError> {
        self.inner.report(task, report).await
    }

    async fn report_snapshots(
        &self,
        repository: &str,
        list: &backup_core::SnapshotList,
    ) -> Result<backup_core::SnapshotsStored, ClientError> {
        self.inner.report_snapshots(repository, list).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_handed_out_again_while_it_runs_is_not_started_twice() {
    let mut s = one_repository("replayed", vec![Script::ok(4000)]).await;
    // Two slots: only the agent's own bookkeeping can keep a second run from starting.
    s.config.max_concurrent_tasks = Some(2);
    s.config.max_concurrent_backups = Some(2);
    let client = Arc::new(Replaying {
        inner: http_client(&s.config),
        first: Mutex::new(None),
        started: Mutex::new(None),
        replays: Mutex::new(3),
    });
    s.backup("main").await;
    let running = s.start_with_client(client.clone()).await;
    let Setup { server, runner, .. } = &s;
    server
        .wait_for(20, "the replayed claims made", || async {
            *client.replays.lock().expect("lock") == 0
        })
        .await;
    assert_eq!(runner.current(), 1, "the first run is still going");
    server
        .wait_for(20, "the first run's result", || async {
            !server.runs("status=succeeded").await.is_empty()
        })
        .await;
    let (most, _) = runner.max_concurrent();
    assert_eq!(most, 1, "the task never ran twice at once");
    assert_eq!(runner.operations().len(), 1, "and was started once");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_that_finished_as_it_was_stopped_is_reported_as_a_success() {
    let (s, running) = one_backup_running(
        "finished-anyway",
        Script {
            finishes_when_stopped: true,
            ..Script::ok(60_000)
        },
    )
    .await;
    let server = &s.server;
    // The shutdown's SIGINT meets a restic that had already saved its snapshot and exits 0: the
    // snapshot is reported, not an interrupted attempt that would be run again into a second.
    running.stop().await;
    let run = server.runs("").await.remove(0);
    assert_eq!(
        (run["status"].clone(), run["snapshotId"].clone()),
        (json!("succeeded"), json!("abcd1234")),
        "{run}"
    );
    assert_eq!(server.tasks("").await[0]["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_task_whose_repository_enters_backoff_is_handed_back_not_waited_for() {
    let mut s = setup("handed-back", &["bad", "good"]).await;
    // A backup and a check on `bad` are claimed together; whichever runs first fails slowly
    // into a backoff while the other waits for the repository (the check needs it to itself).
    s.script(
        "bad",
        vec![Script {
            millis: 1500,
            ..Script::fail(1, LOCKED)
        }],
    );
    s.config.max_concurrent_tasks = Some(2);
    s.config.backoff_failure_threshold = Some(1);
    s.config.backoff_base_seconds = Some(300);
    s.backup("bad").await;
    s.server.policy(check_policy(s.agent.id, "bad")).await;
    let running = s.start().await;
    let Setup { server, runner, .. } = &s;
    server
        .wait_for(20, "the waiting task handed back", || async {
            !server.runs("status=interrupted").await.is_empty()
        })
        .await;
    let run = server.runs("status=interrupted").await.remove(0);
    assert!(
        run["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("handed back: repository bad is in backoff until")),
        "{run}"
    );
    // It holds no slot: a backup of another repository runs at once.
    s.backup("good").await;
    server
        .wait_for_tasks(20, "the good repository's backup", "status=succeeded", 1)
        .await;
    let on_bad = runner
        .operations()
        .iter()
        .filter(|spec| repository_of(spec).ends_with("/bad"))
        .count();
    assert_eq!(on_bad, 1, "nothing else ran on the repository in backoff");
    let handed_back = server
        .get(&format!("/tasks/{}", run["taskId"].as_str().expect("task")))
        .await;
    assert_eq!(
        (
            handed_back["status"].clone(),
            handed_back["retryCount"].clone()
        ),
        (json!("pending"), json!(0)),
        "back on the server, no retry budget spent"
    );
    running.stop().await;
}

/// The claim hands out only tasks whose retry is due (by the server's clock): the agent starts
/// a claimed task at once, and does not wait for `nextRetryAt` by its own clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_task_starts_at_once_whatever_next_retry_at_says() {
    let s = one_repository("clock-behind", vec![Script::ok(10)]).await;
    // Every task it claims says its retry is an hour away: what an agent whose clock runs an
    // hour behind the server's reads in a retried task.
    let client = Arc::new(Tampered {
        claim: Some(Box::new(|answer: &mut ClaimAnswer| {
            for task in &mut answer.tasks {
                task.next_retry_at = Some(chrono::Utc::now() + chrono::TimeDelta::hours(1));
            }
        })),
        ..Tampered::of(&s.config)
    });
    let policy = s.backup("main").await;
    let running = s.start_with_client(client).await;
    s.server
        .wait_for_success(15, "the backup to run at once", &policy)
        .await;
    running.stop().await;
}
