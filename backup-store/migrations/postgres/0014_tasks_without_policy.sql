-- Restores and directory listings are tasks that no policy schedules.
ALTER TABLE tasks ALTER COLUMN policy_id DROP NOT NULL;
ALTER TABLE backup_runs ALTER COLUMN policy_id DROP NOT NULL;
