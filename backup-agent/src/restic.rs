//! restic, as pure functions: its version, its arguments, its JSON summary, and what its exit
//! means. Everything here is tested against output recorded from real restic runs
//! (`tests/fixtures/restic-0.14`).

use std::fmt;

use backup_core::{ErrorClass, ExitStatus, Retention, TaskKind};
use serde::{Deserialize, Serialize};

/// A restic version (`restic 0.14.0 compiled with go1.19.8 on linux/amd64`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResticVersion {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
}

impl ResticVersion {
    /// Parses the output of `restic version`.
    pub fn parse(output: &str) -> Option<Self> {
        let word = output
            .split_whitespace()
            .skip_while(|w| *w != "restic")
            .nth(1)?;
        let mut numbers = word.trim_start_matches('v').split(['.', '-']);
        let major = numbers.next()?.parse().ok()?;
        let minor = numbers.next()?.parse().ok()?;
        let patch = numbers.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        Some(Self {
            major,
            minor,
            patch,
        })
    }

    const fn at_least(&self, major: u32, minor: u32) -> bool {
        self.major > major || (self.major == major && self.minor >= minor)
    }

    /// `--retry-lock` exists from 0.16.
    pub const fn has_retry_lock(&self) -> bool {
        self.at_least(0, 16)
    }

    /// Distinct exit codes for a missing repository (10), a lock (11) and a wrong password (12)
    /// exist from 0.17.
    pub const fn has_exit_codes(&self) -> bool {
        self.at_least(0, 17)
    }
}

impl fmt::Display for ResticVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Why an attempt failed, as far as restic's output tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// Wrong password or no key: permanent.
    WrongPassword,
    /// No repository at the location: permanent.
    NoRepository,
    /// Another process holds a conflicting lock: retriable, and worth an `unlock` first.
    Locked,
    /// The machine's disk is full (restic's cache or temp files): retriable, and the
    /// machine's fault rather than the repository's.
    DiskFull,
    /// Anything else: retriable.
    Other,
}

/// What an attempt's exit means.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Classified {
    /// Done.
    Succeeded,
    /// Backup exit 3: the snapshot exists but some files could not be read. A success.
    Partial,
    /// Failed; `class` says whether to retry.
    Failed {
        /// Retriable or permanent.
        class: ErrorClass,
        /// What the output showed.
        kind: FailureKind,
        /// For people: restic's own words.
        message: String,
    },
    /// Stopped by SIGINT (exit 130) or a signal.
    Interrupted,
}

/// Classifies an exit: exit codes where the version has them, else restic's stderr.
pub fn classify(
    version: Option<ResticVersion>,
    kind: TaskKind,
    status: ExitStatus,
    stderr: &str,
) -> Classified {
    let code = match status {
        ExitStatus::Signal(_) => return Classified::Interrupted,
        ExitStatus::Code(code) => code,
        _ => return Classified::Interrupted,
    };
    match code {
        0 => return Classified::Succeeded,
        3 if kind == TaskKind::Backup => return Classified::Partial,
        130 => return Classified::Interrupted,
        _ => {}
    }
    let coded = version.is_some_and(|v| v.has_exit_codes());
    let failure = if (coded && code == 12) || stderr.contains("wrong password or no key found") {
        FailureKind::WrongPassword
    } else if (coded && code == 10)
        || (stderr.contains("Is there a repository at the following location?")
            && !unreachable(stderr))
    {
        FailureKind::NoRepository
    } else if (coded && code == 11) || stderr.contains("repository is already locked") {
        FailureKind::Locked
    } else if stderr.contains("no space left on device") {
        FailureKind::DiskFull
    } else {
        FailureKind::Other
    };
    let class = match failure {
        FailureKind::WrongPassword | FailureKind::NoRepository => ErrorClass::Permanent,
        FailureKind::Locked | FailureKind::DiskFull | FailureKind::Other => ErrorClass::Retriable,
    };
    Classified::Failed {
        class,
        kind: failure,
        message: error_message(code, stderr),
    }
}

/// Whether restic could not reach its backend at all. restic 0.14 prints "Is there a
/// repository at the following location?" after *any* failure to read the config, including a
/// refused connection; a backend that does not answer is no proof the repository is missing,
/// so that failure stays retriable.
fn unreachable(stderr: &str) -> bool {
    [
        "connection refused",
        "connection reset",
        "no such host",
        "i/o timeout",
        "network is unreachable",
        "TLS handshake timeout",
        "dial tcp",
    ]
    .iter()
    .any(|needle| stderr.contains(needle))
}

/// The lines of stderr worth showing: `Fatal:` lines and their context, or the last lines.
fn error_message(code: i32, stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("Fatal:") || l.contains("unable to"))
        .unwrap_or(lines.len().saturating_sub(3));
    let text: Vec<&str> = lines[start..].iter().take(4).copied().collect();
    let mut message = if text.is_empty() {
        format!("restic exited with code {code}")
    } else {
        format!("restic exited with code {code}: {}", text.join(" / "))
    };
    if message.len() > 2000 {
        let mut cut = 2000;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    message
}

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
    lines
        .into_iter()
        .filter_map(|line| {
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
        .last()
}

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
    /// `restic unlock`.
    Unlock,
    /// `restic init`.
    Init,
    /// `restic cat config` (does the repository exist?).
    CatConfig,
    /// `restic version`.
    Version,
}

/// The arguments for `command` on `version` (flags that need a newer restic are left out).
///
/// Values that come from policies are passed as `--flag=value` and paths after `--`, so a
/// path or pattern that starts with `-` can never be read as a flag.
pub fn arguments(command: &Command<'_>, version: Option<ResticVersion>) -> Vec<String> {
    let retry_lock = version.is_some_and(|v| v.has_retry_lock());
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
                args.push("--retry-lock=2m".into());
            }
            args.push("--".into());
            args.extend(paths.iter().cloned());
        }
        Command::Check => {
            args.push("check".into());
            if retry_lock {
                args.push("--retry-lock=2m".into());
            }
        }
        Command::Prune { retention, host } => {
            args.extend(["forget".into(), "--prune".into(), format!("--host={host}")]);
            args.extend(retention.rules());
            if retry_lock {
                args.push("--retry-lock=2m".into());
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

    const V014: ResticVersion = ResticVersion {
        major: 0,
        minor: 14,
        patch: 0,
    };
    const V017: ResticVersion = ResticVersion {
        major: 0,
        minor: 17,
        patch: 3,
    };

    #[test]
    fn versions() {
        assert_eq!(
            ResticVersion::parse("restic 0.14.0 compiled with go1.19.8 on linux/amd64"),
            Some(V014)
        );
        assert_eq!(
            ResticVersion::parse("restic 0.17.3 compiled with go1.23.3 on linux/amd64\n"),
            Some(V017)
        );
        assert_eq!(
            ResticVersion::parse("restic 0.18.0-dev (compiled manually)").map(|v| v.minor),
            Some(18)
        );
        assert_eq!(
            ResticVersion::parse("bash: restic: command not found"),
            None
        );
        assert!(!V014.has_retry_lock() && V017.has_retry_lock() && V017.has_exit_codes());
    }

    #[test]
    fn newer_versions_use_exit_codes() {
        // restic 0.17 documents exit codes 10 (no repository), 11 (locked), 12 (wrong password).
        let c = |code| classify(Some(V017), TaskKind::Backup, ExitStatus::Code(code), "");
        assert!(matches!(
            c(12),
            Classified::Failed {
                class: ErrorClass::Permanent,
                kind: FailureKind::WrongPassword,
                ..
            }
        ));
        assert!(matches!(
            c(10),
            Classified::Failed {
                class: ErrorClass::Permanent,
                kind: FailureKind::NoRepository,
                ..
            }
        ));
        assert!(matches!(
            c(11),
            Classified::Failed {
                class: ErrorClass::Retriable,
                kind: FailureKind::Locked,
                ..
            }
        ));
        assert!(matches!(
            c(1),
            Classified::Failed {
                class: ErrorClass::Retriable,
                kind: FailureKind::Other,
                ..
            }
        ));
        // On 0.14 the same codes mean nothing special.
        assert!(matches!(
            classify(Some(V014), TaskKind::Backup, ExitStatus::Code(12), ""),
            Classified::Failed {
                kind: FailureKind::Other,
                ..
            }
        ));
    }

    #[test]
    fn interruptions_and_partial() {
        assert_eq!(
            classify(Some(V014), TaskKind::Backup, ExitStatus::Code(130), ""),
            Classified::Interrupted
        );
        assert_eq!(
            classify(None, TaskKind::Check, ExitStatus::Signal(9), ""),
            Classified::Interrupted
        );
        assert_eq!(
            classify(None, TaskKind::Backup, ExitStatus::Code(3), ""),
            Classified::Partial
        );
        assert!(matches!(
            classify(None, TaskKind::Check, ExitStatus::Code(3), ""),
            Classified::Failed { .. }
        ));
    }

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
    }
}
