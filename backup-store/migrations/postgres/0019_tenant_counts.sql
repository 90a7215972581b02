-- Each tenant's live agents and policies, kept beside it in the transaction that creates or
-- deletes one: the quota check reads one row instead of counting the tenant's rows (a count per
-- creation made creating a large fleet's policies quadratic).
ALTER TABLE tenants ADD COLUMN live_agents BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tenants ADD COLUMN live_policies BIGINT NOT NULL DEFAULT 0;
UPDATE tenants SET
    live_agents = (SELECT COUNT(*) FROM agents a WHERE a.tenant_id = tenants.id AND a.deleted_at IS NULL),
    live_policies = (SELECT COUNT(*) FROM policies p WHERE p.tenant_id = tenants.id AND p.deleted_at IS NULL);
