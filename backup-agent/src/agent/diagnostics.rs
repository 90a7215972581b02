//! What the agent says about itself: the gauges of its metrics, and the diagnostics that
//! `backup-agent diagnostics` prints (from `/diagnostics`, or the `diagnostics.json` the agent
//! rewrites at every heartbeat).

use backup_core::{PerKind, Settings};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{AGENT_VERSION, Agent};
use crate::{quota, repo_backoff::Scope};

/// The file the running agent keeps its diagnostics in.
pub const DIAGNOSTICS_FILE: &str = "diagnostics.json";

impl Agent {
    pub(super) fn refresh_gauges(&self) {
        let snapshot = self.inner.gate.snapshot();
        let (queued, backoff) = {
            let shared = self.shared();
            (
                shared.held.values().filter(|h| !h.running).count(),
                shared.state.backoff.latest(self.now()).is_some(),
            )
        };
        let m = &self.inner.metrics;
        m.concurrency_current
            .set(i64::try_from(snapshot.running).unwrap_or(i64::MAX));
        m.concurrency_limit.set(i64::from(snapshot.limits.total));
        m.queue_depth.set(i64::try_from(queued).unwrap_or(i64::MAX));
        m.backoff_active.set(i64::from(backoff));
    }

    /// What `backup-agent diagnostics` prints.
    pub fn diagnostics(&self) -> Diagnostics {
        self.refresh_gauges();
        let now = self.now();
        let settings = self.settings();
        let snapshot = self.inner.gate.snapshot();
        let shared = self.shared();
        let state = &shared.state;
        let held = &shared.held;
        let last = shared.last_heartbeat;
        Diagnostics {
            agent_version: AGENT_VERSION.into(),
            restic_version: self.inner.restic_version.map(|v| v.to_string()),
            generated_at: now,
            last_heartbeat_at: last.map(|(at, _)| at),
            clock_skew_seconds: last.map(|(_, skew)| skew),
            settings,
            concurrency: ConcurrencyReport {
                limit: snapshot.limits.total,
                running: snapshot.running,
                waiting: snapshot.waiting,
                running_by_kind: snapshot.running_by_kind,
                limit_by_kind: snapshot.limits.per_kind,
            },
            queue_depth: held.values().filter(|h| !h.running).count(),
            held_tasks: held.len(),
            backoff: state
                .backoff
                .entries()
                .map(|(scope, e)| BackoffReport {
                    scope: match scope {
                        Scope::Repository(name) => name.clone(),
                        Scope::Agent => "(agent)".into(),
                    },
                    consecutive_failures: e.consecutive_failures,
                    backoffs: e.backoffs,
                    until: e.until.filter(|u| *u > now),
                })
                .collect(),
            outbox: state.outbox.len(),
            retries_total: state.counters.retries_total,
            tasks_total: state.counters.tasks_total.clone(),
            quotas: QuotaReport {
                niceness: quota::niceness(settings.cpu_quota_percent),
                nice: if self.inner.options.nice_available {
                    "active: restic starts through nice"
                } else {
                    "unavailable: no nice on PATH"
                }
                .into(),
                ionice: if self.inner.options.ionice_available {
                    "active: check and prune run in the idle I/O class"
                } else {
                    "unavailable: no ionice on PATH"
                }
                .into(),
                gomaxprocs_budget_cores: self.inner.options.cpus as f64
                    * f64::from(settings.cpu_quota_percent)
                    / 100.0,
                bandwidth_budget_kib: settings.bandwidth_limit_mbps.map(quota::budget_kib),
                bandwidth_in_use_kib: shared.ledger.in_use(),
                cgroup: "not used (the agent does not own a cgroup)".into(),
            },
        }
    }

    /// Rewrites `diagnostics.json` (on a blocking thread, without fsync: it is rewritten at
    /// every heartbeat and nothing depends on it surviving a power loss).
    pub(super) async fn write_diagnostics(&self) {
        let dir = self.inner.config.state_dir.clone();
        let path = dir.join(DIAGNOSTICS_FILE);
        let Ok(bytes) = serde_json::to_vec_pretty(&self.diagnostics()) else {
            return;
        };
        let written =
            tokio::task::spawn_blocking(move || crate::state::write_replacing(&dir, &path, &bytes))
                .await;
        if let Ok(Err(e)) = written {
            tracing::debug!(error = %e, "cannot write diagnostics.json");
        }
    }
}

/// The agent's live state, for people and monitoring.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diagnostics {
    /// The agent's version.
    pub agent_version: String,
    /// restic's.
    pub restic_version: Option<String>,
    /// When this was written.
    pub generated_at: DateTime<Utc>,
    /// The last successful heartbeat.
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    /// Server time minus this machine's, at the last heartbeat.
    pub clock_skew_seconds: Option<i64>,
    /// Settings in force.
    pub settings: Settings,
    /// The concurrency gate.
    pub concurrency: ConcurrencyReport,
    /// Held, not started.
    pub queue_depth: usize,
    /// Held in all.
    pub held_tasks: usize,
    /// Backoff per scope.
    pub backoff: Vec<BackoffReport>,
    /// Results waiting for the server.
    pub outbox: usize,
    /// `backup_agent_retries_total`.
    pub retries_total: u64,
    /// `backup_agent_tasks_total` by `kind/outcome`.
    pub tasks_total: std::collections::BTreeMap<String, u64>,
    /// Which quota mechanisms are active.
    pub quotas: QuotaReport,
}

/// The gate's counts.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConcurrencyReport {
    /// `maxConcurrentTasks`.
    pub limit: u32,
    /// Running.
    pub running: usize,
    /// Waiting for a slot.
    pub waiting: usize,
    /// Running by kind.
    pub running_by_kind: PerKind<usize>,
    /// Limits by kind.
    pub limit_by_kind: PerKind<u32>,
}

/// One scope's backoff.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackoffReport {
    /// A repository name, or `(agent)`.
    pub scope: String,
    /// Retriable failures in a row.
    pub consecutive_failures: u32,
    /// Backoffs in a row.
    pub backoffs: u32,
    /// Until when, if active.
    pub until: Option<DateTime<Utc>>,
}

/// The quota mechanisms and their state.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotaReport {
    /// The niceness restic runs at.
    pub niceness: i32,
    /// Whether niceness is applied.
    pub nice: String,
    /// Whether the idle I/O class is applied.
    pub ionice: String,
    /// Cores shared by running restic processes (`GOMAXPROCS`).
    pub gomaxprocs_budget_cores: f64,
    /// The upload budget, KiB/s.
    pub bandwidth_budget_kib: Option<u64>,
    /// KiB/s held by running backups.
    pub bandwidth_in_use_kib: u64,
    /// cgroup `cpu.max`.
    pub cgroup: String,
}
