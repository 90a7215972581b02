-- The base schema: what the system before EPIC 15 kept. Timestamps are TIMESTAMPTZ (UTC
-- explicit; the seed's TIMESTAMP columns too), ids are UUIDs.
CREATE TABLE tenants (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL,
    token_hash  TEXT NOT NULL,         -- hex SHA-256 of the API token
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX tenants_token_hash ON tenants (token_hash);

CREATE TABLE agents (
    id          UUID PRIMARY KEY,
    tenant_id   UUID NOT NULL REFERENCES tenants (id),
    name        TEXT NOT NULL,
    hostname    TEXT NOT NULL,
    token_hash  TEXT,                  -- NULL once revoked (agent deleted)
    created_at  TIMESTAMPTZ NOT NULL,
    deleted_at  TIMESTAMPTZ
);
CREATE UNIQUE INDEX agents_token_hash ON agents (token_hash);
CREATE INDEX agents_tenant ON agents (tenant_id, created_at);

CREATE TABLE policies (
    id          UUID PRIMARY KEY,
    tenant_id   UUID NOT NULL REFERENCES tenants (id),
    agent_id    UUID NOT NULL REFERENCES agents (id),
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    deleted_at  TIMESTAMPTZ
);
CREATE INDEX policies_tenant ON policies (tenant_id, created_at);
CREATE INDEX policies_agent ON policies (agent_id);

CREATE TABLE tasks (
    id          UUID PRIMARY KEY,
    tenant_id   UUID NOT NULL REFERENCES tenants (id),
    policy_id   UUID NOT NULL REFERENCES policies (id),
    agent_id    UUID NOT NULL REFERENCES agents (id),
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending',
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX tasks_tenant ON tasks (tenant_id, created_at);
CREATE INDEX tasks_agent_status ON tasks (agent_id, status);

CREATE TABLE backup_runs (
    id           UUID PRIMARY KEY,
    tenant_id    UUID NOT NULL REFERENCES tenants (id),
    task_id      UUID NOT NULL REFERENCES tasks (id),
    policy_id    UUID NOT NULL REFERENCES policies (id),
    agent_id     UUID NOT NULL REFERENCES agents (id),
    kind         TEXT NOT NULL,
    status       TEXT NOT NULL,
    started_at   TIMESTAMPTZ,
    finished_at  TIMESTAMPTZ,
    snapshot_id  TEXT,
    files_new    BIGINT,
    data_added   BIGINT,
    exit_code    INTEGER,
    error        TEXT,
    created_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX backup_runs_tenant ON backup_runs (tenant_id, created_at);
CREATE INDEX backup_runs_task ON backup_runs (task_id);
