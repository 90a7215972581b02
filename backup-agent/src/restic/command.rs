//! restic's arguments for each command, on a given version.

use backup_core::Retention;

use super::ResticVersion;

/// What a restic invocation is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// `restic backup`.
    Backup {
        /// What to back up.
        paths: &'a [String],
        /// `--exclude` patterns.
        excludes: &'a [String],
        /// `--host`.
        host: &'a str,
        /// `--tag` values (`policy:<id>`, `task:<id>`).
        tags: &'a [String],
        /// `--limit-upload` in KiB/s.
        limit_upload_kib: Option<u64>,
    },
    /// `restic check`.
    Check,
    /// `restic forget --prune` with the keep rules, on one host's snapshots only.
    Prune {
        /// Keep rules.
        retention: &'a Retention,
        /// `--host`: a prune never forgets another host's snapshots in a shared repository.
        host: &'a str,
    },
    /// `restic snapshots --json`, of one host's snapshots, without a lock (a read that must
    /// not wait for, or fail on, another host's prune).
    Snapshots {
        /// `--host`.
        host: &'a str,
    },
    /// `restic restore` of one snapshot into a directory, JSON where the version has it.
    Restore {
        /// restic's snapshot id (hex, checked by the guard).
        snapshot: &'a str,
        /// `--target`.
        target: &'a str,
        /// `--include` paths; empty restores everything.
        include: &'a [String],
        /// `--dry-run` (0.17+; the caller refuses it on older versions).
        dry_run: bool,
    },
    /// `restic ls --json` of one directory of a snapshot, without a lock (a person browsing
    /// waits for no prune).
    Ls {
        /// restic's snapshot id.
        snapshot: &'a str,
        /// The directory inside the snapshot.
        path: &'a str,
    },
    /// `restic unlock`.
    Unlock,
    /// `restic init`.
    Init,
    /// `restic cat config` (does the repository exist?).
    CatConfig,
    /// `restic version`.
    Version,
}

/// How long restic waits for a conflicting lock unless told otherwise: 2 minutes.
pub const DEFAULT_LOCK_WAIT_SECONDS: u32 = 120;

/// The arguments for `command` on `version` (flags that need a newer restic are left out),
/// waiting [`DEFAULT_LOCK_WAIT_SECONDS`] for a lock.
///
/// Values that come from policies are passed as `--flag=value` and paths after `--`, so a
/// path or pattern that starts with `-` can never be read as a flag.
pub fn arguments(command: &Command<'_>, version: Option<ResticVersion>) -> Vec<String> {
    arguments_waiting(command, version, DEFAULT_LOCK_WAIT_SECONDS)
}

/// As [`arguments`], waiting `lock_wait_seconds` for a conflicting lock (restic 0.16+'s
/// `--retry-lock`; 0 waits not at all).
pub fn arguments_waiting(
    command: &Command<'_>,
    version: Option<ResticVersion>,
    lock_wait_seconds: u32,
) -> Vec<String> {
    // A Go duration: whole minutes as such, else seconds.
    let wait = if lock_wait_seconds.is_multiple_of(60) {
        format!("{}m", lock_wait_seconds / 60)
    } else {
        format!("{lock_wait_seconds}s")
    };
    let retry_lock = version.is_some_and(|v| v.has_retry_lock()) && lock_wait_seconds > 0;
    let mut args: Vec<String> = Vec::new();
    match command {
        Command::Backup {
            paths,
            excludes,
            host,
            tags,
            limit_upload_kib,
        } => {
            args.extend(["backup".into(), "--json".into(), format!("--host={host}")]);
            args.extend(tags.iter().map(|t| format!("--tag={t}")));
            args.extend(excludes.iter().map(|e| format!("--exclude={e}")));
            if let Some(kib) = limit_upload_kib {
                args.push(format!("--limit-upload={kib}"));
            }
            if retry_lock {
                args.push(format!("--retry-lock={wait}"));
            }
            args.push("--".into());
            args.extend(paths.iter().cloned());
        }
        Command::Check => {
            args.push("check".into());
            if retry_lock {
                args.push(format!("--retry-lock={wait}"));
            }
        }
        Command::Prune { retention, host } => {
            args.extend(["forget".into(), "--prune".into(), format!("--host={host}")]);
            args.extend(retention.rules());
            if retry_lock {
                args.push(format!("--retry-lock={wait}"));
            }
        }
        Command::Snapshots { host } => {
            args.extend([
                "snapshots".into(),
                "--json".into(),
                "--no-lock".into(),
                format!("--host={host}"),
            ]);
        }
        Command::Restore {
            snapshot,
            target,
            include,
            dry_run,
        } => {
            args.extend(["restore".into(), format!("--target={target}")]);
            if version.is_some_and(|v| v.has_restore_summary()) {
                args.push("--json".into());
            }
            args.extend(include.iter().map(|i| format!("--include={i}")));
            if *dry_run {
                args.push("--dry-run".into());
            }
            if retry_lock {
                args.push(format!("--retry-lock={wait}"));
            }
            args.extend(["--".into(), (*snapshot).to_owned()]);
        }
        Command::Ls { snapshot, path } => {
            args.extend([
                "ls".into(),
                "--json".into(),
                "--no-lock".into(),
                "--".into(),
                (*snapshot).to_owned(),
                (*path).to_owned(),
            ]);
        }
        Command::Unlock => args.push("unlock".into()),
        Command::Init => args.push("init".into()),
        Command::CatConfig => args.extend(["cat".into(), "config".into()]),
        Command::Version => args.push("version".into()),
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::restic::tests::{V014, V017};

    #[test]
    fn arguments_never_let_policy_values_become_flags() {
        let paths = vec!["-rf".to_owned(), "/srv".to_owned()];
        let excludes = vec!["--password-file=/etc/shadow".to_owned()];
        let tags = vec!["policy:p".to_owned()];
        let args = arguments(
            &Command::Backup {
                paths: &paths,
                excludes: &excludes,
                host: "h",
                tags: &tags,
                limit_upload_kib: Some(2441),
            },
            Some(V014),
        );
        assert_eq!(
            args,
            [
                "backup",
                "--json",
                "--host=h",
                "--tag=policy:p",
                "--exclude=--password-file=/etc/shadow",
                "--limit-upload=2441",
                "--",
                "-rf",
                "/srv"
            ]
        );
        let retention = Retention {
            keep_last: Some(3),
            keep_daily: Some(7),
            ..Retention::default()
        };
        assert_eq!(
            arguments(
                &Command::Prune {
                    retention: &retention,
                    host: "h",
                },
                Some(V017)
            ),
            [
                "forget",
                "--prune",
                "--host=h",
                "--keep-last=3",
                "--keep-daily=7",
                "--retry-lock=2m"
            ]
        );
        assert_eq!(arguments(&Command::Check, Some(V014)), ["check"]);
        assert_eq!(
            arguments_waiting(&Command::Check, Some(V017), 90),
            ["check", "--retry-lock=90s"]
        );
        assert_eq!(
            arguments_waiting(&Command::Check, Some(V017), 0),
            ["check"],
            "0 waits not at all"
        );
        let include = vec!["-x".to_owned()];
        assert_eq!(
            arguments(
                &Command::Restore {
                    snapshot: "0123abcd",
                    target: "/r",
                    include: &include,
                    dry_run: true,
                },
                Some(V017)
            ),
            [
                "restore",
                "--target=/r",
                "--json",
                "--include=-x",
                "--dry-run",
                "--retry-lock=2m",
                "--",
                "0123abcd"
            ]
        );
        assert_eq!(
            arguments(
                &Command::Ls {
                    snapshot: "0123abcd",
                    path: "-rf"
                },
                Some(V014)
            ),
            ["ls", "--json", "--no-lock", "--", "0123abcd", "-rf"]
        );
    }
}
