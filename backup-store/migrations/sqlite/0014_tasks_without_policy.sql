-- no-transaction
-- Restores and directory listings are tasks that no policy schedules: `tasks.policy_id` and
-- `backup_runs.policy_id` may be NULL. SQLite cannot drop a NOT NULL, so both tables are
-- rebuilt as its documentation prescribes: foreign keys off (a pragma that only works outside
-- a transaction, hence this file runs outside sqlx's), then one transaction that copies each
-- table into its new shape, drops the old one, renames the new one and recreates the indexes.
-- The copy keeps the column set as it was, so a rerun after a crash before sqlx recorded this
-- migration copies the same columns again. New columns come in the next migration.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;

CREATE TABLE tasks_new (
    id                 BLOB PRIMARY KEY,
    tenant_id          BLOB NOT NULL REFERENCES tenants (id),
    policy_id          BLOB REFERENCES policies (id),
    agent_id           BLOB NOT NULL REFERENCES agents (id),
    kind               TEXT NOT NULL,
    status             TEXT NOT NULL DEFAULT 'pending',
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    retry_count        INTEGER DEFAULT 0,
    next_retry_at      TIMESTAMP,
    max_retries        INTEGER DEFAULT 5,
    failed_permanently BOOLEAN DEFAULT FALSE,
    attempt            INTEGER NOT NULL DEFAULT 0,
    started_attempt    INTEGER NOT NULL DEFAULT 0,
    slot               INTEGER NOT NULL DEFAULT 0,
    lease_expires_at   INTEGER,
    last_error         TEXT,
    permanent_reason   TEXT,
    cancel_notify      BOOLEAN NOT NULL DEFAULT FALSE
);
INSERT INTO tasks_new (id, tenant_id, policy_id, agent_id, kind, status, created_at, updated_at,
    retry_count, next_retry_at, max_retries, failed_permanently, attempt, started_attempt, slot,
    lease_expires_at, last_error, permanent_reason, cancel_notify)
SELECT id, tenant_id, policy_id, agent_id, kind, status, created_at, updated_at,
    retry_count, next_retry_at, max_retries, failed_permanently, attempt, started_attempt, slot,
    lease_expires_at, last_error, permanent_reason, cancel_notify
FROM tasks;
DROP TABLE tasks;
ALTER TABLE tasks_new RENAME TO tasks;
CREATE INDEX tasks_tenant ON tasks (tenant_id, created_at);
CREATE INDEX tasks_agent_status ON tasks (agent_id, status);
CREATE UNIQUE INDEX tasks_policy_slot ON tasks (policy_id, slot);
CREATE UNIQUE INDEX tasks_one_open_per_policy ON tasks (policy_id)
    WHERE status IN ('pending', 'claimed', 'running');
CREATE INDEX tasks_lease ON tasks (lease_expires_at) WHERE status IN ('claimed', 'running');
CREATE INDEX tasks_claimable ON tasks (agent_id, kind, slot) WHERE status = 'pending';
CREATE INDEX tasks_cancel_notify ON tasks (agent_id) WHERE cancel_notify;

CREATE TABLE backup_runs_new (
    id                 BLOB PRIMARY KEY,
    tenant_id          BLOB NOT NULL REFERENCES tenants (id),
    task_id            BLOB NOT NULL REFERENCES tasks (id),
    policy_id          BLOB REFERENCES policies (id),
    agent_id           BLOB NOT NULL REFERENCES agents (id),
    kind               TEXT NOT NULL,
    status             TEXT NOT NULL,
    started_at         INTEGER,
    finished_at        INTEGER,
    snapshot_id        TEXT,
    files_new          INTEGER,
    data_added         INTEGER,
    exit_code          INTEGER,
    error              TEXT,
    created_at         INTEGER NOT NULL,
    attempt            INTEGER NOT NULL DEFAULT 1,
    error_kind         TEXT,
    late               BOOLEAN NOT NULL DEFAULT FALSE,
    failed_permanently BOOLEAN NOT NULL DEFAULT FALSE,
    duration_ms        INTEGER,
    result_at          INTEGER,
    answer             TEXT,
    answer_stale       BOOLEAN NOT NULL DEFAULT FALSE
);
INSERT INTO backup_runs_new (id, tenant_id, task_id, policy_id, agent_id, kind, status,
    started_at, finished_at, snapshot_id, files_new, data_added, exit_code, error, created_at,
    attempt, error_kind, late, failed_permanently, duration_ms, result_at, answer, answer_stale)
SELECT id, tenant_id, task_id, policy_id, agent_id, kind, status,
    started_at, finished_at, snapshot_id, files_new, data_added, exit_code, error, created_at,
    attempt, error_kind, late, failed_permanently, duration_ms, result_at, answer, answer_stale
FROM backup_runs;
DROP TABLE backup_runs;
ALTER TABLE backup_runs_new RENAME TO backup_runs;
CREATE INDEX backup_runs_tenant ON backup_runs (tenant_id, created_at);
CREATE INDEX backup_runs_task ON backup_runs (task_id);
CREATE UNIQUE INDEX backup_runs_task_attempt ON backup_runs (task_id, attempt);
CREATE INDEX backup_runs_snapshot ON backup_runs (agent_id, snapshot_id) WHERE snapshot_id IS NOT NULL;

COMMIT;
PRAGMA foreign_keys = ON;
