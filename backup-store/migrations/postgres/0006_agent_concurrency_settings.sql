-- EPIC 15, migration 006: agent concurrency settings (as the seed wrote it).
ALTER TABLE agents ADD COLUMN max_concurrent_tasks INTEGER DEFAULT 1;
ALTER TABLE agents ADD COLUMN max_concurrent_backups INTEGER DEFAULT 1;
ALTER TABLE agents ADD COLUMN max_concurrent_checks INTEGER DEFAULT 1;
ALTER TABLE agents ADD COLUMN max_concurrent_prunes INTEGER DEFAULT 1;
ALTER TABLE agents ADD COLUMN cpu_quota_percent INTEGER DEFAULT 50;
ALTER TABLE agents ADD COLUMN bandwidth_limit_mbps INTEGER;
ALTER TABLE agents ADD COLUMN running_tasks INTEGER DEFAULT 0;
ALTER TABLE agents ADD COLUMN queue_depth INTEGER DEFAULT 0;
