//! Long polls from the agent's side: an idle agent that polls once an hour still runs a
//! run-now at once, and against a server that answers at once it does not spin.

use std::sync::{
    Arc,
    atomic::{AtomicU32, Ordering},
};

use async_trait::async_trait;
use backup_agent::{ClientError, OrchestratorClient};
use backup_core::{
    AttemptReport, ClaimAnswer, ClaimRequest, Heartbeat, HeartbeatAnswer, Settings, SnapshotList,
    SnapshotsStored, TaskId, TaskView,
};

use crate::harness::{RunningAgent, ScriptedRunner, policy_query, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_agent_polling_once_an_hour_runs_a_run_now_at_once() {
    let mut s = setup("long-poll", &["main"]).await;
    s.config.polling_interval_seconds = 3600;
    let backup = s.backup("main").await;
    let running = s.start().await;
    s.server
        .wait_for_success(20, "the first backup", &backup)
        .await;
    s.server.run_now(&backup).await;
    // Without the long poll, the next claim would come in an hour.
    s.server
        .wait_for_tasks(
            20,
            "the run-now backup",
            &format!("{}&status=succeeded", policy_query(&backup)),
            2,
        )
        .await;
    running.stop().await;
}

/// A server that knows nothing of `waitSeconds`: every claim is answered at once, empty.
#[derive(Default)]
struct AnswersAtOnce {
    claims: AtomicU32,
    waits_asked: AtomicU32,
}

#[async_trait]
impl OrchestratorClient for AnswersAtOnce {
    async fn heartbeat(&self, _: &Heartbeat) -> Result<HeartbeatAnswer, ClientError> {
        Ok(HeartbeatAnswer {
            settings: Settings::default(),
            settings_source: None,
            server_time: chrono::Utc::now(),
            cancel_task_ids: vec![],
        })
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<ClaimAnswer, ClientError> {
        self.claims.fetch_add(1, Ordering::SeqCst);
        if request.wait_seconds > 0 {
            self.waits_asked.fetch_add(1, Ordering::SeqCst);
        }
        Ok(ClaimAnswer::default())
    }

    async fn start(&self, _: TaskId, _: u32) -> Result<TaskView, ClientError> {
        Err(ClientError::Invalid("no tasks here".into()))
    }

    async fn report(&self, _: TaskId, _: &AttemptReport) -> Result<TaskView, ClientError> {
        Err(ClientError::Invalid("no tasks here".into()))
    }

    async fn report_snapshots(
        &self,
        _: &str,
        _: &SnapshotList,
    ) -> Result<SnapshotsStored, ClientError> {
        Ok(SnapshotsStored {
            stored: 0,
            truncated: false,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_a_server_without_long_polls_the_agent_polls_at_its_interval() {
    let mut s = setup("no-long-poll", &["main"]).await;
    s.config.polling_interval_seconds = 1;
    let client = Arc::new(AnswersAtOnce::default());
    let running = RunningAgent::start_with_client(
        s.config.clone(),
        Arc::new(ScriptedRunner::default()),
        client.clone(),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    running.stop().await;
    let claims = client.claims.load(Ordering::SeqCst);
    assert!(
        client.waits_asked.load(Ordering::SeqCst) > 0,
        "it asked to wait"
    );
    assert!(
        (1..=5).contains(&claims),
        "about one claim a second, not a hot loop: {claims} in 3 s"
    );
}
