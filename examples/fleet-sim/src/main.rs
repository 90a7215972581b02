//! # For operators and vendors: how far does one server go?
//!
//! Simulates N agents against a backup-server over HTTP: each heartbeats every
//! `--heartbeat-secs` and claims every `--claim-secs` (phases spread evenly), and runs what it
//! claims at once (start, then a succeeded result). At the end it prints the request rate,
//! latency percentiles per request kind, the errors, and the server's RSS when it knows its pid.
//!
//! Against a running server:
//! `cargo run --release -p example-fleet-sim -- --url http://127.0.0.1:8080 --admin-token ... --agents 10000`.
//! Without `--url` it starts a server in process on a temp SQLite file (or `--database`).
//! With `--tenant-flood N` it measures instead how one tenant flooding the server changes
//! another tenant's latency (`scripts/bench-tenant-flood.sh`).
#![allow(clippy::print_stdout)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use backup_core::SystemClock;
use clap::Parser;
use serde_json::{Value, json};
use tokio::sync::Mutex;

mod flood;

#[derive(Parser, Debug, Clone)]
#[command(about = "Simulates a fleet of agents against a backup-server")]
struct Args {
    /// The server; without it, one is started in process.
    #[arg(long)]
    url: Option<String>,
    /// The server's admin token (to create the tenant and agents).
    #[arg(long, default_value = "fleet-sim-admin-token-0123456789")]
    admin_token: String,
    /// Database of the in-process server.
    #[arg(long)]
    database: Option<String>,
    /// Simulated agents.
    #[arg(long, default_value_t = 100)]
    agents: usize,
    /// Seconds between one agent's heartbeats.
    #[arg(long, default_value_t = 60)]
    heartbeat_secs: u64,
    /// Seconds between one agent's claims.
    #[arg(long, default_value_t = 30)]
    claim_secs: u64,
    /// How long to run the fleet, after setup.
    #[arg(long, default_value_t = 120)]
    duration_secs: u64,
    /// Seconds at the start not counted in the figures (the first claims of a new fleet all
    /// find a task: every policy is due when created).
    #[arg(long, default_value_t = 0)]
    warmup_secs: u64,
    /// One `every 1h` backup policy per agent, so some claims return work.
    #[arg(long, default_value_t = true)]
    policies: bool,
    /// The server's pid, to report its RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Requests to make at once while creating agents.
    #[arg(long, default_value_t = 16)]
    setup_concurrency: usize,
    /// Instead of a fleet: one tenant floods the server (`--url`) from this many connections
    /// while another reads steadily; `--duration-secs` before and as long during the flood.
    #[arg(long)]
    tenant_flood: Option<usize>,
}

#[derive(Default)]
struct Samples {
    heartbeat: Vec<u32>,
    claim: Vec<u32>,
    start: Vec<u32>,
    result: Vec<u32>,
    errors: Vec<String>,
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    f64::from(sorted[rank.min(sorted.len() - 1)]) / 1000.0
}

fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")
                .map(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })?
}

async fn post(
    http: &reqwest::Client,
    url: String,
    token: &str,
    body: Value,
) -> Result<Value, String> {
    let answer = http
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = answer.status();
    let body: Value = answer.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("{status}: {body}"))
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(connections) = args.tenant_flood {
        let url = args.url.as_deref().context("--tenant-flood needs --url")?;
        let url = url.trim_end_matches('/');
        return flood::run(url, &args.admin_token, connections, args.duration_secs).await;
    }
    let dir = std::env::temp_dir().join(format!("fleet-sim-{}", std::process::id()));
    let mut in_process = None;
    let base = match &args.url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            std::fs::create_dir_all(&dir)?;
            let config = backup_server::ServerConfig {
                listen: "127.0.0.1:0".into(),
                database: args
                    .database
                    .clone()
                    .unwrap_or_else(|| format!("sqlite://{}", dir.join("sim.db").display())),
                admin_token: Some(args.admin_token.clone()),
                limits: backup_server::LimitsConfig {
                    agent_requests_per_second: 0,
                    tenant_requests_per_second: 0,
                    ..Default::default()
                },
                scheduler: backup_server::SchedulerConfig {
                    tick_seconds: 2,
                    ..Default::default()
                },
                ..Default::default()
            };
            let server = backup_server::Server::start(config, Arc::new(SystemClock)).await?;
            let url = server.url();
            in_process = Some(server);
            url
        }
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let tenant = post(
        &http,
        format!("{base}/tenants"),
        &args.admin_token,
        json!({"name": "fleet-sim"}),
    )
    .await
    .map_err(anyhow::Error::msg)
    .context("creating the tenant (is --admin-token the server's adminToken?)")?;
    let (tenant_id, tenant_token) = (
        tenant["id"].as_str().context("id")?.to_owned(),
        tenant["token"].as_str().context("token")?.to_owned(),
    );

    // Agents (and their policies), created a few at a time.
    let setup = Instant::now();
    let agents = Arc::new(Mutex::new(Vec::with_capacity(args.agents)));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..args.setup_concurrency.max(1) {
        let (http, base, tenant_id, tenant_token, agents, next, total, policies) = (
            http.clone(),
            base.clone(),
            tenant_id.clone(),
            tenant_token.clone(),
            agents.clone(),
            next.clone(),
            args.agents,
            args.policies,
        );
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<(), anyhow::Error>(());
                }
                let req = |path: &str, body: Value| {
                    http.post(format!("{base}{path}")).bearer_auth(&tenant_token).header("X-Tenant-ID", &tenant_id).json(&body).send()
                };
                let agent: Value = req("/agents", json!({"name": format!("sim-{i}"), "hostname": format!("sim-{i}")})).await?.json().await?;
                let id = agent["id"].as_str().context("agent id")?.to_owned();
                if policies {
                    req("/policies", json!({"name": "sim", "agentId": id, "kind": "backup", "schedule": {"every": "1h"}, "paths": ["/srv"], "repository": "main"})).await?;
                }
                agents.lock().await.push((id, agent["token"].as_str().context("agent token")?.to_owned()));
            }
        }));
    }
    for w in workers {
        w.await??;
    }
    let agents = Arc::try_unwrap(agents)
        .map_err(|_| anyhow::anyhow!("setup still running"))?
        .into_inner();
    println!(
        "setup: {} agents{} in {:.1?}",
        agents.len(),
        if args.policies {
            " with a policy each"
        } else {
            ""
        },
        setup.elapsed()
    );

    let samples = Arc::new(Mutex::new(Samples::default()));
    let started = Instant::now();
    let end = started + Duration::from_secs(args.duration_secs);
    let measure_from = started + Duration::from_secs(args.warmup_secs);
    let n = agents.len();
    let mut sims = Vec::with_capacity(n);
    for (i, (id, token)) in agents.into_iter().enumerate() {
        let (http, base, samples, args) =
            (http.clone(), base.clone(), samples.clone(), args.clone());
        let counted = move |at: Instant| at >= measure_from;
        sims.push(tokio::spawn(async move {
            // Spread the fleet evenly over the intervals.
            let phase = |every: u64| Duration::from_secs_f64(every as f64 * i as f64 / n as f64);
            let mut next_heartbeat = started + phase(args.heartbeat_secs);
            let mut next_claim = started + phase(args.claim_secs);
            loop {
                let at = next_heartbeat.min(next_claim);
                if at >= end {
                    return;
                }
                tokio::time::sleep_until(at.into()).await;
                if at == next_heartbeat {
                    next_heartbeat += Duration::from_secs(args.heartbeat_secs);
                    let t = Instant::now();
                    let r = post(&http, format!("{base}/agents/{id}/heartbeat"), &token, json!({"runningTasks": 0, "queueDepth": 0})).await;
                    let us = t.elapsed().as_micros() as u32;
                    if counted(t) {
                        let mut s = samples.lock().await;
                        s.heartbeat.push(us);
                        if let Err(e) = r {
                            s.errors.push(format!("heartbeat: {e}"));
                        }
                    }
                } else {
                    next_claim += Duration::from_secs(args.claim_secs);
                    let t = Instant::now();
                    let r = post(&http, format!("{base}/agents/{id}/tasks/claim"), &token, json!({"limit": 1})).await;
                    let us = t.elapsed().as_micros() as u32;
                    let tasks = match r {
                        Ok(body) => body["tasks"].as_array().cloned().unwrap_or_default(),
                        Err(e) => {
                            if counted(t) {
                                samples.lock().await.errors.push(format!("claim: {e}"));
                            }
                            Vec::new()
                        }
                    };
                    if counted(t) {
                        samples.lock().await.claim.push(us);
                    }
                    for task in tasks {
                        let (task_id, attempt) = (task["id"].as_str().unwrap_or_default().to_owned(), task["attempt"].clone());
                        let t = Instant::now();
                        let r = post(&http, format!("{base}/tasks/{task_id}/start"), &token, json!({"attempt": attempt})).await;
                        let start_us = t.elapsed().as_micros() as u32;
                        let t = Instant::now();
                        let r2 = post(&http, format!("{base}/tasks/{task_id}/result"), &token, json!({"attempt": attempt, "outcome": "succeeded", "snapshotId": "5151a5a5"})).await;
                        let result_us = t.elapsed().as_micros() as u32;
                        if !counted(t) {
                            continue;
                        }
                        let mut s = samples.lock().await;
                        s.start.push(start_us);
                        s.result.push(result_us);
                        for e in [r.err(), r2.err()].into_iter().flatten() {
                            s.errors.push(format!("task: {e}"));
                        }
                    }
                }
            }
        }));
    }
    for s in sims {
        s.await?;
    }
    let elapsed = measure_from.elapsed().as_secs_f64();
    let mut s = Arc::try_unwrap(samples)
        .map_err(|_| anyhow::anyhow!("simulation still running"))?
        .into_inner();
    let total = s.heartbeat.len() + s.claim.len() + s.start.len() + s.result.len();
    println!(
        "{n} agents, heartbeat every {} s, claim every {} s, {:.0} s measured (after {} s warm-up): {total} requests, {:.1} requests/s, {} errors",
        args.heartbeat_secs,
        args.claim_secs,
        elapsed,
        args.warmup_secs,
        total as f64 / elapsed,
        s.errors.len()
    );
    println!(
        "{:<10} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "request", "count", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    for (name, v) in [
        ("heartbeat", &mut s.heartbeat),
        ("claim", &mut s.claim),
        ("start", &mut s.start),
        ("result", &mut s.result),
    ] {
        v.sort_unstable();
        println!(
            "{name:<10} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            v.len(),
            percentile(v, 50.0),
            percentile(v, 90.0),
            percentile(v, 99.0),
            v.last().map_or(0.0, |m| f64::from(*m) / 1000.0)
        );
    }
    let pid = args
        .server_pid
        .or_else(|| in_process.as_ref().map(|_| std::process::id()));
    if let Some(kib) = pid.and_then(rss_kib) {
        println!(
            "server RSS: {:.1} MiB{}",
            kib as f64 / 1024.0,
            if in_process.is_some() {
                " (in process: includes the simulator)"
            } else {
                ""
            }
        );
    }
    for e in s.errors.iter().take(5) {
        println!("error: {e}");
    }
    if let Some(server) = in_process {
        server.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
    if !s.errors.is_empty() {
        bail!("{} requests failed", s.errors.len());
    }
    Ok(())
}
