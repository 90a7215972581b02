//! The store's one error type: what went wrong, in terms the server maps to HTTP statuses.

use backup_core::{ErrorClass, TaskView};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No such object for this caller (also: another tenant's or another agent's object).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request conflicts with the object's state (bad transition, open task, unknown attempt).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A result for an attempt already closed as "agent lost" that cannot change the task any
    /// more; the run still recorded it. Carries the task as it stands.
    #[error("stale attempt: the attempt was already closed")]
    StaleAttempt(Box<TaskView>),
    /// Invalid input, naming the field.
    #[error(transparent)]
    Validation(#[from] backup_core::Error),
    /// The tenant is at one of its limits (agents, policies).
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
    /// The database cannot be reached or is overloaded; try again later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A bug or corrupt data; the details are logged, not shown to callers.
    #[error("internal store error: {0}")]
    Internal(String),
}

impl StoreError {
    /// Whether trying again later may help.
    pub fn class(&self) -> ErrorClass {
        match self {
            StoreError::Unavailable(_) => ErrorClass::Retriable,
            _ => ErrorClass::Permanent,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound("row"),
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
            sqlx::Error::Database(db) => {
                let code = db.code().unwrap_or_default();
                // SQLite: 5 BUSY and 6 LOCKED pass; 10 IOERR, 13 FULL and 14 CANTOPEN are the
                // machine's problem (disk, permissions), not a bug. PostgreSQL: class 08
                // (connection), 53 (resources), 57P (shutdown), 40001/40P01 (retry).
                let sqlite_unavailable = matches!(
                    code.parse::<i32>(),
                    Ok(c) if matches!(c & 0xff, 5 | 6 | 10 | 13 | 14)
                );
                let pg_transient = code.starts_with("08")
                    || code.starts_with("53")
                    || code.starts_with("57P")
                    || code == "40001"
                    || code == "40P01";
                // 22021 / 22P05: text PostgreSQL cannot store (a NUL); 22008: a time out of its
                // range. Validation bounds what can carry them; this is the net for any that
                // slips past.
                if matches!(code.as_ref(), "22021" | "22P05" | "22008") {
                    StoreError::Validation(backup_core::Error::invalid(
                        "body",
                        "a value the database cannot store",
                        "text without NUL characters, times in 1970-9999",
                    ))
                } else if sqlite_unavailable || pg_transient {
                    StoreError::Unavailable(e.to_string())
                } else {
                    StoreError::Internal(e.to_string())
                }
            }
            _ => StoreError::Internal(e.to_string()),
        }
    }
}

/// `Result` with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
