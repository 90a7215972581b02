-- Dashboard sessions, kept on the server: the cookie carries a random id, this table only its
-- hash. Logging out deletes the row, rotating the tenant token deletes the tenant's rows, and
-- expired rows are swept when sessions are opened. Timestamps are TIMESTAMPTZ.
CREATE TABLE ui_sessions (
    id_hash     TEXT PRIMARY KEY,      -- hex SHA-256 of the cookie's id
    tenant_id   UUID NOT NULL REFERENCES tenants (id),
    csrf        TEXT NOT NULL,         -- the token every form of the session carries
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX ui_sessions_tenant ON ui_sessions (tenant_id);
CREATE INDEX ui_sessions_expiry ON ui_sessions (expires_at);
