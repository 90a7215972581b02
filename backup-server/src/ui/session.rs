//! Dashboard sessions, kept on the server: the cookie carries a random id (the store keeps
//! only its hash), logging out deletes the session, rotating the tenant token deletes all of
//! the tenant's. The cookie carries nothing that could be used against the API.

use std::time::Duration;

use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, header, request::Parts},
    response::{IntoResponse, Redirect, Response},
};
use backup_core::TenantId;
use backup_store::{StoreError, UiSession};
use subtle::ConstantTimeEq;

use crate::AppState;

pub(crate) const SESSION_COOKIE: &str = "backup_session";
pub(crate) const LOGIN_CSRF_COOKIE: &str = "backup_login_csrf";
const LIFETIME: Duration = Duration::from_secs(12 * 3600);

fn random_hex() -> String {
    let mut b = [0u8; 16];
    let _ = getrandom::fill(&mut b);
    hex::encode(b)
}

/// A logged-in tenant.
#[derive(Clone, Debug)]
pub(crate) struct Session(UiSession);

impl Session {
    /// The tenant logged in.
    pub(crate) fn tenant(&self) -> TenantId {
        self.0.tenant
    }

    /// The CSRF token every form of this session carries.
    pub(crate) fn csrf(&self) -> String {
        self.0.csrf.clone()
    }

    /// Whether a submitted CSRF token is this session's.
    pub(crate) fn csrf_ok(&self, submitted: &str) -> bool {
        !submitted.is_empty() && bool::from(self.0.csrf.as_bytes().ct_eq(submitted.as_bytes()))
    }

    /// Ends it (logout).
    pub(crate) async fn close(&self, state: &AppState) -> Result<(), StoreError> {
        state.store().close_ui_session(&self.0.id).await
    }
}

/// Opens a session for `tenant`: the `Set-Cookie` value that carries it.
pub(crate) async fn open(state: &AppState, tenant: TenantId) -> Result<String, StoreError> {
    let session = state.store().open_ui_session(tenant, LIFETIME).await?;
    Ok(format!(
        "{SESSION_COOKIE}={}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}",
        session.id,
        LIFETIME.as_secs()
    ))
}

/// The `Set-Cookie` value that ends a session.
pub(crate) fn clear() -> String {
    format!("{SESSION_COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0")
}

pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .find_map(|c| c.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
}

/// A fresh double-submit token for the login form, and its cookie.
pub(crate) fn login_csrf() -> (String, String) {
    let token = random_hex();
    let cookie =
        format!("{LOGIN_CSRF_COOKIE}={token}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=3600");
    (token, cookie)
}

/// Without a valid session, pages redirect to the login form.
#[derive(Debug)]
pub(crate) struct LoginRequired;

impl IntoResponse for LoginRequired {
    fn into_response(self) -> Response {
        Redirect::to("/ui/login").into_response()
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = LoginRequired;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, LoginRequired> {
        let id = cookie(&parts.headers, SESSION_COOKIE).ok_or(LoginRequired)?;
        // Only the shape of an id is looked up: anything else costs no database read.
        if !(id.starts_with("rft_s_") && id.len() == 70) {
            return Err(LoginRequired);
        }
        match state.store().ui_session(id).await {
            Ok(Some(session)) => Ok(Session(session)),
            _ => Err(LoginRequired),
        }
    }
}
