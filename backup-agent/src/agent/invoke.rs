//! Running restic: the process spec (environment, niceness, I/O class, `GOMAXPROCS`,
//! bandwidth), the command for a task's kind, and what its exit means for the attempt. The
//! meaning of restic's exit codes and output lives in `restic.rs`; here it becomes a report
//! and a backoff change.

use std::{sync::Arc, time::Duration};

use backup_core::{
    AttemptOutcome, AttemptReport, ClaimedTask, ErrorClass, IoClass, ProcessControl, ProcessEvent,
    ProcessSpec, StopSignal, Stream, TaskKind, Termination,
};
use tokio_util::sync::CancellationToken;

use super::{
    Agent,
    reach::{self, Reach},
    restore::{self, Output},
    worker::{BackoffChange, Finished},
};
use crate::{
    config::{RepositoryConfig, parse_env_file},
    guard, quota,
    repo_backoff::Scope,
    restic::{self, Classified, Command, FailureKind},
    state::ProcessRecord,
};

/// The environment variable naming the task and attempt (`<task id>/<attempt>`) a task's restic
/// process serves.
pub const TASK_ENV: &str = "BACKUP_AGENT_TASK";

/// Whether an attempt's outcome feeds the backoff of its repository: the scheduled kinds do.
/// A restore or a listing that a person asked for is rare and says little about the health of
/// the repository (a target without room, a path that does not exist); it neither starts nor
/// ends a backoff.
fn counts_for_backoff(task: &ClaimedTask) -> bool {
    task.kind.is_scheduled()
}

/// What restic inherits from the agent's environment: the search path, the home and temporary
/// directories, the locale. Everything else it needs comes from the repository's configuration.
fn inherited(name: &str) -> bool {
    matches!(name, "PATH" | "HOME" | "TMPDIR" | "LANG" | "LANGUAGE") || name.starts_with("LC_")
}

impl Agent {
    pub(super) fn spec(
        &self,
        repo: &RepositoryConfig,
        args: Vec<String>,
        kind: Option<TaskKind>,
    ) -> ProcessSpec {
        let settings = self.shared().settings;
        let mut spec = ProcessSpec::new(self.inner.config.restic_binary.clone()).args(args);
        // restic gets a cleared environment: the agent's token (and whatever else its own
        // environment holds) never reaches it; only what it needs is passed on.
        spec.clear_env = true;
        spec.env
            .extend(std::env::vars().filter(|(k, _)| inherited(k)));
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

    pub(super) async fn run_restic(
        &self,
        task: &ClaimedTask,
        repo: &RepositoryConfig,
        cancel: &CancellationToken,
    ) -> Option<Finished> {
        let settings = self.shared().settings;
        let version = self.inner.restic_version;
        let mut tags: Vec<String> = task
            .policy_id
            .iter()
            .map(|p| format!("policy:{p}"))
            .collect();
        tags.push(format!("task:{}", task.id));
        let retention = guard::effective_retention(task.retention, repo);
        let mut excludes = task.excludes.clone();
        excludes.extend(guard::own_secrets(&self.inner.config));
        let limit_upload = if task.kind == TaskKind::Backup {
            self.shared().ledger.reserve(
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
                excludes: &excludes,
                host: &self.inner.options.hostname,
                tags: &tags,
                limit_upload_kib: limit_upload,
            },
            TaskKind::Check => Command::Check,
            TaskKind::Prune => Command::Prune {
                retention: &retention,
                host: &self.inner.options.hostname,
            },
            TaskKind::Restore | TaskKind::Ls => match restore::command(task, version) {
                Ok(command) => command,
                Err(refused) => {
                    return Some(Finished::failed(
                        task.attempt,
                        ErrorClass::Permanent,
                        refused,
                        None,
                    ));
                }
            },
            // A kind this agent does not know is never run as something else (the guard
            // refuses it before it gets here).
            other => {
                self.shared().ledger.release(task.id);
                return Some(Finished::failed(
                    task.attempt,
                    ErrorClass::Permanent,
                    format!("this agent does not run {other:?} tasks"),
                    None,
                ));
            }
        };
        let args =
            restic::arguments_waiting(&command, version, self.inner.config.lock_wait_seconds);
        let mut spec = self.spec(repo, args, Some(task.kind));
        // Which task and attempt a restic process serves, readable in /proc/<pid>/environ
        // (restic ignores it): an operator's `ps` finds it, the soak test's observer checks
        // that no task ever has two.
        spec.env
            .push((TASK_ENV.into(), format!("{}/{}", task.id, task.attempt)));
        let minutes = task.timeout_minutes.unwrap_or_else(|| match task.kind {
            // A person waits for a listing: it has minutes, not the hours of a backup.
            TaskKind::Ls => restore::LS_TIMEOUT_MINUTES.min(self.inner.config.task_timeout_minutes),
            _ => self.inner.config.task_timeout_minutes,
        });
        spec.timeout = Some(Duration::from_secs(u64::from(minutes) * 60));

        let (stopper, stop) = StopSignal::pair();
        let reach = Arc::new(Reach::default());
        let watchdog = (self.inner.config.repository_timeout_seconds > 0).then(|| {
            reach.watch(
                Duration::from_secs(u64::from(self.inner.config.repository_timeout_seconds)),
                stopper.clone(),
            )
        });
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
            let mut output = Output::for_task(task);
            let reach = reach.clone();
            tokio::spawn(async move {
                while let Some(event) = rx.recv().await {
                    match event {
                        ProcessEvent::Started { pid, pgid } => {
                            let record = ProcessRecord {
                                pgid,
                                start_ticks: crate::state::process_start_ticks(pid),
                                task_id,
                                attempt,
                                kind,
                                repository: repository.clone(),
                            };
                            agent.persist(|s| s.state.processes.push(record)).await;
                        }
                        ProcessEvent::Line {
                            stream: Stream::Stdout,
                            line,
                        } => {
                            reach.note(Stream::Stdout, &line);
                            output.push_line(line);
                        }
                        ProcessEvent::Line { stream, line } => reach.note(stream, &line),
                        _ => {}
                    }
                }
                output
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
        if let Some(watchdog) = watchdog {
            watchdog.abort();
        }
        let output = recorder.await.unwrap_or_else(|_| Output::for_task(task));
        self.shared().ledger.release(task.id);
        // The process record stays until the result is in the outbox (see `work`).

        let mut report = AttemptReport::new(task.attempt, AttemptOutcome::Failed);
        let outcome = match result {
            Err(e) => {
                // restic could not even start: a fault of the agent, not of the repository.
                return Some(Finished::failed(
                    task.attempt,
                    ErrorClass::Retriable,
                    format!("cannot run restic: {e}"),
                    Some(Scope::Agent),
                ));
            }
            Ok(outcome) => outcome,
        };
        report.exit_code = outcome.status.code();
        if let Some(last) = reach.fired() {
            // Stopped by the watchdog: the repository never answered. A failure of the
            // repository, retried by the budget and counted toward its backoff.
            let mut finished = Finished::failed(
                task.attempt,
                ErrorClass::Retriable,
                format!(
                    "the repository did not answer within {} s (repositoryTimeoutSeconds); restic: {last}",
                    self.inner.config.repository_timeout_seconds
                ),
                counts_for_backoff(task).then(|| Scope::Repository(task.repository.clone())),
            );
            finished.report.exit_code = report.exit_code;
            return Some(finished);
        }
        let finished_anyway = matches!(
            restic::classify(version, task.kind, outcome.status, ""),
            Classified::Succeeded | Classified::Partial
        );
        match outcome.terminated {
            // Stopped (a cancel, the agent's shutdown, the timeout), unless restic finished its
            // work before the signal took effect: a snapshot it made is reported, not retried
            // into a second.
            Some(Termination::Stopped) if !finished_anyway => {
                if cancel.is_cancelled() {
                    return None;
                }
                return self.given_up(task, cancel);
            }
            Some(Termination::TimedOut) if !finished_anyway => {
                // restic was stopped; its lock may remain if SIGKILL was needed.
                self.restic_unlock(&task.repository, repo).await;
                let mut finished = Finished::failed(
                    task.attempt,
                    ErrorClass::Retriable,
                    format!("timed out after {minutes} minutes"),
                    counts_for_backoff(task).then(|| Scope::Repository(task.repository.clone())),
                );
                finished.report.exit_code = report.exit_code;
                return Some(finished);
            }
            _ => {}
        }
        let backoff =
            match restic::classify(version, task.kind, outcome.status, &outcome.stderr_tail) {
                Classified::Succeeded | Classified::Partial => {
                    let partial = restic::classify(version, task.kind, outcome.status, "")
                        == Classified::Partial;
                    report.outcome = if partial {
                        AttemptOutcome::Partial
                    } else {
                        AttemptOutcome::Succeeded
                    };
                    if partial {
                        report.error = Some("some files could not be read (restic exit 3)".into());
                    }
                    output.fill(task, &mut report).await;
                    counts_for_backoff(task)
                        .then(|| BackoffChange::Success(task.repository.clone()))
                }
                Classified::Interrupted => {
                    report.outcome = AttemptOutcome::Interrupted;
                    report.error = Some("restic was interrupted".into());
                    None
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
                        self.shared().unlock_first.insert(task.repository.clone());
                    }
                    report.error = Some(message.clone());
                    (class == ErrorClass::Retriable && counts_for_backoff(task)).then(|| {
                        // A full disk is the machine's fault, not the repository's.
                        let scope = if kind == FailureKind::DiskFull {
                            Scope::Agent
                        } else {
                            Scope::Repository(task.repository.clone())
                        };
                        BackoffChange::Failure { scope, message }
                    })
                }
            };
        Some(Finished::new(report, backoff))
    }

    /// Makes sure a repository with `initIfMissing` exists, creating it once per agent process.
    pub(super) async fn ensure_repository(
        &self,
        name: &str,
        repo: &RepositoryConfig,
    ) -> Result<(), (ErrorClass, String)> {
        // Only a repository the agent may create needs a probe: for any other, the real
        // command meets a missing repository itself (a permanent failure), and opening a
        // repository costs a key derivation (hundreds of milliseconds) worth not paying twice.
        if !repo.init_if_missing || self.shared().checked_repositories.contains(name) {
            return Ok(());
        }
        let version = self.inner.restic_version;
        let mut spec = self.spec(repo, restic::arguments(&Command::CatConfig, version), None);
        // The probe only opens the repository: it gets the time to reach it, no more.
        let reach_seconds = match self.inner.config.repository_timeout_seconds {
            0 => 300,
            n => n,
        };
        spec.timeout = Some(Duration::from_secs(u64::from(reach_seconds)));
        let probe = self
            .inner
            .runner
            .run(spec, ProcessControl::none())
            .await
            .map_err(|e| (ErrorClass::Retriable, format!("cannot run restic: {e}")))?;
        if probe.terminated == Some(Termination::TimedOut) {
            let last = probe
                .stderr_tail
                .lines()
                .rev()
                .find(|l| reach::retries_opening(l));
            return Err((
                ErrorClass::Retriable,
                format!(
                    "the repository did not answer within {reach_seconds} s (repositoryTimeoutSeconds); restic: {}",
                    last.unwrap_or("no answer").trim()
                ),
            ));
        }
        if probe.status.success() {
            self.shared().checked_repositories.insert(name.to_owned());
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
                    self.shared().checked_repositories.insert(name.to_owned());
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

    pub(super) async fn restic_unlock(&self, name: &str, repo: &RepositoryConfig) {
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
}
