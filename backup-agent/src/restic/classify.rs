//! What restic's exit means: exit codes where the version has them (0.17+), else its stderr.

use backup_core::{ErrorClass, ExitStatus, TaskKind};

use super::ResticVersion;

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
    /// The snapshot a restore or a listing names is not in the repository (another
    /// repository under the same name on this agent, or a prune forgot it): permanent.
    NoSnapshot,
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
    } else if stderr.contains("no matching ID found") {
        FailureKind::NoSnapshot
    } else {
        FailureKind::Other
    };
    let class = match failure {
        FailureKind::WrongPassword | FailureKind::NoRepository | FailureKind::NoSnapshot => {
            ErrorClass::Permanent
        }
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

/// The text of one line of stderr: restic 0.17+ writes its errors as JSON under `--json`
/// (`{"message_type":"exit_error","code":12,"message":"Fatal: ..."}`, and `error` messages of
/// single files); their message is what people read. Other lines are themselves.
fn readable(line: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Inner {
        message: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct JsonError {
        message_type: Option<String>,
        message: Option<String>,
        error: Option<Inner>,
    }
    let parsed = line
        .starts_with('{')
        .then(|| serde_json::from_str::<JsonError>(line).ok())
        .flatten();
    match parsed {
        Some(JsonError {
            message_type: Some(kind),
            message,
            error,
        }) if kind == "exit_error" || kind == "error" => message
            .or_else(|| error.and_then(|e| e.message))
            .unwrap_or_else(|| line.to_owned()),
        _ => line.to_owned(),
    }
}

/// The lines of stderr worth showing: `Fatal:` lines and their context, or the last lines.
fn error_message(code: i32, stderr: &str) -> String {
    let texts: Vec<String> = stderr.lines().map(|l| readable(l.trim())).collect();
    let lines: Vec<&str> = texts
        .iter()
        .flat_map(|t| t.lines())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restic::tests::{V014, V017};

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
}
