//! An attempt the server hands out again after the agent ran it: the agent's start and result
//! never reached the server (a network cut), the claim's lease lapsed, and the same attempt came
//! back in a claim. Found by the chaos soak (seed 20261203): the agent ran restic a second time
//! and one of the two snapshots was recorded by no run. The result waiting in the outbox is
//! delivered instead.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};

use async_trait::async_trait;
use backup_agent::{ClientError, HttpClient, NetworkCause, OrchestratorClient};
use backup_core::{
    AttemptReport, ClaimAnswer, ClaimRequest, ClaimedTask, Heartbeat, HeartbeatAnswer, TaskId,
    TaskView,
};

use crate::harness::{Script, http_client, one_repository};

/// The network at the client seam: the first claimed task is remembered; its start and results
/// are lost (unreachable) until that claim has been answered a second time with the same
/// attempt, as a server does once the lease lapses.
struct Rehanding {
    inner: HttpClient,
    first: Mutex<Option<ClaimedTask>>,
    reported: AtomicBool,
    rehanded: AtomicBool,
}

fn cut() -> ClientError {
    ClientError::Unreachable {
        server: "127.0.0.1:9".into(),
        cause: NetworkCause::Refused,
    }
}

#[async_trait]
impl OrchestratorClient for Rehanding {
    async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<HeartbeatAnswer, ClientError> {
        self.inner.heartbeat(heartbeat).await
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<ClaimAnswer, ClientError> {
        let first = self.first.lock().expect("lock").clone();
        match first {
            // Handed out again once the agent holds the result.
            Some(task) if self.reported.load(Ordering::SeqCst) => {
                if self.rehanded.swap(true, Ordering::SeqCst) {
                    self.inner.claim(request).await
                } else {
                    Ok(ClaimAnswer { tasks: vec![task] })
                }
            }
            Some(_) => Ok(ClaimAnswer::default()),
            None => {
                let answer = self.inner.claim(request).await?;
                if let Some(task) = answer.tasks.first() {
                    *self.first.lock().expect("lock") = Some(task.clone());
                }
                Ok(answer)
            }
        }
    }

    async fn start(&self, _task: TaskId, _attempt: u32) -> Result<TaskView, ClientError> {
        Err(cut())
    }

    async fn report(&self, task: TaskId, report: &AttemptReport) -> Result<TaskView, ClientError> {
        if !self.rehanded.load(Ordering::SeqCst) {
            self.reported.store(true, Ordering::SeqCst);
            return Err(cut());
        }
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
async fn an_attempt_handed_out_again_after_it_ran_is_not_run_twice() {
    let s = one_repository("rehanded", vec![Script::ok(50)]).await;
    let client = Arc::new(Rehanding {
        inner: http_client(&s.config),
        first: Mutex::new(None),
        reported: AtomicBool::new(false),
        rehanded: AtomicBool::new(false),
    });
    let policy = s.backup("main").await;
    let running = s.start_with_client(client.clone()).await;
    s.server
        .wait_for_success(30, "the result delivered after the re-hand", &policy)
        .await;
    assert!(
        client.rehanded.load(Ordering::SeqCst),
        "the attempt came back"
    );
    running.stop().await;
    let backups = s
        .runner
        .operations()
        .iter()
        .filter(|spec| spec.args.first().is_some_and(|a| a == "backup"))
        .count();
    assert_eq!(backups, 1, "restic ran once for the one attempt");
    let runs = s.server.runs("").await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["status"], "succeeded");
}
