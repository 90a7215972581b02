//! Store calls per second beside the database's own limit: a bare single-row `UPDATE` of the
//! same table, through the same kind of connection, in the same run.
//!
//! `cargo bench -p backup-store --bench store` (PostgreSQL from `BACKUP_TEST_POSTGRES_URL`,
//! default `postgres://postgres@127.0.0.1:5432/postgres`; a fresh database is made and dropped).

use std::{str::FromStr, sync::Arc, time::Duration};

use backup_core::{AgentId, ClaimRequest, Heartbeat, SystemClock};
use backup_store::{Store, StoreConfig};
use criterion::{Criterion, criterion_group, criterion_main};
use sqlx::{
    AssertSqlSafe, Connection, PgConnection, Pool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

const AGENTS: usize = 1000;

/// Benchmarks one backend: heartbeat, claim with nothing due, and the bare UPDATE.
fn bench_backend<DB: sqlx::Database>(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    store: &Store,
    bare: &Pool<DB>,
    bare_sql: &'static str,
    agents: &[AgentId],
) where
    for<'c> &'c Pool<DB>: sqlx::Executor<'c, Database = DB>,
    for<'q> uuid::Uuid: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
{
    let mut group = c.benchmark_group(name);
    group.measurement_time(Duration::from_secs(5));
    let mut i = 0usize;
    group.bench_function("bare single-row UPDATE agents (baseline)", |b| {
        b.to_async(rt).iter(|| {
            i += 1;
            let id = *agents[i % agents.len()].as_uuid();
            async move {
                sqlx::query(bare_sql)
                    .bind(i as i64)
                    .bind(id)
                    .execute(bare)
                    .await
                    .expect("update");
            }
        })
    });
    let mut i = 0usize;
    let heartbeat = Heartbeat {
        running_tasks: 1,
        queue_depth: 2,
        ..Heartbeat::default()
    };
    group.bench_function("Store::heartbeat", |b| {
        b.to_async(rt).iter(|| {
            i += 1;
            let id = agents[i % agents.len()];
            let hb = &heartbeat;
            async move { store.heartbeat(id, hb).await.expect("heartbeat") }
        })
    });
    let mut i = 0usize;
    let claim = ClaimRequest {
        limit: 2,
        per_kind: None,
        wait_seconds: 0,
    };
    group.bench_function("Store::claim (nothing due)", |b| {
        b.to_async(rt).iter(|| {
            i += 1;
            let id = agents[i % agents.len()];
            async move { store.claim(id, &claim).await.expect("claim") }
        })
    });
    group.finish();
}

fn sqlite(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("bench.db");
    let url = format!("sqlite://{}", path.display());
    let (store, agents, bare) = rt.block_on(async {
        let store = Store::open(&url, StoreConfig::default(), Arc::new(SystemClock))
            .await
            .expect("store");
        let (_, agents) = backup_testkit::fleet(&store, AGENTS).await;
        let opts = SqliteConnectOptions::from_str(&url)
            .expect("url")
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let bare = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await
            .expect("pool");
        (store, agents, bare)
    });
    bench_backend(
        c,
        &rt,
        "sqlite file",
        &store,
        &bare,
        "UPDATE agents SET running_tasks = $1 WHERE id = $2",
        &agents,
    );
}

fn postgres(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let admin = std::env::var("BACKUP_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let name = format!("backup_bench_{}", uuid::Uuid::new_v4().simple());
    let Some(url) = rt.block_on(async {
        let mut conn = PgConnection::connect(&admin).await.ok()?;
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .ok()?;
        Some(format!(
            "{}/{name}",
            admin
                .rsplit_once('/')
                .map_or(admin.as_str(), |(base, _)| base)
        ))
    }) else {
        eprintln!("SKIPPED: PostgreSQL benchmarks (no server at {admin})");
        return;
    };
    let (store, agents, bare) = rt.block_on(async {
        let store = Store::open(&url, StoreConfig::default(), Arc::new(SystemClock))
            .await
            .expect("store");
        let (_, agents) = backup_testkit::fleet(&store, AGENTS).await;
        let bare = sqlx::PgPool::connect(&url).await.expect("pool");
        (store, agents, bare)
    });
    bench_backend(
        c,
        &rt,
        "postgres",
        &store,
        &bare,
        "UPDATE agents SET running_tasks = $1::bigint::int WHERE id = $2",
        &agents,
    );
    rt.block_on(async {
        store.close().await;
        bare.close().await;
        if let Ok(mut conn) = PgConnection::connect(&admin).await {
            let _ = sqlx::raw_sql(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await;
        }
    });
}

criterion_group!(benches, sqlite, postgres);
criterion_main!(benches);
