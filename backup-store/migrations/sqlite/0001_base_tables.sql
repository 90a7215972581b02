-- The base schema: what the system before EPIC 15 kept. Timestamps are epoch milliseconds
-- (INTEGER) on SQLite so that they compare as numbers; ids are UUIDs stored as 16-byte BLOBs.
CREATE TABLE tenants (
    id          BLOB PRIMARY KEY,
    name        TEXT NOT NULL,
    token_hash  TEXT NOT NULL,         -- hex SHA-256 of the API token
    created_at  INTEGER NOT NULL
);
CREATE UNIQUE INDEX tenants_token_hash ON tenants (token_hash);

CREATE TABLE agents (
    id          BLOB PRIMARY KEY,
    tenant_id   BLOB NOT NULL REFERENCES tenants (id),
    name        TEXT NOT NULL,
    hostname    TEXT NOT NULL,
    token_hash  TEXT,                  -- NULL once revoked (agent deleted)
    created_at  INTEGER NOT NULL,
    deleted_at  INTEGER
);
CREATE UNIQUE INDEX agents_token_hash ON agents (token_hash);
CREATE INDEX agents_tenant ON agents (tenant_id, created_at);

CREATE TABLE policies (
    id          BLOB PRIMARY KEY,
    tenant_id   BLOB NOT NULL REFERENCES tenants (id),
    agent_id    BLOB NOT NULL REFERENCES agents (id),
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    deleted_at  INTEGER
);
CREATE INDEX policies_tenant ON policies (tenant_id, created_at);
CREATE INDEX policies_agent ON policies (agent_id);

CREATE TABLE tasks (
    id          BLOB PRIMARY KEY,
    tenant_id   BLOB NOT NULL REFERENCES tenants (id),
    policy_id   BLOB NOT NULL REFERENCES policies (id),
    agent_id    BLOB NOT NULL REFERENCES agents (id),
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX tasks_tenant ON tasks (tenant_id, created_at);
CREATE INDEX tasks_agent_status ON tasks (agent_id, status);

CREATE TABLE backup_runs (
    id           BLOB PRIMARY KEY,
    tenant_id    BLOB NOT NULL REFERENCES tenants (id),
    task_id      BLOB NOT NULL REFERENCES tasks (id),
    policy_id    BLOB NOT NULL REFERENCES policies (id),
    agent_id     BLOB NOT NULL REFERENCES agents (id),
    kind         TEXT NOT NULL,
    status       TEXT NOT NULL,
    started_at   INTEGER,
    finished_at  INTEGER,
    snapshot_id  TEXT,
    files_new    INTEGER,
    data_added   INTEGER,
    exit_code    INTEGER,
    error        TEXT,
    created_at   INTEGER NOT NULL
);
CREATE INDEX backup_runs_tenant ON backup_runs (tenant_id, created_at);
CREATE INDEX backup_runs_task ON backup_runs (task_id);
