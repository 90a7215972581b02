//! The classifier and summary parser against output recorded from real restic 0.14 runs
//! (`tests/fixtures/restic-0.14`: stdout, stderr and exit code of each command).

use backup_agent::restic::{Classified, FailureKind, ResticVersion, classify, parse_summary};
use backup_core::{ErrorClass, ExitStatus, TaskKind};

struct Recorded {
    stdout: String,
    stderr: String,
    exit: i32,
}

fn recorded(name: &str) -> Recorded {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/restic-0.14");
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
