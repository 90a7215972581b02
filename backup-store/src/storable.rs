//! What an agent reports, made storable and bounded. Agent routes are tolerant (a 422 would
//! strand a result in the agent's outbox), so instead of refusing:
//! - a NUL (PostgreSQL refuses it in TEXT; restic's stderr may carry one) becomes U+FFFD;
//! - free text is cut to a bound (versions 200 characters, a snapshot id 128, an error
//!   8,192), so that no agent can fill the server's memory through lists of agents or runs;
//! - at most 1,000 repositories in backoff are kept;
//! - a time outside 1970-9999 (PostgreSQL's range is narrower than chrono's) is dropped;
//! - a snapshot list keeps the newest 100,000, each id once, ids of hex digits only, at most
//!   256 paths and 256 tags each;
//! - a listing keeps at most 10,000 entries (and says `truncated` past that), each path at most
//!   4,096 bytes; a time out of range is dropped.

use std::borrow::Cow;

use backup_core::{
    AttemptReport, Heartbeat, MAX_LS_ENTRIES, MAX_PATH_BYTES, MAX_SNAPSHOTS_PER_REPOSITORY,
    SnapshotReport,
};
use chrono::Utc;

use crate::cursor;

fn storable_text(t: &mut String, max_chars: usize) {
    if t.contains('\0') {
        *t = t.replace('\0', "\u{FFFD}");
    }
    if let Some((cut, _)) = t.char_indices().nth(max_chars) {
        t.truncate(cut);
    }
}

fn storable(text: &mut Option<String>, max_chars: usize) {
    if let Some(t) = text {
        storable_text(t, max_chars);
    }
}

fn text_needs(text: Option<&str>, max_chars: usize) -> bool {
    text.is_some_and(|t| t.contains('\0') || (t.len() > max_chars && t.chars().count() > max_chars))
}

fn time_out_of_range(time: Option<chrono::DateTime<Utc>>) -> bool {
    time.is_some_and(|t| !(0..=cursor::MAX_TIMESTAMP_MS).contains(&t.timestamp_millis()))
}

fn storable_time(time: &mut Option<chrono::DateTime<Utc>>) {
    if time_out_of_range(*time) {
        *time = None;
    }
}

const MAX_REPORTED_BACKOFFS: usize = 1000;

pub(crate) fn storable_heartbeat(heartbeat: &Heartbeat) -> Cow<'_, Heartbeat> {
    let dirty = text_needs(heartbeat.agent_version.as_deref(), 200)
        || text_needs(heartbeat.restic_version.as_deref(), 200)
        || time_out_of_range(heartbeat.backoff_until)
        || heartbeat.backoff_repositories.as_ref().is_some_and(|list| {
            list.len() > MAX_REPORTED_BACKOFFS
                || list
                    .iter()
                    .any(|e| text_needs(Some(&e.repository), backup_core::MAX_REPOSITORY_CHARS))
        });
    if !dirty {
        return Cow::Borrowed(heartbeat);
    }
    let mut clean = heartbeat.clone();
    storable(&mut clean.agent_version, 200);
    storable(&mut clean.restic_version, 200);
    storable_time(&mut clean.backoff_until);
    if let Some(list) = &mut clean.backoff_repositories {
        list.truncate(MAX_REPORTED_BACKOFFS);
        for entry in list {
            storable_text(&mut entry.repository, backup_core::MAX_REPOSITORY_CHARS);
        }
    }
    Cow::Owned(clean)
}

pub(crate) fn storable_report(report: &AttemptReport) -> Cow<'_, AttemptReport> {
    let entries = report.output.entries.as_deref().unwrap_or_default();
    let dirty = text_needs(report.error.as_deref(), 8192)
        || text_needs(report.snapshot_id.as_deref(), 128)
        || time_out_of_range(report.started_at)
        || time_out_of_range(report.finished_at)
        || entries.len() > MAX_LS_ENTRIES
        || entries
            .iter()
            .any(|e| text_needs(Some(&e.path), MAX_PATH_BYTES) || time_out_of_range(e.mtime));
    if !dirty {
        return Cow::Borrowed(report);
    }
    let mut clean = report.clone();
    storable(&mut clean.error, 8192);
    storable(&mut clean.snapshot_id, 128);
    storable_time(&mut clean.started_at);
    storable_time(&mut clean.finished_at);
    if let Some(entries) = &mut clean.output.entries {
        if entries.len() > MAX_LS_ENTRIES {
            entries.truncate(MAX_LS_ENTRIES);
            clean.output.truncated = true;
        }
        for entry in entries {
            storable_text(&mut entry.path, MAX_PATH_BYTES);
            storable_time(&mut entry.mtime);
        }
    }
    Cow::Owned(clean)
}

/// The snapshots of a report worth storing, newest first, and whether some were left out for
/// the bound (entries without a usable id or time are dropped, not counted).
pub(crate) fn storable_snapshots(list: &[SnapshotReport]) -> (Vec<SnapshotReport>, bool) {
    let mut clean: Vec<SnapshotReport> = list
        .iter()
        .filter(|s| {
            (8..=128).contains(&s.id.len())
                && s.id.bytes().all(|b| b.is_ascii_hexdigit())
                && !time_out_of_range(Some(s.time))
        })
        .cloned()
        .collect();
    clean.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| a.id.cmp(&b.id)));
    let mut seen = std::collections::HashSet::new();
    clean.retain(|s| seen.insert(s.id.to_ascii_lowercase()));
    let truncated = clean.len() > MAX_SNAPSHOTS_PER_REPOSITORY;
    clean.truncate(MAX_SNAPSHOTS_PER_REPOSITORY);
    for s in &mut clean {
        s.id.make_ascii_lowercase();
        storable_text(&mut s.hostname, 200);
        s.paths.truncate(backup_core::MAX_PATHS);
        for p in &mut s.paths {
            storable_text(p, backup_core::MAX_PATH_BYTES);
        }
        s.tags.truncate(256);
        for t in &mut s.tags {
            storable_text(t, 256);
        }
    }
    (clean, truncated)
}
