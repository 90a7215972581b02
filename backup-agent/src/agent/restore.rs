//! Bringing data back: a restore of a snapshot into a directory, and the listing of one
//! directory of a snapshot (the dashboard's browser). Both run like any task (the guard, the
//! gate, the quotas; a restore under the repository's shared lock, a listing under none) and
//! report what they found in the result.
//!
//! An embedder can ask for either without the orchestrator: [`Agent::restore`] and
//! [`Agent::list_directory`] run the same code under the same limits and guards.

use std::path::{Path, PathBuf};

use backup_core::{
    AttemptOutcome, AttemptReport, ClaimedTask, ErrorClass, LsEntry, MAX_LS_ENTRIES, TaskId,
    TaskKind, TaskOutput, TaskRequest,
};
use tokio_util::sync::CancellationToken;

use super::Agent;
use crate::{
    AgentError,
    restic::{self, Command, LsListing, ResticVersion},
};

/// A listing's time limit when the task sets none: a person is waiting for it.
pub(super) const LS_TIMEOUT_MINUTES: u32 = 15;

/// The most a listing's entries may take in a result (about, as JSON): the server takes bodies
/// up to 1 MiB, and the rest of the report needs room too.
const LS_MAX_BYTES: usize = 768 * 1024;

/// restic's command for a restore or a listing; a dry run on a restic that cannot do one is
/// refused (permanently: retrying would not upgrade restic).
pub(super) fn command(
    task: &ClaimedTask,
    version: Option<ResticVersion>,
) -> Result<Command<'_>, String> {
    let snapshot = task.request.snapshot_id.as_deref().unwrap_or_default();
    match task.kind {
        TaskKind::Restore => {
            if task.request.dry_run && !version.is_some_and(|v| v.has_restore_summary()) {
                return Err(format!(
                    "dryRun: a dry run needs restic 0.17 or later; this agent runs restic {}",
                    version.map_or_else(|| "of an unknown version".to_owned(), |v| v.to_string())
                ));
            }
            Ok(Command::Restore {
                snapshot,
                target: task.request.target.as_deref().unwrap_or_default(),
                include: &task.request.include,
                dry_run: task.request.dry_run,
            })
        }
        _ => Ok(Command::Ls {
            snapshot,
            path: task.request.path.as_deref().unwrap_or("/"),
        }),
    }
}

/// What an attempt keeps of restic's standard output while it runs: the summary lines (of a
/// backup or a restore), or the entries of a listing (bounded as they come, so a directory of
/// a million files costs no more than the bound).
#[derive(Debug)]
pub(super) enum Output {
    /// JSON `summary` lines.
    Summary(Vec<String>),
    /// A listing's entries.
    Listing(LsListing),
}

impl Output {
    pub(super) fn for_task(task: &ClaimedTask) -> Self {
        match task.kind {
            TaskKind::Ls => Output::Listing(LsListing::new(
                task.request.path.as_deref().unwrap_or("/"),
                MAX_LS_ENTRIES,
                LS_MAX_BYTES,
            )),
            _ => Output::Summary(Vec::new()),
        }
    }

    pub(super) fn push_line(&mut self, line: String) {
        match self {
            Output::Summary(lines) => {
                if line.contains("\"summary\"") {
                    lines.push(line);
                }
            }
            Output::Listing(listing) => listing.push_line(&line),
        }
    }

    /// Puts what a successful attempt found into its report.
    pub(super) async fn fill(self, task: &ClaimedTask, report: &mut AttemptReport) {
        match (task.kind, self) {
            (TaskKind::Backup, Output::Summary(lines)) => {
                if let Some(summary) = restic::parse_summary(lines.iter().map(String::as_str)) {
                    report.snapshot_id = summary.snapshot_id;
                    report.files_new = Some(summary.files_new);
                    report.data_added = Some(summary.data_added);
                }
            }
            (TaskKind::Restore, Output::Summary(lines)) => {
                let (files, bytes) =
                    match restic::parse_restore_summary(lines.iter().map(String::as_str)) {
                        Some(summary) => (summary.files_restored, summary.bytes_restored),
                        // restic before 0.17 says nothing: count what is there now.
                        None => {
                            let (target, include) = (
                                PathBuf::from(task.request.target.clone().unwrap_or_default()),
                                task.request.include.clone(),
                            );
                            tokio::task::spawn_blocking(move || counted(&target, &include))
                                .await
                                .unwrap_or_default()
                        }
                    };
                report.output.files_restored = Some(files);
                report.output.bytes_restored = Some(bytes);
            }
            (TaskKind::Ls, Output::Listing(listing)) => {
                let (entries, truncated) = listing.finish();
                report.output.entries = Some(entries);
                report.output.truncated = truncated;
            }
            _ => {}
        }
    }
}

/// The files (every entry but directories, as restic counts) and bytes under what a restore
/// wrote: the target's copies of the `include` paths, or the whole target. For restic before
/// 0.17, which reports no summary; a target that held files before counts them too.
fn counted(target: &Path, include: &[String]) -> (u64, u64) {
    let roots: Vec<PathBuf> = if include.is_empty() {
        vec![target.to_owned()]
    } else {
        include
            .iter()
            .map(|i| target.join(i.trim_start_matches('/')))
            .collect()
    };
    let (mut files, mut bytes) = (0u64, 0u64);
    let mut stack = roots;
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(dir) = std::fs::read_dir(&path) {
                stack.extend(dir.flatten().map(|e| e.path()));
            }
        } else {
            files += 1;
            if meta.is_file() {
                bytes += meta.len();
            }
        }
    }
    (files, bytes)
}

impl Agent {
    /// Restores `request.snapshot_id` of `repository` into `request.target` (only the
    /// `request.include` paths, when given), as a restore task would: under the gate's
    /// `maxConcurrentRestores`, the repository's shared lock, the CPU quota, and the guard
    /// (`restoreTargets`). Needs no orchestrator; the agent must have been started.
    ///
    /// ```no_run
    /// # async fn doc(agent: &backup_agent::Agent) -> Result<(), backup_agent::AgentError> {
    /// use backup_core::TaskRequest;
    /// let output = agent
    ///     .restore("main", TaskRequest {
    ///         snapshot_id: Some("4bd3a9f2".into()),
    ///         include: vec!["/etc/hosts".into()],
    ///         target: Some("/var/lib/backup-agent/restores/hosts".into()),
    ///         ..TaskRequest::default()
    ///     })
    ///     .await?;
    /// println!("{:?} files restored", output.files_restored);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`AgentError::Failed`] with restic's words or the guard's refusal, and whether a retry
    /// may help.
    pub async fn restore(
        &self,
        repository: &str,
        request: TaskRequest,
    ) -> Result<TaskOutput, AgentError> {
        self.run_locally(TaskKind::Restore, repository, request)
            .await
    }

    /// Lists one directory (`path`, absolute inside the snapshot) of `snapshot` in
    /// `repository`, as a listing task would: the entries one level below it, at most 10,000
    /// (`truncated` past that).
    ///
    /// # Errors
    /// As [`Agent::restore`].
    pub async fn list_directory(
        &self,
        repository: &str,
        snapshot: &str,
        path: &str,
    ) -> Result<(Vec<LsEntry>, bool), AgentError> {
        let request = TaskRequest {
            snapshot_id: Some(snapshot.to_owned()),
            path: Some(path.to_owned()),
            ..TaskRequest::default()
        };
        let output = self.run_locally(TaskKind::Ls, repository, request).await?;
        Ok((output.entries.unwrap_or_default(), output.truncated))
    }

    /// Runs a restore or a listing that no server handed out: the worker's path without the
    /// server's start, its outbox or its counters.
    async fn run_locally(
        &self,
        kind: TaskKind,
        repository: &str,
        request: TaskRequest,
    ) -> Result<TaskOutput, AgentError> {
        let task = ClaimedTask {
            id: TaskId::new(),
            policy_id: None,
            kind,
            attempt: 1,
            retry_count: 0,
            max_retries: 0,
            next_retry_at: None,
            timeout_minutes: None,
            paths: Vec::new(),
            excludes: Vec::new(),
            repository: repository.to_owned(),
            retention: None,
            request,
        };
        let finished = self.execute(&task, &CancellationToken::new(), false).await;
        // Its process record goes with it: nobody is to be told of it after a crash.
        self.persist(|s| s.state.processes.retain(|p| p.task_id != task.id))
            .await;
        let Some(finished) = finished else {
            return Err(AgentError::Failed {
                class: ErrorClass::Retriable,
                message: "stopped: the agent is shutting down".into(),
            });
        };
        match finished.report.outcome {
            AttemptOutcome::Succeeded | AttemptOutcome::Partial => Ok(finished.report.output),
            _ => Err(AgentError::Failed {
                class: finished.report.error_kind.unwrap_or(ErrorClass::Retriable),
                message: finished
                    .report
                    .error
                    .unwrap_or_else(|| "restic did not finish".into()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_restic_is_counted_from_what_the_restore_left() {
        let dir = std::env::temp_dir().join(format!("counted-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("srv/www")).expect("mkdir");
        std::fs::write(dir.join("srv/www/a"), b"12345").expect("write");
        std::fs::write(dir.join("srv/b"), b"123").expect("write");
        std::os::unix::fs::symlink("a", dir.join("srv/www/link")).expect("symlink");
        assert_eq!(counted(&dir, &[]), (3, 8));
        assert_eq!(counted(&dir, &["/srv/www".into()]), (2, 5));
        assert_eq!(counted(&dir, &["/nowhere".into()]), (0, 0));
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
