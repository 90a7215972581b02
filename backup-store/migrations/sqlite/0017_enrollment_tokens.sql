-- Enrollment: tokens with which agents create themselves. Stored hashed, like every token.
CREATE TABLE enrollment_tokens (
    id           BLOB PRIMARY KEY,
    tenant_id    BLOB NOT NULL REFERENCES tenants (id),
    token_hash   TEXT NOT NULL,
    description  TEXT,
    expires_at   INTEGER NOT NULL,
    max_uses     INTEGER NOT NULL,
    uses         INTEGER NOT NULL DEFAULT 0,
    revoked_at   INTEGER,
    created_at   INTEGER NOT NULL
);
CREATE UNIQUE INDEX enrollment_tokens_hash ON enrollment_tokens (token_hash);
CREATE INDEX enrollment_tokens_tenant ON enrollment_tokens (tenant_id, created_at, id);
