//! The faults: a schedule drawn from the seed, one decision every 0.5-2.5 s, each agent and each
//! server under at most one fault at a time, and never both servers at once.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use super::{LEASE_SECONDS, OFFLINE_AFTER_SECONDS, Soak, proxy::Cut};
use crate::harness::{AgentProc, ServerProc};
use backup_testkit::TestAgent;

/// The least time between two faults of one agent.
const REST: Duration = Duration::from_secs(5);

/// xorshift64: the schedule, reproducible from the seed.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// A duration uniform in [lo, hi] seconds, to the millisecond.
    fn secs(&mut self, lo: f64, hi: f64) -> Duration {
        let unit = (self.next() % 1_000_001) as f64 / 1_000_000.0;
        Duration::from_secs_f64(lo + (hi - lo) * unit)
    }
}

/// What holds an agent down, and until when.
#[derive(Clone, Copy, Debug)]
enum AgentFault {
    Killed,
    Frozen,
    Cut,
}

pub(crate) struct AgentSlot {
    pub(crate) name: String,
    pub(crate) creds: TestAgent,
    pub(crate) process: AgentProc,
    pub(crate) proxy: super::Proxy,
    /// (since, until, what).
    fault: Option<(Instant, Instant, AgentFault)>,
    /// When its last fault ended: a new one waits `REST` after it, so that outages stay apart
    /// (the agent reaches the servers in between) and the checker can count them.
    free_since: Instant,
    /// `maxConcurrentTasks` over time: (from when, value).
    pub(crate) limits: Vec<(Instant, u32)>,
}

impl AgentSlot {
    pub(crate) fn new(
        name: String,
        creds: TestAgent,
        process: AgentProc,
        proxy: super::Proxy,
        limit: u32,
    ) -> AgentSlot {
        AgentSlot {
            name,
            creds,
            process,
            proxy,
            fault: None,
            free_since: Instant::now(),
            limits: vec![(Instant::now(), limit)],
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum ServerFault {
    Killed,
    Frozen,
}

pub(crate) struct ServerSlot {
    pub(crate) process: ServerProc,
    fault: Option<(Instant, ServerFault)>,
}

impl ServerSlot {
    pub(crate) fn new(process: ServerProc) -> ServerSlot {
        ServerSlot {
            process,
            fault: None,
        }
    }

    pub(crate) fn is_up(&self) -> bool {
        self.fault.is_none()
    }
}

fn signal(pid: Option<u32>, signal: Signal) {
    if let Some(pid) = pid {
        let _ = kill(Pid::from_raw(pid as i32), signal);
    }
}

impl Soak {
    /// Counts a fault of `kind` and writes it in the journal, with what it was done to.
    fn count(&mut self, kind: &'static str) {
        self.note(kind, "");
    }

    fn note(&mut self, kind: &'static str, detail: &str) {
        *self.faults.entry(kind).or_default() += 1;
        let at = self.started.elapsed().as_secs_f64();
        self.journal.push(format!("+{at:7.1} s  {kind} {detail}"));
    }

    /// Faults for `length`, then every fault still on is left to `heal`.
    pub(crate) async fn chaos(&mut self, length: Duration) {
        let end = Instant::now() + length;
        // PostgreSQL is crashed once, somewhere in the middle.
        let crash_at =
            Instant::now() + length.mul_f64(0.3 + 0.4 * self.rng.secs(0.0, 1.0).as_secs_f64());
        let mut crashed = false;
        while Instant::now() < end {
            self.recover_due(false).await;
            if !crashed && Instant::now() >= crash_at {
                crashed = true;
                self.crash_postgres();
                continue;
            }
            let wait = self.rng.secs(0.5, 2.5);
            match self.rng.below(100) {
                0..20 => self.agent_fault(),
                20..26 => self.server_fault(),
                26..38 => self.patch_limits().await,
                38..48 => self.cancel_a_task().await,
                48..58 => self.run_now().await,
                _ => {}
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Ends every fault still on.
    pub(crate) async fn heal(&mut self) {
        self.recover_due(true).await;
    }

    /// Ends the faults whose time is up (all of them with `all`).
    async fn recover_due(&mut self, all: bool) {
        let now = Instant::now();
        for i in 0..self.agents.len() {
            let Some((since, until, fault)) = self.agents[i].fault else {
                continue;
            };
            if !all && until > now {
                continue;
            }
            let a = &mut self.agents[i];
            match fault {
                AgentFault::Killed => a.process.restart(),
                AgentFault::Frozen => signal(a.process.pid(), Signal::SIGCONT),
                AgentFault::Cut => a.proxy.set(Cut::Open),
            }
            a.fault = None;
            a.free_since = Instant::now();
            self.outages.push((i, since, Instant::now()));
        }
        for s in &mut self.servers {
            let Some((until, fault)) = s.fault else {
                continue;
            };
            if !all && until > now {
                continue;
            }
            match fault {
                ServerFault::Killed => tokio::task::block_in_place(|| s.process.restart()),
                ServerFault::Frozen => signal(s.process.pid(), Signal::SIGCONT),
            }
            s.fault = None;
        }
    }

    /// An agent without a fault is killed, frozen or cut off for 1-25 s (often past the lease
    /// and past `offlineAfterSeconds`).
    fn agent_fault(&mut self) {
        let free: Vec<usize> = (0..self.agents.len())
            .filter(|i| {
                let a = &self.agents[*i];
                a.fault.is_none() && a.free_since.elapsed() >= REST
            })
            .collect();
        if free.is_empty() {
            return;
        }
        let i = free[self.rng.below(free.len())];
        let long = (LEASE_SECONDS.max(OFFLINE_AFTER_SECONDS) + 10) as f64;
        let length = self.rng.secs(1.0, long);
        let now = Instant::now();
        let fault = match self.rng.below(5) {
            0 => {
                self.agents[i].process.kill9();
                self.count("agent killed (SIGKILL)");
                AgentFault::Killed
            }
            1 => {
                signal(self.agents[i].process.pid(), Signal::SIGSTOP);
                self.count("agent frozen (SIGSTOP)");
                AgentFault::Frozen
            }
            n => {
                let cut = [Cut::Refuse, Cut::Reset, Cut::Stall][n - 2];
                self.agents[i].proxy.set(cut);
                self.count(cut.name());
                AgentFault::Cut
            }
        };
        if let Some(last) = self.journal.last_mut() {
            last.push_str(&format!(
                "{} for {:.1} s",
                self.agents[i].name,
                length.as_secs_f64()
            ));
        }
        self.agents[i].fault = Some((now, now + length, fault));
    }

    /// A server is killed (restarted 0.5-5 s later) or frozen (1-8 s), while the other is up.
    fn server_fault(&mut self) {
        if self.servers.iter().any(|s| !s.is_up()) {
            return;
        }
        let i = self.rng.below(self.servers.len());
        let now = Instant::now();
        let killed = self.rng.below(2) == 0;
        let length = if killed {
            self.rng.secs(0.5, 5.0)
        } else {
            self.rng.secs(1.0, 8.0)
        };
        let s = &mut self.servers[i];
        let kind = if killed {
            s.process.kill9();
            s.fault = Some((now + length, ServerFault::Killed));
            "server killed (SIGKILL)"
        } else {
            signal(s.process.pid(), Signal::SIGSTOP);
            s.fault = Some((now + length, ServerFault::Frozen));
            "server frozen (SIGSTOP)"
        };
        let detail = format!("replica {i} for {:.1} s", length.as_secs_f64());
        self.note(kind, &detail);
    }

    /// PostgreSQL stops at once (no checkpoint, as in a crash) and starts 2-6 s later.
    fn crash_postgres(&mut self) {
        let down = self.rng.secs(2.0, 6.0);
        let from = Instant::now();
        tokio::task::block_in_place(|| self.cluster.crash_and_restart(down));
        self.blackouts.push((from, Instant::now()));
        self.note(
            "PostgreSQL crashed and restarted",
            &format!("(down {:.1} s)", down.as_secs_f64()),
        );
    }

    /// A tenant call through a replica that is up, bounded: (status, body); 0 when it did not
    /// answer in time.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        tokio::time::timeout(Duration::from_secs(15), self.api().call(method, path, body))
            .await
            .unwrap_or((0, Value::Null))
    }

    /// An agent's `maxConcurrentTasks` (and backups) set to 1-3.
    async fn patch_limits(&mut self) {
        let i = self.rng.below(self.agents.len());
        let limit = 1 + self.rng.below(3) as u32;
        let path = format!("/agents/{}/settings", self.agents[i].creds.id);
        let body = json!({"maxConcurrentTasks": limit, "maxConcurrentBackups": limit});
        let (status, _) = self.call("PATCH", &path, Some(body)).await;
        if status == 200 {
            self.agents[i].limits.push((Instant::now(), limit));
            let detail = format!("{}: maxConcurrentTasks {limit}", self.agents[i].name);
            self.note("settings patched", &detail);
        }
    }

    /// A random open task is cancelled.
    async fn cancel_a_task(&mut self) {
        let status = ["pending", "claimed", "running"][self.rng.below(3)];
        let (code, body) = self
            .call("GET", &format!("/tasks?status={status}"), None)
            .await;
        let ids: Vec<String> = if code == 200 {
            body["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["id"].as_str().map(str::to_owned))
                .collect()
        } else {
            Vec::new()
        };
        if ids.is_empty() {
            return;
        }
        let id = &ids[self.rng.below(ids.len())];
        let (code, _) = self
            .call("POST", &format!("/tasks/{id}/cancel"), None)
            .await;
        if code == 200 {
            let detail = format!("{id} ({status})");
            self.note("task cancelled", &detail);
        }
    }

    /// Run-now of a random policy.
    async fn run_now(&mut self) {
        let (id, _) = &self.policies[self.rng.below(self.policies.len())];
        let (code, _) = self
            .call("POST", &format!("/policies/{id}/run"), Some(json!({})))
            .await;
        if code == 201 {
            let detail = format!("policy {id}");
            self.note("run-now", &detail);
        }
    }
}
