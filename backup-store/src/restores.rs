//! The store's restores and directory listings: tasks that people ask for, on a snapshot the
//! store lists.

use backup_core::{LsRequest, RestoreRequest, TaskKind, TaskRequest, TaskView, TenantId};

use crate::{Result, Store};

impl Store {
    /// Queues a restore of `request.snapshot_id` (a full or an 8-character short id of a
    /// snapshot the store lists for the repository) onto `request.agent_id`, claimable at once.
    ///
    /// # Errors
    /// [`StoreError::Validation`](crate::StoreError::Validation) naming the field: a bad shape,
    /// an agent that is not the tenant's, a snapshot the store does not list for that
    /// repository; [`StoreError::Unavailable`](crate::StoreError::Unavailable).
    pub async fn create_restore(
        &self,
        tenant: TenantId,
        request: &RestoreRequest,
    ) -> Result<TaskView> {
        request.validate()?;
        let asked = TaskRequest {
            snapshot_id: Some(request.snapshot_id.clone()),
            include: request.include.clone(),
            target: Some(request.target.clone()),
            dry_run: request.dry_run,
            path: None,
        };
        on_backend!(self, p => p.create_asked_task(
            &self.ctx, tenant, request.agent_id, &request.repository, TaskKind::Restore, asked))
    }

    /// Queues a listing of one directory of `snapshot` on `request.agent_id`, claimable at once;
    /// the task's `entries` hold the result once it succeeded.
    ///
    /// # Errors
    /// As [`Store::create_restore`].
    pub async fn create_ls(
        &self,
        tenant: TenantId,
        snapshot: &str,
        request: &LsRequest,
    ) -> Result<TaskView> {
        backup_core::validate_snapshot_id(snapshot)?;
        request.validate()?;
        let asked = TaskRequest {
            snapshot_id: Some(snapshot.to_owned()),
            path: Some(request.path.clone()),
            ..TaskRequest::default()
        };
        on_backend!(self, p => p.create_asked_task(
            &self.ctx, tenant, request.agent_id, &request.repository, TaskKind::Ls, asked))
    }
}
