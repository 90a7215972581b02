//! Upgrading a database that holds the base schema's data to the latest schema.

use std::sync::Arc;

use backup_core::{AgentId, ManualClock, PolicyId, Settings, TaskId, TaskStatus, TenantId};
use backup_store::{Store, StoreConfig};
use backup_testkit::TestDatabase;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use crate::harness::start;

struct Ids {
    tenant: Uuid,
    agent: Uuid,
    policy: Uuid,
    task: Uuid,
    run: Uuid,
}

/// Rows as the system before EPIC 15 would have written them (base columns only).
fn base_rows(ids: &Ids, ts: &str, uuid: impl Fn(Uuid) -> String) -> String {
    let (t, a, p, k, r) = (
        uuid(ids.tenant),
        uuid(ids.agent),
        uuid(ids.policy),
        uuid(ids.task),
        uuid(ids.run),
    );
    format!(
        "INSERT INTO tenants (id, name, token_hash, created_at) VALUES ({t}, 'old', 'deadbeef', {ts});
         INSERT INTO agents (id, tenant_id, name, hostname, token_hash, created_at) VALUES ({a}, {t}, 'old-agent', 'old.example', 'cafe', {ts});
         INSERT INTO policies (id, tenant_id, agent_id, name, kind, created_at, updated_at) VALUES ({p}, {t}, {a}, 'old-policy', 'backup', {ts}, {ts});
         INSERT INTO tasks (id, tenant_id, policy_id, agent_id, kind, status, created_at, updated_at) VALUES ({k}, {t}, {p}, {a}, 'backup', 'pending', {ts}, {ts});
         INSERT INTO backup_runs (id, tenant_id, task_id, policy_id, agent_id, kind, status, snapshot_id, files_new, data_added, created_at) VALUES ({r}, {t}, {k}, {p}, {a}, 'backup', 'succeeded', '1a2b3c4d', 3, 4096, {ts});"
    )
}

async fn check_upgraded(store: &Store, ids: &Ids) {
    let tenant = TenantId::from_uuid(ids.tenant);
    let agent = store
        .get_agent(tenant, AgentId::from_uuid(ids.agent))
        .await
        .expect("old agent readable");
    assert_eq!(
        agent.settings,
        Settings::default(),
        "the seed's defaults on old rows"
    );
    assert_eq!(agent.running_tasks, 0);
    let task = store
        .get_task(tenant, TaskId::from_uuid(ids.task))
        .await
        .expect("old task readable");
    assert_eq!(
        (
            task.status,
            task.retry_count,
            task.max_retries,
            task.failed_permanently,
            task.next_retry_at
        ),
        (TaskStatus::Pending, 0, 5, false, None)
    );
    let policy = store
        .get_policy(tenant, PolicyId::from_uuid(ids.policy))
        .await
        .expect("old policy readable");
    assert_eq!(task.policy_id, Some(policy.id));
    // The runs survived the rebuild that lets a task have no policy (migration 0014).
    let runs = store
        .list_backup_runs(
            tenant,
            &backup_store::BackupRunFilter {
                task_id: Some(task.id),
                ..backup_store::BackupRunFilter::default()
            },
            &backup_store::PageRequest::default(),
        )
        .await
        .expect("old runs readable");
    assert_eq!(runs.items.len(), 1);
    let run = &runs.items[0];
    assert_eq!(
        (
            run.policy_id,
            run.snapshot_id.as_deref(),
            run.files_new,
            run.data_added
        ),
        (Some(policy.id), Some("1a2b3c4d"), Some(3), Some(4096))
    );
    assert_eq!(policy.spec.max_task_retries, None);
    assert_eq!(policy.spec.schedule.every.as_deref(), Some("24h"));
    assert!(policy.spec.enabled);
}

fn ids() -> Ids {
    Ids {
        tenant: Uuid::new_v4(),
        agent: Uuid::new_v4(),
        policy: Uuid::new_v4(),
        task: Uuid::new_v4(),
        run: Uuid::new_v4(),
    }
}

/// Fills a database at the base schema (migration 1) with rows as the old system wrote them
/// (timestamps as `ts`, ids as `uuid` writes them), then opens the store on it, which upgrades
/// it, and checks what it reads.
async fn upgrade_from_the_base_schema<DB>(
    pool: sqlx::Pool<DB>,
    migrator: sqlx::migrate::Migrator,
    url: &str,
    ts: &str,
    uuid: impl Fn(Uuid) -> String,
) where
    DB: sqlx::Database,
    DB::Connection: sqlx::migrate::Migrate,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
    migrator.run_to(1, &pool).await.expect("base schema");
    let ids = ids();
    sqlx::raw_sql(AssertSqlSafe(base_rows(&ids, ts, uuid)))
        .execute(&pool)
        .await
        .expect("old rows");
    pool.close().await;
    let store = Store::open(
        url,
        StoreConfig::default(),
        Arc::new(ManualClock::new(start())),
    )
    .await
    .expect("upgrade");
    check_upgraded(&store, &ids).await;
}

#[tokio::test]
async fn sqlite_upgrade_from_the_base_schema() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    let opts: sqlx::sqlite::SqliteConnectOptions = url.parse().expect("url");
    let pool = sqlx::SqlitePool::connect_with(opts.create_if_missing(true))
        .await
        .expect("pool");
    let ms = start().timestamp_millis().to_string();
    let blob = |u: Uuid| format!("X'{}'", u.simple());
    upgrade_from_the_base_schema(pool, sqlx::migrate!("./migrations/sqlite"), &url, &ms, blob)
        .await;
}

#[tokio::test]
async fn postgres_upgrade_from_the_base_schema() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let pool = sqlx::PgPool::connect(&db.url).await.expect("pool");
    let ts = format!("'{}'", start().to_rfc3339());
    let text = |u: Uuid| format!("'{u}'");
    upgrade_from_the_base_schema(
        pool,
        sqlx::migrate!("./migrations/postgres"),
        &db.url,
        &ts,
        text,
    )
    .await;
}

#[tokio::test]
async fn both_migration_folders_carry_every_seed_column() {
    let seed = [
        (
            "agents",
            [
                "max_concurrent_tasks",
                "max_concurrent_backups",
                "max_concurrent_checks",
                "max_concurrent_prunes",
                "cpu_quota_percent",
                "bandwidth_limit_mbps",
                "running_tasks",
                "queue_depth",
            ]
            .as_slice(),
        ),
        (
            "tasks",
            [
                "retry_count",
                "next_retry_at",
                "max_retries",
                "failed_permanently",
            ]
            .as_slice(),
        ),
        ("agents", ["backoff_until", "pending_retries"].as_slice()),
        ("policies", ["max_task_retries"].as_slice()),
    ];
    for folder in ["sqlite", "postgres"] {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(folder);
        let mut all = String::new();
        for entry in std::fs::read_dir(&dir).expect("folder") {
            all.push_str(&std::fs::read_to_string(entry.expect("entry").path()).expect("file"));
        }
        for (table, columns) in seed {
            for column in columns {
                let needle = format!("ALTER TABLE {table} ADD COLUMN {column} ");
                assert!(all.contains(&needle), "{folder}: missing {needle}");
            }
        }
    }
}
