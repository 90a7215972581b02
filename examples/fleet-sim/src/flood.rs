//! `--tenant-flood N`: one tenant floods the server from N connections while another tenant
//! reads at a steady 20 requests a second; prints the quiet tenant's latency before and during
//! the flood, and how the flood was answered (served, or 429 past
//! `limits.tenantRequestsPerSecond`).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::{percentile, post};

/// Policies per tenant: what each listing returns (under the default limit's burst of 100, so
/// that setting up does not trip it).
const POLICIES: usize = 60;

/// A tenant's id and token, with one agent and `policies` policies on it.
struct Tenant {
    id: String,
    token: String,
}

async fn tenant(
    http: &reqwest::Client,
    base: &str,
    admin: &str,
    name: &str,
    policies: usize,
) -> Result<Tenant> {
    let made = post(
        http,
        format!("{base}/tenants"),
        admin,
        json!({"name": name}),
    )
    .await
    .map_err(anyhow::Error::msg)
    .context("creating a tenant (is --admin-token the server's adminToken?)")?;
    let t = Tenant {
        id: made["id"].as_str().context("id")?.to_owned(),
        token: made["token"].as_str().context("token")?.to_owned(),
    };
    let send = |path: &str, body: Value| {
        http.post(format!("{base}{path}"))
            .bearer_auth(&t.token)
            .header("X-Tenant-ID", &t.id)
            .json(&body)
            .send()
    };
    let agent: Value = send("/agents", json!({"name": "db-1", "hostname": "db-1"}))
        .await?
        .json()
        .await?;
    let agent = agent["id"].as_str().context("agent id")?.to_owned();
    for i in 0..policies {
        let body = json!({"name": format!("p{i}"), "agentId": agent, "kind": "backup",
            "schedule": {"every": "1h"}, "paths": ["/srv"], "repository": "main"});
        let status = send("/policies", body).await?.status();
        anyhow::ensure!(status.is_success(), "creating a policy: {status}");
    }
    Ok(t)
}

/// `GET /policies?limit=100` as `t`: its status and how long it took (µs).
async fn list(http: &reqwest::Client, base: &str, t: &Tenant) -> (u16, u32) {
    let start = Instant::now();
    let status = match http
        .get(format!("{base}/policies?limit=100"))
        .bearer_auth(&t.token)
        .header("X-Tenant-ID", &t.id)
        .send()
        .await
    {
        Ok(answer) => {
            let status = answer.status().as_u16();
            let _ = answer.bytes().await;
            status
        }
        Err(_) => 0,
    };
    (
        status,
        u32::try_from(start.elapsed().as_micros()).unwrap_or(u32::MAX),
    )
}

/// The quiet tenant's latencies (µs) over `secs`, at 20 requests a second; errors counted.
async fn steady(http: &reqwest::Client, base: &str, t: &Tenant, secs: u64) -> (Vec<u32>, usize) {
    let mut every = tokio::time::interval(Duration::from_millis(50));
    let end = Instant::now() + Duration::from_secs(secs);
    let (mut samples, mut errors) = (Vec::new(), 0);
    while Instant::now() < end {
        every.tick().await;
        let (status, us) = list(http, base, t).await;
        if status == 200 {
            samples.push(us);
        } else {
            errors += 1;
        }
    }
    samples.sort_unstable();
    (samples, errors)
}

fn line(name: &str, v: &[u32], errors: usize) {
    println!(
        "{name:<22} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>7}",
        v.len(),
        percentile(v, 50.0),
        percentile(v, 99.0),
        v.last().map_or(0.0, |m| f64::from(*m) / 1000.0),
        errors
    );
}

/// Runs the scenario: `secs` quiet, then `secs` with the flood from `connections`.
pub(crate) async fn run(base: &str, admin: &str, connections: usize, secs: u64) -> Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(connections + 8)
        .build()?;
    let loud = Arc::new(tenant(&http, base, admin, "flood", POLICIES).await?);
    let quiet = tenant(&http, base, admin, "quiet", POLICIES).await?;
    let (before, before_errors) = steady(&http, base, &quiet, secs).await;

    let stop = Arc::new(AtomicBool::new(false));
    let (served, limited, failed) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut flood = Vec::new();
    for _ in 0..connections {
        let (http, base, loud, stop) = (http.clone(), base.to_owned(), loud.clone(), stop.clone());
        let (served, limited, failed) = (served.clone(), limited.clone(), failed.clone());
        flood.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let counter = match list(&http, &base, &loud).await.0 {
                    200 => &served,
                    429 => &limited,
                    _ => &failed,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    let (during, during_errors) = steady(&http, base, &quiet, secs).await;
    stop.store(true, Ordering::Relaxed);
    let flood_secs = started.elapsed().as_secs_f64();
    for f in flood {
        f.await?;
    }

    println!("GET /policies?limit=100 ({POLICIES} policies per tenant), quiet tenant at 20/s");
    println!(
        "{:<22} {:>7} {:>9} {:>9} {:>9} {:>7}",
        "quiet tenant", "count", "p50 ms", "p99 ms", "max ms", "errors"
    );
    line("before the flood", &before, before_errors);
    line("during the flood", &during, during_errors);
    let per_second = |n: &AtomicU64| n.load(Ordering::Relaxed) as f64 / flood_secs;
    println!(
        "flood from {connections} connections: {:.0}/s served, {:.0}/s answered 429, {:.0}/s failed",
        per_second(&served),
        per_second(&limited),
        per_second(&failed)
    );
    Ok(())
}
