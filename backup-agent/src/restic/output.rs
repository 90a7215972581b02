//! restic's JSON output: the summary of a backup, the summary of a restore (0.17+), and the
//! nodes of `ls --json`.

use serde::Deserialize;

/// The `summary` message of `restic backup --json`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct BackupSummary {
    /// The snapshot (0.14: the 8-hex short id).
    pub snapshot_id: Option<String>,
    /// Files new in this snapshot.
    #[serde(default)]
    pub files_new: u64,
    /// Bytes added to the repository.
    #[serde(default)]
    pub data_added: u64,
    /// Seconds restic took.
    #[serde(default)]
    pub total_duration: f64,
}

#[derive(Deserialize)]
struct Message {
    message_type: Option<String>,
}

/// Finds the summary among the JSON lines of a backup (other lines are skipped; the last
/// summary wins).
pub fn parse_summary<'a>(lines: impl IntoIterator<Item = &'a str>) -> Option<BackupSummary> {
    summaries(lines).last()
}

/// The `summary` message of `restic restore --json` (0.17+). `files_restored` counts
/// directories and links too, as restic does.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct RestoreSummary {
    /// Entries restored (or, on a dry run, that would be).
    #[serde(default)]
    pub files_restored: u64,
    /// Bytes restored (or that would be).
    #[serde(default)]
    pub bytes_restored: u64,
}

/// Finds the summary among the JSON lines of a restore (0.17+; older versions print none).
pub fn parse_restore_summary<'a>(
    lines: impl IntoIterator<Item = &'a str>,
) -> Option<RestoreSummary> {
    summaries(lines).last()
}

/// The JSON lines whose `message_type` is `summary`, parsed as `T`.
fn summaries<'a, T: serde::de::DeserializeOwned>(
    lines: impl IntoIterator<Item = &'a str>,
) -> impl Iterator<Item = T> {
    lines.into_iter().filter_map(|line| {
        let line = line.trim();
        if !line.starts_with('{') {
            return None;
        }
        let kind: Message = serde_json::from_str(line).ok()?;
        if kind.message_type.as_deref() != Some("summary") {
            return None;
        }
        serde_json::from_str(line).ok()
    })
}

/// One node line of `restic ls --json` (0.14 and 0.18 alike; the first line describes the
/// snapshot and has another `struct_type`).
#[derive(Deserialize)]
struct Node {
    struct_type: Option<String>,
    path: String,
    #[serde(rename = "type")]
    node_type: String,
    size: Option<u64>,
    mtime: Option<chrono::DateTime<chrono::Utc>>,
}

/// One directory level of a snapshot, collected from `restic ls --json <id> <dir>` line by
/// line: restic prints the directory itself (and, for a deeper path, its parents) before its
/// children, and the agent keeps the children only. Bounded by a count and by the bytes the
/// result may take in a report (its body must stay under the server's 1 MiB).
#[derive(Debug)]
pub struct LsListing {
    dir: String,
    entries: Vec<backup_core::LsEntry>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
    truncated: bool,
}

impl LsListing {
    /// An empty listing of `dir` (an absolute path inside the snapshot) that keeps at most
    /// `max_entries` entries taking about `max_bytes` as JSON.
    pub fn new(dir: &str, max_entries: usize, max_bytes: usize) -> Self {
        let trimmed = dir.trim_end_matches('/');
        Self {
            dir: if trimmed.is_empty() {
                "/".to_owned()
            } else {
                trimmed.to_owned()
            },
            entries: Vec::new(),
            bytes: 0,
            max_entries,
            max_bytes,
            truncated: false,
        }
    }

    /// Takes one line of restic's output; lines that are not nodes one level below the
    /// directory are skipped.
    pub fn push_line(&mut self, line: &str) {
        let line = line.trim();
        if !line.starts_with('{') {
            return;
        }
        let Ok(node) = serde_json::from_str::<Node>(line) else {
            return;
        };
        if node.struct_type.as_deref() != Some("node") || !self.is_child(&node.path) {
            return;
        }
        // The JSON of an entry: its path plus about 90 bytes of keys, type, size and time.
        let cost = node.path.len() + 90;
        if self.entries.len() >= self.max_entries || self.bytes + cost > self.max_bytes {
            self.truncated = true;
            return;
        }
        self.bytes += cost;
        self.entries.push(backup_core::LsEntry {
            path: node.path,
            entry_type: backup_core::EntryType::from_restic(&node.node_type),
            size: node.size,
            mtime: node.mtime,
        });
    }

    fn is_child(&self, path: &str) -> bool {
        let Some(name) = (if self.dir == "/" {
            path.strip_prefix('/')
        } else {
            path.strip_prefix(self.dir.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
        }) else {
            return false;
        };
        !name.is_empty() && !name.contains('/')
    }

    /// The entries (in restic's order: by name) and whether some were left out.
    pub fn finish(self) -> (Vec<backup_core::LsEntry>, bool) {
        (self.entries, self.truncated)
    }
}

/// Lists `dir` from whole lines of output (tests and one-shot callers).
pub fn parse_ls<'a>(
    dir: &str,
    lines: impl IntoIterator<Item = &'a str>,
) -> (Vec<backup_core::LsEntry>, bool) {
    let mut listing = LsListing::new(dir, backup_core::MAX_LS_ENTRIES, usize::MAX);
    for line in lines {
        listing.push_line(line);
    }
    listing.finish()
}
