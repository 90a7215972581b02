//! Measures run-now-to-restic-start latency on an idle agent, with long polls and with plain
//! polling: a real `backup-server` on a socket (embedded SQLite), a real agent over HTTP, and a
//! process runner that notes the moment the agent hands it restic's `backup` command (and
//! answers it at once, so that the agent is idle again for the next sample).
//!
//! `cargo run -p backup-agent --example run_now_latency -- [samples] [pollingIntervalSeconds]`
//! (defaults 30 and 10). Figures in docs/BENCHMARKS.md.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use backup_agent::{Agent, AgentConfig, AgentOptions, HttpClient, RepositoryConfig};
use backup_core::{
    Error, ExitStatus, ProcessControl, ProcessOutcome, ProcessRunner, ProcessSpec, RandomSource,
    SplitMix64, SystemClock,
};
use backup_server::{LimitsConfig, Server, ServerConfig};
use backup_testkit::{Client, Http, TenantApi, TestAgent};
use serde_json::json;
use tokio::{sync::mpsc, time::Instant};

/// Answers restic's commands at once; reports when a backup starts.
struct Timing {
    started: mpsc::UnboundedSender<Instant>,
}

#[async_trait]
impl ProcessRunner for Timing {
    async fn run(&self, spec: ProcessSpec, _: ProcessControl) -> Result<ProcessOutcome, Error> {
        let stdout = match spec.args.first().map(String::as_str) {
            Some("version") => "restic 0.14.0 compiled with go1.19.8 on linux/amd64\n",
            Some("snapshots") => "[]",
            Some("backup") => {
                let _ = self.started.send(Instant::now());
                ""
            }
            _ => "",
        };
        Ok(ProcessOutcome {
            status: ExitStatus::Code(0),
            terminated: None,
            stdout_tail: stdout.into(),
            stderr_tail: String::new(),
            duration: Duration::from_millis(1),
        })
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn measure(samples: usize, polling: u32, wait: u32) -> Vec<Duration> {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(
        ServerConfig {
            listen: "127.0.0.1:0".into(),
            database: format!("sqlite://{}", dir.path().join("s.db").display()),
            limits: LimitsConfig {
                agent_requests_per_second: 0,
                ..LimitsConfig::default()
            },
            ..ServerConfig::default()
        },
        Arc::new(SystemClock),
    )
    .await
    .expect("server");
    let tenant = server
        .state()
        .store()
        .create_tenant("bench")
        .await
        .expect("tenant");
    let api = TenantApi::new(Client::new(Http::new(&server.url())), tenant);
    let agent: TestAgent = api.agent("idle").await;
    let password = dir.path().join("pw");
    std::fs::write(&password, "pw").expect("pw");
    let mut config = AgentConfig {
        orchestrator_url: server.url(),
        agent_id: Some(agent.id.to_string()),
        token: Some(agent.token.clone()),
        state_dir: dir.path().join("state"),
        polling_interval_seconds: polling,
        claim_wait_seconds: wait,
        heartbeat_interval_seconds: 60,
        ..AgentConfig::default()
    };
    config.repositories.insert(
        "main".into(),
        RepositoryConfig::new(dir.path().join("repo").display().to_string(), &password),
    );
    let (tx, mut started) = mpsc::unbounded_channel();
    let client = Arc::new(HttpClient::from_config(&config).expect("client"));
    let running = Agent::start(
        config,
        AgentOptions::default(),
        Arc::new(Timing { started: tx }),
        client,
        Arc::new(SystemClock),
    )
    .await
    .expect("agent");
    let run = {
        let a = running.clone();
        tokio::spawn(async move { a.run(std::future::pending()).await })
    };
    // Due once a year: only run-now makes tasks.
    let policy = api
        .post(
            "/policies",
            json!({"name": "p", "agentId": agent.id, "kind": "backup",
                   "schedule": {"cron": "0 0 1 1 *"}, "paths": ["/srv"], "repository": "main"}),
        )
        .await;
    let id = policy["id"].as_str().expect("id").to_owned();
    let mut rng = SplitMix64::new(7);
    let mut latencies = Vec::with_capacity(samples);
    // Let the first heartbeat and claim happen.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for _ in 0..samples {
        // A random moment in the agent's polling cycle.
        let pause = rng.next_u64() % (u64::from(polling) * 1000);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        // The previous task must be closed, or run-now answers 409.
        loop {
            let open = api
                .all(&format!("/tasks?policyId={id}"))
                .await
                .iter()
                .any(|t| {
                    matches!(
                        t["status"].as_str(),
                        Some("pending" | "claimed" | "running")
                    )
                });
            if !open {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let asked = Instant::now();
        let (status, body) = api
            .call("POST", &format!("/policies/{id}/run"), Some(json!({})))
            .await;
        assert_eq!(status, 201, "{body}");
        let at = started.recv().await.expect("a backup started");
        latencies.push(at.saturating_duration_since(asked));
    }
    running.stop();
    let _ = run.await;
    server.shutdown().await;
    latencies.sort();
    latencies
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let samples: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(30);
    let polling: u32 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);
    println!("run-now to restic start on an idle agent, {samples} samples each");
    for (label, wait) in [
        ("long poll (claimWaitSeconds 25)", 25),
        ("plain polling", 0),
    ] {
        let l = measure(samples, polling, wait).await;
        println!(
            "{label}, pollingIntervalSeconds {polling}: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            percentile(&l, 0.5).as_secs_f64() * 1000.0,
            percentile(&l, 0.99).as_secs_f64() * 1000.0,
            l.last().expect("samples").as_secs_f64() * 1000.0
        );
    }
}
