//! The snapshot inventory: a report replaces the list, filters and pages, sizes from the run.

use backup_core::{
    AgentId, AttemptOutcome, AttemptReport, MAX_SNAPSHOTS_PER_REPOSITORY, PolicyId, SnapshotReport,
    SnapshotSummary, TenantId,
};
use backup_store::{PageRequest, SnapshotFilter, StoreError};
use chrono::{DateTime, TimeDelta, Utc};

use crate::harness::{Env, backup_every_hour, start, store_test};

/// A snapshot `n` minutes after the start, with a 64-hex id made from `n`.
fn snapshot(n: u32, policy: Option<PolicyId>) -> SnapshotReport {
    SnapshotReport {
        id: format!("{n:08x}{}", "0".repeat(56)),
        time: start() + TimeDelta::minutes(i64::from(n)),
        hostname: "db-1".into(),
        paths: vec!["/srv/data".into()],
        tags: policy
            .map(|p| vec![format!("policy:{p}"), "task:x".into()])
            .unwrap_or_default(),
        summary: None,
    }
}

async fn listed(env: &Env, tenant: TenantId, filter: &SnapshotFilter) -> Vec<String> {
    env.store
        .list_snapshots(tenant, filter, &PageRequest::first(500))
        .await
        .expect("list")
        .items
        .into_iter()
        .map(|s| s.short_id)
        .collect()
}

fn of(agent: AgentId, repository: &str) -> SnapshotFilter {
    SnapshotFilter {
        agent_id: Some(agent),
        repository: Some(repository.into()),
        policy_id: None,
    }
}

store_test!(
    a_report_replaces_the_list_for_its_agent_and_repository_only,
    |env| async move {
        let t = env.tenant("acme").await;
        let a = env.agent(&t, "db-1").await.agent.id;
        let b = env.agent(&t, "db-2").await.agent.id;
        let list: Vec<_> = (1..=3).map(|n| snapshot(n, None)).collect();
        let stored = env
            .store
            .replace_snapshots(a, "main", &list)
            .await
            .expect("stored");
        assert_eq!((stored.stored, stored.truncated), (3, false));
        env.store
            .replace_snapshots(a, "offsite", &list[..1])
            .await
            .expect("stored");
        env.store
            .replace_snapshots(b, "main", &list[..2])
            .await
            .expect("stored");
        assert_eq!(
            listed(&env, t.id, &of(a, "main")).await,
            ["00000003", "00000002", "00000001"],
            "newest first"
        );

        // A prune forgot the oldest two: the next report leaves them out.
        env.store
            .replace_snapshots(a, "main", &list[2..])
            .await
            .expect("stored");
        assert_eq!(listed(&env, t.id, &of(a, "main")).await, ["00000003"]);
        assert_eq!(listed(&env, t.id, &of(a, "offsite")).await.len(), 1);
        assert_eq!(listed(&env, t.id, &of(b, "main")).await.len(), 2);
        // The same report twice changes nothing.
        env.store
            .replace_snapshots(a, "main", &list[2..])
            .await
            .expect("stored");
        assert_eq!(listed(&env, t.id, &of(a, "main")).await, ["00000003"]);
        // An empty list empties it.
        env.store
            .replace_snapshots(a, "main", &[])
            .await
            .expect("stored");
        assert!(listed(&env, t.id, &of(a, "main")).await.is_empty());
    }
);

store_test!(
    snapshots_are_filtered_paged_and_kept_within_the_tenant,
    |env| async move {
        let t = env.tenant("acme").await;
        let other = env.tenant("other").await;
        let a = env.agent(&t, "db-1").await.agent.id;
        let policy = env.policy(&t, backup_every_hour(a)).await.id;
        let list: Vec<_> = (1..=5)
            .map(|n| snapshot(n, (n % 2 == 1).then_some(policy)))
            .collect();
        env.store
            .replace_snapshots(a, "main", &list)
            .await
            .expect("stored");

        let by_policy = SnapshotFilter {
            policy_id: Some(policy),
            ..SnapshotFilter::default()
        };
        assert_eq!(
            listed(&env, t.id, &by_policy).await,
            ["00000005", "00000003", "00000001"]
        );
        let view = &env
            .store
            .list_snapshots(t.id, &by_policy, &PageRequest::first(1))
            .await
            .expect("list")
            .items[0];
        assert_eq!(view.policy_id, Some(policy));
        assert_eq!(view.id.len(), 64);
        assert_eq!(view.paths, ["/srv/data"]);
        assert_eq!(view.agent_id, a);
        assert_eq!(view.repository, "main");

        // Pages of two, in order, with nothing twice.
        let mut seen = Vec::new();
        let mut page = PageRequest::first(2);
        loop {
            let got = env
                .store
                .list_snapshots(t.id, &SnapshotFilter::default(), &page)
                .await
                .expect("page");
            seen.extend(got.items.into_iter().map(|s| s.short_id));
            match got.next_cursor {
                Some(c) => page = PageRequest::after(2, c),
                None => break,
            }
        }
        assert_eq!(
            seen,
            ["00000005", "00000004", "00000003", "00000002", "00000001"]
        );
        assert!(
            listed(&env, other.id, &SnapshotFilter::default())
                .await
                .is_empty(),
            "another tenant sees none"
        );
        assert!(matches!(
            env.store
                .list_snapshots(
                    t.id,
                    &SnapshotFilter::default(),
                    &PageRequest::after(2, "zz")
                )
                .await,
            Err(StoreError::Validation(_))
        ));
    }
);

store_test!(
    sizes_come_from_the_summary_or_else_from_the_run_that_made_it,
    |env| async move {
        let t = env.tenant("acme").await;
        let a = env.agent(&t, "db-1").await.agent.id;
        env.online(a).await;
        let p = env.policy(&t, backup_every_hour(a)).await;
        let task = env.store.run_policy_now(t.id, p.id).await.expect("run now");
        let claimed = env.claim_all(a).await;
        env.store
            .start_task(a, task.id, claimed[0].attempt)
            .await
            .expect("start");
        // restic 0.14 reports the short id in its backup summary.
        let made = snapshot(1, Some(p.id));
        env.store
            .report_result(
                a,
                task.id,
                &AttemptReport {
                    snapshot_id: Some(made.id[..8].to_owned()),
                    files_new: Some(12),
                    data_added: Some(3456),
                    ..AttemptReport::new(claimed[0].attempt, AttemptOutcome::Succeeded)
                },
            )
            .await
            .expect("result");
        let with_summary = SnapshotReport {
            summary: Some(SnapshotSummary {
                files_new: Some(1),
                data_added: Some(2),
                total_bytes: Some(3),
            }),
            ..snapshot(2, None)
        };
        env.store
            .replace_snapshots(a, "main", &[made, with_summary])
            .await
            .expect("stored");
        let items = env
            .store
            .list_snapshots(t.id, &SnapshotFilter::default(), &PageRequest::first(10))
            .await
            .expect("list")
            .items;
        let sizes: Vec<_> = items
            .iter()
            .map(|s| (s.files_new, s.data_added, s.total_bytes))
            .collect();
        assert_eq!(
            sizes,
            [(Some(1), Some(2), Some(3)), (Some(12), Some(3456), None)]
        );
    }
);

store_test!(
    a_report_is_cleaned_and_bounded_never_refused,
    |env| async move {
        let t = env.tenant("acme").await;
        let a = env.agent(&t, "db-1").await.agent.id;
        let far: DateTime<Utc> = "+20000-01-01T00:00:00Z".parse().expect("time");
        let mut list = vec![
            SnapshotReport {
                id: "not hex".into(),
                ..snapshot(1, None)
            },
            SnapshotReport {
                time: far,
                ..snapshot(2, None)
            },
            snapshot(3, None),
            SnapshotReport {
                hostname: "nul\0host".into(),
                ..snapshot(3, None)
            },
        ];
        list.extend(
            (10..(10 + MAX_SNAPSHOTS_PER_REPOSITORY as u32 + 5)).map(|n| snapshot(n, None)),
        );
        let stored = env
            .store
            .replace_snapshots(a, "main", &list)
            .await
            .expect("stored");
        assert_eq!(
            (stored.stored as usize, stored.truncated),
            (MAX_SNAPSHOTS_PER_REPOSITORY, true),
            "bad entries and duplicates dropped, the newest 100,000 kept"
        );
        assert!(matches!(
            env.store.replace_snapshots(a, "no/slash", &[]).await,
            Err(StoreError::Validation(_))
        ));
        assert!(matches!(
            env.store
                .replace_snapshots(AgentId::new(), "main", &[])
                .await,
            Err(StoreError::NotFound("agent"))
        ));
    }
);
