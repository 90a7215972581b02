//! Restores and listings: asked for on a listed snapshot, claimed only by agents that name the
//! kind, run on another agent than the one that made the snapshot, their output kept.

use backup_core::{
    AttemptOutcome, AttemptReport, ClaimRequest, EntryType, LsEntry, LsRequest, PerKind,
    RestoreRequest, SnapshotReport, TaskKind, TaskOutput, TaskStatus,
};
use backup_store::StoreError;
use chrono::TimeDelta;

use crate::harness::{repository_backoff, start, store_test};

const FULL: &str = "4bd3a9f2c0ffee00112233445566778899aabbccddeeff00112233445566aabb";

fn snapshot() -> SnapshotReport {
    SnapshotReport {
        id: FULL.into(),
        time: start() - TimeDelta::hours(1),
        hostname: "db-1".into(),
        paths: vec!["/srv".into()],
        tags: vec![],
        summary: None,
    }
}

fn restore_of(agent: backup_core::AgentId, snapshot: &str) -> RestoreRequest {
    RestoreRequest {
        agent_id: agent,
        repository: "main".into(),
        snapshot_id: snapshot.into(),
        include: vec!["/srv/www".into()],
        target: "/var/restores/www".into(),
        dry_run: false,
    }
}

/// A claim of an agent that runs every kind, one of each at most.
fn claim_every_kind() -> ClaimRequest {
    ClaimRequest {
        limit: 5,
        per_kind: Some(PerKind::splat(1)),
        wait_seconds: 0,
    }
}

fn field_of(err: StoreError) -> Option<String> {
    match err {
        StoreError::Validation(e) => e.field().map(str::to_owned),
        other => panic!("expected a validation error, got {other:?}"),
    }
}

store_test!(
    a_restore_runs_on_another_agent_by_short_id_and_keeps_what_it_restored,
    |env| async move {
        let t = env.tenant("acme").await;
        let maker = env.agent(&t, "db-1").await.agent.id;
        let target = env.agent(&t, "spare").await.agent.id;
        env.store
            .replace_snapshots(maker, "main", &[snapshot()])
            .await
            .expect("stored");

        // Not listed for that repository, not an id, not the tenant's agent: each a 422.
        let err = env
            .store
            .create_restore(t.id, &restore_of(target, "deadbeef"))
            .await
            .expect_err("unlisted snapshot");
        assert_eq!(field_of(err).as_deref(), Some("snapshotId"));
        let other = env.tenant("other").await;
        let stranger = env.agent(&other, "x").await.agent.id;
        let err = env
            .store
            .create_restore(t.id, &restore_of(stranger, &FULL[..8]))
            .await
            .expect_err("another tenant's agent");
        assert_eq!(field_of(err).as_deref(), Some("agentId"));
        let err = env
            .store
            .create_restore(
                t.id,
                &RestoreRequest {
                    target: "restores".into(),
                    ..restore_of(target, &FULL[..8])
                },
            )
            .await
            .expect_err("relative target");
        assert_eq!(field_of(err).as_deref(), Some("target"));

        let task = env
            .store
            .create_restore(t.id, &restore_of(target, &FULL[..8]))
            .await
            .expect("restore");
        assert_eq!(
            (task.kind, task.status, task.policy_id, task.agent_id),
            (TaskKind::Restore, TaskStatus::Pending, None, target)
        );
        assert_eq!(
            task.request.snapshot_id.as_deref(),
            Some(FULL),
            "the full id"
        );
        assert_eq!(task.repository.as_deref(), Some("main"));

        // An agent from before restores (its perKind names three kinds) is not handed it.
        let old = env
            .store
            .claim(
                target,
                &ClaimRequest {
                    limit: 5,
                    per_kind: Some(PerKind {
                        backup: 1,
                        check: 1,
                        prune: 1,
                        ..PerKind::default()
                    }),
                    wait_seconds: 0,
                },
            )
            .await
            .expect("claim");
        assert!(old.tasks.is_empty(), "{:?}", old.tasks);
        // Nor is one whose repository it reported in backoff.
        env.heartbeat(target, &repository_backoff("main", 600))
            .await;
        let held_back = env
            .store
            .claim(target, &claim_every_kind())
            .await
            .expect("claim");
        assert!(held_back.tasks.is_empty());
        env.online(target).await;
        let claimed = env
            .store
            .claim(target, &claim_every_kind())
            .await
            .expect("claim")
            .tasks;
        assert_eq!(claimed.len(), 1);
        let claimed = &claimed[0];
        assert_eq!(
            (
                claimed.kind,
                claimed.policy_id,
                claimed.repository.as_str(),
                claimed.request.target.as_deref(),
                claimed.request.include.as_slice()
            ),
            (
                TaskKind::Restore,
                None,
                "main",
                Some("/var/restores/www"),
                &["/srv/www".to_owned()][..]
            )
        );
        env.store
            .start_task(target, claimed.id, claimed.attempt)
            .await
            .expect("start");
        let report = AttemptReport {
            output: TaskOutput {
                files_restored: Some(12),
                bytes_restored: Some(3922),
                ..TaskOutput::none()
            },
            ..AttemptReport::new(claimed.attempt, AttemptOutcome::Succeeded)
        };
        env.store
            .report_result(target, claimed.id, &report)
            .await
            .expect("result");
        let done = env.store.get_task(t.id, task.id).await.expect("task");
        assert_eq!(done.status, TaskStatus::Succeeded);
        assert_eq!(
            (done.output.files_restored, done.output.bytes_restored),
            (Some(12), Some(3922))
        );
    }
);

store_test!(
    a_listing_keeps_its_entries_and_bounds_them,
    |env| async move {
        let t = env.tenant("acme").await;
        let a = env.agent(&t, "db-1").await.agent.id;
        env.store
            .replace_snapshots(a, "main", &[snapshot()])
            .await
            .expect("stored");
        let ask = LsRequest {
            agent_id: a,
            repository: "main".into(),
            path: "/srv".into(),
        };
        let err = env
            .store
            .create_ls(t.id, "not-an-id", &ask)
            .await
            .expect_err("bad id");
        assert_eq!(field_of(err).as_deref(), Some("snapshotId"));
        let err = env
            .store
            .create_ls(
                t.id,
                FULL,
                &LsRequest {
                    repository: "offsite".into(),
                    ..ask.clone()
                },
            )
            .await
            .expect_err("not listed in that repository");
        assert_eq!(field_of(err).as_deref(), Some("snapshotId"));
        // Any prefix of 8 or more digits names it, as restic's own commands take.
        let task = env
            .store
            .create_ls(t.id, &FULL[..12], &ask)
            .await
            .expect("ls");
        assert_eq!(task.request.snapshot_id.as_deref(), Some(FULL));
        assert_eq!(task.request.path.as_deref(), Some("/srv"));
        let claimed = env.claim_all(a).await;
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].kind, TaskKind::Ls);
        // An agent reports more than the bound: the store keeps 10,000 and says so.
        let entries: Vec<LsEntry> = (0..10_001)
            .map(|i| LsEntry {
                path: format!("/srv/f{i:05}"),
                entry_type: EntryType::File,
                size: Some(i),
                mtime: None,
            })
            .collect();
        let report = AttemptReport {
            output: TaskOutput {
                entries: Some(entries),
                ..TaskOutput::none()
            },
            ..AttemptReport::new(claimed[0].attempt, AttemptOutcome::Succeeded)
        };
        env.store
            .report_result(a, task.id, &report)
            .await
            .expect("result before start");
        let done = env.store.get_task(t.id, task.id).await.expect("task");
        let listed = done.output.entries.expect("entries");
        assert_eq!(listed.len(), backup_core::MAX_LS_ENTRIES);
        assert!(done.output.truncated);
        assert_eq!(listed[1].path, "/srv/f00001");
    }
);
