//! The Quickstart demo (`./demo.sh` builds and runs it).
//!
//! Starts `backup-server` on an embedded SQLite file and one `backup-agent`, both from this
//! build, creates a tenant, an agent and backup / check / prune policies over a sample
//! directory into a local restic repository, plus one policy whose repository is unreachable so
//! that retries, repository backoff and a permanent failure show. Prints a live status; once
//! the first snapshot is listed, a file of the sample is lost, browsed for and restored through
//! the API (`restore.rs`). Then keeps both running until Ctrl-C.
#![allow(clippy::print_stdout)]

mod restore;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// How long the live status runs before the demo settles down.
const STORY_SECONDS: u64 = 100;

struct Api {
    base: String,
    tenant: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("X-Tenant-ID", &self.tenant);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let answer = req.send().await?;
        let status = answer.status();
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path}: {status}: {body}");
        }
        Ok(body)
    }

    async fn items(&self, path: &str) -> Result<Vec<Value>> {
        Ok(self.call(reqwest::Method::GET, path, None).await?["items"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

fn free_port(preferred: u16) -> u16 {
    if std::net::TcpListener::bind(("127.0.0.1", preferred)).is_ok() {
        return preferred;
    }
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map_or(preferred, |a| a.port())
}

fn sample_data(dir: &Path) -> Result<PathBuf> {
    let data = dir.join("sample");
    std::fs::create_dir_all(data.join("documents"))?;
    std::fs::write(data.join("README.txt"), "Files the demo backs up.\n")?;
    std::fs::write(
        data.join("documents/plan.md"),
        "# Plan\n- back up\n- check\n- prune\n",
    )?;
    let mut bytes = vec![0u8; 2 * 1024 * 1024];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D ^ u64::from(std::process::id());
    for b in &mut bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(data.join("photo.raw"), bytes)?;
    Ok(data)
}

fn spawn(binary: &Path, args: &[&str], envs: &[(&str, String)], log: &Path) -> Result<Child> {
    let log = std::fs::File::create(log)?;
    Command::new(binary)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))
}

/// The end of a message: restic puts the cause last.
fn tail(text: &str, n: usize) -> String {
    let one_line = text.replace('\n', " ");
    let count = one_line.chars().count();
    if count <= n {
        one_line
    } else {
        format!("…{}", one_line.chars().skip(count - n).collect::<String>())
    }
}

fn relative(ts: &Value) -> String {
    let Some(t) = ts
        .as_str()
        .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok())
    else {
        return "-".into();
    };
    let secs = (t - chrono::Utc::now()).num_seconds();
    if secs >= 0 {
        format!("in {secs}s")
    } else {
        format!("{}s ago", -secs)
    }
}

async fn status(api: &Api, policies: &[(String, &str)]) -> Result<()> {
    // A restore or a listing belongs to no policy: "-".
    let name_of = |id: &Value| {
        policies
            .iter()
            .find(|(pid, _)| id == pid.as_str())
            .map_or("-", |(_, n)| *n)
    };
    println!("\n=== {} ===", chrono::Utc::now().format("%H:%M:%S"));
    for a in api.items("/agents").await? {
        let backoff = match a["backoffUntil"].as_str() {
            Some(until) => format!("backoff until {until} ({})", relative(&a["backoffUntil"])),
            None => "no backoff".into(),
        };
        println!(
            "agent {:<8} {:<10} running {}/{}  queued {}  pending retries {}  {}",
            a["name"].as_str().unwrap_or("?"),
            a["status"].as_str().unwrap_or("?"),
            a["runningTasks"],
            a["settings"]["maxConcurrentTasks"],
            a["queueDepth"],
            a["pendingRetries"],
            backoff
        );
    }
    println!(
        "{:<16} {:<7} {:<19} {:>7} {:>9} {:<12} last error",
        "policy", "kind", "status", "attempt", "retries", "next retry"
    );
    for t in api.items("/tasks?limit=8").await? {
        println!(
            "{:<16} {:<7} {:<19} {:>7} {:>9} {:<12} {}",
            name_of(&t["policyId"]),
            t["kind"].as_str().unwrap_or("?"),
            t["status"].as_str().unwrap_or("?"),
            t["attempt"],
            format!("{}/{}", t["retryCount"], t["maxRetries"]),
            relative(&t["nextRetryAt"]),
            tail(t["lastError"].as_str().unwrap_or(""), 70)
        );
    }
    // The agent's inventory: what restic holds, as the server lists it (`GET /snapshots`).
    let all = api.items("/snapshots?limit=500").await?;
    let snapshots: Vec<String> = all
        .iter()
        .take(3)
        .map(|s| {
            format!(
                "{} of {} ({} new files, {} bytes added)",
                s["shortId"].as_str().unwrap_or("?"),
                name_of(&s["policyId"]),
                s["filesNew"],
                s["dataAdded"]
            )
        })
        .collect();
    println!(
        "snapshots in the repositories: {}; newest: {}",
        all.len(),
        if snapshots.is_empty() {
            "none yet".into()
        } else {
            snapshots.join("; ")
        }
    );
    // Protection at a glance, and the alerts as they land (GET /summary, GET /events).
    let summary = api.call(reqwest::Method::GET, "/summary", None).await?;
    let protection: Vec<String> = summary["policies"]
        .as_object()
        .map(|counts| {
            counts
                .iter()
                .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
                .map(|(p, n)| format!("{p} {n}"))
                .collect()
        })
        .unwrap_or_default();
    println!("policies by protection: {}", protection.join(", "));
    for e in api.items("/events?limit=3").await? {
        let about = e["data"]["name"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| e["data"]["kind"].as_str().map(|k| format!("a {k} task")))
            .unwrap_or_default();
        println!(
            "event {:<24} {:<8} {} ({})",
            e["type"].as_str().unwrap_or("?"),
            e["actor"].as_str().unwrap_or("?"),
            about,
            relative(&e["time"])
        );
    }
    Ok(())
}

/// The first minutes, with a status every 5 seconds and the restore scene once a snapshot is
/// there.
async fn story(
    api: &Api,
    policies: &[(String, &str)],
    agent: &mut Child,
    dir: &Path,
    scene: &restore::Scene,
) -> Result<()> {
    let started = Instant::now();
    let mut restored = false;
    while started.elapsed() < Duration::from_secs(STORY_SECONDS) {
        if let Some(exit) = agent.try_wait()? {
            bail!(
                "the agent stopped ({exit}); see {}",
                dir.join("agent.log").display()
            );
        }
        if let Err(e) = status(api, policies).await {
            println!("(status unavailable: {e})");
        }
        if !restored {
            match scene.play(api).await {
                Ok(played) => restored = played,
                Err(e) => {
                    println!("(the restore scene failed: {e:#})");
                    restored = true;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let bin_dir = std::env::current_exe()?
        .parent()
        .context("binary directory")?
        .to_owned();
    let (server_bin, agent_bin) = (bin_dir.join("backup-server"), bin_dir.join("backup-agent"));
    for b in [&server_bin, &agent_bin] {
        if !b.exists() {
            bail!(
                "{} is missing: build with `cargo build --release -p backup-server -p backup-agent -p backup-demo` (./demo.sh does)",
                b.display()
            );
        }
    }
    let dir = std::env::current_dir()?.join("demo-data");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).context("clearing demo-data from a previous run")?;
    }
    std::fs::create_dir_all(&dir)?;
    let data = sample_data(&dir)?;
    let password = dir.join("repository-password");
    std::fs::write(&password, "demo password: keep it somewhere safe\n")?;

    let port = free_port(8080);
    let base = format!("http://127.0.0.1:{port}");
    let admin = format!(
        "demo-admin-token-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    );
    let mut server = spawn(
        &server_bin,
        &[],
        &[
            ("BACKUP_SERVER_LISTEN", format!("127.0.0.1:{port}")),
            (
                "BACKUP_SERVER_DATABASE",
                format!("sqlite://{}", dir.join("server.db").display()),
            ),
            ("BACKUP_SERVER_ADMIN_TOKEN", admin.clone()),
            ("BACKUP_SERVER_SCHEDULER__TICK_SECONDS", "2".into()),
            ("BACKUP_SERVER_SCHEDULER__LEASE_SECONDS", "60".into()),
            (
                "BACKUP_SERVER_SCHEDULER__OFFLINE_AFTER_SECONDS",
                "30".into(),
            ),
        ],
        &dir.join("server.log"),
    )?;
    let http = reqwest::Client::new();
    let started = Instant::now();
    loop {
        let ready = http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            break;
        }
        if started.elapsed() > Duration::from_secs(20) || server.try_wait()?.is_some() {
            bail!(
                "the server did not start; see {}",
                dir.join("server.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "backup-server is up at {base} (SQLite: {})",
        dir.join("server.db").display()
    );

    let tenant: Value = http
        .post(format!("{base}/tenants"))
        .bearer_auth(&admin)
        .json(&json!({"name": "demo"}))
        .send()
        .await?
        .json()
        .await?;
    let api = Api {
        base: base.clone(),
        tenant: tenant["id"].as_str().context("tenant id")?.into(),
        token: tenant["token"].as_str().context("tenant token")?.into(),
        http: http.clone(),
    };
    println!(
        "Dashboard: {base}/ui (open it now to watch; log in with tenant id {} and token {})",
        api.tenant, api.token
    );
    let agent = api
        .call(
            reqwest::Method::POST,
            "/agents",
            Some(json!({"name": "laptop", "hostname": "laptop"})),
        )
        .await?;
    let agent_id = agent["id"].as_str().context("agent id")?.to_owned();
    let unreachable = format!("rest:http://127.0.0.1:{}/", free_port(1));
    let yaml = format!(
        "orchestratorUrl: {base}\npollingIntervalSeconds: 2\nheartbeatIntervalSeconds: 2\nagentId: {agent_id}\n\
         token: {}\nstateDir: {}\nmaxConcurrentTasks: 2\nmaxConcurrentBackups: 2\ncpuQuotaPercent: 50\n\
         maxRetries: 3\nmaxBackoffMinutes: 1\nbackoffBaseSeconds: 5\nbackoffFailureThreshold: 2\n\
         repositoryTimeoutSeconds: 10\n\
         repositories:\n  local:\n    url: {}\n    passwordFile: {}\n    initIfMissing: true\n  \
         offsite:\n    url: {unreachable}\n    passwordFile: {}\n",
        agent["token"].as_str().context("agent token")?,
        dir.join("agent-state").display(),
        dir.join("repository").display(),
        password.display(),
        password.display()
    );
    let agent_config = dir.join("agent.yaml");
    std::fs::write(&agent_config, yaml)?;
    let config_arg = agent_config.to_str().context("utf8 path")?;
    let mut agent_child = spawn(
        &agent_bin,
        &["--config", config_arg],
        &[],
        &dir.join("agent.log"),
    )?;

    let sample = data.display().to_string();
    let specs = [
        (
            "backup every 30s",
            json!({"kind": "backup", "schedule": {"every": "30s"}, "paths": [sample], "repository": "local"}),
        ),
        (
            "check every 1m",
            json!({"kind": "check", "schedule": {"every": "1m"}, "repository": "local"}),
        ),
        (
            "prune every 2m",
            json!({"kind": "prune", "schedule": {"every": "2m"}, "repository": "local", "retention": {"keepLast": 3}}),
        ),
        (
            "offsite (down)",
            json!({"kind": "backup", "schedule": {"every": "30m"}, "paths": [sample], "repository": "offsite"}),
        ),
    ];
    let mut policies = Vec::new();
    for (name, spec) in specs {
        let mut body = spec;
        body["name"] = json!(name);
        body["agentId"] = json!(agent_id);
        let p = api
            .call(reqwest::Method::POST, "/policies", Some(body))
            .await?;
        policies.push((p["id"].as_str().context("policy id")?.to_owned(), name));
    }
    println!(
        "agent 'laptop' started; policies: backup, check and prune into {}, and a backup to {unreachable} \
         (nothing listens there: it fails, retries with backoff, then fails for good)",
        dir.join("repository").display()
    );

    let scene = restore::Scene {
        agent_id: agent_id.clone(),
        data: data.clone(),
        restores: dir.join("agent-state").join("restores"),
    };
    let (outcome, interrupted) = tokio::select! {
        r = story(&api, &policies, &mut agent_child, &dir, &scene) => (r, false),
        () = backup_config::shutdown_signal() => (Ok(()), true),
    };
    if outcome.is_ok() && !interrupted {
        println!("\nThe demo keeps running. Server: {base}");
        println!(
            "Dashboard: {base}/ui (log in with tenant id {} and token {})",
            api.tenant, api.token
        );
        println!(
            "Try:  curl -s -H 'X-Tenant-ID: {}' -H 'Authorization: Bearer {}' {base}/tasks",
            api.tenant, api.token
        );
        println!(
            "Logs: {} and {}; the restic repository: {} (password in {})",
            dir.join("server.log").display(),
            dir.join("agent.log").display(),
            dir.join("repository").display(),
            password.display()
        );
        println!("Press Ctrl-C to stop the server and the agent.");
        backup_config::shutdown_signal().await;
    }
    println!("Stopping the agent and the server...");
    for child in [&mut agent_child, &mut server] {
        if let Some(pid) = child.id() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
    }
    outcome
}
