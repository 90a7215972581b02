//! The SQLite backend: WAL, `synchronous=NORMAL`, one writer connection taking `BEGIN IMMEDIATE`
//! for every read-then-write transaction, and a pool of read-only connections.
//!
//! One writer serialises writes inside the process, and `BEGIN IMMEDIATE` (with a busy timeout)
//! serialises them against other processes on the same file, so a transaction never has to
//! upgrade a read lock to a write lock half-way (the source of `SQLITE_BUSY` deadlocks).

use std::{str::FromStr, time::Duration};

use sqlx::{
    Pool, Sqlite, Transaction,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

use crate::{Result, StoreError};

pub(crate) type Db = Sqlite;

/// Appended to `SELECT`s that lock rows on PostgreSQL; SQLite's single writer needs nothing.
macro_rules! skip_locked {
    ($table:literal) => {
        ""
    };
}

/// Appended to `SELECT`s that read a row to change it in the same transaction.
macro_rules! for_update {
    ($table:literal) => {
        ""
    };
}

// The same queries as the other backend, compiled against this one (see `ops/mod.rs`).
#[allow(clippy::duplicate_mod)]
#[path = "ops/mod.rs"]
mod ops;

/// The error of a database that cannot be opened, naming it (the file's directory missing, no
/// permission to create it...).
fn cannot_open(url: &str, e: &sqlx::Error) -> StoreError {
    StoreError::Unavailable(format!("cannot open the SQLite database {url}: {e}"))
}

#[derive(Debug, Clone)]
pub(crate) struct Pools {
    writer: Pool<Db>,
    reader: Pool<Db>,
}

impl Pools {
    pub(crate) async fn connect(url: &str) -> Result<Self> {
        let base = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("bad SQLite URL {url:?}: {e}")))?
            .create_if_missing(true)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if in_memory {
            // Every connection to `:memory:` is its own database: one connection serves all.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(base)
                .await
                .map_err(|e| cannot_open(url, &e))?;
            return Ok(Self {
                writer: pool.clone(),
                reader: pool,
            });
        }
        // A 64 MiB page cache per connection: the scheduler's batches touch indexes keyed by
        // random UUIDs, and the default 2 MiB cache turns those into reads from the OS.
        let tuned = base
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .pragma("cache_size", "-65536")
            .pragma("temp_store", "memory");
        // The one writer is waited for at most 10 s, well inside the server's request timeout
        // (30 s): an overloaded SQLite answers 503 with `Retry-After`, not a bodiless 408.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .acquire_slow_threshold(Duration::from_secs(10))
            .connect_with(tuned.clone())
            .await
            .map_err(|e| cannot_open(url, &e))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .acquire_slow_threshold(Duration::from_secs(10))
            .connect_with(tuned.read_only(true))
            .await
            .map_err(|e| cannot_open(url, &e))?;
        Ok(Self { writer, reader })
    }

    pub(crate) async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.writer)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migrating the SQLite database: {e}")))
    }

    async fn write(&self) -> Result<Transaction<'static, Db>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    fn read(&self) -> &Pool<Db> {
        &self.reader
    }

    /// For single-statement writes outside a transaction.
    fn read_write(&self) -> &Pool<Db> {
        &self.writer
    }

    pub(crate) async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}
