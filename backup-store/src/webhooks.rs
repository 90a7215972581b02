//! The store's webhooks and their durable deliveries.

use std::time::Duration;

use backup_core::{
    CreateWebhook, DeliveryStatus, DeliveryView, Page, TenantId, WebhookCreated, WebhookId,
    WebhookView,
};

use crate::{DeliveryFilter, DeliveryOutcome, DueDelivery, PageRequest, Result, Store};

impl Store {
    /// Creates a webhook and its secret (256 random bits, shown once; kept, to sign with).
    ///
    /// # Errors
    /// [`StoreError::Validation`](crate::StoreError::Validation) naming `url`, `events` or
    /// `description`; [`StoreError::Unavailable`](crate::StoreError::Unavailable).
    pub async fn create_webhook(
        &self,
        tenant: TenantId,
        body: &CreateWebhook,
    ) -> Result<WebhookCreated> {
        on_backend!(self, p => p.create_webhook(&self.ctx, tenant, body))
    }

    /// The tenant's webhooks, newest first.
    ///
    /// # Errors
    /// As [`Store::list_events`].
    pub async fn list_webhooks(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<WebhookView>> {
        on_backend!(self, p => p.list_webhooks(tenant, page))
    }

    /// Deletes a webhook; its pending deliveries end as failed.
    ///
    /// # Errors
    /// [`StoreError::NotFound`](crate::StoreError::NotFound) for another tenant's or a deleted
    /// webhook.
    pub async fn delete_webhook(&self, tenant: TenantId, webhook: WebhookId) -> Result<()> {
        on_backend!(self, p => p.delete_webhook(&self.ctx, tenant, webhook))
    }

    /// A webhook's deliveries, newest first, with their attempts.
    ///
    /// # Errors
    /// [`StoreError::NotFound`](crate::StoreError::NotFound) for another tenant's webhook.
    pub async fn list_deliveries(
        &self,
        tenant: TenantId,
        webhook: WebhookId,
        filter: &DeliveryFilter,
        page: &PageRequest,
    ) -> Result<Page<DeliveryView>> {
        on_backend!(self, p => p.list_deliveries(tenant, webhook, filter, page))
    }

    /// Leases up to `limit` due deliveries to this caller for `lease` (no other replica
    /// attempts them meanwhile) and counts their attempt.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`](crate::StoreError::Unavailable).
    pub async fn claim_deliveries(&self, limit: u32, lease: Duration) -> Result<Vec<DueDelivery>> {
        on_backend!(self, p => p.claim_deliveries(&self.ctx, limit, lease))
    }

    /// Settles a claimed delivery's attempt; returns where it stands now.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`](crate::StoreError::Unavailable).
    pub async fn settle_delivery(
        &self,
        delivery: &DueDelivery,
        outcome: &DeliveryOutcome,
        retry_base: Duration,
        give_up_after: Duration,
    ) -> Result<DeliveryStatus> {
        on_backend!(self, p => p.settle_delivery(&self.ctx, delivery, outcome, retry_base, give_up_after))
    }
}
