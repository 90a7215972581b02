//! # For vendors: your own orchestrator on `backup-core` + `backup-store`
//!
//! No HTTP server at all: the scheduling loop calls the store directly, and a stand-in agent
//! (here in the same process) heartbeats, claims and reports through the same store API an HTTP
//! layer would call. Swap the stand-in for your transport (gRPC, a message bus) and keep the
//! semantics: slots, skips by capacity and backoff, leases, retries decided by the retry budget.
//!
//! Run it: `cargo run -p example-custom-orchestrator` (a temp SQLite file; pass a
//! `postgres://` URL as the first argument to use PostgreSQL).
#![allow(clippy::print_stdout)]

use std::sync::Arc;

use backup_core::{
    AttemptOutcome, AttemptReport, ClaimRequest, CreateAgent, ErrorClass, Heartbeat, ManualClock,
    PolicySpec, ScheduleSpec, TaskKind,
};
use backup_store::{PageRequest, Store, StoreConfig, TaskFilter};
use chrono::TimeDelta;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("custom-orchestrator-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| format!("sqlite://{}", dir.join("orchestrator.db").display()));
    // A manual clock lets the example walk through an hour in a few lines; use SystemClock in
    // production.
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let store = Store::open(&url, StoreConfig::default(), clock.clone()).await?;
    println!("store: {} ({})", store.backend_name(), url);

    let tenant = store.create_tenant("acme").await?;
    let agent = store
        .create_agent(
            tenant.id,
            &CreateAgent {
                name: "db-1".into(),
                hostname: "db-1".into(),
            },
        )
        .await?;
    let agent_id = agent.agent.id;
    let policy = |name: &str, kind: TaskKind| PolicySpec {
        name: name.into(),
        agent_id,
        kind,
        schedule: ScheduleSpec::every("15m"),
        paths: if kind == TaskKind::Backup {
            vec!["/srv".into()]
        } else {
            vec![]
        },
        excludes: vec![],
        repository: "main".into(),
        retention: None,
        max_task_retries: Some(2),
        timeout_minutes: None,
        enabled: true,
        alert_after: None,
    };
    store
        .create_policy(tenant.id, &policy("databases", TaskKind::Backup))
        .await?;
    store
        .create_policy(tenant.id, &policy("verify", TaskKind::Check))
        .await?;

    // One hour in 15-minute steps: tick, let the stand-in agent work, report.
    for step in 0..5 {
        // The agent's heartbeat: it is online, nothing runs, no backoff.
        store.heartbeat(agent_id, &Heartbeat::default()).await?;
        let tick = store.schedule_due(true).await?;
        let lapses = store.lapse_leases().await?;
        println!(
            "t+{:>2}m  tick: {} created, skipped {:?}, {} leases lapsed",
            step * 15,
            tick.created,
            tick.skipped,
            lapses.returned + lapses.lost
        );

        let claimed = store
            .claim(
                agent_id,
                &ClaimRequest {
                    limit: 10,
                    per_kind: None,
                    wait_seconds: 0,
                },
            )
            .await?;
        for task in claimed.tasks {
            store.start_task(agent_id, task.id, task.attempt).await?;
            // The stand-in fails every check's first attempt to show the retry budget at work.
            let report = if task.kind == TaskKind::Check && task.attempt == 1 {
                AttemptReport {
                    error_kind: Some(ErrorClass::Retriable),
                    error: Some("repository is already locked".into()),
                    ..AttemptReport::new(task.attempt, AttemptOutcome::Failed)
                }
            } else {
                AttemptReport {
                    snapshot_id: Some("cafe0001".into()),
                    ..AttemptReport::new(task.attempt, AttemptOutcome::Succeeded)
                }
            };
            let answer = store.report_result(agent_id, task.id, &report).await?;
            println!(
                "        {:<6} attempt {} -> {:?}{}",
                task.kind.as_str(),
                task.attempt,
                answer.task.status,
                answer
                    .task
                    .next_retry_at
                    .map(|t| format!(" (retry at {})", t.format("%H:%M:%S")))
                    .unwrap_or_default()
            );
        }
        clock.advance(TimeDelta::minutes(15));
    }
    let tasks = store
        .list_tasks(tenant.id, &TaskFilter::default(), &PageRequest::first(100))
        .await?;
    println!(
        "{} tasks in the store; statuses: {:?}",
        tasks.items.len(),
        tasks.items.iter().map(|t| t.status).collect::<Vec<_>>()
    );
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
