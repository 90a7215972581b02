//! Prompt dispatch across replicas: a server holding an agent's claim open (a long poll) must
//! hear when another replica makes a task for that agent. On PostgreSQL the replicas tell each
//! other with `NOTIFY`; on SQLite there is one process, which wakes its own claims.

use backup_core::AgentId;
use chrono::{DateTime, Utc};

use crate::{Backend, Result, Store, StoreError};

/// Hears the agents whose tasks became claimable on any replica (PostgreSQL `LISTEN`).
pub struct ClaimableListener {
    listener: sqlx::postgres::PgListener,
}

impl std::fmt::Debug for ClaimableListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimableListener").finish_non_exhaustive()
    }
}

impl ClaimableListener {
    /// The next agent announced. After a lost connection it reconnects by itself; announcements
    /// made meanwhile are lost (the claims they would have woken answer at the end of their
    /// wait, and the agent claims again).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached.
    pub async fn next(&mut self) -> Result<Option<AgentId>> {
        let notification = self.listener.recv().await?;
        Ok(notification.payload().parse().ok())
    }
}

impl Store {
    /// When one of `agent`'s pending tasks may become claimable by the passing of time (the
    /// earliest end of a retry's backoff, or of a backoff the agent reported), if any: a claim
    /// held open looks again then.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn next_claimable_at(&self, agent: AgentId) -> Result<Option<DateTime<Utc>>> {
        let at = on_backend!(self, p => p.next_claimable_at(&self.ctx, agent))?;
        Ok(at.map(crate::ts::Ts::get))
    }

    /// Announces to every replica that these agents have a claimable task (run-now, a tick).
    /// Nothing on SQLite: its one process wakes its own claims.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    pub async fn announce_claimable(&self, agents: &[AgentId]) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(p) => {
                let ids: Vec<uuid::Uuid> = agents.iter().map(|a| *a.as_uuid()).collect();
                p.announce_claimable(&ids).await
            }
        }
    }

    /// A listener for every replica's announcements; `None` on SQLite.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the listening connection cannot be opened.
    pub async fn claimable_listener(&self) -> Result<Option<ClaimableListener>> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(None),
            Backend::Postgres(p) => Ok(Some(ClaimableListener {
                listener: p.listen_claimable().await.map_err(|e| match e {
                    StoreError::Unavailable(m) => {
                        StoreError::Unavailable(format!("listening for claimable tasks: {m}"))
                    }
                    other => other,
                })?,
            })),
        }
    }
}
