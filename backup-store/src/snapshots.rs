//! The store's snapshot inventory: what each agent last reported per repository.

use backup_core::{
    AgentId, Page, SnapshotReport, SnapshotView, SnapshotsStored, TenantId,
    validate_repository_name,
};

use crate::{PageRequest, Result, SnapshotFilter, Store, storable};

impl Store {
    /// Replaces what the store holds for `agent`'s `repository` with `snapshots` (the whole
    /// list `restic snapshots` gave): a snapshot missing from it is gone. Entries without a
    /// usable id or time are dropped; past 100,000 the newest are kept.
    ///
    /// # Errors
    /// [`StoreError::NotFound`](crate::StoreError::NotFound) (deleted agent),
    /// [`StoreError::Validation`](crate::StoreError::Validation) for a bad repository name,
    /// [`StoreError::Unavailable`](crate::StoreError::Unavailable).
    pub async fn replace_snapshots(
        &self,
        agent: AgentId,
        repository: &str,
        snapshots: &[SnapshotReport],
    ) -> Result<SnapshotsStored> {
        validate_repository_name(repository)?;
        let (clean, truncated) = storable::storable_snapshots(snapshots);
        on_backend!(self, p => p.replace_snapshots(agent, repository, &clean, truncated))
    }

    /// The tenant's snapshots, newest first.
    ///
    /// # Errors
    /// [`StoreError::Validation`](crate::StoreError::Validation) for a bad cursor,
    /// [`StoreError::Unavailable`](crate::StoreError::Unavailable).
    pub async fn list_snapshots(
        &self,
        tenant: TenantId,
        filter: &SnapshotFilter,
        page: &PageRequest,
    ) -> Result<Page<SnapshotView>> {
        on_backend!(self, p => p.list_snapshots(tenant, filter, page))
    }
}
