//! One scheduler tick over 100,000 due policies on a SQLite file (target: under 1 s).
//!
//! `cargo bench -p backup-server --bench scheduler`
//!
//! Three cases over 1,000 agents: every policy gets its task (100,000 inserts and due-time
//! updates in 100 transactions); the default queue threshold lets each agent take 11 and skips
//! the rest as saturated; every policy is skipped because its agent is offline. And the floor:
//! the same rows written by two bare statements in one transaction.

use std::{sync::Arc, time::Duration};

use backup_core::{Heartbeat, PolicySpec, SystemClock};
use backup_server::{AppState, SchedulerConfig, ServerConfig, scheduler_tick};
use backup_store::Store;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

const POLICIES: usize = 100_000;
const AGENTS: usize = 1_000;

/// Every policy's task in one statement, the ids made by SQLite as the tick makes them.
const BARE_INSERT: &str = "INSERT INTO tasks (id, tenant_id, policy_id, agent_id, kind, status, \
    created_at, updated_at, retry_count, max_retries, failed_permanently, slot) \
    SELECT unhex(substr(hex(randomblob(6)), 1, 12) || '4' || substr(hex(randomblob(2)), 1, 3) \
    || substr('89ab', 1 + abs(random() % 4), 1) || substr(hex(randomblob(8)), 1, 15)), \
    p.tenant_id, p.id, p.agent_id, p.kind, 'pending', 1, 1, 0, 5, FALSE, p.next_due_at \
    FROM policies p JOIN agents a ON a.id = p.agent_id WHERE p.enabled";

fn tick(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("tick.db").display());
    let config = ServerConfig {
        database: url.clone(),
        scheduler: SchedulerConfig {
            agent_queue_threshold: u32::MAX,
            ..SchedulerConfig::default()
        },
        ..ServerConfig::default()
    };
    let (state, agents, raw) = rt.block_on(async {
        let store = Store::open(&url, config.store_config(), Arc::new(SystemClock))
            .await
            .expect("store");
        let (tenant, agents) = backup_testkit::fleet(&store, AGENTS).await;
        for i in 0..POLICIES {
            let spec = PolicySpec {
                name: format!("p{i}"),
                ..backup_testkit::backup_spec(agents[i % AGENTS], "main", &["/srv"])
            };
            store.create_policy(tenant.id, &spec).await.expect("policy");
        }
        let raw = sqlx::SqlitePool::connect(&url).await.expect("raw pool");
        (AppState::new(store, config.clone()), agents, raw)
    });
    // The same database, the default agentQueueThreshold: each agent takes 11 tasks (a queue
    // of 11 is the first above 10), the rest of its policies are skipped as saturated.
    let saturable = rt.block_on(async {
        let config = ServerConfig {
            database: url.clone(),
            ..ServerConfig::default()
        };
        let store = Store::open(&url, config.store_config(), Arc::new(SystemClock))
            .await
            .expect("store");
        AppState::new(store, config)
    });
    // Makes every policy due again and removes the tasks of the previous iteration.
    let reset = |online: bool| {
        rt.block_on(async {
            sqlx::query("DELETE FROM tasks")
                .execute(&raw)
                .await
                .expect("delete tasks");
            sqlx::query("UPDATE policies SET next_due_at = 0")
                .execute(&raw)
                .await
                .expect("due");
            for agent in &agents {
                if online {
                    state
                        .store()
                        .heartbeat(*agent, &Heartbeat::default())
                        .await
                        .expect("online");
                }
            }
            if !online {
                sqlx::query("UPDATE agents SET last_heartbeat_at = NULL")
                    .execute(&raw)
                    .await
                    .expect("offline");
            }
        })
    };
    let mut group = c.benchmark_group("scheduler tick, 100k due policies, SQLite file");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30));
    group.bench_function("all dispatched (100k tasks created)", |b| {
        b.iter_batched(
            || reset(true),
            |()| {
                let summary = rt.block_on(scheduler_tick(&state)).expect("tick");
                assert_eq!(summary.schedule.created, POLICIES as u64);
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function(
        "all due, default queue threshold 10 (11k created, 89k saturated)",
        |b| {
            b.iter_batched(
                || reset(true),
                |()| {
                    let summary = rt.block_on(scheduler_tick(&saturable)).expect("tick");
                    assert_eq!(summary.schedule.evaluated, POLICIES as u64);
                    assert_eq!(summary.schedule.created, (AGENTS * 11) as u64);
                },
                BatchSize::PerIteration,
            )
        },
    );
    // The floor: the same 100,000 task rows and due-time updates as one bare statement each, in
    // one transaction, on the same database (the tick's ratio to it is the figure to watch).
    group.bench_function("bare SQL: INSERT ... SELECT 100k tasks + UPDATE 100k policies", |b| {
        b.iter_batched(
            || reset(true),
            |()| {
                rt.block_on(async {
                    let mut tx = raw.begin().await.expect("tx");
                    sqlx::query(BARE_INSERT)
                        .execute(&mut *tx)
                        .await
                        .expect("bare insert");
                    sqlx::query(
                        "UPDATE policies SET next_due_at = next_due_at + 3600000000, updated_at = 1 \
                         WHERE enabled",
                    )
                    .execute(&mut *tx)
                    .await
                    .expect("bare update");
                    tx.commit().await.expect("commit");
                })
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("all skipped (agents offline)", |b| {
        b.iter_batched(
            || reset(false),
            |()| {
                let summary = rt.block_on(scheduler_tick(&state)).expect("tick");
                assert_eq!(summary.schedule.evaluated, POLICIES as u64);
                assert_eq!(summary.schedule.created, 0);
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, tick);
criterion_main!(benches);
