-- EPIC 15, migration 008: agent backoff state. the seed's TIMESTAMP is TIMESTAMPTZ here (UTC explicit).
ALTER TABLE agents ADD COLUMN backoff_until TIMESTAMPTZ;
ALTER TABLE agents ADD COLUMN pending_retries INTEGER DEFAULT 0;
