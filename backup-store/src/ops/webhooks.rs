//! Webhooks and their deliveries. A delivery is claimed like a task: selected with
//! `SKIP LOCKED` (one writer on SQLite), leased, attempted by the one replica that holds the
//! lease, and settled; a replica that dies mid-attempt lets the lease lapse and another
//! attempts it again (at least once; the event id is the receiver's idempotency key).

use std::time::Duration;

use backup_core::{
    Actor, CreateWebhook, DeliveryStatus, DeliveryView, EventType, ExponentialBackoff, Jitter,
    WebhookCreated, WebhookId, WebhookView,
};
use serde_json::json;

use super::events::record;
use super::*;
use crate::{DeliveryFilter, DeliveryOutcome, DueDelivery};

#[derive(sqlx::FromRow)]
struct WebhookRow {
    id: Uuid,
    url: String,
    events: String,
    description: Option<String>,
    created_at: Ts,
}

impl WebhookRow {
    fn key(&self) -> Cursor {
        Cursor {
            at: self.created_at,
            id: self.id,
        }
    }

    fn view(&self) -> Result<WebhookView> {
        Ok(WebhookView {
            id: WebhookId::from_uuid(self.id),
            url: self.url.clone(),
            events: from_json("webhook events", &self.events)?,
            description: self.description.clone(),
            created_at: self.created_at.get(),
        })
    }
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    event_id: Uuid,
    event_type: String,
    status: String,
    attempts: i32,
    next_attempt_at: Ts,
    last_status: Option<i32>,
    last_error: Option<String>,
    created_at: Ts,
    delivered_at: Option<Ts>,
}

impl DeliveryRow {
    fn key(&self) -> Cursor {
        Cursor {
            at: self.created_at,
            id: self.event_id,
        }
    }

    fn view(&self) -> Result<DeliveryView> {
        let status: DeliveryStatus = crate::rows::parse("delivery status", &self.status)?;
        Ok(DeliveryView {
            event_id: backup_core::EventId::from_uuid(self.event_id),
            event_type: crate::rows::parse("event type", &self.event_type)?,
            status,
            attempts: u32::try_from(self.attempts).unwrap_or(0),
            next_attempt_at: (status == DeliveryStatus::Pending)
                .then(|| self.next_attempt_at.get()),
            last_status: self.last_status.and_then(|s| u16::try_from(s).ok()),
            last_error: self.last_error.clone(),
            created_at: self.created_at.get(),
            delivered_at: self.delivered_at.map(Ts::get),
        })
    }
}

/// A claimed delivery with what its attempt needs.
#[derive(sqlx::FromRow)]
struct DueRow {
    webhook_id: Uuid,
    event_id: Uuid,
    url: String,
    secret: String,
    attempts: i32,
    event_type: String,
    time: Ts,
    actor: String,
    subject_id: Option<Uuid>,
    data: String,
}

impl Pools {
    pub(crate) async fn create_webhook(
        &self,
        ctx: &Ctx,
        tenant: TenantId,
        body: &CreateWebhook,
    ) -> Result<WebhookCreated> {
        body.validate()?;
        let secret = token::generate(TokenKind::WebhookSecret)?;
        let now = ctx.now();
        let id = Uuid::new_v4();
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO webhooks (id, tenant_id, url, events, description, secret, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(*tenant.as_uuid())
        .bind(&body.url)
        .bind(to_json(&body.events))
        .bind(body.description.as_deref())
        .bind(&secret)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // The URL may carry credentials in its query: the event names the host only.
        let host = body
            .url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split(['/', '?', '#']).next())
            .map(|authority| authority.rsplit('@').next().unwrap_or_default().to_owned());
        let data = json!({"webhookId": id, "host": host, "events": body.events});
        record(
            &mut tx,
            now,
            *tenant.as_uuid(),
            EventType::WebhookCreated,
            Actor::Tenant,
            Some(id),
            data,
        )
        .await?;
        tx.commit().await?;
        Ok(WebhookCreated {
            webhook: WebhookView {
                id: WebhookId::from_uuid(id),
                url: body.url.clone(),
                events: body.events.clone(),
                description: body.description.clone(),
                created_at: now.get(),
            },
            secret,
        })
    }

    pub(crate) async fn list_webhooks(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<WebhookView>> {
        let cursor = page.cursor()?;
        let rows = sqlx::query_as::<_, WebhookRow>(
            "SELECT id, url, events, description, created_at FROM webhooks \
             WHERE tenant_id = $1 AND deleted_at IS NULL \
             AND ($2 IS NULL OR created_at < $2 OR (created_at = $2 AND id < $3)) \
             ORDER BY created_at DESC, id DESC LIMIT $4",
        )
        .bind(*tenant.as_uuid())
        .bind(cursor.map(|c| c.at))
        .bind(cursor.map(|c| c.id))
        .bind(page.fetch_limit())
        .fetch_all(self.read())
        .await?;
        page.page_of(&rows, WebhookRow::key, WebhookRow::view)
    }

    pub(crate) async fn delete_webhook(
        &self,
        ctx: &Ctx,
        tenant: TenantId,
        webhook: WebhookId,
    ) -> Result<()> {
        let now = ctx.now();
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "UPDATE webhooks SET deleted_at = $3 WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL",
        )
        .bind(*tenant.as_uuid())
        .bind(*webhook.as_uuid())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("webhook"));
        }
        sqlx::query(
            "UPDATE webhook_deliveries SET status = 'failed', last_error = 'the webhook was deleted', \
             leased_until = NULL WHERE webhook_id = $1 AND status = 'pending'",
        )
        .bind(*webhook.as_uuid())
        .execute(&mut *tx)
        .await?;
        let data = json!({"webhookId": webhook});
        record(
            &mut tx,
            now,
            *tenant.as_uuid(),
            EventType::WebhookDeleted,
            Actor::Tenant,
            Some(*webhook.as_uuid()),
            data,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn list_deliveries(
        &self,
        tenant: TenantId,
        webhook: WebhookId,
        filter: &DeliveryFilter,
        page: &PageRequest,
    ) -> Result<Page<DeliveryView>> {
        let cursor = page.cursor()?;
        let known: Option<Uuid> =
            sqlx::query_scalar("SELECT id FROM webhooks WHERE tenant_id = $1 AND id = $2")
                .bind(*tenant.as_uuid())
                .bind(*webhook.as_uuid())
                .fetch_optional(self.read())
                .await?;
        if known.is_none() {
            return Err(StoreError::NotFound("webhook"));
        }
        let rows = sqlx::query_as::<_, DeliveryRow>(
            "SELECT d.event_id, e.type AS event_type, d.status, d.attempts, d.next_attempt_at, \
             d.last_status, d.last_error, d.created_at, d.delivered_at \
             FROM webhook_deliveries d JOIN events e ON e.id = d.event_id \
             WHERE d.webhook_id = $1 AND ($2 IS NULL OR d.status = $2) \
             AND ($3 IS NULL OR d.created_at < $3 OR (d.created_at = $3 AND d.event_id < $4)) \
             ORDER BY d.created_at DESC, d.event_id DESC LIMIT $5",
        )
        .bind(*webhook.as_uuid())
        .bind(filter.status.map(DeliveryStatus::as_str))
        .bind(cursor.map(|c| c.at))
        .bind(cursor.map(|c| c.id))
        .bind(page.fetch_limit())
        .fetch_all(self.read())
        .await?;
        page.page_of(&rows, DeliveryRow::key, DeliveryRow::view)
    }

    /// Leases up to `limit` due deliveries for `lease` and counts their attempt.
    pub(crate) async fn claim_deliveries(
        &self,
        ctx: &Ctx,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<DueDelivery>> {
        let now = ctx.now();
        let mut tx = self.write().await?;
        let sql = format!(
            "SELECT d.webhook_id, d.event_id FROM webhook_deliveries d WHERE d.status = 'pending' \
             AND d.next_attempt_at <= $1 AND (d.leased_until IS NULL OR d.leased_until < $1) \
             ORDER BY d.next_attempt_at, d.event_id LIMIT $2{}",
            skip_locked!("d")
        );
        let due: Vec<(Uuid, Uuid)> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        let until = Ts::new(now.get() + TimeDelta::from_std(lease).unwrap_or(TimeDelta::MAX));
        let mut claimed = Vec::with_capacity(due.len());
        for (webhook, event) in due {
            sqlx::query(
                "UPDATE webhook_deliveries SET leased_until = $3, attempts = attempts + 1 \
                 WHERE webhook_id = $1 AND event_id = $2",
            )
            .bind(webhook)
            .bind(event)
            .bind(until)
            .execute(&mut *tx)
            .await?;
            let row = sqlx::query_as::<_, DueRow>(
                "SELECT d.webhook_id, d.event_id, w.url, w.secret, d.attempts, e.type AS event_type, \
                 e.time, e.actor, e.subject_id, e.data FROM webhook_deliveries d \
                 JOIN webhooks w ON w.id = d.webhook_id JOIN events e ON e.id = d.event_id \
                 WHERE d.webhook_id = $1 AND d.event_id = $2",
            )
            .bind(webhook)
            .bind(event)
            .fetch_one(&mut *tx)
            .await?;
            let view = backup_core::EventView {
                id: backup_core::EventId::from_uuid(row.event_id),
                event_type: crate::rows::parse("event type", &row.event_type)?,
                time: row.time.get(),
                actor: crate::rows::parse("actor", &row.actor)?,
                subject_id: row.subject_id,
                data: from_json("event data", &row.data)?,
            };
            claimed.push(DueDelivery {
                webhook_id: WebhookId::from_uuid(row.webhook_id),
                event: view,
                url: row.url,
                secret: row.secret,
                attempt: u32::try_from(row.attempts).unwrap_or(u32::MAX),
            });
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// Settles one attempt: delivered, or pending again after a capped exponential backoff
    /// (base `retry_base`, doubling, at most an hour, equal jitter), or failed for good once
    /// `give_up_after` passed since the event.
    pub(crate) async fn settle_delivery(
        &self,
        ctx: &Ctx,
        delivery: &DueDelivery,
        outcome: &DeliveryOutcome,
        retry_base: Duration,
        give_up_after: Duration,
    ) -> Result<DeliveryStatus> {
        let now = ctx.now();
        let (webhook, event) = (*delivery.webhook_id.as_uuid(), *delivery.event.id.as_uuid());
        let (status, next, last_status, error) = match outcome {
            DeliveryOutcome::Delivered { status } => (
                DeliveryStatus::Delivered,
                now,
                Some(i32::from(*status)),
                None,
            ),
            DeliveryOutcome::Failed { status, error } => {
                let waited = (now.get() - delivery.event.time)
                    .to_std()
                    .unwrap_or_default();
                let backoff = ExponentialBackoff::new(
                    retry_base.max(Duration::from_secs(1)),
                    2.0,
                    Duration::from_secs(3600).max(retry_base),
                    Jitter::Equal,
                )
                .map_err(StoreError::Validation)?;
                let delay = backoff.delay(delivery.attempt.max(1), &mut *ctx.rng());
                let status_now = if waited >= give_up_after {
                    DeliveryStatus::Failed
                } else {
                    DeliveryStatus::Pending
                };
                let next =
                    Ts::new(now.get() + TimeDelta::from_std(delay).unwrap_or(TimeDelta::MAX));
                (
                    status_now,
                    next,
                    status.map(i32::from),
                    Some(error.as_str()),
                )
            }
        };
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $3, next_attempt_at = $4, leased_until = NULL, \
             last_status = $5, last_error = $6, \
             delivered_at = CASE WHEN $3 = 'delivered' THEN $7 ELSE delivered_at END \
             WHERE webhook_id = $1 AND event_id = $2 AND status = 'pending'",
        )
        .bind(webhook)
        .bind(event)
        .bind(status.as_str())
        .bind(next)
        .bind(last_status)
        .bind(error)
        .bind(now)
        .execute(self.read_write())
        .await?;
        Ok(status)
    }
}
