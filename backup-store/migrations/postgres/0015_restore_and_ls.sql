-- Restores and directory listings: the repository they run on (a policy's task runs on its
-- policy's), what they do (JSON: snapshotId, include, target, dryRun, path) and what the
-- successful attempt found (JSON: filesRestored, bytesRestored, entries, truncated).
ALTER TABLE tasks ADD COLUMN repository TEXT;
ALTER TABLE tasks ADD COLUMN request TEXT;
ALTER TABLE tasks ADD COLUMN output TEXT;
-- An agent's restores at once; NULL (rows from before) reads as the default.
ALTER TABLE agents ADD COLUMN max_concurrent_restores INTEGER;
