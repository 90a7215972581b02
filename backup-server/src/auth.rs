//! Who is calling: a tenant (`X-Tenant-ID` + its bearer token), an agent (its bearer token) or
//! the admin (the configured `adminToken`). Tokens are compared as hashes in constant time by
//! the store and are never logged. A client address whose wrong tokens used up its allowance
//! (`limits.authFailuresPerMinute`) is answered 429 before any lookup.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::request::Parts,
};
use backup_core::{AgentId, TenantId};
use backup_store::AgentPrincipal;
use subtle::ConstantTimeEq;

use crate::{ApiError, AppState};

/// The client's address, when the request came over a socket (not through the router in
/// process). `X-Forwarded-For` is not trusted: anyone can send it.
pub(crate) fn client_address(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip())
}

/// The client's address as an extractor (for the dashboard's login form).
pub(crate) struct ClientAddress(pub(crate) Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(client_address(parts)))
    }
}

/// Runs `lookup` unless the address is over its failure allowance; a `false` or `None` answer
/// counts as a failure.
async fn guarded<T>(
    parts: &Parts,
    state: &AppState,
    lookup: impl std::future::Future<Output = Result<Option<T>, ApiError>>,
) -> Result<Option<T>, ApiError> {
    let address = client_address(parts);
    state.admit_address(address)?;
    let found = lookup.await?;
    if found.is_none() {
        state.auth_failed(address);
    }
    Ok(found)
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token>"))?;
    let value = header
        .to_str()
        .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 256)
        .ok_or_else(|| {
            ApiError::unauthorized("malformed Authorization header; want Bearer <token>")
        })?;
    Ok(token)
}

/// A tenant, authenticated.
#[derive(Clone, Copy, Debug)]
pub struct TenantAuth(pub TenantId);

impl FromRequestParts<AppState> for TenantAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        let tenant = parts
            .headers
            .get("x-tenant-id")
            .ok_or_else(|| ApiError::unauthorized("missing X-Tenant-ID"))?
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<TenantId>().ok())
            .ok_or_else(|| ApiError::unauthorized("malformed X-Tenant-ID; want a UUID"))?;
        let lookup = async {
            let matches = state.store().tenant_token_matches(tenant, token).await?;
            Ok(matches.then_some(()))
        };
        guarded(parts, state, lookup)
            .await?
            .ok_or_else(|| ApiError::unauthorized("wrong tenant or token"))?;
        state.admit_tenant(tenant)?;
        Ok(TenantAuth(tenant))
    }
}

/// An agent, authenticated.
#[derive(Clone, Copy, Debug)]
pub struct AgentAuth(pub AgentPrincipal);

impl AgentAuth {
    /// The agent's id.
    pub fn agent_id(&self) -> AgentId {
        self.0.agent_id
    }
}

impl FromRequestParts<AppState> for AgentAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        let lookup = async { Ok(state.store().authenticate_agent(token).await?) };
        let principal = guarded(parts, state, lookup)
            .await?
            .ok_or_else(|| ApiError::unauthorized("unknown or revoked agent token"))?;
        state.admit_agent(principal.agent_id)?;
        Ok(AgentAuth(principal))
    }
}

/// An enrollment token as presented (checked, and one use spent, with the request's body:
/// [`EnrollBearer::failed`] counts a refusal against the client's address).
#[derive(Debug)]
pub(crate) struct EnrollBearer {
    /// The token.
    pub(crate) token: String,
    address: Option<IpAddr>,
}

impl EnrollBearer {
    /// Counts a refused token against the client's address (`limits.authFailuresPerMinute`).
    pub(crate) fn failed(&self, state: &AppState) {
        state.auth_failed(self.address);
    }
}

impl FromRequestParts<AppState> for EnrollBearer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let address = client_address(parts);
        state.admit_address(address)?;
        Ok(EnrollBearer {
            token: bearer(parts)?.to_owned(),
            address,
        })
    }
}

/// The admin.
#[derive(Clone, Copy, Debug)]
pub struct AdminAuth;

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(expected) = state.config().admin_token.as_deref() else {
            return Err(ApiError::unauthorized(
                "no adminToken is configured; create tenants with `backup-server tenant create`",
            ));
        };
        let token = bearer(parts)?;
        let lookup =
            async { Ok(bool::from(token.as_bytes().ct_eq(expected.as_bytes())).then_some(())) };
        guarded(parts, state, lookup)
            .await?
            .map(|()| AdminAuth)
            .ok_or_else(|| ApiError::unauthorized("wrong admin token"))
    }
}
