//! The agent's state file: what must survive a restart or a crash.
//!
//! Repository backoff timers and failure counts, the process groups of running restic children
//! (so a restarted agent can kill what a crashed one left behind), the metrics counters, and the
//! outbox of results the server has not acknowledged. It is written atomically on every change
//! (temp file, fsync, rename, fsync of the directory): after a crash the file holds either the
//! old state or the new one, never a mix. A file that does not parse is moved aside with a
//! warning, never silently dropped.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    io::Write,
    path::{Path, PathBuf},
};

use backup_core::{AttemptReport, TaskId, TaskKind};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::repo_backoff::{BackoffTracker, Entry, Scope};

/// The start time of `pid` in clock ticks since boot (`/proc/<pid>/stat` field 22): what a
/// [`ProcessRecord`] keeps, so that a pid reused by another program is never taken for restic.
pub fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: fields after it follow
    // the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// The file's name in `stateDir`.
pub const STATE_FILE: &str = "state.json";
const FORMAT_VERSION: u32 = 1;

/// A restic child the agent started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessRecord {
    /// Its process group (its pid).
    pub pgid: u32,
    /// Its start time in clock ticks since boot (`/proc/<pid>/stat` field 22): a pid reused
    /// by another program after a reboot does not match it.
    pub start_ticks: Option<u64>,
    /// The task it runs.
    pub task_id: TaskId,
    /// The attempt it runs.
    pub attempt: u32,
    /// Its kind.
    pub kind: TaskKind,
    /// Its repository (to unlock after killing it).
    pub repository: String,
}

/// A result waiting for the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxEntry {
    /// The task.
    pub task_id: TaskId,
    /// What to send.
    pub report: AttemptReport,
    /// Deliveries tried so far.
    pub tries: u32,
    /// Not before this time.
    pub next_try_at: Option<DateTime<Utc>>,
    /// Since when the server has answered 401 to it (a token being rotated), if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused_since: Option<DateTime<Utc>>,
}

impl OutboxEntry {
    /// A result to deliver now.
    pub fn new(task_id: TaskId, report: AttemptReport) -> Self {
        Self {
            task_id,
            report,
            tries: 0,
            next_try_at: None,
            refused_since: None,
        }
    }
}

/// Counters that must not restart from zero with the agent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    /// Attempts the server answered with a retry.
    pub retries_total: u64,
    /// Finished attempts by `kind/outcome`.
    pub tasks_total: BTreeMap<String, u64>,
}

/// Everything in the state file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentState {
    /// Format version.
    #[serde(default)]
    pub version: u32,
    /// Repository and agent backoff.
    #[serde(default)]
    pub backoff: BackoffTracker,
    /// Running restic children.
    #[serde(default)]
    pub processes: Vec<ProcessRecord>,
    /// Results not yet acknowledged.
    #[serde(default)]
    pub outbox: Vec<OutboxEntry>,
    /// Metrics counters.
    #[serde(default)]
    pub counters: Counters,
    /// restic's id of each repository (from its config), read once and reported in every
    /// heartbeat: the server coordinates agents that share a repository by it.
    #[serde(default)]
    pub repository_ids: std::collections::BTreeMap<String, String>,
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("state file {path}: {source}")]
pub struct StateError {
    path: PathBuf,
    source: std::io::Error,
}

/// What loading found.
#[derive(Debug)]
pub struct Loaded {
    /// The state (empty when there was none or it was corrupt).
    pub state: AgentState,
    /// Where a corrupt file was moved, if one was.
    pub moved_aside: Option<PathBuf>,
}

/// The state file in a directory.
#[derive(Clone, Debug)]
pub struct StateFile {
    dir: PathBuf,
    path: PathBuf,
}

impl StateFile {
    /// The state file of `dir` (created if missing).
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn new(dir: &Path) -> Result<Self, StateError> {
        fs::create_dir_all(dir).map_err(|source| StateError {
            path: dir.to_owned(),
            source,
        })?;
        Ok(Self {
            dir: dir.to_owned(),
            path: dir.join(STATE_FILE),
        })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the state; a missing file is an empty state, a corrupt one is moved aside.
    ///
    /// # Errors
    /// When the file exists but cannot be read or moved.
    pub fn load(&self) -> Result<Loaded, StateError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Loaded {
                    state: AgentState::default(),
                    moved_aside: None,
                });
            }
            Err(source) => {
                return Err(StateError {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        match parse(&bytes) {
            Some(state) => Ok(Loaded {
                state,
                moved_aside: None,
            }),
            None => {
                let stamp = Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
                let unique = &uuid::Uuid::new_v4().simple().to_string()[..8];
                let aside = self
                    .dir
                    .join(format!("{STATE_FILE}.corrupt-{stamp}-{unique}"));
                fs::rename(&self.path, &aside).map_err(|source| StateError {
                    path: self.path.clone(),
                    source,
                })?;
                Ok(Loaded {
                    state: AgentState::default(),
                    moved_aside: Some(aside),
                })
            }
        }
    }

    /// Writes the state atomically: temp file, fsync, rename over the old one, fsync the
    /// directory.
    ///
    /// # Errors
    /// When any step fails; the old file is then intact.
    pub fn save(&self, state: &AgentState) -> Result<(), StateError> {
        let bytes = encode(state).map_err(|e| StateError {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        self.save_encoded(&bytes)
    }

    /// Writes bytes made by [`encode`] atomically, as [`StateFile::save`] does.
    ///
    /// # Errors
    /// When any step fails; the old file is then intact.
    pub fn save_encoded(&self, bytes: &[u8]) -> Result<(), StateError> {
        write_atomically(&self.dir, &self.path, bytes).map_err(|source| StateError {
            path: self.path.clone(),
            source,
        })
    }
}

/// The bytes of a state file (compact JSON, stamped with the format version).
///
/// # Errors
/// When the state cannot be serialized (it always can).
pub fn encode(state: &AgentState) -> serde_json::Result<Vec<u8>> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Stamped<'a> {
        version: u32,
        backoff: &'a BackoffTracker,
        processes: &'a [ProcessRecord],
        outbox: &'a [OutboxEntry],
        counters: &'a Counters,
        repository_ids: &'a BTreeMap<String, String>,
    }
    serde_json::to_vec(&Stamped {
        version: FORMAT_VERSION,
        backoff: &state.backoff,
        processes: &state.processes,
        outbox: &state.outbox,
        counters: &state.counters,
        repository_ids: &state.repository_ids,
    })
}

/// The state in `bytes`, if they are a complete state file.
pub fn parse(bytes: &[u8]) -> Option<AgentState> {
    serde_json::from_slice::<AgentState>(bytes).ok()
}

/// temp + fsync + rename + fsync(dir): after a crash at any point the path holds the old bytes
/// or the new ones.
pub fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    replace(dir, path, bytes, true)
}

/// temp + rename, without the fsyncs: readers never see a half-written file, but a power loss
/// may bring back an older one. For files rewritten often that nothing depends on
/// (`diagnostics.json`).
pub(crate) fn write_replacing(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    replace(dir, path, bytes, false)
}

fn replace(dir: &Path, path: &Path, bytes: &[u8], durable: bool) -> std::io::Result<()> {
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state")
    ));
    {
        // Readable by the agent's user only: the state's outbox and the credentials the
        // agent enrolled with are nobody else's.
        let mut file = {
            use std::os::unix::fs::OpenOptionsExt as _;
            fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?
        };
        file.write_all(bytes)?;
        if durable {
            file.sync_all()?;
        }
    }
    fs::rename(&tmp, path)?;
    if durable {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use backup_core::{AttemptOutcome, AttemptReport};

    use super::*;

    #[test]
    fn round_trips_and_moves_garbage_aside() {
        let dir = tempfile::tempdir().expect("dir");
        let file = StateFile::new(dir.path()).expect("state file");
        assert_eq!(
            file.load().expect("load").state,
            AgentState::default(),
            "no file: empty state"
        );
        let mut state = AgentState::default();
        state.outbox.push(OutboxEntry {
            task_id: TaskId::new(),
            report: AttemptReport::new(2, AttemptOutcome::Failed),
            tries: 3,
            next_try_at: None,
            refused_since: None,
        });
        state.counters.retries_total = 7;
        state
            .repository_ids
            .insert("main".into(), "5eab".repeat(16));
        state.version = FORMAT_VERSION;
        file.save(&state).expect("save");
        let loaded = file.load().expect("load");
        assert_eq!(loaded.state, state, "every field comes back");

        for garbage in [
            &b"{\"outbox\": [ {\"taskId\""[..],
            b"\x00\x01 not json at all",
            b"",
        ] {
            fs::write(file.path(), garbage).expect("write garbage");
            let loaded = file.load().expect("load");
            assert_eq!(loaded.state, AgentState::default());
            let aside = loaded.moved_aside.expect("moved aside");
            assert_eq!(
                fs::read(&aside).expect("kept"),
                garbage,
                "never silently dropped"
            );
            assert!(!file.path().exists());
        }
    }
}
