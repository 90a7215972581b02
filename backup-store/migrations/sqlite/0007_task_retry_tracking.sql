-- EPIC 15, migration 007: task retry tracking. TIMESTAMP columns hold epoch milliseconds here.
ALTER TABLE tasks ADD COLUMN retry_count INTEGER DEFAULT 0;
ALTER TABLE tasks ADD COLUMN next_retry_at TIMESTAMP;
ALTER TABLE tasks ADD COLUMN max_retries INTEGER DEFAULT 5;
ALTER TABLE tasks ADD COLUMN failed_permanently BOOLEAN DEFAULT FALSE;
