//! Tenants: creation, their token, its rotation.

use super::*;

impl Pools {
    pub(crate) async fn create_tenant(&self, ctx: &Ctx, name: &str) -> Result<TenantCreated> {
        validate_name("name", name)?;
        let id = TenantId::new();
        let token = token::generate(TokenKind::Tenant)?;
        sqlx::query(
            "INSERT INTO tenants (id, name, token_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(*id.as_uuid())
        .bind(name)
        .bind(token::hash(&token))
        .bind(ctx.now())
        .execute(self.read_write())
        .await?;
        Ok(TenantCreated {
            id,
            name: name.to_owned(),
            token,
        })
    }

    pub(crate) async fn list_tenants(&self) -> Result<Vec<TenantListing>> {
        let rows: Vec<(Uuid, String, Ts, i64)> = sqlx::query_as(
            "SELECT t.id, t.name, t.created_at, \
             (SELECT COUNT(*) FROM agents a WHERE a.tenant_id = t.id AND a.deleted_at IS NULL) \
             FROM tenants t ORDER BY t.created_at, t.id",
        )
        .fetch_all(self.read())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, name, created_at, agents)| TenantListing {
                id: TenantId::from_uuid(id),
                name,
                created_at: created_at.get(),
                agents: u64::try_from(agents).unwrap_or(0),
            })
            .collect())
    }

    pub(crate) async fn tenant_token_matches(
        &self,
        tenant: TenantId,
        presented: &str,
    ) -> Result<bool> {
        let stored = self.tenant_token_hash(tenant).await?;
        Ok(stored.is_some_and(|h| token::matches(presented, &h)))
    }

    async fn tenant_token_hash(&self, tenant: TenantId) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT token_hash FROM tenants WHERE id = $1")
                .bind(*tenant.as_uuid())
                .fetch_optional(self.read())
                .await?,
        )
    }

    pub(crate) async fn rotate_tenant_token(&self, ctx: &Ctx, tenant: TenantId) -> Result<String> {
        let token = token::generate(TokenKind::Tenant)?;
        let mut tx = self.write().await?;
        let done = sqlx::query("UPDATE tenants SET token_hash = $2 WHERE id = $1")
            .bind(*tenant.as_uuid())
            .bind(token::hash(&token))
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("tenant"));
        }
        // The dashboard's sessions were opened with the old token: they end with it.
        sqlx::query("DELETE FROM ui_sessions WHERE tenant_id = $1")
            .bind(*tenant.as_uuid())
            .execute(&mut *tx)
            .await?;
        // Who and when, never the token.
        events::record(
            &mut tx,
            ctx.now(),
            *tenant.as_uuid(),
            backup_core::EventType::TenantTokenRotated,
            backup_core::Actor::Tenant,
            Some(*tenant.as_uuid()),
            serde_json::json!({"tenantId": tenant, "sessionsEnded": true}),
        )
        .await?;
        tx.commit().await?;
        Ok(token)
    }
}
