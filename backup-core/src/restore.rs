//! Bringing data back: the bodies of a restore and of a directory listing (`ls`, the snapshot
//! browser's one level), what such a task carries to the agent, and what it reports.
//!
//! A restore or a listing is a task like a backup (claimed, leased, retried by the budget), but a
//! person asks for it instead of a policy's schedule, and it runs for an agent that has the
//! repository under the same name (not necessarily the one that made the snapshot). The server
//! checks the shape of what is asked; the agent decides where it may write (`restoreTargets`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{AgentId, Error, MAX_PATH_BYTES, MAX_PATHS, policy::validate_repository_name};

/// The most entries a listing reports; past that it says `truncated`.
pub const MAX_LS_ENTRIES: usize = 10_000;

/// `POST /restores` body: bring a snapshot's files (or some of them) back onto an agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RestoreRequest {
    /// The agent that restores (the target machine); it needs the repository under this name.
    pub agent_id: AgentId,
    /// The repository's name in that agent's configuration.
    pub repository: String,
    /// The snapshot: restic's full id or its 8-character short id, as `GET /snapshots` lists it.
    pub snapshot_id: String,
    /// Paths inside the snapshot to restore (restic's `--include`); empty restores everything.
    #[serde(default)]
    pub include: Vec<String>,
    /// An absolute directory on the agent to restore into; the agent's `restoreTargets` must
    /// allow it.
    pub target: String,
    /// Say what would be restored without writing (restic 0.17 and later).
    #[serde(default)]
    pub dry_run: bool,
}

impl RestoreRequest {
    /// Checks the shape of every field (the server checks the snapshot against its list, the
    /// agent checks the target against its `restoreTargets`).
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the first offending field.
    pub fn validate(&self) -> Result<(), Error> {
        validate_repository_name(&self.repository)?;
        validate_snapshot_id(&self.snapshot_id)?;
        validate_absolute("target", &self.target)?;
        if self.include.len() > MAX_PATHS {
            return Err(Error::invalid(
                "include",
                format!("{} paths", self.include.len()),
                format!("at most {MAX_PATHS} paths"),
            ));
        }
        for (i, path) in self.include.iter().enumerate() {
            validate_absolute(&format!("include[{i}]"), path)?;
        }
        Ok(())
    }
}

/// `POST /snapshots/{snapshotId}/ls` body: list one directory of a snapshot, on an agent that
/// has its repository.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct LsRequest {
    /// The agent that lists it; it needs the repository under this name.
    pub agent_id: AgentId,
    /// The repository's name in that agent's configuration.
    pub repository: String,
    /// The absolute directory inside the snapshot (`/` for its top).
    #[serde(default = "root")]
    pub path: String,
}

fn root() -> String {
    "/".to_owned()
}

impl LsRequest {
    /// Checks the shape of every field.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the first offending field.
    pub fn validate(&self) -> Result<(), Error> {
        validate_repository_name(&self.repository)?;
        validate_absolute("path", &self.path)
    }
}

/// Whether `id` looks like a restic snapshot id: 8 to 64 lowercase hex digits.
///
/// # Errors
/// [`Error::Invalid`] on `snapshotId`.
pub fn validate_snapshot_id(id: &str) -> Result<(), Error> {
    let hex = id
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if (8..=64).contains(&id.len()) && hex {
        Ok(())
    } else {
        Err(Error::invalid(
            "snapshotId",
            shown(id),
            "restic's snapshot id: 8 to 64 lowercase hex digits",
        ))
    }
}

/// A value as an error shows it: quoted, and cut after 100 characters.
fn shown(value: &str) -> String {
    let mut cut: String = value.chars().take(100).collect();
    if cut.len() < value.len() {
        cut.push_str("...");
    }
    format!("{cut:?}")
}

/// An absolute path without `..`, NUL or control characters, at most [`MAX_PATH_BYTES`].
fn validate_absolute(field: &str, path: &str) -> Result<(), Error> {
    let ok = path.starts_with('/')
        && path.len() <= MAX_PATH_BYTES
        && !path.chars().any(char::is_control)
        && !path.split('/').any(|c| c == "..");
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            shown(path),
            format!(
                "an absolute path (starting with /) without '..', at most {MAX_PATH_BYTES} bytes"
            ),
        ))
    }
}

/// What a restore or a listing carries besides its kind and repository: the snapshot, and what
/// to do with it. Empty for the scheduled kinds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TaskRequest {
    /// restic's full snapshot id (restore and ls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// Paths inside the snapshot to restore; empty restores everything.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// The directory the restore writes into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// A restore that writes nothing.
    #[serde(default, skip_serializing_if = "is_false")]
    pub dry_run: bool,
    /// The directory a listing lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if signature"
)]
const fn is_false(b: &bool) -> bool {
    !*b
}

impl TaskRequest {
    /// Whether nothing is set (a scheduled kind's task).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What a successful restore or listing found, reported with its result and shown in the task.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TaskOutput {
    /// Files a restore wrote (or, on a dry run, would write).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_restored: Option<u64>,
    /// Bytes a restore wrote (or would write).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_restored: Option<u64>,
    /// A listing's entries: one directory level, at most 10,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<Vec<LsEntry>>,
    /// The listing had more entries than it reports.
    #[serde(default, skip_serializing_if = "is_false")]
    pub truncated: bool,
}

impl TaskOutput {
    /// Nothing found (the scheduled kinds, a failure).
    pub const fn none() -> Self {
        Self {
            files_restored: None,
            bytes_restored: None,
            entries: None,
            truncated: false,
        }
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == Self::none()
    }
}

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct LsEntry {
    /// Its absolute path inside the snapshot.
    pub path: String,
    /// What it is.
    #[serde(rename = "type")]
    pub entry_type: EntryType,
    /// Its size in bytes (files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// When it was last modified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime: Option<DateTime<Utc>>,
}

/// What a listed entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EntryType {
    /// A regular file.
    File,
    /// A directory (browse into it).
    Dir,
    /// A symbolic link.
    Symlink,
    /// Anything else (device, socket, fifo).
    Other,
}

impl EntryType {
    /// restic's node type (`file`, `dir`, `symlink`, anything else).
    pub fn from_restic(node_type: &str) -> Self {
        match node_type {
            "file" => EntryType::File,
            "dir" => EntryType::Dir,
            "symlink" => EntryType::Symlink,
            _ => EntryType::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restore(target: &str, include: &[&str]) -> RestoreRequest {
        RestoreRequest {
            agent_id: AgentId::new(),
            repository: "main".into(),
            snapshot_id: "0123abcd".into(),
            include: include.iter().map(|s| (*s).to_owned()).collect(),
            target: target.into(),
            dry_run: false,
        }
    }

    #[test]
    fn a_target_is_absolute_and_stays_where_it_says() {
        assert!(
            restore("/var/restores/x", &["/etc/hosts"])
                .validate()
                .is_ok()
        );
        for bad in ["relative/dir", "", "/var/../etc", "/var/restores/\u{0}x"] {
            let e = restore(bad, &[]).validate().expect_err(bad);
            assert_eq!(e.field(), Some("target"), "{bad}");
        }
        let e = restore("/r", &["/etc", "etc"])
            .validate()
            .expect_err("relative include");
        assert_eq!(e.field(), Some("include[1]"));
    }

    #[test]
    fn snapshot_ids_are_restics_hex() {
        for good in ["0123abcd", &"a".repeat(64)] {
            validate_snapshot_id(good).expect(good);
        }
        for bad in ["0123abc", "0123ABCD", "0123abcz", &"a".repeat(65), "latest"] {
            assert!(validate_snapshot_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_empty_request_and_output_leave_no_trace_in_json() {
        assert_eq!(
            serde_json::to_value(TaskRequest::default()).expect("json"),
            serde_json::json!({})
        );
        assert_eq!(
            serde_json::to_value(TaskOutput::none()).expect("json"),
            serde_json::json!({})
        );
    }
}
