//! The store's enrollment tokens and self-enrolling agents.

use backup_core::{
    CreateEnrollmentToken, EnrollRequest, Enrolled, EnrollmentTokenCreated, EnrollmentTokenId,
    EnrollmentTokenView, Page, TenantId,
};

use crate::{PageRequest, Result, Store};

impl Store {
    /// Makes an enrollment token (stored hashed; its value is shown once).
    ///
    /// # Errors
    /// [`StoreError::Validation`](crate::StoreError::Validation) naming `expiresIn`, `maxUses`
    /// or `description`.
    pub async fn create_enrollment_token(
        &self,
        tenant: TenantId,
        body: &CreateEnrollmentToken,
    ) -> Result<EnrollmentTokenCreated> {
        on_backend!(self, p => p.create_enrollment_token(&self.ctx, tenant, body))
    }

    /// The tenant's enrollment tokens, newest first (never their values).
    ///
    /// # Errors
    /// [`StoreError::Validation`](crate::StoreError::Validation) for a bad cursor.
    pub async fn list_enrollment_tokens(
        &self,
        tenant: TenantId,
        page: &PageRequest,
    ) -> Result<Page<EnrollmentTokenView>> {
        on_backend!(self, p => p.list_enrollment_tokens(tenant, page))
    }

    /// Revokes an enrollment token (agents that enrolled with it keep their own tokens).
    ///
    /// # Errors
    /// [`StoreError::NotFound`](crate::StoreError::NotFound) for another tenant's token.
    pub async fn revoke_enrollment_token(
        &self,
        tenant: TenantId,
        id: EnrollmentTokenId,
    ) -> Result<()> {
        on_backend!(self, p => p.revoke_enrollment_token(&self.ctx, tenant, id))
    }

    /// Creates an agent with an enrollment token and spends one use of it; `None` when the
    /// token is unknown, revoked, expired or used up.
    ///
    /// # Errors
    /// [`StoreError::Conflict`](crate::StoreError::Conflict) when a live agent of the tenant has
    /// the name; [`StoreError::Validation`](crate::StoreError::Validation) for a bad name.
    pub async fn enroll(&self, presented: &str, body: &EnrollRequest) -> Result<Option<Enrolled>> {
        on_backend!(self, p => p.enroll(&self.ctx, presented, body))
    }
}
