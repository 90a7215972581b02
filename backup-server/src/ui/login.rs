//! Logging in with a tenant's id and token, and out again.

use axum::{
    Form,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use backup_core::TenantId;
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    forms::{Empty, Posted},
    layout::{failure, layout, page},
    session::{self, LOGIN_CSRF_COOKIE},
};
use crate::{AppState, auth::ClientAddress};

/// The login form (it has no session yet: its CSRF token is a double-submit cookie).
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct LoginForm {
    csrf: String,
    tenant_id: String,
    token: String,
}

fn login_markup(error: Option<&str>, csrf: &str, tenant: &str) -> Markup {
    layout(
        "Log in",
        None,
        html! {
            h1 { "Log in" }
            p { "Use your tenant's id and API token (the ones `backup-server tenant create` or POST /tenants printed)." }
            @if let Some(e) = error { p.error { (e) } }
            form method="post" action="/ui/login" {
                input type="hidden" name="csrf" value=(csrf);
                label for="tenantId" { "Tenant id" }
                input id="tenantId" name="tenantId" size="40" value=(tenant) autocomplete="username";
                label for="token" { "Token" }
                input id="token" name="token" type="password" size="70" autocomplete="current-password";
                p { button type="submit" { "Log in" } }
            }
        },
    )
}

/// The login page with a fresh double-submit CSRF cookie.
fn login_page(status: StatusCode, error: Option<&str>, tenant: &str) -> Response {
    let (csrf, cookie) = session::login_csrf();
    let mut response = page(status, login_markup(error, &csrf, tenant));
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

pub(crate) async fn login_form() -> Response {
    login_page(StatusCode::OK, None, "")
}

pub(crate) async fn login(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let expected = session::cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    let tenant_text = form.tenant_id.trim();
    if expected.is_empty()
        || !bool::from(subtle::ConstantTimeEq::ct_eq(
            form.csrf.as_bytes(),
            expected.as_bytes(),
        ))
    {
        return login_page(
            StatusCode::FORBIDDEN,
            Some("The form expired; please log in again."),
            tenant_text,
        );
    }
    let token = form.token.trim();
    let wrong = || {
        login_page(
            StatusCode::UNAUTHORIZED,
            Some("Unknown tenant or wrong token."),
            tenant_text,
        )
    };
    if state.admit_address(address).is_err() {
        return login_page(
            StatusCode::TOO_MANY_REQUESTS,
            Some("Too many failed logins from this address; wait a minute and try again."),
            tenant_text,
        );
    }
    let Ok(tenant) = tenant_text.parse::<TenantId>() else {
        state.auth_failed(address);
        return wrong();
    };
    let matches = state.store().tenant_token_matches(tenant, token).await;
    if matches.as_ref().is_ok_and(|m| !m) {
        state.auth_failed(address);
    }
    match matches {
        Ok(true) => {
            let opened = match session::open(&state, tenant).await {
                Ok(cookie) => cookie,
                Err(e) => return failure(e),
            };
            let mut response = Redirect::to("/ui").into_response();
            for cookie in [opened, format!("{LOGIN_CSRF_COOKIE}=; Path=/ui; Max-Age=0")] {
                if let Ok(v) = HeaderValue::from_str(&cookie) {
                    response.headers_mut().append(header::SET_COOKIE, v);
                }
            }
            response
        }
        Ok(false) => wrong(),
        Err(e) => failure(e),
    }
}

pub(crate) async fn logout(State(state): State<AppState>, posted: Posted<Empty>) -> Response {
    if let Err(e) = posted.session.close(&state).await {
        return failure(e);
    }
    let mut response = Redirect::to("/ui/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&session::clear()) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}
