-- The repositories each agent has, by name and by restic's own id: agents whose ids are equal
-- share one repository (across hosts), and the server coordinates tasks on it.
ALTER TABLE agents ADD COLUMN reported_repositories TEXT NOT NULL DEFAULT '[]';  -- JSON, as reported
CREATE TABLE agent_repositories (
    agent_id       BLOB NOT NULL REFERENCES agents (id),
    name           TEXT NOT NULL,
    tenant_id      BLOB NOT NULL REFERENCES tenants (id),
    repository_id  TEXT NOT NULL,
    PRIMARY KEY (agent_id, name)
);
CREATE INDEX agent_repositories_shared ON agent_repositories (tenant_id, repository_id);
