//! Dashboard sessions: opened at login, looked up by the hash of the cookie's id, closed at
//! logout, all of a tenant's closed when its token is rotated.

use super::*;

impl Pools {
    pub(crate) async fn open_ui_session(
        &self,
        ctx: &Ctx,
        tenant: TenantId,
        lifetime: TimeDelta,
    ) -> Result<UiSession> {
        let id = token::generate(TokenKind::Session)?;
        let csrf = token::generate(TokenKind::Csrf)?;
        let now = ctx.now();
        let expires_at = now.get() + lifetime;
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM ui_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query(
            "INSERT INTO ui_sessions (id_hash, tenant_id, csrf, created_at, expires_at) \
             SELECT $1, id, $3, $4, $5 FROM tenants WHERE id = $2",
        )
        .bind(token::hash(&id))
        .bind(*tenant.as_uuid())
        .bind(&csrf)
        .bind(now)
        .bind(Ts::from(expires_at))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("tenant"));
        }
        tx.commit().await?;
        Ok(UiSession {
            id,
            tenant,
            csrf,
            expires_at,
        })
    }

    pub(crate) async fn ui_session(&self, ctx: &Ctx, id: &str) -> Result<Option<UiSession>> {
        let row: Option<(Uuid, String, Ts)> = sqlx::query_as(
            "SELECT tenant_id, csrf, expires_at FROM ui_sessions \
             WHERE id_hash = $1 AND expires_at > $2",
        )
        .bind(token::hash(id))
        .bind(ctx.now())
        .fetch_optional(self.read())
        .await?;
        Ok(row.map(|(tenant, csrf, expires_at)| UiSession {
            id: id.to_owned(),
            tenant: TenantId::from_uuid(tenant),
            csrf,
            expires_at: expires_at.get(),
        }))
    }

    pub(crate) async fn close_ui_session(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM ui_sessions WHERE id_hash = $1")
            .bind(token::hash(id))
            .execute(self.read_write())
            .await?;
        Ok(())
    }
}
