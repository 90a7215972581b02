//! The classifier and the output parsers against output recorded from real restic runs
//! (`tests/fixtures/restic-0.14` and `restic-0.18`: stdout, stderr and exit code of each
//! command, recorded by `scripts/record-restic-fixtures.sh`).

use backup_agent::restic::{
    Classified, FailureKind, ResticVersion, classify, parse_ls, parse_restore_summary,
    parse_summary,
};
use backup_core::{EntryType, ErrorClass, ExitStatus, TaskKind};

struct Recorded {
    stdout: String,
    stderr: String,
    exit: i32,
}

fn recorded(name: &str) -> Recorded {
    recorded_by("0.14", name)
}

fn recorded_by(version: &str, name: &str) -> Recorded {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/fixtures/restic-{version}"));
    let read =
        |ext: &str| std::fs::read_to_string(dir.join(format!("{name}.{ext}"))).expect("fixture");
    Recorded {
        stdout: read("stdout"),
        stderr: read("stderr"),
        exit: read("exit").trim().parse().expect("exit code"),
    }
}

fn classified(name: &str, kind: TaskKind) -> Classified {
    let r = recorded(name);
    let version = ResticVersion::parse(&recorded("version").stdout);
    classify(version, kind, ExitStatus::Code(r.exit), &r.stderr)
}

#[test]
fn the_recorded_version_is_014() {
    let v = ResticVersion::parse(&recorded("version").stdout).expect("parses");
    assert_eq!(v.to_string(), "0.14.0");
    assert!(!v.has_retry_lock() && !v.has_exit_codes());
}

#[test]
fn a_backup_is_a_success_with_its_summary() {
    assert_eq!(
        classified("backup", TaskKind::Backup),
        Classified::Succeeded
    );
    let r = recorded("backup");
    let summary = parse_summary(r.stdout.lines()).expect("summary");
    assert_eq!(
        summary.snapshot_id.as_deref(),
        Some("67ef0ef4"),
        "0.14 reports the short id"
    );
    assert_eq!((summary.files_new, summary.data_added), (2, 101_063));
    // The snapshot restic listed afterwards is the one the summary named.
    let snapshots: serde_json::Value =
        serde_json::from_str(&recorded("snapshots").stdout).expect("json");
    assert!(
        snapshots
            .as_array()
            .expect("list")
            .iter()
            .any(|s| s["short_id"] == "67ef0ef4")
    );
}

#[test]
fn unreadable_files_are_partial_not_failed() {
    let r = recorded("backup_partial");
    assert_eq!(r.exit, 3);
    assert_eq!(
        classified("backup_partial", TaskKind::Backup),
        Classified::Partial
    );
    assert!(
        parse_summary(r.stdout.lines())
            .and_then(|s| s.snapshot_id)
            .is_some(),
        "the snapshot exists"
    );
    // A missing path is skipped with a warning by 0.14 and exits 0.
    assert_eq!(
        classified("backup_missing_path", TaskKind::Backup),
        Classified::Succeeded
    );
}

#[test]
fn wrong_password_and_missing_repository_are_permanent() {
    for (name, kind) in [
        ("wrong_password", FailureKind::WrongPassword),
        ("no_repository", FailureKind::NoRepository),
        ("backup_no_repository", FailureKind::NoRepository),
    ] {
        match classified(name, TaskKind::Backup) {
            Classified::Failed {
                class,
                kind: k,
                message,
            } => {
                assert_eq!((class, k), (ErrorClass::Permanent, kind), "{name}");
                assert!(message.contains("Fatal"), "{name}: {message}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn a_lock_held_by_another_process_is_retriable() {
    for name in ["backup_locked", "backup_still_locked"] {
        assert!(
            matches!(
                classified(name, TaskKind::Backup),
                Classified::Failed {
                    class: ErrorClass::Retriable,
                    kind: FailureKind::Locked,
                    ..
                }
            ),
            "{name}"
        );
    }
    // unlock claims success while the live lock stays: its output proves nothing.
    let r = recorded("unlock_live_lock");
    assert_eq!(r.exit, 0);
    assert!(r.stdout.contains("successfully removed locks"));
    assert_eq!(
        recorded("backup_still_locked").exit,
        1,
        "the lock was still there"
    );
}

#[test]
fn check_and_prune_succeed() {
    assert_eq!(classified("check", TaskKind::Check), Classified::Succeeded);
    assert_eq!(
        classified("forget_prune", TaskKind::Prune),
        Classified::Succeeded
    );
}

#[test]
fn an_unreachable_backend_is_retriable_though_restic_asks_for_a_repository() {
    let r = recorded("backup_unreachable");
    assert!(
        r.stderr
            .contains("Is there a repository at the following location?")
    );
    assert!(r.stderr.contains("connection refused"));
    assert!(matches!(
        classified("backup_unreachable", TaskKind::Backup),
        Classified::Failed {
            class: ErrorClass::Retriable,
            kind: FailureKind::Other,
            ..
        }
    ));
}

fn classified_by(version: &str, name: &str, kind: TaskKind) -> Classified {
    let r = recorded_by(version, name);
    let v = ResticVersion::parse(&recorded_by(version, "version").stdout);
    classify(v, kind, ExitStatus::Code(r.exit), &r.stderr)
}

#[test]
fn restic_018_is_classified_by_its_exit_codes_and_its_json_errors_read_as_text() {
    let v = ResticVersion::parse(&recorded_by("0.18", "version").stdout).expect("parses");
    assert_eq!(v.to_string(), "0.18.0");
    assert!(v.has_retry_lock() && v.has_exit_codes() && v.has_restore_summary());
    for (name, kind, class, exit) in [
        (
            "wrong_password",
            FailureKind::WrongPassword,
            ErrorClass::Permanent,
            12,
        ),
        (
            "no_repository",
            FailureKind::NoRepository,
            ErrorClass::Permanent,
            10,
        ),
        (
            "backup_no_repository",
            FailureKind::NoRepository,
            ErrorClass::Permanent,
            10,
        ),
        (
            "backup_locked",
            FailureKind::Locked,
            ErrorClass::Retriable,
            11,
        ),
        (
            "backup_locked_retry",
            FailureKind::Locked,
            ErrorClass::Retriable,
            11,
        ),
    ] {
        assert_eq!(recorded_by("0.18", name).exit, exit, "{name}");
        match classified_by("0.18", name, TaskKind::Backup) {
            Classified::Failed {
                class: c,
                kind: k,
                message,
            } => {
                assert_eq!((c, k), (class, kind), "{name}");
                // The JSON `exit_error` line is shown as restic's words, not as JSON.
                assert!(!message.contains("message_type"), "{name}: {message}");
                assert!(
                    message.contains("Fatal") || message.contains("unable to"),
                    "{name}: {message}"
                );
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(
        classified_by("0.18", "backup_partial", TaskKind::Backup),
        Classified::Partial
    );
    // An unreachable backend is retried by restic itself; stopped, it is a retriable failure.
    assert!(matches!(
        classified_by("0.18", "backup_unreachable", TaskKind::Backup),
        Classified::Failed {
            class: ErrorClass::Retriable,
            ..
        }
    ));
    // 0.17+ names the full snapshot id in the backup summary.
    let summary = parse_summary(recorded_by("0.18", "backup").stdout.lines()).expect("summary");
    assert_eq!(summary.snapshot_id.map(|id| id.len()), Some(64));
    for name in ["check", "forget_prune", "unlock", "init"] {
        assert_eq!(recorded_by("0.18", name).exit, 0, "{name}");
    }
}

#[test]
fn a_restore_reports_its_summary_from_017_on_and_nothing_before() {
    let summary =
        parse_restore_summary(recorded_by("0.18", "restore_json").stdout.lines()).expect("summary");
    assert_eq!((summary.files_restored, summary.bytes_restored), (12, 3922));
    let one = parse_restore_summary(recorded_by("0.18", "restore_include").stdout.lines())
        .expect("summary");
    assert_eq!(
        one.bytes_restored, 9,
        "one file of 9 bytes (and its directories)"
    );
    let dry = parse_restore_summary(recorded_by("0.18", "restore_dry_run").stdout.lines())
        .expect("a dry run's summary");
    assert_eq!(dry.bytes_restored, 3922);
    assert_eq!(
        parse_restore_summary(recorded("restore_json").stdout.lines()),
        None,
        "0.14 prints no JSON for a restore"
    );
    // 0.14 refuses a dry run: the agent refuses it before restic is asked.
    let r = recorded("restore_dry_run");
    assert!(r.stderr.contains("unknown flag: --dry-run") && r.exit != 0);
    // A snapshot the repository does not hold will not appear by retrying.
    for version in ["0.14", "0.18"] {
        assert!(
            matches!(
                classified_by(version, "restore_no_snapshot", TaskKind::Restore),
                Classified::Failed {
                    class: ErrorClass::Permanent,
                    kind: FailureKind::NoSnapshot,
                    ..
                }
            ),
            "{version}"
        );
    }
}

#[test]
fn a_listing_keeps_one_level_of_both_versions_output() {
    for version in ["0.14", "0.18"] {
        let out = recorded_by(version, "ls_json_dir").stdout;
        // The directory listed is the first node restic prints.
        let dir = out
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["struct_type"] == "node")
            .and_then(|v| v["path"].as_str().map(str::to_owned))
            .expect("the directory itself");
        let (entries, truncated) = parse_ls(&dir, out.lines());
        assert!(!truncated);
        let shown: Vec<(String, EntryType, Option<u64>)> = entries
            .iter()
            .map(|e| {
                (
                    e.path.trim_start_matches(&dir).to_owned(),
                    e.entry_type,
                    e.size,
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                ("/deep".to_owned(), EntryType::Dir, None),
                ("/readme.md".to_owned(), EntryType::File, Some(9))
            ],
            "{version}"
        );
        assert!(entries.iter().all(|e| e.mtime.is_some()), "{version}");
        // The same lines listed for the snapshot's top: nothing of them is one level below /.
        assert!(parse_ls("/", out.lines()).0.is_empty(), "{version}");
    }
}
