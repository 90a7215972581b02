//! Enrollment tokens, and an agent creating itself with one: the token is checked (known, not
//! revoked, not expired, a use left) and spent in the same transaction that creates the agent
//! and records `agent.enrolled`, so two machines racing for its last use cannot both win.

use backup_core::{
    Actor, CreateEnrollmentToken, EnrollRequest, Enrolled, EnrollmentTokenCreated,
    EnrollmentTokenView, EventType,
};
use serde_json::json;

use super::agents::insert_agent;
use super::events::record;
use super::*;

#[derive(sqlx::FromRow)]
struct EnrollmentRow {
    id: Uuid,
    description: Option<String>,
    expires_at: Ts,
    max_uses: i32,
    uses: i32,
    revoked_at: Option<Ts>,
    created_at: Ts,
}

impl EnrollmentRow {
    fn key(&self) -> Cursor {
        Cursor {
            at: self.created_at,
            id: self.id,
        }
    }

    fn view(&self) -> Result<EnrollmentTokenView> {
        Ok(EnrollmentTokenView {
            id: self.id,
            description: self.description.clone(),
            expires_at: self.expires_at.get(),
            max_uses: u32::try_from(self.max_uses).unwrap_or(0),
            uses: u32::try_from(self.uses).unwrap_or(0),
            revoked_at: self.revoked_at.map(Ts::get),
            created_at: self.created_at.get(),
        })
    }
}

const COLUMNS: &str = "id, description, expires_at, max_uses, uses, revoked_at, created_at";

impl Pools {
    pub(crate) async fn create_enrollment_token(
        &self,
        ctx: &Ctx,
        tenant: TenantId,
        body: &CreateEnrollmentToken,
    ) -> Result<EnrollmentTokenCreated> {
        let ttl = body.validate()?;
        let now = ctx.now();
        let id = Uuid::new_v4();
        let token = token::generate(TokenKind::Enrollment)?;
        let expires = Ts::new(now.get() + TimeDelta::from_std(ttl).unwrap_or(TimeDelta::MAX));
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO enrollment_tokens (id, tenant_id, token_hash, description, expires_at, \
             max_uses, uses, created_at) VALUES ($1, $2, $3, $4, $5, $6, 0, $7)",
        )
        .bind(id)
        .bind(*tenant.as_uuid())
        .bind(token::hash(&token))
        .bind(body.description.as_deref())
        .bind(expires)
        .bind(i32_of(body.max_uses))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query_as::<_, EnrollmentRow>(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM enrollment_tokens WHERE id = $1"
        )))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(EnrollmentTokenCreated {
            view: row.view()?,
            token,
        })
    }

    pub(crate) async fn list_enrollment_tokens(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<EnrollmentTokenView>> {
        let cursor = page.cursor()?;
        let rows = sqlx::query_as::<_, EnrollmentRow>(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM enrollment_tokens WHERE tenant_id = $1 \
             AND ($2 IS NULL OR created_at < $2 OR (created_at = $2 AND id < $3)) \
             ORDER BY created_at DESC, id DESC LIMIT $4"
        )))
        .bind(*tenant.as_uuid())
        .bind(cursor.map(|c| c.at))
        .bind(cursor.map(|c| c.id))
        .bind(page.fetch_limit())
        .fetch_all(self.read())
        .await?;
        page.page_of(&rows, EnrollmentRow::key, EnrollmentRow::view)
    }

    pub(crate) async fn revoke_enrollment_token(
        &self,
        ctx: &Ctx,
        tenant: TenantId,
        id: Uuid,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE enrollment_tokens SET revoked_at = COALESCE(revoked_at, $3) \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(*tenant.as_uuid())
        .bind(id)
        .bind(ctx.now())
        .execute(self.read_write())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("enrollment token"));
        }
        Ok(())
    }

    /// Creates an agent with `presented`; `None` when the token is unknown, revoked, expired
    /// or used up (all alike to the caller: 401).
    pub(crate) async fn enroll(
        &self,
        ctx: &Ctx,
        presented: &str,
        body: &EnrollRequest,
    ) -> Result<Option<Enrolled>> {
        let now = ctx.now();
        let mut tx = self.write().await?;
        let sql = format!(
            "SELECT id, tenant_id FROM enrollment_tokens WHERE token_hash = $1 \
             AND revoked_at IS NULL AND expires_at > $2 AND uses < max_uses{}",
            for_update!("enrollment_tokens")
        );
        let found: Option<(Uuid, Uuid)> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(token::hash(presented))
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        let Some((token_id, tenant)) = found else {
            return Ok(None);
        };
        let taken: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM agents WHERE tenant_id = $1 AND name = $2 AND deleted_at IS NULL",
        )
        .bind(tenant)
        .bind(&body.name)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(agent) = taken {
            return Err(StoreError::Conflict(format!(
                "an agent named {:?} exists ({agent}); give this machine another name (the agent's `name` key) or delete that agent",
                body.name
            )));
        }
        let create = CreateAgent {
            name: body.name.clone(),
            hostname: body.hostname.clone(),
        };
        let tenant_id = TenantId::from_uuid(tenant);
        let (agent, agent_token) = insert_agent(&mut tx, ctx, tenant_id, &create).await?;
        sqlx::query("UPDATE enrollment_tokens SET uses = uses + 1 WHERE id = $1")
            .bind(token_id)
            .execute(&mut *tx)
            .await?;
        let data = json!({
            "agentId": agent, "name": body.name, "hostname": body.hostname,
            "enrollmentTokenId": token_id,
        });
        record(
            &mut tx,
            now,
            tenant,
            EventType::AgentEnrolled,
            Actor::Agent,
            Some(*agent.as_uuid()),
            data,
        )
        .await?;
        tx.commit().await?;
        Ok(Some(Enrolled {
            agent_id: agent,
            token: agent_token,
            tenant_id,
        }))
    }
}
