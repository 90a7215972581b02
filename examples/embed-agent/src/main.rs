//! # For Rust developers: embed the agent in your own program
//!
//! The agent library needs four things: a configuration, a `ProcessRunner`, an
//! `OrchestratorClient` and a `Clock`. This example brings its own of the two seams:
//!
//! - `AuditingRunner` wraps the real runner and writes an audit line for every restic command
//!   (what ran, how it ended, how long it took): the place for your product's own policies,
//!   sandboxing or accounting around restic.
//! - `InProcessClient` speaks to a `backup_store::Store` in the same process instead of HTTP:
//!   an appliance that embeds both sides, or the shape of your own transport.
//!
//! Run it: `cargo run -p example-embed-agent` (needs `restic` on PATH; it backs up a sample
//! directory into a temp repository and exits when the snapshot exists).
#![allow(clippy::print_stdout)]

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use backup_agent::{
    Agent, AgentConfig, AgentOptions, ClientError, NetworkCause, OrchestratorClient,
    RepositoryConfig, TokioProcessRunner,
};
use backup_core::{
    AgentId, AttemptReport, ClaimAnswer, ClaimRequest, CreateAgent, Error, Heartbeat,
    HeartbeatAnswer, PolicySpec, ProcessControl, ProcessOutcome, ProcessRunner, ProcessSpec,
    ScheduleSpec, SnapshotList, SnapshotsStored, SystemClock, TaskId, TaskKind, TaskStatus,
    TaskView,
};
use backup_store::{PageRequest, Store, StoreConfig, StoreError, TaskFilter};

/// Wraps the real runner; audits every command.
struct AuditingRunner {
    inner: TokioProcessRunner,
}

#[async_trait]
impl ProcessRunner for AuditingRunner {
    async fn run(
        &self,
        spec: ProcessSpec,
        control: ProcessControl,
    ) -> Result<ProcessOutcome, Error> {
        // Arguments only: the environment holds repository credentials.
        let command = format!("{} {}", spec.program.display(), spec.args.join(" "));
        let result = self.inner.run(spec, control).await;
        match &result {
            Ok(outcome) => println!(
                "audit: {command} -> {:?} in {:.2?}",
                outcome.status, outcome.duration
            ),
            Err(e) => println!("audit: {command} -> could not run: {e}"),
        }
        result
    }
}

/// The agent's protocol, answered by a store in this process.
struct InProcessClient {
    store: Store,
    agent: AgentId,
}

fn to_client(e: StoreError) -> ClientError {
    match e {
        StoreError::Unavailable(m) => ClientError::Unreachable {
            server: "the in-process store".into(),
            cause: NetworkCause::Other(m),
        },
        StoreError::NotFound(what) => ClientError::Status {
            status: 404,
            code: None,
            message: format!("{what} not found"),
            retry_after: None,
        },
        other => ClientError::Status {
            status: 409,
            code: None,
            message: other.to_string(),
            retry_after: None,
        },
    }
}

#[async_trait]
impl OrchestratorClient for InProcessClient {
    async fn heartbeat(&self, heartbeat: &Heartbeat) -> Result<HeartbeatAnswer, ClientError> {
        self.store
            .heartbeat(self.agent, heartbeat)
            .await
            .map_err(to_client)
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<ClaimAnswer, ClientError> {
        self.store
            .claim(self.agent, request)
            .await
            .map_err(to_client)
    }

    async fn start(&self, task: TaskId, attempt: u32) -> Result<TaskView, ClientError> {
        self.store
            .start_task(self.agent, task, attempt)
            .await
            .map_err(to_client)
    }

    async fn report(&self, task: TaskId, report: &AttemptReport) -> Result<TaskView, ClientError> {
        self.store
            .report_result(self.agent, task, report)
            .await
            .map(|a| a.task)
            .map_err(to_client)
    }

    async fn report_snapshots(
        &self,
        repository: &str,
        list: &SnapshotList,
    ) -> Result<SnapshotsStored, ClientError> {
        self.store
            .replace_snapshots(self.agent, repository, &list.snapshots)
            .await
            .map_err(to_client)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("embed-agent-{}", std::process::id()));
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    std::fs::write(data.join("invoice.txt"), "invoice #1\n")?;
    let password = dir.join("password");
    std::fs::write(&password, "example password\n")?;

    // The orchestrator side, in process.
    let store = Store::open(
        &format!("sqlite://{}", dir.join("store.db").display()),
        StoreConfig::default(),
        Arc::new(SystemClock),
    )
    .await?;
    let tenant = store.create_tenant("embedded").await?;
    let agent = store
        .create_agent(
            tenant.id,
            &CreateAgent {
                name: "this-machine".into(),
                hostname: "this-machine".into(),
            },
        )
        .await?;
    let agent_id = agent.agent.id;
    store
        .create_policy(
            tenant.id,
            &PolicySpec {
                name: "documents".into(),
                agent_id,
                kind: TaskKind::Backup,
                schedule: ScheduleSpec::every("1h"),
                paths: vec![data.display().to_string()],
                excludes: vec![],
                repository: "vault".into(),
                retention: None,
                max_task_retries: None,
                timeout_minutes: Some(10),
                enabled: true,
                alert_after: None,
            },
        )
        .await?;
    let scheduler = {
        let store = store.clone();
        tokio::spawn(async move {
            loop {
                let _ = store.schedule_due(true).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };

    // The agent side: configuration in code, our runner and our client.
    let mut config = AgentConfig {
        polling_interval_seconds: 1,
        heartbeat_interval_seconds: 1,
        state_dir: dir.join("agent-state"),
        max_concurrent_tasks: Some(1),
        ..AgentConfig::default()
    };
    config.repositories.insert(
        "vault".into(),
        RepositoryConfig {
            init_if_missing: true,
            ..RepositoryConfig::new(dir.join("repository").display().to_string(), password)
        },
    );
    let runner = Arc::new(AuditingRunner {
        inner: TokioProcessRunner::new(),
    });
    let client = Arc::new(InProcessClient {
        store: store.clone(),
        agent: agent_id,
    });
    let agent = Agent::start(
        config,
        AgentOptions::default(),
        runner,
        client,
        Arc::new(SystemClock),
    )
    .await?;
    let running = {
        let agent = agent.clone();
        tokio::spawn(async move { agent.run(std::future::pending()).await })
    };

    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let done = loop {
        let tasks = store
            .list_tasks(tenant.id, &TaskFilter::default(), &PageRequest::first(10))
            .await?;
        if let Some(t) = tasks
            .items
            .iter()
            .find(|t| t.status == TaskStatus::Succeeded || t.failed_permanently)
        {
            break Some(t.clone());
        }
        if tokio::time::Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    agent.stop();
    running.await??;
    scheduler.abort();
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    match done {
        Some(task) if task.status == TaskStatus::Succeeded => {
            println!(
                "backup done: task {} succeeded on attempt {}",
                task.id, task.attempt
            );
            Ok(())
        }
        Some(task) => anyhow::bail!("the backup failed: {:?}", task.last_error),
        None => anyhow::bail!("no result within 90 s (is restic installed?)"),
    }
}
