//! A browser of sorts for the dashboard's tests, through `app()`: a cookie jar, form posts,
//! and the page's CSRF token.

use axum::{
    body::Body,
    http::{Method, Request, StatusCode, header},
};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::harness::Harness;

/// A browser of sorts: a cookie jar, form posts, and the page's CSRF token.
pub(crate) struct Browser<'a> {
    h: &'a Harness,
    pub(crate) cookies: Vec<(String, String)>,
}

pub(crate) struct Page {
    pub(crate) status: StatusCode,
    pub(crate) location: Option<String>,
    pub(crate) csp: Option<String>,
    pub(crate) html: String,
}

impl Page {
    pub(crate) fn csrf(&self) -> String {
        let at = self
            .html
            .find("name=\"csrf\" value=\"")
            .expect("a form with a csrf token");
        let rest = &self.html[at + 19..];
        rest[..rest.find('"').expect("end")].to_owned()
    }
}

impl<'a> Browser<'a> {
    pub(crate) fn new(h: &'a Harness) -> Self {
        Browser {
            h,
            cookies: Vec::new(),
        }
    }

    async fn send(&mut self, method: Method, path: &str, form: Option<&[(&str, &str)]>) -> Page {
        let mut req = Request::builder().method(method).uri(path);
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req = req.header(header::COOKIE, jar.join("; "));
        }
        let body = match form {
            Some(fields) => {
                req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Body::from(serde_urlencoded::to_string(fields).expect("form"))
            }
            None => Body::empty(),
        };
        let response = self
            .h
            .router
            .clone()
            .oneshot(req.body(body).expect("request"))
            .await
            .expect("infallible");
        for set in response.headers().get_all(header::SET_COOKIE) {
            let text = set.to_str().expect("ascii");
            let pair = text.split(';').next().expect("pair");
            let (k, v) = pair.split_once('=').expect("k=v");
            self.cookies.retain(|(name, _)| name != k);
            if !v.is_empty() && !text.contains("Max-Age=0") {
                self.cookies.push((k.to_owned(), v.to_owned()));
            }
        }
        let status = response.status();
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let csp = response
            .headers()
            .get(header::CONTENT_SECURITY_POLICY)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let html = String::from_utf8(
            response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes()
                .to_vec(),
        )
        .expect("utf8");
        Page {
            status,
            location,
            csp,
            html,
        }
    }

    pub(crate) async fn get(&mut self, path: &str) -> Page {
        self.send(Method::GET, path, None).await
    }

    pub(crate) async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send(Method::POST, path, Some(form)).await
    }

    pub(crate) async fn login(&mut self, tenant: &backup_core::TenantCreated) -> Page {
        let form = self.get("/ui/login").await;
        let csrf = form.csrf();
        self.post(
            "/ui/login",
            &[
                ("csrf", &csrf),
                ("tenantId", &tenant.id.to_string()),
                ("token", &tenant.token),
            ],
        )
        .await
    }
}
