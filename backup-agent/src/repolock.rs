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
pub(crate) enum RepoGuard {
    /// Shared with other backups.
    Shared(#[allow(dead_code, reason = "held for its drop")] OwnedRwLockReadGuard<()>),
    /// The repository to itself.
    Exclusive(#[allow(dead_code, reason = "held for its drop")] OwnedRwLockWriteGuard<()>),
}

/// The locks of every repository this agent touches.
#[derive(Debug, Default)]
pub(crate) struct RepoLocks {
    locks: Mutex<HashMap<String, Arc<RwLock<()>>>>,
}

impl RepoLocks {
    fn lock_of(&self, repository: &str) -> Arc<RwLock<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(locks.entry(repository.to_owned()).or_default())
    }

    /// Waits for the repository, shared (`exclusive = false`) or to itself.
    pub(crate) async fn acquire(&self, repository: &str, exclusive: bool) -> RepoGuard {
        let lock = self.lock_of(repository);
        if exclusive {
            RepoGuard::Exclusive(lock.write_owned().await)
        } else {
            RepoGuard::Shared(lock.read_owned().await)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::RepoLocks;

    #[tokio::test]
    async fn a_check_waits_for_running_backups_and_is_not_starved_by_new_ones() {
        let locks = Arc::new(RepoLocks::default());
        let first_backup = locks.acquire("main", false).await;
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let check = {
            let (locks, order) = (locks.clone(), order.clone());
            tokio::spawn(async move {
                let _g = locks.acquire("main", true).await;
                order.lock().expect("lock").push("check");
            })
        };
        tokio::task::yield_now().await;
        // Backups arriving after the check wait behind it, though a backup holds the lock shared.
        let later_backups: Vec<_> = (0..3)
            .map(|i| {
                let (locks, order) = (locks.clone(), order.clone());
                tokio::spawn(async move {
                    let _g = locks.acquire("main", false).await;
                    order
                        .lock()
                        .expect("lock")
                        .push(if i == 0 { "backup" } else { "backup+" });
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            order.lock().expect("lock").is_empty(),
            "the check waits for the running backup; new backups wait for the check"
        );
        // Another repository is independent.
        drop(locks.acquire("other", true).await);
        drop(first_backup);
        check.await.expect("check ran");
        for b in later_backups {
            b.await.expect("backup ran");
        }
        assert_eq!(order.lock().expect("lock").first().copied(), Some("check"));
    }
}
