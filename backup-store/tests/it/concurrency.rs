use std::collections::{HashMap, HashSet};

use backup_core::{ClaimRequest, PerKind};
use backup_store::{PageRequest, StoreConfig, TaskFilter};

use crate::harness::{backup_every_hour, store_test};

const UNSATURABLE: StoreConfig = StoreConfig {
    lease_seconds: 900,
    offline_after_seconds: 180,
    agent_queue_threshold: u32::MAX,
    max_connections: 16,
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
                        }),
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
