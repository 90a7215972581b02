//! The PostgreSQL backend: one pool; rows that several server replicas could race for are
//! locked with `FOR UPDATE ... SKIP LOCKED`, so replicas split work instead of waiting on it.

use std::{str::FromStr, time::Duration};

use sqlx::{
    Pool, Postgres, Transaction,
    postgres::{PgConnectOptions, PgPoolOptions},
};

use crate::{Result, StoreError};

pub(crate) type Db = Postgres;

/// Appended to `SELECT`s that claim rows: another replica's transaction skips them.
macro_rules! skip_locked {
    ($table:literal) => {
        concat!(" FOR UPDATE OF ", $table, " SKIP LOCKED")
    };
}

/// Appended to `SELECT`s that read a row to change it in the same transaction.
macro_rules! for_update {
    ($table:literal) => {
        concat!(" FOR UPDATE OF ", $table)
    };
}

// The same queries as the other backend, compiled against this one (see `ops/mod.rs`).
#[allow(clippy::duplicate_mod)]
#[path = "ops/mod.rs"]
mod ops;

#[derive(Debug, Clone)]
pub(crate) struct Pools {
    pool: Pool<Db>,
}

impl Pools {
    pub(crate) async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("bad PostgreSQL URL: {e}")))?;
        let (host, port, database) = (
            options.get_host().to_owned(),
            options.get_port(),
            options.get_database().unwrap_or("postgres").to_owned(),
        );
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .acquire_slow_threshold(Duration::from_secs(2))
            .connect_with(options)
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot open the PostgreSQL database {database} at {host}:{port}: {e}"
                ))
            })?;
        Ok(Self { pool })
    }

    pub(crate) async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("./migrations/postgres")
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migrating the PostgreSQL database: {e}")))
    }

    async fn write(&self) -> Result<Transaction<'static, Db>> {
        Ok(self.pool.begin().await?)
    }

    fn read(&self) -> &Pool<Db> {
        &self.pool
    }

    /// For single-statement writes outside a transaction.
    fn read_write(&self) -> &Pool<Db> {
        &self.pool
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    /// `NOTIFY` on [`CLAIMABLE_CHANNEL`] with each agent's id: every replica's listener hears it.
    pub(crate) async fn announce_claimable(&self, agents: &[uuid::Uuid]) -> Result<()> {
        // One statement per 1,000 agents: a tick can make tasks for a whole fleet at once.
        for chunk in agents.chunks(1000) {
            let ids: Vec<String> = chunk.iter().map(|a| a.to_string()).collect();
            sqlx::query("SELECT pg_notify($1, id) FROM UNNEST($2::text[]) AS id")
                .bind(CLAIMABLE_CHANNEL)
                .bind(ids)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    pub(crate) async fn listen_claimable(&self) -> Result<sqlx::postgres::PgListener> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen(CLAIMABLE_CHANNEL).await?;
        Ok(listener)
    }
}

/// The PostgreSQL channel on which replicas announce that an agent has a claimable task.
pub(crate) const CLAIMABLE_CHANNEL: &str = "backup_claimable";
