-- EPIC 15, migration 008: agent backoff state. TIMESTAMP columns hold epoch milliseconds here.
ALTER TABLE agents ADD COLUMN backoff_until TIMESTAMP;
ALTER TABLE agents ADD COLUMN pending_retries INTEGER DEFAULT 0;
