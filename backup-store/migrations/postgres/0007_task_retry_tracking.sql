-- EPIC 15, migration 007: task retry tracking. the seed's TIMESTAMP is TIMESTAMPTZ here (UTC explicit).
ALTER TABLE tasks ADD COLUMN retry_count INTEGER DEFAULT 0;
ALTER TABLE tasks ADD COLUMN next_retry_at TIMESTAMPTZ;
ALTER TABLE tasks ADD COLUMN max_retries INTEGER DEFAULT 5;
ALTER TABLE tasks ADD COLUMN failed_permanently BOOLEAN DEFAULT FALSE;
