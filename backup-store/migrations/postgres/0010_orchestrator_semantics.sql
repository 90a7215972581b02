-- What DESIGN.md needs beyond the seed's migrations.

-- Agents: the rest of the settings, where they come from, what the agent last reported.
ALTER TABLE agents ADD COLUMN max_retries INTEGER NOT NULL DEFAULT 5;
ALTER TABLE agents ADD COLUMN max_backoff_minutes INTEGER NOT NULL DEFAULT 60;
ALTER TABLE agents ADD COLUMN backoff_base_seconds INTEGER NOT NULL DEFAULT 60;
ALTER TABLE agents ADD COLUMN backoff_failure_threshold INTEGER NOT NULL DEFAULT 3;
ALTER TABLE agents ADD COLUMN settings_source TEXT NOT NULL DEFAULT 'agent';
ALTER TABLE agents ADD COLUMN agent_version TEXT;
ALTER TABLE agents ADD COLUMN restic_version TEXT;
ALTER TABLE agents ADD COLUMN last_heartbeat_at TIMESTAMPTZ;
-- backoff_until (008) is the latest deadline; these say which backoff it is.
ALTER TABLE agents ADD COLUMN agent_backoff_until TIMESTAMPTZ;
ALTER TABLE agents ADD COLUMN backoff_repositories TEXT NOT NULL DEFAULT '[]';  -- JSON [{repository, backoffUntil}]

-- Policies: what to run, where, when.
ALTER TABLE policies ADD COLUMN schedule_every TEXT;
ALTER TABLE policies ADD COLUMN schedule_cron TEXT;
ALTER TABLE policies ADD COLUMN timezone TEXT;
ALTER TABLE policies ADD COLUMN paths TEXT NOT NULL DEFAULT '[]';       -- JSON array
ALTER TABLE policies ADD COLUMN excludes TEXT NOT NULL DEFAULT '[]';    -- JSON array
ALTER TABLE policies ADD COLUMN repository TEXT NOT NULL DEFAULT 'default';
ALTER TABLE policies ADD COLUMN retention TEXT;                          -- JSON object or NULL
ALTER TABLE policies ADD COLUMN timeout_minutes INTEGER;
ALTER TABLE policies ADD COLUMN enabled BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE policies ADD COLUMN next_due_at TIMESTAMPTZ;                     -- NULL while disabled
-- Policies from before had their schedule elsewhere: they run daily from now on, first at the
-- next tick, until someone sets their schedule.
UPDATE policies SET schedule_every = '24h' WHERE schedule_every IS NULL AND schedule_cron IS NULL;
UPDATE policies SET next_due_at = updated_at WHERE deleted_at IS NULL;
CREATE INDEX policies_due ON policies (next_due_at, id) WHERE enabled AND deleted_at IS NULL;

-- Tasks: attempts, slots, leases.
ALTER TABLE tasks ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;          -- last attempt handed out
ALTER TABLE tasks ADD COLUMN started_attempt INTEGER NOT NULL DEFAULT 0;  -- last attempt started
ALTER TABLE tasks ADD COLUMN slot TIMESTAMPTZ;
ALTER TABLE tasks ADD COLUMN lease_expires_at TIMESTAMPTZ;
ALTER TABLE tasks ADD COLUMN last_error TEXT;
ALTER TABLE tasks ADD COLUMN permanent_reason TEXT;
ALTER TABLE tasks ADD COLUMN cancel_notify BOOLEAN NOT NULL DEFAULT FALSE;  -- tell the agent once
UPDATE tasks SET slot = created_at;
ALTER TABLE tasks ALTER COLUMN slot SET NOT NULL;
-- Before, a policy could pile up open tasks; keep the newest open one of each.
UPDATE tasks SET status = 'cancelled'
WHERE status IN ('pending', 'claimed', 'running')
  AND EXISTS (SELECT 1 FROM tasks newer
              WHERE newer.policy_id = tasks.policy_id
                AND newer.status IN ('pending', 'claimed', 'running')
                AND (newer.created_at > tasks.created_at
                     OR (newer.created_at = tasks.created_at AND newer.id > tasks.id)));
CREATE UNIQUE INDEX tasks_policy_slot ON tasks (policy_id, slot);
CREATE UNIQUE INDEX tasks_one_open_per_policy ON tasks (policy_id)
    WHERE status IN ('pending', 'claimed', 'running');
CREATE INDEX tasks_lease ON tasks (lease_expires_at) WHERE status IN ('claimed', 'running');
CREATE INDEX tasks_claimable ON tasks (agent_id, kind, slot) WHERE status = 'pending';
CREATE INDEX tasks_cancel_notify ON tasks (agent_id) WHERE cancel_notify;

-- Backup runs: one row per attempt, idempotent results.
ALTER TABLE backup_runs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
ALTER TABLE backup_runs ADD COLUMN error_kind TEXT;
ALTER TABLE backup_runs ADD COLUMN late BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE backup_runs ADD COLUMN failed_permanently BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE backup_runs ADD COLUMN duration_ms BIGINT;
ALTER TABLE backup_runs ADD COLUMN result_at TIMESTAMPTZ;        -- when the agent's result arrived
ALTER TABLE backup_runs ADD COLUMN answer TEXT;              -- the task view answered (replays)
ALTER TABLE backup_runs ADD COLUMN answer_stale BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE backup_runs SET attempt = (
    SELECT COUNT(*) FROM backup_runs earlier
    WHERE earlier.task_id = backup_runs.task_id
      AND (earlier.created_at < backup_runs.created_at
           OR (earlier.created_at = backup_runs.created_at AND earlier.id <= backup_runs.id)));
UPDATE backup_runs SET result_at = finished_at WHERE status <> 'running';
CREATE UNIQUE INDEX backup_runs_task_attempt ON backup_runs (task_id, attempt);
