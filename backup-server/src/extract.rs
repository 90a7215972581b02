//! Request extractors whose rejections are [`ApiError`]s, so malformed input gets the documented
//! error body: 400 for bodies that are not JSON, 413 over 1 MiB, 422 for a missing, mistyped,
//! out-of-range or (on tenant routes) unknown field, naming the field; 404 for a malformed id in
//! the path (no such object).

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Path, Request},
    http::{StatusCode, request::Parts},
};
use backup_core::ErrorCode;
use serde::de::DeserializeOwned;

use crate::ApiError;

/// Bodies larger than this are answered 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(ErrorCode::PayloadTooLarge, "the body is larger than 1 MiB")
        } else {
            ApiError::new(ErrorCode::MalformedJson, "the body could not be read")
        }
    })
}

/// Parses JSON, naming the field of a type error; `unknown` receives every ignored field.
fn parse<T: DeserializeOwned>(bytes: &[u8], unknown: &mut Vec<String>) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let mut track = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
    let ignored = serde_ignored::Deserializer::new(&mut de, &mut track);
    let value = serde_path_to_error::deserialize(ignored).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let message = inner.to_string();
                // serde reports a missing field at its parent; name the field itself.
                let missing = message
                    .strip_prefix("missing field `")
                    .and_then(|rest| rest.split_once('`'))
                    .map(|(name, _)| name);
                let field = match (path.as_str(), missing) {
                    (".", Some(name)) => name.to_owned(),
                    (parent, Some(name)) => format!("{parent}.{name}"),
                    (".", None) => "body".to_owned(),
                    (p, None) => p.to_owned(),
                };
                ApiError::invalid(field, backup_core::in_api_words(&message))
            }
            _ => ApiError::new(
                ErrorCode::MalformedJson,
                format!("the body is not valid JSON: {inner}"),
            ),
        }
    })?;
    de.end().map_err(|e| {
        ApiError::new(
            ErrorCode::MalformedJson,
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    Ok(value)
}

/// Parses a tenant route's JSON body exactly as the server does: a syntax error is 400, a
/// missing, mistyped or unknown field is 422 naming the field.
///
/// # Errors
/// The [`ApiError`] the route would answer.
#[allow(unreachable_pub, reason = "re-exported by the fuzzing module")]
pub fn parse_tenant_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut unknown = Vec::new();
    let value = parse(bytes, &mut unknown)?;
    if let Some(field) = unknown.into_iter().next() {
        return Err(ApiError::invalid(
            field.clone(),
            format!("unknown field {field}"),
        ));
    }
    Ok(value)
}

/// Parses an agent route's JSON body exactly as the server does (unknown fields ignored).
///
/// # Errors
/// The [`ApiError`] the route would answer.
#[allow(unreachable_pub, reason = "re-exported by the fuzzing module")]
pub fn parse_agent_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    parse(bytes, &mut Vec::new())
}

/// A JSON body on a tenant route: unknown fields are rejected (422 naming the first).
#[derive(Debug)]
pub struct TenantJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for TenantJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        parse_tenant_body(&bytes).map(TenantJson)
    }
}

/// A JSON body on an agent route: unknown fields are ignored (agents may be newer).
#[derive(Debug)]
pub struct AgentJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AgentJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        parse_agent_body(&bytes).map(AgentJson)
    }
}

/// A path parameter; one that does not parse names no object: 404.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|_| ApiError::not_found("object"))
    }
}

/// Query parameters (of the tenant routes' lists); a bad value is a 422 naming the parameter, and
/// so is an unknown one: a misspelt filter would otherwise answer the unfiltered list.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded_parse(query));
        let mut unknown = Vec::new();
        let mut track = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
        let value =
            serde_path_to_error::deserialize(serde_ignored::Deserializer::new(de, &mut track))
                .map_err(|e| {
                    let field = e.path().to_string();
                    let field = if field == "." {
                        "query".to_owned()
                    } else {
                        field
                    };
                    ApiError::invalid(
                        field,
                        backup_core::in_api_words(&e.into_inner().to_string()),
                    )
                })?;
        match unknown.first() {
            Some(name) => Err(ApiError::invalid(
                name.clone(),
                format!("{name}: unknown query parameter"),
            )),
            None => Ok(ApiQuery(value)),
        }
    }
}

fn form_urlencoded_parse(query: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(query.as_bytes())
}
