//! What the agent refuses, whatever the server asks: it is the last line of defence for its
//! machine and its repositories, so that a stolen tenant token or a compromised server cannot
//! read what it should not or wipe a repository's history.
//!
//! Per repository (`repositories.<name>` in the agent's file): `allowedPaths` bounds what a
//! backup may read, `appendOnly` refuses prune and forget, `retentionFloor` is the least a prune
//! keeps. For the whole agent, `restoreTargets` bounds where a restore may write (a restore
//! over `/etc` is a way to take a machine). Every `forget` is scoped to the agent's own
//! `--host`, and the agent's own secrets are excluded from every backup. A task that breaks a
//! rule fails permanently, with a message that names the key.

use std::path::{Component, Path, PathBuf};

use backup_core::{ClaimedTask, Retention, TaskKind};

use crate::{AgentConfig, config::RepositoryConfig};

/// Whether the agent runs `task` on `repository` (configured as `name`) at all; the message
/// names the key that refuses it otherwise, and the task fails permanently.
pub(crate) fn check_task(
    name: &str,
    repository: &RepositoryConfig,
    restore_targets: &[PathBuf],
    task: &ClaimedTask,
) -> Result<(), String> {
    match task.kind {
        TaskKind::Backup => check_backup_paths(name, repository, &task.paths),
        TaskKind::Prune => check_prune(name, repository),
        TaskKind::Check => Ok(()),
        TaskKind::Restore => {
            check_snapshot(task)?;
            let target = task.request.target.as_deref().unwrap_or_default();
            check_restore_target(restore_targets, target)
        }
        TaskKind::Ls => check_snapshot(task),
        other => Err(format!(
            "this agent does not run {other:?} tasks; upgrade it to one that does"
        )),
    }
}

/// A restore or a listing names its snapshot by restic's id: hex digits only, so that nothing
/// the server sends can read as one of restic's flags or as `latest`.
fn check_snapshot(task: &ClaimedTask) -> Result<(), String> {
    let id = task.request.snapshot_id.as_deref().unwrap_or_default();
    backup_core::validate_snapshot_id(id).map_err(|e| format!("the task's {e}"))
}

/// Whether a restore may write into `target`: an absolute path without `..` under one of the
/// `restoreTargets`, judged as written and where it leads (a symbolic link inside an allowed
/// directory that points outside it does not count as inside). The message names the key.
pub(crate) fn check_restore_target(targets: &[PathBuf], raw: &str) -> Result<(), String> {
    let path = Path::new(raw);
    if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "restoreTargets: the target {raw:?} is not an absolute path without '..'; this agent \
             restores only under {}",
            shown(targets)
        ));
    }
    let real = resolved(path);
    let as_written = targets.iter().any(|t| path.starts_with(t));
    let where_it_leads = targets.iter().any(|t| real.starts_with(resolved(t)));
    if as_written && where_it_leads {
        Ok(())
    } else {
        Err(format!(
            "restoreTargets: the target {raw:?} is outside the directories this agent restores \
             into ({}); add it to restoreTargets in the agent's file to allow it",
            shown(targets)
        ))
    }
}

/// Where `path` leads: the real path of its nearest existing ancestor, with the rest appended
/// (the target of a restore need not exist yet).
fn resolved(path: &Path) -> PathBuf {
    let mut missing = Vec::new();
    let mut at = path;
    loop {
        if let Ok(real) = std::fs::canonicalize(at) {
            return missing.iter().rev().fold(real, |p, c| p.join(c));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_owned());
                at = parent;
            }
            _ => return path.to_owned(),
        }
    }
}

/// Whether a backup of `paths` into `repository` stays inside its `allowedPaths`; the message
/// names the key otherwise.
pub(crate) fn check_backup_paths(
    name: &str,
    repository: &RepositoryConfig,
    paths: &[String],
) -> Result<(), String> {
    let key = format!("repositories.{name}.allowedPaths");
    if paths.is_empty() {
        return Err(format!("{key}: a backup needs at least one path"));
    }
    for raw in paths {
        let path = Path::new(raw);
        if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
            return Err(format!(
                "{key}: {raw:?} is not an absolute path without '..'; this agent backs up only \
                 absolute paths under {}",
                shown(&repository.allowed_paths)
            ));
        }
        // A path inside an allowed prefix through a symbolic link is judged where it leads.
        let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        let inside = |p: &Path| repository.allowed_paths.iter().any(|a| p.starts_with(a));
        if !inside(path) || !inside(&real) {
            return Err(format!(
                "{key}: {raw:?} is outside the paths this agent may back up into this \
                 repository ({}); change allowedPaths in the agent's file to allow it",
                shown(&repository.allowed_paths)
            ));
        }
    }
    Ok(())
}

/// Whether a prune or forget may run on the repository at all.
pub(crate) fn check_prune(name: &str, repository: &RepositoryConfig) -> Result<(), String> {
    if repository.append_only {
        return Err(format!(
            "repositories.{name}.appendOnly: this agent never prunes or forgets snapshots in an \
             append-only repository; prune it from a trusted machine"
        ));
    }
    Ok(())
}

/// The keep rules a prune runs with: the policy's, never below the repository's floor (a policy
/// without rules keeps what the floor says).
pub(crate) fn effective_retention(
    policy: Option<Retention>,
    repository: &RepositoryConfig,
) -> Retention {
    policy
        .unwrap_or_default()
        .at_least(&repository.retention_floor)
}

/// The agent's own secrets, excluded from every backup: its token file, every repository's
/// password and env files, its configuration file, and its state directory (state, cache,
/// credentials). Each as given and, where it resolves, as its real path.
pub(crate) fn own_secrets(config: &AgentConfig) -> Vec<String> {
    let mut files: Vec<&PathBuf> = Vec::new();
    files.extend(config.token_file.iter());
    files.extend(config.enrollment_token_file.iter());
    files.extend(config.config_file.iter());
    files.push(&config.state_dir);
    for repository in config.repositories.values() {
        files.push(&repository.password_file);
        files.extend(repository.env_file.iter());
    }
    let mut patterns: Vec<String> = Vec::new();
    for file in files {
        let absolute = std::path::absolute(file).unwrap_or_else(|_| file.clone());
        for path in [Some(absolute), std::fs::canonicalize(file).ok()]
            .into_iter()
            .flatten()
        {
            let pattern = path.display().to_string();
            if !patterns.contains(&pattern) {
                patterns.push(pattern);
            }
        }
    }
    patterns
}

fn shown(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repository(allowed: &[&str]) -> RepositoryConfig {
        RepositoryConfig {
            allowed_paths: allowed.iter().map(PathBuf::from).collect(),
            ..RepositoryConfig::new("/srv/repo", "/etc/restic/pw")
        }
    }

    #[test]
    fn paths_stay_inside_their_prefixes_by_component() {
        let r = repository(&["/srv", "/home/alice"]);
        assert!(check_backup_paths("main", &r, &["/srv/www".into(), "/home/alice".into()]).is_ok());
        for bad in ["/srvx", "/etc/shadow", "srv/www", "/srv/../etc", "/home"] {
            let e = check_backup_paths("main", &r, &[bad.into()]).expect_err(bad);
            assert!(e.starts_with("repositories.main.allowedPaths:"), "{e}");
        }
    }

    #[test]
    fn a_restore_writes_only_under_its_targets_also_through_links() {
        let dir = std::env::temp_dir().join(format!("guard-{}", std::process::id()));
        let allowed = dir.join("restores");
        std::fs::create_dir_all(&allowed).expect("mkdir");
        let outside = dir.join("etc");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::os::unix::fs::symlink(&outside, allowed.join("escape")).expect("symlink");
        let targets = [allowed.clone()];
        let ok = |p: &Path| check_restore_target(&targets, &p.display().to_string());
        assert!(ok(&allowed).is_ok());
        assert!(
            ok(&allowed.join("new/deeper")).is_ok(),
            "a target need not exist"
        );
        for bad in [
            outside.clone(),
            allowed.join("escape/passwd"),
            allowed.join("../etc"),
            dir.join("restoresX"),
            PathBuf::from("restores"),
        ] {
            let e = ok(&bad).expect_err(&bad.display().to_string());
            assert!(e.starts_with("restoreTargets:"), "{e}");
        }
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn keep_rules_never_go_below_the_floor() {
        let floor = Retention {
            keep_last: Some(3),
            keep_daily: Some(7),
            ..Retention::default()
        };
        let r = RepositoryConfig {
            retention_floor: floor,
            ..repository(&["/"])
        };
        let wipe = Retention {
            keep_last: Some(1),
            ..Retention::default()
        };
        assert_eq!(effective_retention(Some(wipe), &r), floor);
        let generous = Retention {
            keep_last: Some(10),
            keep_weekly: Some(4),
            ..Retention::default()
        };
        assert_eq!(
            effective_retention(Some(generous), &r),
            Retention {
                keep_last: Some(10),
                keep_daily: Some(7),
                keep_weekly: Some(4),
                ..Retention::default()
            }
        );
        assert_eq!(effective_retention(None, &r), floor);
    }
}
