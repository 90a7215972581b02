//! The store's event log, the fleet's summary and the scheduler's sweep of transitions.

use backup_core::{EventView, Page, Summary, TenantId};

use crate::{EventFilter, PageRequest, Result, Store, TransitionReport};

impl Store {
    /// The tenant's events, newest first.
    ///
    /// # Errors
    /// [`StoreError::Validation`](crate::StoreError::Validation) for a bad cursor,
    /// [`StoreError::Unavailable`](crate::StoreError::Unavailable).
    pub async fn list_events(
        &self,
        tenant: TenantId,
        filter: &EventFilter,
        page: &PageRequest,
    ) -> Result<Page<EventView>> {
        on_backend!(self, p => p.list_events(tenant, filter, page))
    }

    /// The tenant's fleet at a glance: agents by status, policies by protection, the last
    /// day's permanent failures and bytes added, the oldest last success.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`](crate::StoreError::Unavailable).
    pub async fn summary(&self, tenant: TenantId) -> Result<Summary> {
        on_backend!(self, p => p.summary(&self.ctx, tenant))
    }

    /// Records the transitions the time brings (an agent offline past `offlineAfterSeconds`,
    /// a policy past its `alertAfter`), each once also with several replicas; the scheduler
    /// calls it every tick.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`](crate::StoreError::Unavailable).
    pub async fn sweep_transitions(&self) -> Result<TransitionReport> {
        on_backend!(self, p => p.sweep_transitions(&self.ctx))
    }

    /// Deletes up to `batch` finished tasks (with their runs) and `batch` events (with their
    /// settled deliveries) older than `before`; returns how many tasks and events went.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`](crate::StoreError::Unavailable).
    pub async fn purge_history(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        batch: u32,
    ) -> Result<(u64, u64)> {
        on_backend!(self, p => p.purge_history(crate::ts::Ts::new(before), i64::from(batch)))
    }

    /// Every live policy's last success (`metrics.perPolicy`).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`](crate::StoreError::Unavailable).
    pub async fn policy_last_successes(
        &self,
    ) -> Result<Vec<(backup_core::PolicyId, Option<chrono::DateTime<chrono::Utc>>)>> {
        on_backend!(self, p => p.policy_last_successes())
    }
}
