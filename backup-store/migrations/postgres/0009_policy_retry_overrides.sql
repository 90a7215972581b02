-- EPIC 15, migration 009: policy-level retry override.
ALTER TABLE policies ADD COLUMN max_task_retries INTEGER;
