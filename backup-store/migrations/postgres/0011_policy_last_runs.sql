-- A policy's last finished run and last success, kept with the policy so that views, lists
-- and the fleet's metrics need no scan of the runs. Timestamps are TIMESTAMPTZ.
ALTER TABLE policies ADD COLUMN last_run_at TIMESTAMPTZ;
ALTER TABLE policies ADD COLUMN last_run_status TEXT;
ALTER TABLE policies ADD COLUMN last_success_at TIMESTAMPTZ;

UPDATE policies SET
    last_success_at = (SELECT MAX(r.finished_at) FROM backup_runs r
                       WHERE r.policy_id = policies.id AND r.status IN ('succeeded', 'partial')),
    last_run_at = (SELECT MAX(r.finished_at) FROM backup_runs r
                   WHERE r.policy_id = policies.id AND r.status IN ('succeeded', 'partial', 'failed')),
    last_run_status = (SELECT r.status FROM backup_runs r
                       WHERE r.policy_id = policies.id AND r.status IN ('succeeded', 'partial', 'failed')
                       ORDER BY r.finished_at DESC, r.id DESC LIMIT 1);
