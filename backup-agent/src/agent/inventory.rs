//! The snapshot inventory: at start, and after every backup or prune that succeeded, the agent
//! lists its own host's snapshots in that repository (`restic snapshots --json --host <host>`)
//! and sends the whole list to the server, which replaces what it had. A report that fails
//! stays due and is tried again one heartbeat interval later: the list is rebuilt from restic
//! each time, so nothing is lost by waiting.

use std::time::Duration;

use backup_core::{SnapshotList, SnapshotReport, SnapshotSummary, SnapshotsStored};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::Agent;
use crate::restic::{self, Command};

/// The largest body the server takes (1 MiB) less room for the envelope: a longer list keeps
/// the newest snapshots that fit.
const MAX_REPORT_BYTES: usize = 1024 * 1024 - 4 * 1024;

/// The most of `restic snapshots --json` the agent reads (about 40,000 snapshots).
const MAX_LISTING_BYTES: usize = 16 * 1024 * 1024;

/// One entry of `restic snapshots --json` (0.14 and later; `summary` from 0.17).
#[derive(Deserialize)]
struct Listed {
    id: String,
    time: DateTime<Utc>,
    #[serde(default)]
    hostname: String,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    summary: Option<ListedSummary>,
}

#[derive(Deserialize)]
struct ListedSummary {
    files_new: Option<u64>,
    data_added: Option<u64>,
    total_bytes_processed: Option<u64>,
}

/// The snapshots in restic's JSON listing (`null` or `[]` for none).
/// The `id` of `restic cat config`'s JSON, when it is restic's 64-hex id.
pub(crate) fn repository_id(stdout: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Config {
        id: String,
    }
    let config: Config = serde_json::from_str(stdout.trim()).ok()?;
    (config.id.len() == 64 && config.id.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| config.id.to_ascii_lowercase())
}

pub(crate) fn parse_listing(stdout: &str) -> Result<Vec<SnapshotReport>, String> {
    let listed: Option<Vec<Listed>> = serde_json::from_str(stdout.trim())
        .map_err(|e| format!("restic snapshots --json printed something else: {e}"))?;
    Ok(listed
        .unwrap_or_default()
        .into_iter()
        .map(|s| SnapshotReport {
            id: s.id,
            time: s.time,
            hostname: s.hostname,
            paths: s.paths,
            tags: s.tags.unwrap_or_default(),
            summary: s.summary.map(|m| SnapshotSummary {
                files_new: m.files_new,
                data_added: m.data_added,
                total_bytes: m.total_bytes_processed,
            }),
        })
        .collect())
}

/// The newest snapshots of `all` whose report fits in `max_bytes`; whether some were left out.
pub(crate) fn fitting(mut all: Vec<SnapshotReport>, max_bytes: usize) -> (SnapshotList, bool) {
    all.sort_by_key(|s| std::cmp::Reverse(s.time));
    let mut used = 32;
    let mut keep = 0;
    for s in &all {
        let size = serde_json::to_vec(s).map_or(usize::MAX, |v| v.len() + 1);
        if used + size > max_bytes {
            break;
        }
        used += size;
        keep += 1;
    }
    let cut = keep < all.len();
    all.truncate(keep);
    (SnapshotList { snapshots: all }, cut)
}

impl Agent {
    /// Marks `repository`'s inventory as due and wakes the reporter.
    pub(super) fn snapshots_changed(&self, repository: &str) {
        self.shared().inventory_due.insert(repository.to_owned());
        self.inner.wake_inventory.notify_one();
    }

    /// Reports every due repository's snapshots; one that fails stays due and is tried again
    /// one heartbeat interval later.
    pub(super) async fn inventory_loop(self) {
        let names: Vec<String> = self.inner.config.repositories.keys().cloned().collect();
        for name in &names {
            self.shared().inventory_due.insert(name.clone());
        }
        let retry = Duration::from_secs(u64::from(
            self.inner.config.heartbeat_interval_seconds.max(1),
        ));
        loop {
            let due: Vec<String> = self.shared().inventory_due.drain().collect();
            let mut failed = false;
            for name in due {
                if self.inner.shutdown.is_cancelled() {
                    return;
                }
                match self.report_snapshots(&name).await {
                    Ok((stored, cut)) => {
                        if cut || stored.truncated {
                            tracing::warn!(repository = %name, stored = stored.stored, "more snapshots than one report carries: the newest were reported");
                        } else {
                            tracing::debug!(repository = %name, stored = stored.stored, "snapshots reported");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(repository = %name, error = %e, "cannot report the repository's snapshots; trying again later");
                        self.shared().inventory_due.insert(name);
                        failed = true;
                    }
                }
            }
            let pause = async {
                if failed {
                    tokio::time::sleep(retry).await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                () = self.inner.wake_inventory.notified() => {}
                () = pause => {}
                () = self.inner.shutdown.cancelled() => return,
            }
        }
    }

    /// restic's id of `name` (from `restic cat config`), once: it is kept in the state file.
    async fn learn_repository_id(
        &self,
        name: &str,
        repo: &crate::RepositoryConfig,
    ) -> Result<(), String> {
        if self.shared().state.repository_ids.contains_key(name) {
            return Ok(());
        }
        let args = restic::arguments(&Command::CatConfig, self.inner.restic_version);
        let mut spec = self.spec(repo, args, None);
        spec.timeout = Some(Duration::from_secs(300));
        let (outcome, unreachable) = self.run_reaching(spec).await;
        if let Some(last) = unreachable {
            return Err(format!("the repository did not answer: {last}"));
        }
        let outcome = outcome.map_err(|e| format!("cannot run restic: {e}"))?;
        let id = outcome
            .status
            .success()
            .then(|| repository_id(&outcome.stdout_tail))
            .flatten()
            .ok_or_else(|| {
                let last = outcome
                    .stderr_tail
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .to_owned();
                format!("restic cat config failed: {last}")
            })?;
        let name = name.to_owned();
        self.persist(|s| s.state.repository_ids.insert(name, id))
            .await;
        // The server learns it with the next heartbeat.
        self.inner.wake_heartbeat.notify_one();
        Ok(())
    }

    /// Lists `name`'s snapshots of this host with restic and sends them.
    async fn report_snapshots(&self, name: &str) -> Result<(SnapshotsStored, bool), String> {
        let repo = self
            .inner
            .config
            .repositories
            .get(name)
            .ok_or_else(|| format!("no repository {name:?} in the configuration"))?
            .clone();
        self.learn_repository_id(name, &repo).await?;
        let args = restic::arguments(
            &Command::Snapshots {
                host: &self.inner.options.hostname,
            },
            self.inner.restic_version,
        );
        let mut spec = self.spec(&repo, args, None);
        spec.timeout = Some(Duration::from_secs(300));
        spec.tail_bytes = MAX_LISTING_BYTES;
        // Shared, like a backup: a running check or prune finishes first.
        let _lock = tokio::select! {
            guard = self.inner.locks.acquire(name, false) => guard,
            () = self.inner.shutdown.cancelled() => return Err("shutting down".into()),
        };
        let (outcome, unreachable) = self.run_reaching(spec).await;
        if let Some(last) = unreachable {
            return Err(format!(
                "the repository did not answer within {} s (repositoryTimeoutSeconds): {last}",
                self.inner.config.repository_timeout_seconds
            ));
        }
        let outcome = outcome.map_err(|e| format!("cannot run restic: {e}"))?;
        if !outcome.status.success() {
            let last = outcome.stderr_tail.lines().last().unwrap_or_default();
            return Err(format!(
                "restic snapshots failed ({:?}): {last}",
                outcome.status
            ));
        }
        let (list, cut) = fitting(parse_listing(&outcome.stdout_tail)?, MAX_REPORT_BYTES);
        let stored = self
            .inner
            .client
            .report_snapshots(name, &list)
            .await
            .map_err(|e| e.to_string())?;
        Ok((stored, cut))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// restic 0.14's `snapshots --json` (one entry, trimmed of fields the agent ignores) and
    /// 0.17's with its summary.
    const V014: &str = r#"[{"time":"2026-03-01T10:00:00.123456789+01:00","tree":"t","paths":["/srv"],"hostname":"db-1","username":"root","tags":["policy:x"],"id":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","short_id":"01234567"}]"#;
    const V017: &str = r#"[{"time":"2026-03-01T09:00:00Z","paths":["/srv"],"hostname":"db-1","id":"ab","summary":{"files_new":3,"data_added":1000,"total_bytes_processed":5000,"backup_start":"2026-03-01T09:00:00Z"}}]"#;

    #[test]
    fn listings_of_both_versions_parse() {
        let old = parse_listing(V014).expect("0.14");
        assert_eq!(old[0].id.len(), 64);
        assert_eq!(
            old[0].time.to_rfc3339(),
            "2026-03-01T09:00:00.123456789+00:00"
        );
        assert_eq!(old[0].tags, ["policy:x"]);
        assert_eq!(old[0].summary, None);
        let new = parse_listing(V017).expect("0.17");
        assert_eq!(
            new[0].summary,
            Some(SnapshotSummary {
                files_new: Some(3),
                data_added: Some(1000),
                total_bytes: Some(5000)
            })
        );
        assert!(new[0].tags.is_empty());
        assert!(parse_listing("null\n").expect("none").is_empty());
        assert!(parse_listing("[]").expect("none").is_empty());
        assert!(parse_listing("Fatal: x").is_err());
    }

    #[test]
    fn a_long_list_keeps_the_newest_that_fit() {
        let one = parse_listing(V014).expect("parse").remove(0);
        let all: Vec<SnapshotReport> = (0..100)
            .map(|i| SnapshotReport {
                time: one.time + chrono::TimeDelta::minutes(i),
                ..one.clone()
            })
            .collect();
        let size = serde_json::to_vec(&all[0]).expect("json").len();
        let (list, cut) = fitting(all.clone(), 32 + 10 * (size + 1));
        assert!(cut);
        assert_eq!(list.snapshots.len(), 10);
        assert_eq!(list.snapshots[0].time, all[99].time, "newest first");
        let (list, cut) = fitting(all, MAX_REPORT_BYTES);
        assert_eq!((list.snapshots.len(), cut), (100, false));
    }
}
