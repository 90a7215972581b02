//! Signed session cookies and CSRF tokens.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, header, request::Parts},
    response::{IntoResponse, Redirect, Response},
};
use backup_core::TenantId;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AppState;

pub(crate) const SESSION_COOKIE: &str = "backup_session";
pub(crate) const LOGIN_CSRF_COOKIE: &str = "backup_login_csrf";
const LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The key that signs sessions: `ui.sessionSecret`, or random per process.
#[derive(Clone)]
pub(crate) struct SessionKey([u8; 32]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    pub(crate) fn new(configured: Option<&str>) -> Self {
        let mut key = [0u8; 32];
        match configured {
            Some(secret) => key.copy_from_slice(&Sha256::digest(secret.as_bytes())),
            None => {
                if getrandom::fill(&mut key).is_err() {
                    // Without randomness, fall back to something unguessable enough for a
                    // session key that dies with the process.
                    let seed = format!("{:?}{}", SystemTime::now(), std::process::id());
                    key.copy_from_slice(&Sha256::digest(seed.as_bytes()));
                }
            }
        }
        Self(key)
    }

    fn mac(&self, parts: &[&str]) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("any key length works");
        for p in parts {
            mac.update(p.as_bytes());
            mac.update(b"\x1f");
        }
        hex::encode(mac.finalize().into_bytes())
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn random_hex() -> String {
    let mut b = [0u8; 16];
    let _ = getrandom::fill(&mut b);
    hex::encode(b)
}

/// A logged-in tenant.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    pub(crate) tenant: TenantId,
    nonce: String,
    key: SessionKey,
}

impl Session {
    /// The CSRF token every form of this session carries.
    pub(crate) fn csrf(&self) -> String {
        self.key.mac(&["csrf", &self.nonce])
    }

    /// Whether a submitted CSRF token is this session's.
    pub(crate) fn csrf_ok(&self, submitted: &str) -> bool {
        self.csrf().as_bytes().ct_eq(submitted.as_bytes()).into()
    }
}

/// The `Set-Cookie` value of a new session for `tenant`, logged in with `token`.
pub(crate) fn issue(key: &SessionKey, tenant: TenantId, token: &str) -> String {
    let expires = (now_secs() + LIFETIME.as_secs()).to_string();
    let nonce = random_hex();
    let token_hash = hex::encode(Sha256::digest(token.as_bytes()));
    let tenant = tenant.to_string();
    let mac = key.mac(&["session", &tenant, &expires, &nonce, &token_hash]);
    format!(
        "{SESSION_COOKIE}=v1.{tenant}.{expires}.{nonce}.{token_hash}.{mac}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}",
        LIFETIME.as_secs()
    )
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
        let raw = cookie(&parts.headers, SESSION_COOKIE).ok_or(LoginRequired)?;
        let fields: Vec<&str> = raw.split('.').collect();
        let ["v1", tenant, expires, nonce, token_hash, mac] = fields.as_slice() else {
            return Err(LoginRequired);
        };
        let key = state.session_key();
        let expected = key.mac(&["session", tenant, expires, nonce, token_hash]);
        if !bool::from(expected.as_bytes().ct_eq(mac.as_bytes())) {
            return Err(LoginRequired);
        }
        if expires.parse::<u64>().map_or(true, |e| e < now_secs()) {
            return Err(LoginRequired);
        }
        let tenant: TenantId = tenant.parse().map_err(|_| LoginRequired)?;
        // A rotated token ends every session made with the old one.
        let current = state
            .store()
            .tenant_token_hash_matches(tenant, token_hash)
            .await
            .unwrap_or(false);
        if !current {
            return Err(LoginRequired);
        }
        Ok(Session {
            tenant,
            nonce: (*nonce).to_owned(),
            key: key.clone(),
        })
    }
}
