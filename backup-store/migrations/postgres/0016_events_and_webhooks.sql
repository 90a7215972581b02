-- Protection, the event and audit log, webhooks.
-- An event is written in the same transaction as the change it records, and with it one
-- delivery per webhook of the tenant that wants its type: delivery is durable (a row, not
-- memory) and at least once. A delivery is keyed by (webhook, event); `leased_until` keeps
-- two replicas from attempting it at once.
CREATE TABLE events (
    id          UUID PRIMARY KEY,
    tenant_id   UUID NOT NULL REFERENCES tenants (id),
    type        TEXT NOT NULL,
    time        TIMESTAMPTZ NOT NULL,
    actor       TEXT NOT NULL,
    subject_id  UUID,
    data        TEXT NOT NULL            -- JSON object, never a secret
);
CREATE INDEX events_tenant_time ON events (tenant_id, time, id);
CREATE INDEX events_tenant_subject ON events (tenant_id, subject_id, time);

CREATE TABLE webhooks (
    id           UUID PRIMARY KEY,
    tenant_id    UUID NOT NULL REFERENCES tenants (id),
    url          TEXT NOT NULL,
    events       TEXT NOT NULL,          -- JSON array of types, or ["*"]
    description  TEXT,
    secret       TEXT NOT NULL,          -- the HMAC key: kept, to sign with
    created_at   TIMESTAMPTZ NOT NULL,
    deleted_at   TIMESTAMPTZ
);
CREATE INDEX webhooks_tenant ON webhooks (tenant_id, created_at, id);

CREATE TABLE webhook_deliveries (
    webhook_id       UUID NOT NULL REFERENCES webhooks (id),
    event_id         UUID NOT NULL REFERENCES events (id),
    tenant_id        UUID NOT NULL REFERENCES tenants (id),
    status           TEXT NOT NULL DEFAULT 'pending',   -- pending, delivered, failed
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL,
    leased_until     TIMESTAMPTZ,
    last_status      INTEGER,
    last_error       TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    delivered_at     TIMESTAMPTZ,
    PRIMARY KEY (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_list ON webhook_deliveries (webhook_id, created_at, event_id);

-- Protection: when a policy turns overdue (from its last success or creation, plus its
-- alertAfter), since when it is, and whether its newest finished task failed for good.
ALTER TABLE policies ADD COLUMN alert_after TEXT;                -- the explicit alertAfter, NULL: default
ALTER TABLE policies ADD COLUMN alert_after_seconds BIGINT;      -- the one in force; NULL: computed at the next tick
ALTER TABLE policies ADD COLUMN alert_deadline TIMESTAMPTZ;          -- NULL: computed at the next tick
ALTER TABLE policies ADD COLUMN overdue_since TIMESTAMPTZ;
ALTER TABLE policies ADD COLUMN failing BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX policies_alert ON policies (alert_deadline) WHERE enabled AND deleted_at IS NULL AND overdue_since IS NULL;
-- Transitions the scheduler finds once: offline since; a backoff already announced.
ALTER TABLE agents ADD COLUMN offline_since TIMESTAMPTZ;
ALTER TABLE agents ADD COLUMN backoff_announced BOOLEAN NOT NULL DEFAULT FALSE;
