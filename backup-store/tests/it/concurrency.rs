use std::collections::{HashMap, HashSet};

use backup_core::{ClaimRequest, PerKind};
use backup_store::{PageRequest, StoreConfig, TaskFilter};

use crate::harness::{backup_every_hour, store_test};

const UNSATURABLE: StoreConfig = StoreConfig {
    lease_seconds: 900,
    offline_after_seconds: 180,
    agent_queue_threshold: u32::MAX,
    max_connections: 16,
    max_agents_per_tenant: 0,
    max_policies_per_tenant: 0,
};

store_test!(
    eight_claimers_on_two_replicas_claim_every_task_exactly_once,
    UNSATURABLE,
    |env| async move {
        let t = env.tenant("acme").await;
        let a = env.agent(&t, "db-1").await;
        let agent = a.agent.id;
        env.online(agent).await;
        for _ in 0..1000 {
            env.policy(&t, backup_every_hour(agent)).await;
        }
        let tick = env.store.schedule_due(true).await.expect("tick");
        assert_eq!(tick.created, 1000);

        let replica = env.replica().await;
        let mut claimers = Vec::new();
        for i in 0..8 {
            let store = if i % 2 == 0 {
                env.store.clone()
            } else {
                replica.clone()
            };
            claimers.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let request = ClaimRequest {
                        limit: 7,
                        per_kind: Some(PerKind {
                            backup: 5,
                            check: 5,
                            prune: 5,
                            ..PerKind::default()
                        }),
                        wait_seconds: 0,
                    };
                    let got = store.claim(agent, &request).await.expect("claim");
                    if got.tasks.is_empty() {
                        return mine;
                    }
                    assert!(got.tasks.len() <= 5, "per-kind limit");
                    mine.extend(got.tasks.into_iter().map(|c| c.id));
                }
            }));
        }
        let mut all = Vec::new();
        for c in claimers {
            all.extend(c.await.expect("claimer"));
        }
        let unique: HashSet<_> = all.iter().collect();
        assert_eq!(all.len(), 1000, "every task claimed");
        assert_eq!(unique.len(), 1000, "no task claimed twice");
    }
);

store_test!(
    racing_scheduler_steps_create_one_task_per_slot,
    UNSATURABLE,
    |env| async move {
        let t = env.tenant("acme").await;
        let a = env.agent(&t, "db-1").await;
        env.online(a.agent.id).await;
        for _ in 0..300 {
            env.policy(&t, backup_every_hour(a.agent.id)).await;
        }
        let replica = env.replica().await;
        let (one, two) = tokio::join!(env.store.schedule_due(true), replica.schedule_due(true));
        let (one, two) = (one.expect("tick 1"), two.expect("tick 2"));
        assert_eq!(one.created + two.created, 300, "{one:?} {two:?}");
        let mut per_policy: HashMap<_, usize> = HashMap::new();
        let mut page = PageRequest::first(500);
        loop {
            let p = env
                .store
                .list_tasks(t.id, &TaskFilter::default(), &page)
                .await
                .expect("list");
            for task in &p.items {
                *per_policy.entry((task.policy_id, task.slot)).or_default() += 1;
            }
            match p.next_cursor {
                Some(c) => page = PageRequest::after(500, c),
                None => break,
            }
        }
        assert_eq!(per_policy.len(), 300);
        assert!(
            per_policy.values().all(|&n| n == 1),
            "one task per policy slot"
        );
    }
);

store_test!(
    concurrent_settings_patches_both_take_effect,
    |env| async move {
        let t = env.tenant("acme").await;
        let agent = env.agent(&t, "db-1").await.agent.id;
        let replica = env.replica().await;
        for round in 0..20_i64 {
            let (a, b) = (env.store.clone(), replica.clone());
            let (tenant, cpu, retries) = (t.id, 10 + round, round);
            let first = tokio::spawn(async move {
                a.patch_settings(
                    tenant,
                    agent,
                    &backup_core::SettingsPatch {
                        cpu_quota_percent: Some(cpu),
                        ..Default::default()
                    },
                )
                .await
            });
            let second = tokio::spawn(async move {
                b.patch_settings(
                    tenant,
                    agent,
                    &backup_core::SettingsPatch {
                        max_retries: Some(retries),
                        ..Default::default()
                    },
                )
                .await
            });
            first.await.expect("join").expect("patch");
            second.await.expect("join").expect("patch");
            let settings = env
                .store
                .get_agent(t.id, agent)
                .await
                .expect("agent")
                .settings;
            assert_eq!(
                (
                    i64::from(settings.cpu_quota_percent),
                    i64::from(settings.max_retries)
                ),
                (cpu, retries),
                "round {round}: neither PATCH undid the other"
            );
        }
    }
);

store_test!(
    a_policy_update_racing_the_scheduler_never_moves_next_due_back,
    UNSATURABLE,
    |env| async move {
        let t = env.tenant("acme").await;
        let agent = env.agent(&t, "db-1").await.agent.id;
        let replica = env.replica().await;
        let mut policies = Vec::new();
        for _ in 0..50 {
            policies.push(env.policy(&t, backup_every_hour(agent)).await.id);
        }
        for round in 0..10 {
            env.online(agent).await;
            let tick = {
                let store = env.store.clone();
                tokio::spawn(async move { store.schedule_due(true).await })
            };
            let mut patches = Vec::new();
            for (i, id) in policies.iter().enumerate() {
                let (store, tenant, id) = (replica.clone(), t.id, *id);
                patches.push(tokio::spawn(async move {
                    store
                        .update_policy(
                            tenant,
                            id,
                            &backup_core::PolicyPatch {
                                name: Some(format!("policy {i} round {round}")),
                                ..Default::default()
                            },
                        )
                        .await
                }));
            }
            tick.await.expect("join").expect("tick");
            for p in patches {
                p.await.expect("join").expect("patch");
            }
            // Every task of a policy is for a slot before its next due time.
            let tasks = env
                .store
                .list_tasks(t.id, &TaskFilter::default(), &PageRequest::first(500))
                .await
                .expect("tasks");
            for id in &policies {
                let policy = env.store.get_policy(t.id, *id).await.expect("policy");
                let next = policy.next_due_at.expect("enabled");
                for task in tasks
                    .items
                    .iter()
                    .filter(|task| task.policy_id == Some(*id))
                {
                    assert!(
                        task.slot < next,
                        "round {round}: {id} is due again at {next}, the slot of {}",
                        task.id
                    );
                }
            }
            // Close the round's tasks and move to the next hour.
            for task in env.claim_all(agent).await {
                env.store.cancel_task(t.id, task.id).await.expect("cancel");
            }
            env.advance_secs(3600);
        }
    }
);

store_test!(
    policy_creations_racing_on_two_replicas_stop_exactly_at_the_quota,
    StoreConfig {
        max_policies_per_tenant: 5,
        ..UNSATURABLE
    },
    |env| async move {
        let t = env.tenant("acme").await;
        let agent = env.agent(&t, "db-1").await.agent.id;
        let replica = env.replica().await;
        let mut racers = Vec::new();
        for i in 0..20 {
            let store = if i % 2 == 0 {
                env.store.clone()
            } else {
                replica.clone()
            };
            let spec = backup_core::PolicySpec {
                name: format!("p{i}"),
                ..backup_every_hour(agent)
            };
            racers.push(tokio::spawn(async move {
                store.create_policy(t.id, &spec).await
            }));
        }
        let mut created = Vec::new();
        for racer in racers {
            match racer.await.expect("join") {
                Ok(p) => created.push(p.id),
                Err(backup_store::StoreError::QuotaExceeded(m)) => {
                    assert!(m.contains("limits.maxPoliciesPerTenant"), "{m}");
                }
                Err(e) => panic!("neither created nor over quota: {e}"),
            }
        }
        assert_eq!(created.len(), 5, "exactly the quota, never one more");
        // A deletion frees exactly one place.
        env.store
            .delete_policy(t.id, created[0])
            .await
            .expect("delete");
        let again = |name: &str| backup_core::PolicySpec {
            name: name.into(),
            ..backup_every_hour(agent)
        };
        env.store
            .create_policy(t.id, &again("after"))
            .await
            .expect("a freed place");
        assert!(matches!(
            env.store.create_policy(t.id, &again("one-more")).await,
            Err(backup_store::StoreError::QuotaExceeded(_))
        ));
    }
);
