-- The snapshots each agent reported per repository (its own host's, from `restic snapshots`).
-- A report replaces the agent's list for that repository, so what a prune forgot disappears.
-- row_id orders the newest-first list after time; snapshot_id is restic's full id.
CREATE TABLE snapshots (
    row_id       UUID PRIMARY KEY,
    tenant_id    UUID NOT NULL REFERENCES tenants (id),
    agent_id     UUID NOT NULL REFERENCES agents (id),
    repository   TEXT NOT NULL,
    snapshot_id  TEXT NOT NULL,
    time         TIMESTAMPTZ NOT NULL,
    hostname     TEXT NOT NULL,
    paths        TEXT NOT NULL,        -- JSON array
    tags         TEXT NOT NULL,        -- JSON array
    policy_id    UUID,                 -- from the policy:<id> tag
    files_new    BIGINT,              -- restic's summary (0.17+), else from the run
    data_added   BIGINT,
    total_bytes  BIGINT
);
CREATE UNIQUE INDEX snapshots_agent_repository_id ON snapshots (agent_id, repository, snapshot_id);
CREATE INDEX snapshots_tenant_time ON snapshots (tenant_id, time, row_id);
-- The run that made a snapshot is found by its id (restic 0.14 reports the 8-digit short id).
CREATE INDEX backup_runs_snapshot ON backup_runs (agent_id, snapshot_id) WHERE snapshot_id IS NOT NULL;
