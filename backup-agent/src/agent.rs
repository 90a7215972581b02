//! The agent: heartbeats, claims, runs restic under the limits, reports every attempt.
//!
//! Four loops share one state: the heartbeat (load and backoff out, settings and cancellations
//! in), the poll (claims up to the free slots), one worker per held task (waits for its retry
//! time, its repository's backoff, the repository lock and the concurrency gate, then runs
//! restic), and the outbox (delivers results until the server settles them). Everything that
//! must survive a crash goes through [`Agent::persist`] into the state file first.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use backup_core::{
    AttemptOutcome, AttemptReport, ClaimRequest, ClaimedTask, Clock, ConcurrencyGate, ErrorClass,
    ExponentialBackoff, GateLimits, Heartbeat, HeartbeatAnswer, IoClass, Jitter, PerKind,
    PermanentReason, ProcessControl, ProcessEvent, ProcessRunner, ProcessSpec, Settings,
    SplitMix64, StopSignal, Stream, TaskId, TaskKind, TaskStatus, TaskView, Termination,
};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use tokio::{sync::Notify, task::JoinSet};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    AgentConfig, AgentError, ClientError, OrchestratorClient,
    config::RepositoryConfig,
    metrics::{AgentMetrics, KindLabels, TaskLabels},
    quota::{self, BandwidthLedger},
    repo_backoff::Scope,
    repolock::RepoLocks,
    restic::{self, Classified, Command, FailureKind, ResticVersion},
    runner,
    state::{AgentState, OutboxEntry, ProcessRecord, StateFile},
};

/// The agent's version, sent in heartbeats.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the agent needs besides its configuration; defaults read the machine.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// restic's `--host`.
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

/// A task the agent holds.
#[derive(Debug)]
struct Held {
    kind: TaskKind,
    running: bool,
    /// Waiting out a repository's backoff: it takes no claim capacity, so one repository in
    /// backoff cannot keep the agent from working on the others.
    parked: bool,
    cancel: CancellationToken,
}

/// The agent. Cheap to clone.
#[derive(Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("held", &self.inner.lock_held().len())
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
    settings: Mutex<Settings>,
    state: Mutex<AgentState>,
    state_file: StateFile,
    held: Mutex<HashMap<TaskId, Held>>,
    ledger: Mutex<BandwidthLedger>,
    metrics: AgentMetrics,
    rng: Mutex<SplitMix64>,
    checked_repositories: Mutex<HashSet<String>>,
    unlock_first: Mutex<HashSet<String>>,
    last_heartbeat: Mutex<Option<(DateTime<Utc>, i64)>>,
    heartbeat_done: tokio::sync::watch::Sender<bool>,
    wake_poll: Notify,
    wake_outbox: Notify,
    shutdown: CancellationToken,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    fn lock_held(&self) -> MutexGuard<'_, HashMap<TaskId, Held>> {
        lock(&self.held)
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
        let loaded = state_file
            .load()
            .map_err(|e| AgentError::State(e.to_string()))?;
        if let Some(aside) = &loaded.moved_aside {
            tracing::warn!(moved_to = %aside.display(), "the state file was corrupt; it was moved aside and the agent starts with an empty state");
        }
        let version = detect_version(runner.as_ref(), &config.restic_binary).await?;
        tracing::info!(restic = %version, binary = %config.restic_binary.display(), "restic found");

        let settings = Settings::default()
            .apply(&config.proposed_settings())
            .unwrap_or_default();
        let metrics = AgentMetrics::new(&loaded.state.counters);
        let seed = clock.now().timestamp_nanos_opt().unwrap_or_default() as u64
            ^ u64::from(std::process::id());
        let (heartbeat_done, _) = tokio::sync::watch::channel(false);
        let agent = Agent {
            inner: Arc::new(Inner {
                gate: ConcurrencyGate::new(GateLimits::from(&settings)),
                settings: Mutex::new(settings),
                state: Mutex::new(loaded.state),
                state_file,
                restic_version: Some(version),
                config,
                options,
                runner,
                client,
                clock,
                locks: RepoLocks::default(),
                held: Mutex::new(HashMap::new()),
                ledger: Mutex::new(BandwidthLedger::default()),
                metrics,
                rng: Mutex::new(SplitMix64::new(seed)),
                checked_repositories: Mutex::new(HashSet::new()),
                unlock_first: Mutex::new(HashSet::new()),
                last_heartbeat: Mutex::new(None),
                heartbeat_done,
                wake_poll: Notify::new(),
                wake_outbox: Notify::new(),
                shutdown: CancellationToken::new(),
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
        loops.spawn(self.clone().poll_loop(workers.clone()));
        loops.spawn(self.clone().outbox_loop());
        tokio::select! {
            () = shutdown => {}
            () = self.inner.shutdown.cancelled() => {}
        }
        tracing::info!("shutting down: stopping restic and reporting interrupted attempts");
        self.inner.shutdown.cancel();
        let grace = Duration::from_secs(u64::from(self.inner.config.stop_grace_seconds) + 10);
        // Every worker sees the shutdown: it stops restic and reports its task interrupted.
        workers.close();
        let _ = tokio::time::timeout(grace, workers.wait()).await;
        // One last delivery pass for the results of the stopped attempts.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.deliver_due(true)).await;
        while loops.join_next().await.is_some() {}
        self.write_diagnostics();
        Ok(())
    }

    /// Asks the agent to stop, as SIGTERM does (for embedders and tests): `run` returns once
    /// restic is stopped and the outbox had its last chance.
    pub fn stop(&self) {
        self.inner.shutdown.cancel();
    }

    /// The settings in force (the server's, after the first heartbeat).
    pub fn settings(&self) -> Settings {
        *lock(&self.inner.settings)
    }

    /// Prometheus text of the agent's metrics.
    pub fn render_metrics(&self) -> String {
        self.refresh_gauges();
        self.inner.metrics.render()
    }

    /// Changes the state only through here: applies `f` and writes the state file.
    fn persist<R>(&self, f: impl FnOnce(&mut AgentState) -> R) -> R {
        let mut state = lock(&self.inner.state);
        let r = f(&mut state);
        if let Err(e) = self.inner.state_file.save(&state) {
            tracing::error!(error = %e, "cannot write the state file; the change is kept in memory only");
        }
        r
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    // ------------------------------------------------------------------ crash cleanup

    /// Kills restic processes recorded by a previous run that are still alive, reports their
    /// attempts as failed (so the server retries them now instead of after a lease), and
    /// removes the locks they left.
    async fn clean_up_after_a_crash(&self) {
        let leftovers: Vec<ProcessRecord> = lock(&self.inner.state).processes.clone();
        if leftovers.is_empty() {
            return;
        }
        let mut repositories = HashSet::new();
        for record in &leftovers {
            let alive = runner::process_start_ticks(record.pgid);
            let same_process = match (alive, record.start_ticks) {
                (Some(now), Some(then)) => now == then,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if same_process && runner::signal_group(record.pgid, nix::sys::signal::Signal::SIGKILL)
            {
                tracing::warn!(pgid = record.pgid, task = %record.task_id, "killed a restic process left over by a previous agent");
            }
            repositories.insert(record.repository.clone());
        }
        let now = self.now();
        self.persist(|s| {
            for record in &leftovers {
                let already = s.outbox.iter().any(|e| e.task_id == record.task_id && e.report.attempt == record.attempt);
                if !already {
                    let mut report = AttemptReport::new(record.attempt, AttemptOutcome::Failed);
                    report.error_kind = Some(ErrorClass::Retriable);
                    report.error = Some("the agent stopped during this attempt (crash or kill); its restic process was killed at restart".into());
                    report.finished_at = Some(now);
                    s.outbox.push(OutboxEntry { task_id: record.task_id, report, tries: 0, next_try_at: None });
                }
            }
            s.processes.clear();
        });
        for name in repositories {
            if let Some(repo) = self.inner.config.repositories.get(&name) {
                self.restic_unlock(&name, repo).await;
            }
        }
    }

    // ------------------------------------------------------------------ heartbeat

    async fn heartbeat_loop(self) {
        let every = Duration::from_secs(u64::from(
            self.inner.config.heartbeat_interval_seconds.max(1),
        ));
        let mut failures = 0u32;
        loop {
            let body = self.heartbeat_body();
            let wait = match self.inner.client.heartbeat(&body).await {
                Ok(answer) => {
                    failures = 0;
                    self.apply(answer);
                    self.inner.heartbeat_done.send_replace(true);
                    every
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(10) {
                        tracing::warn!(error = %e, failures, "heartbeat failed; the agent keeps running what it holds");
                    }
                    // Until the first one succeeds, try again soon; afterwards keep the rhythm.
                    let retry = if *self.inner.heartbeat_done.borrow() {
                        every
                    } else {
                        every.min(Duration::from_secs(2))
                    };
                    e.retry_after().map_or(retry, |r| r.max(retry))
                }
            };
            self.write_diagnostics();
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.inner.shutdown.cancelled() => return,
            }
        }
    }

    fn heartbeat_body(&self) -> Heartbeat {
        let now = self.now();
        let (running, queued): (Vec<_>, Vec<_>) = {
            let held = self.inner.lock_held();
            let running = held
                .iter()
                .filter(|(_, h)| h.running)
                .map(|(id, _)| *id)
                .collect();
            let queued = held
                .iter()
                .filter(|(_, h)| !h.running)
                .map(|(id, _)| *id)
                .collect();
            (running, queued)
        };
        let (backoff_repositories, agent_backoff_seconds, backoff_until) = {
            let state = lock(&self.inner.state);
            let (repos, agent) = state.backoff.report(now);
            (repos, agent, state.backoff.latest(now))
        };
        let proposed = self.inner.config.proposed_settings();
        Heartbeat {
            running_tasks: u32::try_from(running.len()).unwrap_or(u32::MAX),
            queue_depth: u32::try_from(queued.len()).unwrap_or(u32::MAX),
            running_task_ids: running,
            queued_task_ids: queued,
            backoff_until,
            backoff_repositories: Some(backoff_repositories),
            agent_backoff_seconds: Some(agent_backoff_seconds),
            pending_retries: None,
            proposed_settings: (!proposed.is_empty()).then_some(proposed),
            agent_version: Some(AGENT_VERSION.into()),
            restic_version: self.inner.restic_version.map(|v| v.to_string()),
        }
    }

    fn apply(&self, answer: HeartbeatAnswer) {
        let now = self.now();
        let skew = (answer.server_time - now).num_seconds();
        if skew.abs() > 30 {
            tracing::warn!(
                skew_seconds = skew,
                "this machine's clock differs from the server's by more than 30 s"
            );
        }
        *lock(&self.inner.last_heartbeat) = Some((now, skew));
        let changed = {
            let mut settings = lock(&self.inner.settings);
            let changed = *settings != answer.settings;
            *settings = answer.settings;
            changed
        };
        if changed {
            tracing::info!(settings = ?answer.settings, "applying new settings");
            self.inner
                .gate
                .set_limits(GateLimits::from(&answer.settings));
            self.inner
                .metrics
                .concurrency_limit
                .set(i64::from(answer.settings.max_concurrent_tasks));
            self.inner.wake_poll.notify_one();
        }
        let held = self.inner.lock_held();
        for id in answer.cancel_task_ids {
            if let Some(task) = held.get(&id) {
                tracing::info!(task = %id, "the task was cancelled; stopping it without a result");
                task.cancel.cancel();
            }
        }
    }

    // ------------------------------------------------------------------ claims

    async fn poll_loop(self, workers: TaskTracker) {
        // The first claim waits for the first heartbeat: the server must know the agent's load.
        let mut done = self.inner.heartbeat_done.subscribe();
        tokio::select! {
            _ = done.wait_for(|d| *d) => {}
            () = self.inner.shutdown.cancelled() => return,
        }
        let every =
            Duration::from_secs(u64::from(self.inner.config.polling_interval_seconds.max(1)));
        // A 429 or 503 with Retry-After: no claim before then, whatever wakes the loop.
        let mut not_before = tokio::time::Instant::now();
        // "Concurrency limit reached" once each time every slot fills, not at every poll.
        let mut was_full = false;
        loop {
            let full = self.at_capacity();
            if full && !was_full {
                let settings = *lock(&self.inner.settings);
                tracing::info!(
                    limit = settings.max_concurrent_tasks,
                    held = self.inner.lock_held().len(),
                    "Concurrency limit reached"
                );
            }
            was_full = full;
            if let Some(request) = self.free_slots() {
                match self.inner.client.claim(&request).await {
                    Ok(answer) => {
                        for task in answer.tasks {
                            self.hold(&task);
                            workers.spawn(self.clone().work(task));
                        }
                    }
                    Err(e) => {
                        if let Some(after) = e.retry_after() {
                            not_before = tokio::time::Instant::now() + after;
                        }
                        tracing::warn!(error = %e, retry_after_seconds = e.retry_after().map(|d| d.as_secs()), "claiming tasks failed; trying again next poll");
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = self.inner.wake_poll.notified() => {}
                () = self.inner.shutdown.cancelled() => return,
            }
            tokio::select! {
                () = tokio::time::sleep_until(not_before) => {}
                () = self.inner.shutdown.cancelled() => return,
            }
        }
    }

    /// Whether every slot is taken by a held task (parked ones aside): the agent claims nothing
    /// more until one frees.
    fn at_capacity(&self) -> bool {
        let limit = lock(&self.inner.settings).max_concurrent_tasks;
        let busy = self
            .inner
            .lock_held()
            .values()
            .filter(|h| !h.parked)
            .count();
        u32::try_from(busy).unwrap_or(u32::MAX) >= limit
    }

    /// The claim for the free slots, or `None` when there are none or the agent backs off.
    fn free_slots(&self) -> Option<ClaimRequest> {
        let now = self.now();
        if lock(&self.inner.state)
            .backoff
            .until(&Scope::Agent, now)
            .is_some()
        {
            return None;
        }
        let settings = *lock(&self.inner.settings);
        let held = self.inner.lock_held();
        let busy = || held.values().filter(|h| !h.parked);
        let total = settings
            .max_concurrent_tasks
            .saturating_sub(u32::try_from(busy().count()).unwrap_or(u32::MAX));
        if total == 0 {
            return None;
        }
        let per_kind = PerKind::from_fn(|kind| {
            let mine = busy().filter(|h| h.kind == kind).count();
            settings
                .limit_for(kind)
                .saturating_sub(u32::try_from(mine).unwrap_or(u32::MAX))
                .min(total)
        });
        Some(ClaimRequest {
            limit: total,
            per_kind: Some(per_kind),
        })
    }

    fn hold(&self, task: &ClaimedTask) {
        self.inner.lock_held().insert(
            task.id,
            Held {
                kind: task.kind,
                running: false,
                parked: false,
                cancel: CancellationToken::new(),
            },
        );
        self.refresh_gauges();
    }

    // ------------------------------------------------------------------ tasks

    async fn work(self, task: ClaimedTask) {
        let id = task.id;
        let cancel = self
            .inner
            .lock_held()
            .get(&id)
            .map(|h| h.cancel.clone())
            .unwrap_or_default();
        let report = self.execute(&task, &cancel).await;
        if let Some(report) = &report {
            self.record_outcome(&task, report);
        }
        // One write: restic's process record goes as its result enters the outbox, so a crash
        // leaves one or the other (a record is reported as failed at the next start), never
        // neither.
        let reported = report.is_some();
        self.persist(|s| {
            s.processes.retain(|p| p.task_id != id);
            if let Some(report) = report {
                s.outbox.push(OutboxEntry {
                    task_id: id,
                    report,
                    tries: 0,
                    next_try_at: None,
                });
            }
        });
        if reported {
            self.inner.wake_outbox.notify_one();
        }
        self.inner.lock_held().remove(&id);
        self.refresh_gauges();
        self.inner.wake_poll.notify_one();
    }

    /// Marks a held task as waiting out a backoff (or no longer); a parked task frees its
    /// claim capacity, so the poll loop is woken.
    fn park(&self, task: TaskId, parked: bool) {
        if let Some(held) = self.inner.lock_held().get_mut(&task) {
            held.parked = parked;
        }
        if parked {
            self.inner.wake_poll.notify_one();
        }
    }

    /// The end of the backoff of `repository` or of the whole agent, whichever is later.
    fn backoff_until(&self, repository: &str) -> Option<DateTime<Utc>> {
        let state = lock(&self.inner.state);
        let now = self.now();
        state
            .backoff
            .until(&Scope::Repository(repository.to_owned()), now)
            .max(state.backoff.until(&Scope::Agent, now))
    }

    /// Waits for `until`, or returns early with `false` when cancelled or shutting down.
    async fn wait_until(&self, until: DateTime<Utc>, cancel: &CancellationToken) -> bool {
        let wait = (until - self.now()).to_std().unwrap_or(Duration::ZERO);
        tokio::select! {
            () = tokio::time::sleep(wait) => true,
            () = cancel.cancelled() => false,
            () = self.inner.shutdown.cancelled() => false,
        }
    }

    /// What to report when a held task is given up before or while running: nothing for a
    /// cancelled task, `interrupted` at shutdown.
    fn given_up(&self, task: &ClaimedTask, cancel: &CancellationToken) -> Option<AttemptReport> {
        if cancel.is_cancelled() {
            None
        } else {
            let mut report = AttemptReport::new(task.attempt, AttemptOutcome::Interrupted);
            report.error = Some("the agent shut down".into());
            report.finished_at = Some(self.now());
            Some(report)
        }
    }

    async fn execute(
        &self,
        task: &ClaimedTask,
        cancel: &CancellationToken,
    ) -> Option<AttemptReport> {
        let Some(repo) = self
            .inner
            .config
            .repositories
            .get(&task.repository)
            .cloned()
        else {
            let mut report = AttemptReport::new(task.attempt, AttemptOutcome::Failed);
            report.error_kind = Some(ErrorClass::Permanent);
            report.error = Some(format!(
                "unknown repository {:?}: this agent's configuration has {:?}",
                task.repository,
                self.inner.config.repositories.keys().collect::<Vec<_>>()
            ));
            return Some(report);
        };
        if let Some(at) = task.next_retry_at
            && !self.wait_until(at, cancel).await
        {
            return self.given_up(task, cancel);
        }
        // Start nothing on a repository (or an agent) in backoff: before waiting for the
        // repository lock and a slot, and again once both are held, since a task that ran
        // meanwhile may have failed into a backoff.
        let exclusive = task.kind.is_exclusive();
        let (_repo_lock, _slot) = loop {
            while let Some(until) = self.backoff_until(&task.repository) {
                self.park(task.id, true);
                let waited = self.wait_until(until, cancel).await;
                self.park(task.id, false);
                if !waited {
                    return self.given_up(task, cancel);
                }
            }
            let repo_lock = tokio::select! {
                guard = self.inner.locks.acquire(&task.repository, exclusive) => guard,
                () = cancel.cancelled() => return None,
                () = self.inner.shutdown.cancelled() => return self.given_up(task, cancel),
            };
            let slot = tokio::select! {
                guard = self.inner.gate.acquire(task.kind) => guard,
                () = cancel.cancelled() => return None,
                () = self.inner.shutdown.cancelled() => return self.given_up(task, cancel),
            };
            if self.backoff_until(&task.repository).is_none() {
                break (repo_lock, slot);
            }
        };
        if let Some(held) = self.inner.lock_held().get_mut(&task.id) {
            held.running = true;
        }
        self.refresh_gauges();
        match self.report_start(task).await {
            StartAnswer::Go => {}
            StartAnswer::NotOurs => return None,
        }
        let started_at = self.now();
        if lock(&self.inner.unlock_first).remove(&task.repository) {
            self.restic_unlock(&task.repository, &repo).await;
        }
        if let Err((class, message)) = self.ensure_repository(&task.repository, &repo).await {
            let mut report = AttemptReport::new(task.attempt, AttemptOutcome::Failed);
            report.error_kind = Some(class);
            report.error = Some(message);
            report.started_at = Some(started_at);
            report.finished_at = Some(self.now());
            return Some(report);
        }
        let mut report = self.run_restic(task, &repo, cancel).await?;
        report.started_at = Some(started_at);
        report.finished_at = Some(self.now());
        Some(report)
    }

    async fn report_start(&self, task: &ClaimedTask) -> StartAnswer {
        for attempt in 0..3 {
            match self.inner.client.start(task.id, task.attempt).await {
                Ok(_) | Err(ClientError::Unreadable(_)) => return StartAnswer::Go,
                Err(e) if !e.is_transient() => {
                    tracing::warn!(task = %task.id, error = %e, "the server refused the start; the task is no longer this agent's to run");
                    return StartAnswer::NotOurs;
                }
                Err(e) => {
                    if attempt == 2 {
                        // While the server is unreachable the agent still does its job; the
                        // result alone is accepted for a claimed attempt.
                        tracing::warn!(task = %task.id, error = %e, "cannot report the start; running anyway");
                        return StartAnswer::Go;
                    }
                    tokio::time::sleep(e.retry_after().unwrap_or(Duration::from_secs(1))).await;
                }
            }
        }
        StartAnswer::Go
    }

    fn spec(
        &self,
        repo: &RepositoryConfig,
        args: Vec<String>,
        kind: Option<TaskKind>,
    ) -> ProcessSpec {
        let settings = *lock(&self.inner.settings);
        let mut spec = ProcessSpec::new(self.inner.config.restic_binary.clone()).args(args);
        spec.env
            .push(("RESTIC_REPOSITORY".into(), repo.url.clone()));
        spec.env.push((
            "RESTIC_PASSWORD_FILE".into(),
            repo.password_file.display().to_string(),
        ));
        spec.env.push((
            "RESTIC_CACHE_DIR".into(),
            self.inner
                .config
                .state_dir
                .join("cache")
                .display()
                .to_string(),
        ));
        for (k, v) in &repo.env {
            spec.env.push((k.clone(), v.clone()));
        }
        if let Some(file) = &repo.env_file {
            match std::fs::read_to_string(file) {
                Ok(text) => spec.env.extend(parse_env_file(&text)),
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "cannot read a repository's envFile")
                }
            }
        }
        spec.nice = Some(quota::niceness(settings.cpu_quota_percent));
        if kind.is_some_and(TaskKind::is_exclusive) {
            spec.io_class = Some(IoClass::Idle);
        }
        let running = self.inner.gate.snapshot().running.max(1);
        let procs = quota::gomaxprocs(self.inner.options.cpus, settings.cpu_quota_percent, running);
        spec.env.push(("GOMAXPROCS".into(), procs.to_string()));
        spec.grace = Duration::from_secs(u64::from(self.inner.config.stop_grace_seconds));
        spec.tail_bytes = 64 * 1024;
        spec
    }

    async fn run_restic(
        &self,
        task: &ClaimedTask,
        repo: &RepositoryConfig,
        cancel: &CancellationToken,
    ) -> Option<AttemptReport> {
        let settings = *lock(&self.inner.settings);
        let version = self.inner.restic_version;
        let tags = vec![
            format!("policy:{}", task.policy_id),
            format!("task:{}", task.id),
        ];
        let retention = task.retention.unwrap_or_default();
        let limit_upload = if task.kind == TaskKind::Backup {
            lock(&self.inner.ledger).reserve(
                task.id,
                settings.bandwidth_limit_mbps,
                settings.max_concurrent_backups,
            )
        } else {
            None
        };
        let command = match task.kind {
            TaskKind::Backup => Command::Backup {
                paths: &task.paths,
                excludes: &task.excludes,
                host: &self.inner.options.hostname,
                tags: &tags,
                limit_upload_kib: limit_upload,
            },
            TaskKind::Check => Command::Check,
            _ => Command::Prune {
                retention: &retention,
            },
        };
        let mut spec = self.spec(repo, restic::arguments(&command, version), Some(task.kind));
        let minutes = task
            .timeout_minutes
            .unwrap_or(self.inner.config.task_timeout_minutes);
        spec.timeout = Some(Duration::from_secs(u64::from(minutes) * 60));

        let (stopper, stop) = StopSignal::pair();
        let stop_on_cancel = {
            let (cancel, shutdown) = (cancel.clone(), self.inner.shutdown.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = cancel.cancelled() => {}
                    () = shutdown.cancelled() => {}
                }
                stopper.stop();
            })
        };
        let (events, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let recorder = {
            let agent = self.clone();
            let (task_id, attempt, kind, repository) =
                (task.id, task.attempt, task.kind, task.repository.clone());
            tokio::spawn(async move {
                let mut summary_lines = Vec::new();
                while let Some(event) = rx.recv().await {
                    match event {
                        ProcessEvent::Started { pid, pgid } => {
                            let record = ProcessRecord {
                                pgid,
                                start_ticks: runner::process_start_ticks(pid),
                                task_id,
                                attempt,
                                kind,
                                repository: repository.clone(),
                            };
                            agent.persist(|s| s.processes.push(record));
                        }
                        ProcessEvent::Line {
                            stream: Stream::Stdout,
                            line,
                        } if line.contains("\"summary\"") => {
                            summary_lines.push(line);
                        }
                        _ => {}
                    }
                }
                summary_lines
            })
        };
        let result = self
            .inner
            .runner
            .run(
                spec,
                ProcessControl {
                    events: Some(events),
                    stop,
                },
            )
            .await;
        stop_on_cancel.abort();
        let summary_lines = recorder.await.unwrap_or_default();
        lock(&self.inner.ledger).release(task.id);
        // The process record stays until the result is in the outbox (see `work`).

        let mut report = AttemptReport::new(task.attempt, AttemptOutcome::Failed);
        let outcome = match result {
            Err(e) => {
                // restic could not even start: a fault of the agent, not of the repository.
                let message = format!("cannot run restic: {e}");
                self.note_failure(Scope::Agent, &message);
                report.error_kind = Some(ErrorClass::Retriable);
                report.error = Some(message);
                return Some(report);
            }
            Ok(outcome) => outcome,
        };
        report.exit_code = outcome.status.code();
        match outcome.terminated {
            Some(Termination::Stopped) => {
                if cancel.is_cancelled() {
                    return None;
                }
                return self.given_up(task, cancel);
            }
            Some(Termination::TimedOut) => {
                // restic was stopped; its lock may remain if SIGKILL was needed.
                self.restic_unlock(&task.repository, repo).await;
                let message = format!("timed out after {minutes} minutes");
                self.note_failure(Scope::Repository(task.repository.clone()), &message);
                report.error_kind = Some(ErrorClass::Retriable);
                report.error = Some(message);
                return Some(report);
            }
            _ => {}
        }
        match restic::classify(version, task.kind, outcome.status, &outcome.stderr_tail) {
            Classified::Succeeded | Classified::Partial => {
                let partial =
                    restic::classify(version, task.kind, outcome.status, "") == Classified::Partial;
                report.outcome = if partial {
                    AttemptOutcome::Partial
                } else {
                    AttemptOutcome::Succeeded
                };
                if partial {
                    report.error = Some("some files could not be read (restic exit 3)".into());
                }
                if let Some(summary) =
                    restic::parse_summary(summary_lines.iter().map(String::as_str))
                {
                    report.snapshot_id = summary.snapshot_id;
                    report.files_new = Some(summary.files_new);
                    report.data_added = Some(summary.data_added);
                }
                self.persist(|s| {
                    s.backoff
                        .record_success(&Scope::Repository(task.repository.clone()));
                    s.backoff.record_success(&Scope::Agent);
                });
            }
            Classified::Interrupted => {
                report.outcome = AttemptOutcome::Interrupted;
                report.error = Some("restic was interrupted".into());
            }
            Classified::Failed {
                class,
                kind,
                message,
            } => {
                report.error_kind = Some(class);
                if kind == FailureKind::Locked {
                    // `restic unlock` removes stale locks only, and reports success even when a
                    // live lock stays: it runs before the next attempt, and its output is ignored.
                    lock(&self.inner.unlock_first).insert(task.repository.clone());
                }
                if class == ErrorClass::Retriable {
                    let scope = if outcome.stderr_tail.contains("no space left on device") {
                        Scope::Agent
                    } else {
                        Scope::Repository(task.repository.clone())
                    };
                    self.note_failure(scope, &message);
                }
                report.error = Some(message);
            }
        }
        Some(report)
    }

    /// Counts a retriable failure against `scope`; logs when a backoff starts.
    fn note_failure(&self, scope: Scope, message: &str) {
        let settings = *lock(&self.inner.settings);
        let now = self.now();
        let entered = {
            let mut rng = lock(&self.inner.rng);
            self.persist(|s| {
                s.backoff
                    .record_failure(scope.clone(), &settings, now, &mut *rng)
            })
        };
        if let Some(entered) = entered {
            let target = match &scope {
                Scope::Repository(name) => format!("repository {name}"),
                Scope::Agent => "the whole agent".to_owned(),
            };
            tracing::warn!(scope = %target, until = %entered.until, last_error = %message, "Entering backoff for {} minutes", entered.minutes);
            self.refresh_gauges();
        }
    }

    /// Makes sure a repository with `initIfMissing` exists, creating it once per agent process.
    async fn ensure_repository(
        &self,
        name: &str,
        repo: &RepositoryConfig,
    ) -> Result<(), (ErrorClass, String)> {
        // Only a repository the agent may create needs a probe: for any other, the real
        // command meets a missing repository itself (a permanent failure), and opening a
        // repository costs a key derivation (hundreds of milliseconds) worth not paying twice.
        if !repo.init_if_missing || lock(&self.inner.checked_repositories).contains(name) {
            return Ok(());
        }
        let version = self.inner.restic_version;
        let mut spec = self.spec(repo, restic::arguments(&Command::CatConfig, version), None);
        spec.timeout = Some(Duration::from_secs(300));
        let probe = self
            .inner
            .runner
            .run(spec, ProcessControl::none())
            .await
            .map_err(|e| (ErrorClass::Retriable, format!("cannot run restic: {e}")))?;
        if probe.status.success() {
            lock(&self.inner.checked_repositories).insert(name.to_owned());
            return Ok(());
        }
        let classified =
            restic::classify(version, TaskKind::Check, probe.status, &probe.stderr_tail);
        match classified {
            Classified::Failed {
                kind: FailureKind::NoRepository,
                ..
            } if repo.init_if_missing => {
                tracing::info!(repository = %name, "the repository does not exist; creating it (initIfMissing)");
                let mut spec = self.spec(repo, restic::arguments(&Command::Init, version), None);
                spec.timeout = Some(Duration::from_secs(300));
                let init = self
                    .inner
                    .runner
                    .run(spec, ProcessControl::none())
                    .await
                    .map_err(|e| (ErrorClass::Retriable, format!("cannot run restic: {e}")))?;
                if init.status.success() {
                    lock(&self.inner.checked_repositories).insert(name.to_owned());
                    Ok(())
                } else {
                    Err((
                        ErrorClass::Retriable,
                        format!("restic init failed: {}", init.stderr_tail.trim()),
                    ))
                }
            }
            Classified::Failed {
                kind: FailureKind::NoRepository | FailureKind::WrongPassword,
                class,
                message,
            } => Err((class, message)),
            // A lock or anything else: the real command meets it and is classified (and backed
            // off) like any other failure; the repository is probed again next time.
            _ => Ok(()),
        }
    }

    async fn restic_unlock(&self, name: &str, repo: &RepositoryConfig) {
        let mut spec = self.spec(
            repo,
            restic::arguments(&Command::Unlock, self.inner.restic_version),
            None,
        );
        spec.timeout = Some(Duration::from_secs(120));
        match self.inner.runner.run(spec, ProcessControl::none()).await {
            Ok(_) => tracing::info!(repository = %name, "ran restic unlock (stale locks only)"),
            Err(e) => tracing::warn!(repository = %name, error = %e, "restic unlock could not run"),
        }
    }

    fn record_outcome(&self, task: &ClaimedTask, report: &AttemptReport) {
        let outcome = match report.outcome {
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Partial => "partial",
            AttemptOutcome::Interrupted => "interrupted",
            _ => "failed",
        };
        let kind = task.kind.as_str();
        self.inner
            .metrics
            .tasks_total
            .get_or_create(&TaskLabels {
                kind: kind.into(),
                outcome: outcome.into(),
            })
            .inc();
        if let (Some(start), Some(end)) = (report.started_at, report.finished_at) {
            let secs = (end - start).num_milliseconds().max(0) as f64 / 1000.0;
            self.inner
                .metrics
                .task_duration
                .get_or_create(&KindLabels { kind: kind.into() })
                .observe(secs);
        }
        self.persist(|s| {
            *s.counters
                .tasks_total
                .entry(format!("{kind}/{outcome}"))
                .or_default() += 1
        });
    }

    // ------------------------------------------------------------------ outbox

    async fn outbox_loop(self) {
        loop {
            let next = self.deliver_due(false).await;
            let wait = next.map_or(Duration::from_secs(3600), |at| {
                (at - self.now()).to_std().unwrap_or(Duration::ZERO)
            });
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.inner.wake_outbox.notified() => {}
                () = self.inner.shutdown.cancelled() => return,
            }
        }
    }

    /// Delivers every entry that is due; returns when the next one is. `final_pass` tries each
    /// entry once more regardless of its schedule (shutdown).
    async fn deliver_due(&self, final_pass: bool) -> Option<DateTime<Utc>> {
        let mut tried = HashSet::new();
        loop {
            let now = self.now();
            let entry = {
                let state = lock(&self.inner.state);
                state
                    .outbox
                    .iter()
                    .find(|e| {
                        !tried.contains(&(e.task_id, e.report.attempt))
                            && (final_pass || e.next_try_at.is_none_or(|t| t <= now))
                    })
                    .cloned()
            };
            let Some(entry) = entry else {
                let state = lock(&self.inner.state);
                return state.outbox.iter().filter_map(|e| e.next_try_at).min();
            };
            tried.insert((entry.task_id, entry.report.attempt));
            let key = (entry.task_id, entry.report.attempt);
            match self.inner.client.report(entry.task_id, &entry.report).await {
                Ok(view) => {
                    self.persist(|s| s.outbox.retain(|e| (e.task_id, e.report.attempt) != key));
                    self.settled(&entry.report, &view);
                }
                Err(ClientError::Unreadable(e)) => {
                    // Any 2xx settles a result (DESIGN §3): the server has it.
                    tracing::warn!(task = %entry.task_id, attempt = entry.report.attempt, error = %e, "the server accepted a result but its answer could not be read; it leaves the outbox");
                    self.persist(|s| s.outbox.retain(|e| (e.task_id, e.report.attempt) != key));
                }
                Err(e) if e.is_transient() => {
                    let tries = entry.tries + 1;
                    let delay = e.retry_after().unwrap_or_else(|| {
                        let backoff = ExponentialBackoff::new(
                            Duration::from_secs(1),
                            2.0,
                            Duration::from_secs(300),
                            Jitter::Equal,
                        )
                        .unwrap_or_default();
                        backoff.delay(tries, &mut *lock(&self.inner.rng))
                    });
                    let at = now + TimeDelta::from_std(delay).unwrap_or(TimeDelta::seconds(300));
                    if tries == 1 || tries % 10 == 0 {
                        tracing::warn!(task = %entry.task_id, attempt = entry.report.attempt, tries, error = %e, "cannot deliver a result; keeping it in the outbox");
                    }
                    self.persist(|s| {
                        if let Some(e) = s
                            .outbox
                            .iter_mut()
                            .find(|e| (e.task_id, e.report.attempt) == key)
                        {
                            e.tries = tries;
                            e.next_try_at = Some(at);
                        }
                    });
                }
                Err(e) => {
                    tracing::error!(task = %entry.task_id, attempt = entry.report.attempt, error = %e, "the server refused a result; dropping it");
                    self.persist(|s| s.outbox.retain(|e| (e.task_id, e.report.attempt) != key));
                }
            }
        }
    }

    /// The server's decision on a delivered result.
    fn settled(&self, report: &AttemptReport, view: &TaskView) {
        if report.outcome == AttemptOutcome::Failed && view.status == TaskStatus::Pending {
            self.inner.metrics.retries_total.inc();
            self.persist(|s| s.counters.retries_total += 1);
            tracing::info!(task = %view.id, retry = view.retry_count, of = view.max_retries, next_retry_at = ?view.next_retry_at, "the server will retry the task");
        }
        if view.failed_permanently
            && view.permanent_reason == Some(PermanentReason::RetriesExhausted)
        {
            tracing::error!(task = %view.id, last_error = ?view.last_error, "Retry exhausted for task {}", view.id);
        } else if view.failed_permanently {
            tracing::error!(task = %view.id, last_error = ?view.last_error, "the task failed permanently");
        }
    }

    // ------------------------------------------------------------------ diagnostics

    fn refresh_gauges(&self) {
        let snapshot = self.inner.gate.snapshot();
        let queued = self
            .inner
            .lock_held()
            .values()
            .filter(|h| !h.running)
            .count();
        let backoff = lock(&self.inner.state).backoff.latest(self.now()).is_some();
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
        let state = lock(&self.inner.state).clone();
        let held = self.inner.lock_held();
        let last = *lock(&self.inner.last_heartbeat);
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
                bandwidth_in_use_kib: lock(&self.inner.ledger).in_use(),
                cgroup: "not used (the agent does not own a cgroup)".into(),
            },
        }
    }

    fn write_diagnostics(&self) {
        let path = self.inner.config.state_dir.join(DIAGNOSTICS_FILE);
        if let Ok(bytes) = serde_json::to_vec_pretty(&self.diagnostics())
            && let Err(e) =
                crate::state::write_atomically(&self.inner.config.state_dir, &path, &bytes)
        {
            tracing::debug!(error = %e, "cannot write diagnostics.json");
        }
    }
}

/// The file the running agent keeps its diagnostics in.
pub const DIAGNOSTICS_FILE: &str = "diagnostics.json";

enum StartAnswer {
    Go,
    NotOurs,
}

async fn detect_version(
    runner: &dyn ProcessRunner,
    binary: &std::path::Path,
) -> Result<ResticVersion, AgentError> {
    let mut spec = ProcessSpec::new(binary).args(restic::arguments(&Command::Version, None));
    spec.timeout = Some(Duration::from_secs(30));
    let outcome = runner.run(spec, ProcessControl::none()).await.map_err(|e| {
        AgentError::Restic(format!(
            "cannot run restic ({}): {e}; install it (Debian: apt-get install restic) or set resticBinary",
            binary.display()
        ))
    })?;
    ResticVersion::parse(&outcome.stdout_tail).ok_or_else(|| {
        AgentError::Restic(format!(
            "{} does not look like restic: `version` printed {:?}",
            binary.display(),
            outcome.stdout_tail.trim()
        ))
    })
}

/// `KEY=value` lines; blank lines and `#` comments skipped, optional quotes removed.
pub fn parse_env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let l = l.strip_prefix("export ").unwrap_or(l);
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            Some((k.trim().to_owned(), v.to_owned()))
        })
        .collect()
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

impl From<ClientError> for AgentError {
    fn from(e: ClientError) -> Self {
        AgentError::Io(e.to_string())
    }
}
