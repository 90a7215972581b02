//! Snapshots: what restic holds in a repository, as the agent reports it and as the API shows it.
//!
//! After every task that changes a repository (backup, prune) and at start, the agent lists its
//! own host's snapshots there (`restic snapshots --json --host <host>`) and sends the whole list
//! (`PUT /agents/{id}/repositories/{name}/snapshots`); the server replaces what it had for that
//! (agent, repository), so a snapshot a prune forgot disappears from `GET /snapshots`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{AgentId, PolicyId};

/// Most snapshots the server keeps for one (agent, repository): a longer list keeps the newest.
pub const MAX_SNAPSHOTS_PER_REPOSITORY: usize = 100_000;

/// The tag every backup carries: `policy:<policyId>`.
pub const POLICY_TAG_PREFIX: &str = "policy:";

/// The sizes restic's own summary carries (restic 0.17 and later record it in the snapshot).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SnapshotSummary {
    /// Files new in this snapshot.
    #[serde(default)]
    pub files_new: Option<u64>,
    /// Bytes this snapshot added to the repository.
    #[serde(default)]
    pub data_added: Option<u64>,
    /// Bytes of the files the snapshot holds.
    #[serde(default)]
    pub total_bytes: Option<u64>,
}

/// One snapshot as the agent reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SnapshotReport {
    /// restic's full id (64 hex digits).
    pub id: String,
    /// When restic made it.
    pub time: DateTime<Utc>,
    /// The `--host` it was made with.
    #[serde(default)]
    pub hostname: String,
    /// The paths it holds.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Its tags (`policy:<id>`, `task:<id>`, ...).
    #[serde(default)]
    pub tags: Vec<String>,
    /// restic's summary, where the version records one.
    #[serde(default)]
    pub summary: Option<SnapshotSummary>,
}

impl SnapshotReport {
    /// The policy whose backup made it, from its `policy:<id>` tag.
    pub fn policy_id(&self) -> Option<PolicyId> {
        self.tags
            .iter()
            .find_map(|t| t.strip_prefix(POLICY_TAG_PREFIX)?.parse().ok())
    }
}

/// `PUT /agents/{id}/repositories/{name}/snapshots` body: every snapshot of the agent's host in
/// that repository (it replaces the server's list).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SnapshotList {
    /// The snapshots, in any order.
    #[serde(default)]
    pub snapshots: Vec<SnapshotReport>,
}

/// The answer to a snapshot report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SnapshotsStored {
    /// How many the server keeps now for that repository.
    pub stored: u32,
    /// Whether the list was longer than the server keeps (the newest were kept).
    pub truncated: bool,
}

/// A snapshot as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SnapshotView {
    /// restic's full id.
    pub id: String,
    /// Its first 8 hex digits, as restic shows it.
    pub short_id: String,
    /// The agent that reported it.
    pub agent_id: AgentId,
    /// The repository, by the agent's name for it.
    pub repository: String,
    /// The policy whose backup made it (from its tag), if any.
    pub policy_id: Option<PolicyId>,
    /// When restic made it.
    pub time: DateTime<Utc>,
    /// The `--host` it was made with.
    pub hostname: String,
    /// The paths it holds.
    pub paths: Vec<String>,
    /// Its tags.
    pub tags: Vec<String>,
    /// Files new in it (from the run that made it, or restic's summary).
    pub files_new: Option<u64>,
    /// Bytes it added (from the run that made it, or restic's summary).
    pub data_added: Option<u64>,
    /// Bytes of the files it holds (restic 0.17+ summary), else null.
    pub total_bytes: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_comes_from_its_tag_and_only_a_well_formed_one() {
        let policy = PolicyId::new();
        let mut report = SnapshotReport {
            id: "ab".repeat(32),
            time: "2026-01-01T00:00:00Z".parse().expect("time"),
            hostname: "h".into(),
            paths: vec!["/data".into()],
            tags: vec!["task:x".into(), format!("policy:{policy}")],
            summary: None,
        };
        assert_eq!(report.policy_id(), Some(policy));
        report.tags = vec!["policy:not-an-id".into()];
        assert_eq!(report.policy_id(), None);
    }
}
