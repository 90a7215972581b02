//! The agent: heartbeats, claims, runs restic under the limits, reports every attempt.
//!
//! Four loops share one state, in the order a task flows through them: the heartbeat
//! (`heartbeat.rs`: load and backoff out, settings and cancellations in), the poll (`poll.rs`:
//! claims up to the free slots), one worker per held task (`worker.rs`: waits for its
//! repository's backoff, the repository lock and the concurrency gate, then runs restic as
//! `invoke.rs` builds it), and the outbox (`outbox.rs`: delivers results until the server
//! settles them). What a crashed predecessor left behind is cleaned up at start
//! (`recovery.rs`). Beside them, the inventory (`inventory.rs`) reports each repository's
//! snapshots at start and after every backup or prune that succeeded.
//!
//! The mutable state is one [`Shared`] behind one lock, never held across an `.await`. What must
//! survive a crash goes into the state file through [`Agent::persist`] (`persist.rs`): one write
//! per state transition, off the async threads, several transitions sharing a write when they
//! come together. A successful attempt costs two writes: restic's process group when it starts,
//! and the result (with the backoff and counter changes it brings) when it ends.

mod diagnostics;
mod heartbeat;
mod inventory;
mod invoke;
pub use invoke::TASK_ENV;
mod outbox;
mod persist;
mod poll;
mod reach;
mod recovery;
mod restore;
mod worker;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use backup_core::{
    Clock, ConcurrencyGate, GateLimits, ProcessRunner, Settings, SplitMix64, TaskId, TaskKind,
};
use chrono::{DateTime, Utc};
use tokio::{sync::Notify, task::JoinSet};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    AgentConfig, AgentError, OrchestratorClient,
    metrics::AgentMetrics,
    quota::BandwidthLedger,
    repolock::RepoLocks,
    restic::ResticVersion,
    runner,
    state::{AgentState, StateFile},
};

pub use diagnostics::{
    BackoffReport, ConcurrencyReport, DIAGNOSTICS_FILE, Diagnostics, QuotaReport,
};

/// The agent's version, sent in heartbeats.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the agent needs besides its configuration; defaults read the machine.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// restic's `--host` for every command (the agent key `host` overrides it).
    pub hostname: String,
    /// CPUs for the `GOMAXPROCS` budget.
    pub cpus: usize,
    /// Whether `nice` can be applied (diagnostics).
    pub nice_available: bool,
    /// Whether `ionice` can be applied (diagnostics).
    pub ionice_available: bool,
}

impl Default for AgentOptions {
    fn default() -> Self {
        Self {
            hostname: nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "localhost".into()),
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            nice_available: runner::which("nice").is_some(),
            ionice_available: runner::which("ionice").is_some(),
        }
    }
}

/// A task the agent holds, from its claim until its worker ends.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) kind: TaskKind,
    /// The attempt its worker runs: only that worker removes the entry.
    pub(crate) attempt: u32,
    pub(crate) running: bool,
    pub(crate) cancel: CancellationToken,
    /// A later attempt of the same task the server handed out while this one ran (its lease
    /// had lapsed): never started; handed back when this worker ends.
    pub(crate) rehanded: Option<u32>,
}

/// Everything the loops change, behind one lock.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The settings in force (the server's, after the first heartbeat).
    pub(crate) settings: Settings,
    /// What the state file holds.
    pub(crate) state: AgentState,
    /// Bumped by every change of `state`; the writer knows which one it wrote last.
    pub(crate) generation: u64,
    /// The tasks held, by id.
    pub(crate) held: HashMap<TaskId, Held>,
    /// Upload budget handed to running backups.
    pub(crate) ledger: BandwidthLedger,
    /// Jitter for backoffs and outbox retries.
    pub(crate) rng: SplitMix64,
    /// Repositories with `initIfMissing` known to exist (probed once per process).
    pub(crate) checked_repositories: HashSet<String>,
    /// Repositories to `restic unlock` before their next attempt (after a lock failure).
    pub(crate) unlock_first: HashSet<String>,
    /// The last successful heartbeat and the clock skew it showed.
    pub(crate) last_heartbeat: Option<(DateTime<Utc>, i64)>,
    /// Repositories whose snapshot list the server should get anew (`inventory.rs`).
    pub(crate) inventory_due: HashSet<String>,
}

/// The agent. Cheap to clone.
#[derive(Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("held", &self.shared().held.len())
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: AgentConfig,
    options: AgentOptions,
    runner: Arc<dyn ProcessRunner>,
    client: Arc<dyn OrchestratorClient>,
    clock: Arc<dyn Clock>,
    restic_version: Option<ResticVersion>,
    gate: ConcurrencyGate,
    locks: RepoLocks,
    shared: Arc<Mutex<Shared>>,
    persister: persist::Persister,
    metrics: AgentMetrics,
    heartbeat_done: tokio::sync::watch::Sender<bool>,
    wake_poll: Notify,
    wake_outbox: Notify,
    wake_heartbeat: Notify,
    wake_inventory: Notify,
    shutdown: CancellationToken,
    /// `<stateDir>/agent.lock`, held (an exclusive `flock`) while the agent lives.
    _state_lock: std::fs::File,
}

/// The file in the state directory an agent holds locked while it runs.
pub const LOCK_FILE: &str = "agent.lock";

/// One agent per state directory: two would run each other's leftovers and overwrite each
/// other's state and outbox.
fn lock_state_dir(dir: &std::path::Path) -> Result<std::fs::File, AgentError> {
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| AgentError::State(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(AgentError::State(format!(
            "another agent is already running with stateDir {} (it holds {}); give each agent \
             its own stateDir",
            dir.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(AgentError::State(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

impl Agent {
    /// Prepares an agent: loads the state file (moving a corrupt one aside), kills restic
    /// processes a crashed predecessor left behind, checks restic and the password files.
    ///
    /// # Errors
    /// [`AgentError`] for a missing restic, an unreadable password file, an unusable state
    /// directory: problems an operator must fix before the agent can work.
    pub async fn start(
        config: AgentConfig,
        options: AgentOptions,
        runner: Arc<dyn ProcessRunner>,
        client: Arc<dyn OrchestratorClient>,
        clock: Arc<dyn Clock>,
    ) -> Result<Agent, AgentError> {
        for (name, repo) in &config.repositories {
            std::fs::File::open(&repo.password_file).map_err(|e| {
                AgentError::Config(format!(
                    "repositories.{name}.passwordFile: cannot read {}: {e}",
                    repo.password_file.display()
                ))
            })?;
        }
        let state_file =
            StateFile::new(&config.state_dir).map_err(|e| AgentError::State(e.to_string()))?;
        let state_lock = lock_state_dir(&config.state_dir)?;
        let mut options = options;
        if let Some(host) = &config.host {
            options.hostname.clone_from(host);
        }
        let loaded = state_file
            .load()
            .map_err(|e| AgentError::State(e.to_string()))?;
        if let Some(aside) = &loaded.moved_aside {
            tracing::warn!(moved_to = %aside.display(), "the state file was corrupt; it was moved aside and the agent starts with an empty state");
        }
        let version = recovery::detect_version(runner.as_ref(), &config.restic_binary).await?;
        tracing::info!(restic = %version, binary = %config.restic_binary.display(), "restic found");

        let settings = Settings::default()
            .apply(&config.proposed_settings())
            .unwrap_or_default();
        let metrics = AgentMetrics::new(&loaded.state.counters);
        let seed = clock.now().timestamp_nanos_opt().unwrap_or_default() as u64
            ^ u64::from(std::process::id());
        let shared = Arc::new(Mutex::new(Shared {
            settings,
            state: loaded.state,
            generation: 0,
            held: HashMap::new(),
            ledger: BandwidthLedger::default(),
            rng: SplitMix64::new(seed),
            checked_repositories: HashSet::new(),
            unlock_first: HashSet::new(),
            last_heartbeat: None,
            inventory_due: HashSet::new(),
        }));
        let persister = persist::Persister::spawn(shared.clone(), state_file);
        let (heartbeat_done, _) = tokio::sync::watch::channel(false);
        let agent = Agent {
            inner: Arc::new(Inner {
                gate: ConcurrencyGate::new(GateLimits::from(&settings)),
                shared,
                persister,
                restic_version: Some(version),
                config,
                options,
                runner,
                client,
                clock,
                locks: RepoLocks::default(),
                metrics,
                heartbeat_done,
                wake_poll: Notify::new(),
                wake_outbox: Notify::new(),
                wake_heartbeat: Notify::new(),
                wake_inventory: Notify::new(),
                shutdown: CancellationToken::new(),
                _state_lock: state_lock,
            }),
        };
        agent
            .inner
            .metrics
            .concurrency_limit
            .set(i64::from(settings.max_concurrent_tasks));
        agent.clean_up_after_a_crash().await;
        Ok(agent)
    }

    /// Runs until `shutdown` resolves, then stops restic cleanly (reporting `interrupted`, so no
    /// retry budget is spent) and delivers what it can of the outbox.
    ///
    /// # Errors
    /// [`AgentError::Io`] when the metrics listener cannot bind.
    pub async fn run(
        &self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), AgentError> {
        let config = &self.inner.config;
        tracing::info!(
            server = %crate::config::hide_credentials(&config.orchestrator_url),
            agent = %config.agent_id.as_deref().unwrap_or("(enrolling)"),
            state_dir = %config.state_dir.display(),
            restic = %self.inner.restic_version.map(|v| v.to_string()).unwrap_or_default(),
            version = %AGENT_VERSION,
            "backup-agent running"
        );
        let mut loops = JoinSet::new();
        if let Some(listen) = self.inner.config.metrics_listen.clone() {
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .map_err(|e| AgentError::Io(format!("metricsListen {listen}: {e}")))?;
            tracing::info!(%listen, "serving /metrics and /diagnostics");
            let app = crate::serve::router(self.clone());
            let stop = self.inner.shutdown.clone();
            loops.spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await;
            });
        }
        let workers = TaskTracker::new();
        loops.spawn(self.clone().heartbeat_loop());
        let poll = tokio::spawn(self.clone().poll_loop(workers.clone()));
        loops.spawn(self.clone().outbox_loop());
        loops.spawn(self.clone().inventory_loop());
        tokio::select! {
            () = shutdown => {}
            () = self.inner.shutdown.cancelled() => {}
        }
        tracing::info!("shutting down: stopping restic and reporting interrupted attempts");
        self.inner.shutdown.cancel();
        let grace = Duration::from_secs(u64::from(self.inner.config.stop_grace_seconds) + 10);
        // No worker is spawned after this: the poll loop has ended.
        let _ = poll.await;
        // Every worker sees the shutdown: it stops restic and reports its task interrupted.
        workers.close();
        let _ = tokio::time::timeout(grace, workers.wait()).await;
        // One last delivery pass for the results of the stopped attempts.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.deliver_due(true)).await;
        while loops.join_next().await.is_some() {}
        // Changes kept in memory only (deliveries settled) reach the file now.
        self.flush().await;
        self.write_diagnostics().await;
        Ok(())
    }

    /// Asks the agent to stop, as SIGTERM does (for embedders and tests): `run` returns once
    /// restic is stopped and the outbox had its last chance.
    pub fn stop(&self) {
        self.inner.shutdown.cancel();
    }

    /// The settings in force (the server's, after the first heartbeat).
    pub fn settings(&self) -> Settings {
        self.shared().settings
    }

    /// Prometheus text of the agent's metrics.
    pub fn render_metrics(&self) -> String {
        self.refresh_gauges();
        self.inner.metrics.render()
    }

    /// How many times this agent has written its state file since it started (each write is a
    /// temp file, an fsync, a rename and an fsync of the directory).
    pub fn state_writes(&self) -> u64 {
        self.inner.persister.writes()
    }

    /// The shared state; never held across an `.await`.
    pub(crate) fn shared(&self) -> MutexGuard<'_, Shared> {
        self.inner.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `f` to the shared state and returns once the state file holds the change.
    pub(crate) async fn persist<R>(&self, f: impl FnOnce(&mut Shared) -> R) -> R {
        let (r, generation) = {
            let mut shared = self.shared();
            let r = f(&mut shared);
            shared.generation += 1;
            (r, shared.generation)
        };
        self.inner.persister.written(generation).await;
        r
    }

    /// Applies `f` to the state and keeps it in memory until the next write or shutdown: for
    /// changes a crash may lose without harm (a settled result, which the server answers again
    /// if it is sent again; the outbox's retry schedule; a counter).
    pub(crate) fn persist_lazily<R>(&self, f: impl FnOnce(&mut Shared) -> R) -> R {
        let mut shared = self.shared();
        let r = f(&mut shared);
        shared.generation += 1;
        r
    }

    /// Returns once every change so far, lazy ones included, is in the state file.
    pub(crate) async fn flush(&self) {
        let generation = self.shared().generation;
        self.inner.persister.written(generation).await;
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }
}
