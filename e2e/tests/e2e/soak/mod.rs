//! The chaos soak: two server replicas on a PostgreSQL of the test's own, four real agents with
//! real restic (two local repositories, one `rest:` repository shared by two hosts), policies
//! every few seconds, and faults at random moments from a printed seed: agents and servers
//! killed and restarted or frozen past their lease, the agents' networks cut (refused, reset,
//! stalled), settings lowered and raised, tasks cancelled, run-now, PostgreSQL crashed and
//! restarted once. Then a quiet period and a checker of invariants over the database, the
//! agents' state files, the repositories, the process table and the logs (see `checker`).
//!
//! Runs only with `BACKUP_SOAK_SECONDS` (the length of the faulty part); `BACKUP_SOAK_SEED`
//! replays a schedule of faults. Without it the test prints a notice (a failure under
//! `BACKUP_TEST_REQUIRE=soak`). `.ci/run` runs 3 minutes of it:
//! `BACKUP_SOAK_SECONDS=180 cargo test -p backup-e2e --test e2e -- soak:: --nocapture`.

mod checker;
mod diagnose;
mod faults;
mod observer;
mod postgres;
mod proxy;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use backup_testkit::TestAgent;
use serde_json::{Value, json};

use crate::{
    harness::{Api, ServerProc, World, agent_yaml},
    shared_repository::RestServer,
};
use faults::{AgentSlot, Rng, ServerSlot};
use observer::Observer;
use postgres::Cluster;
use proxy::Proxy;

/// How long a lease lasts and when a silent agent is offline, on the soak's servers: short, so
/// that freezes and cuts pass them many times.
const LEASE_SECONDS: u64 = 10;
const OFFLINE_AFTER_SECONDS: u64 = 15;
/// The starting `maxConcurrentTasks` of every agent.
const START_LIMIT: u32 = 2;

/// Everything the soak runs and what it did to it.
pub(crate) struct Soak {
    world: World,
    cluster: Cluster,
    _rest: RestServer,
    servers: Vec<ServerSlot>,
    apis: Vec<Api>,
    agents: Vec<AgentSlot>,
    /// Every policy: (id, agent index).
    policies: Vec<(String, usize)>,
    /// The repositories to read at the end: (url or path, password file).
    repositories: Vec<(PathBuf, PathBuf)>,
    rng: Rng,
    seed: u64,
    /// Faults injected, by kind.
    faults: std::collections::BTreeMap<&'static str, u32>,
    /// When each agent could not reach the servers (killed, frozen, cut): (agent, from, to).
    outages: Vec<(usize, Instant, Instant)>,
    /// When no server could be reached (PostgreSQL down, both replicas faulty): (from, to).
    blackouts: Vec<(Instant, Instant)>,
    /// Every fault as it happened: "+12.3 s agent-1 frozen for 7.0 s".
    journal: Vec<String>,
    started: Instant,
}

fn soak_seconds() -> Option<u64> {
    match std::env::var("BACKUP_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(s) => Some(s),
        None => {
            backup_testkit::skip(
                "soak",
                "BACKUP_SOAK_SECONDS is not set (the soak runs minutes)",
            );
            None
        }
    }
}

fn seed() -> u64 {
    std::env::var("BACKUP_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
        | 1
}

impl Soak {
    async fn set_up(seed: u64) -> Option<Soak> {
        backup_testkit::restic()?;
        let Some(cluster) = Cluster::start() else {
            backup_testkit::skip(
                "soak",
                "PostgreSQL's server programs (initdb) are not installed",
            );
            return None;
        };
        let world = World::on(cluster.url())?;
        let rest = RestServer::start(&world, false)?;
        let env = [
            (
                "BACKUP_SERVER_SCHEDULER__LEASE_SECONDS",
                LEASE_SECONDS.to_string(),
            ),
            (
                "BACKUP_SERVER_SCHEDULER__OFFLINE_AFTER_SECONDS",
                OFFLINE_AFTER_SECONDS.to_string(),
            ),
            ("RUST_LOG", "info".to_owned()),
        ];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let servers: Vec<ServerProc> = ["replica-a", "replica-b"]
            .iter()
            .map(|name| ServerProc::start_with_env(&world, name, &env))
            .collect();
        let api = servers[0].tenant_api().await;
        let apis = vec![api.via(servers[0].client()), api.via(servers[1].client())];
        let ports: Vec<u16> = servers.iter().map(ServerProc::port).collect();

        let data = world.data("data", 20, 8 * 1024);
        let local: Vec<(PathBuf, PathBuf)> = (0..2)
            .map(|i| world.repository(&format!("repo-{i}")))
            .collect();
        let shared = rest.repository(&world, "shared");
        let mut repositories = local.clone();
        repositories.push(shared.clone());

        let mut agents = Vec::new();
        let mut policies = Vec::new();
        let homes = [&local[0], &local[1], &shared, &shared];
        for (i, (repo, pw)) in homes.into_iter().enumerate() {
            let name = format!("agent-{i}");
            let creds = api.agent(&name).await;
            let proxy = Proxy::start(ports.clone()).await;
            let process = agent_yaml(
                &world,
                &name,
                &format!("http://127.0.0.1:{}", proxy.port),
                &creds,
                &[("main", repo, pw)],
                &format!(
                    "host: {name}\nmaxConcurrentTasks: {START_LIMIT}\nmaxConcurrentBackups: {START_LIMIT}\nmaxConcurrentChecks: 1\nmaxConcurrentPrunes: 1\n"
                ),
            )
            .start(&world);
            for body in policy_bodies(i, &creds, &data) {
                let made = api.post("/policies", body).await;
                policies.push((made["id"].as_str().expect("id").to_owned(), i));
            }
            agents.push(AgentSlot::new(name, creds, process, proxy, START_LIMIT));
        }
        Some(Soak {
            world,
            cluster,
            _rest: rest,
            servers: servers.into_iter().map(ServerSlot::new).collect(),
            apis,
            agents,
            policies,
            repositories,
            rng: Rng(seed),
            seed,
            faults: Default::default(),
            outages: Vec::new(),
            blackouts: Vec::new(),
            journal: Vec::new(),
            started: Instant::now(),
        })
    }

    /// The API through a replica that is up (the first one when both are).
    fn api(&self) -> &Api {
        let up = self.servers.iter().position(ServerSlot::is_up).unwrap_or(0);
        &self.apis[up]
    }

    /// Waits (up to 4 minutes) until every policy has a run that succeeded after `since`; the
    /// policies that did not, with what the server says about them.
    async fn wait_until_every_policy_succeeds(
        &self,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Vec<String> {
        let start = Instant::now();
        let deadline = start + Duration::from_secs(240);
        let mut told = false;
        loop {
            let runs = self.api().all("/backup-runs?status=succeeded").await;
            let stuck: Vec<&(String, usize)> = self
                .policies
                .iter()
                .filter(|(id, _)| {
                    !runs.iter().any(|r| {
                        r["policyId"] == id.as_str()
                            && r["finishedAt"]
                                .as_str()
                                .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok())
                                .is_some_and(|t| t > since)
                    })
                })
                .collect();
            if stuck.is_empty() {
                eprintln!(
                    "soak: every policy succeeded {:.1} s after the faults",
                    start.elapsed().as_secs_f64()
                );
                return Vec::new();
            }
            if !told && start.elapsed() > Duration::from_secs(60) {
                told = true;
                for (id, agent) in &stuck {
                    eprintln!("soak: still waiting: {}", self.why_stuck(id, *agent).await);
                }
            }
            if Instant::now() > deadline {
                let mut found = Vec::new();
                for (id, agent) in stuck {
                    found.push(self.why_stuck(id, *agent).await);
                }
                return found;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Disables every policy, waits until no task is open, then stops the agents with SIGTERM.
    async fn wind_down(&mut self) {
        for (id, _) in &self.policies {
            let (status, body) = self
                .api()
                .call(
                    "PATCH",
                    &format!("/policies/{id}"),
                    Some(json!({"enabled": false})),
                )
                .await;
            assert_eq!(status, 200, "{body}");
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            let mut open = 0;
            for status in ["pending", "claimed", "running"] {
                open += self
                    .api()
                    .all(&format!("/tasks?status={status}"))
                    .await
                    .len();
            }
            if open == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        for a in &mut self.agents {
            a.process.stop();
        }
    }
}

/// Agent `i`'s policies: two backups (every 5 s and every 7 s); a check on the local
/// repositories, a prune on the shared one (its own host's snapshots, keeping many).
fn policy_bodies(i: usize, agent: &TestAgent, data: &std::path::Path) -> Vec<Value> {
    let mut bodies = vec![
        json!({"name": format!("often-{i}"), "agentId": agent.id, "kind": "backup", "schedule": {"every": "5s"}, "paths": [data], "repository": "main"}),
        json!({"name": format!("steady-{i}"), "agentId": agent.id, "kind": "backup", "schedule": {"every": "7s"}, "paths": [data], "repository": "main"}),
    ];
    bodies.push(if i < 2 {
        json!({"name": format!("check-{i}"), "agentId": agent.id, "kind": "check", "schedule": {"every": "20s"}, "repository": "main"})
    } else {
        json!({"name": format!("prune-{i}"), "agentId": agent.id, "kind": "prune", "schedule": {"every": "30s"}, "repository": "main", "retention": {"keepLast": 1000}})
    });
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_at_random_lose_nothing() {
    let Some(seconds) = soak_seconds() else {
        return;
    };
    let seed = seed();
    eprintln!(
        "soak: seed {seed} (BACKUP_SOAK_SEED={seed} replays this schedule of faults), {seconds} s of faults"
    );
    let Some(mut soak) = Soak::set_up(seed).await else {
        return;
    };
    let observer = Observer::start(soak.world.marker());
    let started = Instant::now();
    soak.chaos(Duration::from_secs(seconds)).await;
    soak.heal().await;
    let quiet = chrono::Utc::now();
    eprintln!(
        "soak: faults over after {:?}; quiet period",
        started.elapsed()
    );
    let stuck = soak.wait_until_every_policy_succeeds(quiet).await;
    soak.wind_down().await;
    let record = observer.finish();
    let mut report = checker::check(&soak, &record).await;
    report.violations.extend(stuck);
    eprintln!("{}", report.summary(&soak, started.elapsed()));
    // An attempt that ran restic twice is kept for a look too (see docs/RELIABILITY.md).
    if !report.violations.is_empty() || !report.rerun.is_empty() {
        eprintln!("soak: the faults, in order:\n{}", soak.journal.join("\n"));
        soak.dump(&record).await;
        eprintln!(
            "soak: logs, state files and repositories kept in {}",
            soak.world.dir.keep().display()
        );
    }
    assert!(
        report.violations.is_empty(),
        "seed {seed}: invariants broken:\n{}",
        report.violations.join("\n")
    );
}

impl AgentSlot {
    fn state_dir(&self) -> &std::path::Path {
        &self.process.state_dir
    }
}
