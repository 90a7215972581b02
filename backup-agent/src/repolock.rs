//! A fair shared/exclusive lock per repository: backups share a repository; check and prune
//! need it to themselves.
//!
//! Fairness matters: with a steady stream of backups, a naive readers-writer lock would never
//! let a check in. tokio's `RwLock` queues waiters first come, first served, so a waiting check
//! holds back the backups that arrive after it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

/// A held repository lock; released on drop.
#[derive(Debug)]
pub enum RepoGuard {
    /// Shared with other backups.
    Shared(OwnedRwLockReadGuard<()>),
    /// The repository to itself.
    Exclusive(OwnedRwLockWriteGuard<()>),
}

/// The locks of every repository this agent touches.
#[derive(Debug, Default)]
pub struct RepoLocks {
    locks: Mutex<HashMap<String, Arc<RwLock<()>>>>,
}

impl RepoLocks {
    fn lock_of(&self, repository: &str) -> Arc<RwLock<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(locks.entry(repository.to_owned()).or_default())
    }

    /// Waits for the repository, shared (`exclusive = false`) or to itself.
    pub async fn acquire(&self, repository: &str, exclusive: bool) -> RepoGuard {
        let lock = self.lock_of(repository);
        if exclusive {
            RepoGuard::Exclusive(lock.write_owned().await)
        } else {
            RepoGuard::Shared(lock.read_owned().await)
        }
    }
}
