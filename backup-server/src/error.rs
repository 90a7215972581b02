//! One error type for every route: the documented body `{"error": {code, message, field}}`.
//!
//! Internal details (SQL errors, bugs) are logged, never sent.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use backup_core::{ErrorBody, ErrorCode, ErrorDetail};
use backup_store::StoreError;

/// Seconds a client should wait after a 503 or 429.
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    field: Option<String>,
    retry_after: Option<u64>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl ApiError {
    /// An error with `code` and a message for people.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    /// 404.
    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    /// 422 naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::new(ErrorCode::ValidationFailed, message)
        }
    }

    /// 429 with `Retry-After`.
    pub fn rate_limited(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(ErrorCode::RateLimited, "too many requests; slow down")
        }
    }

    /// The code (for tests and metrics).
    pub fn code(&self) -> ErrorCode {
        self.code
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::not_found(what),
            StoreError::Conflict(message) => ApiError::new(ErrorCode::Conflict, message),
            StoreError::QuotaExceeded(message) => ApiError::new(ErrorCode::QuotaExceeded, message),
            StoreError::StaleAttempt(_) => ApiError::new(
                ErrorCode::StaleAttempt,
                "the attempt was already closed (agent lost); its run recorded the result",
            ),
            StoreError::Validation(v) => {
                let field = v.field().map(str::to_owned);
                ApiError {
                    field,
                    ..ApiError::new(ErrorCode::ValidationFailed, v.to_string())
                }
            }
            StoreError::Unavailable(detail) => {
                tracing::warn!(%detail, "database unavailable");
                ApiError {
                    retry_after: Some(RETRY_AFTER_SECONDS),
                    ..ApiError::new(
                        ErrorCode::DatabaseUnavailable,
                        "the database is unavailable; retry later",
                    )
                }
            }
            other => {
                tracing::error!(error = %other, "internal error");
                ApiError::new(
                    ErrorCode::InternalError,
                    "internal error; see the server log",
                )
            }
        }
    }
}

impl From<backup_core::Error> for ApiError {
    fn from(e: backup_core::Error) -> Self {
        StoreError::Validation(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                field: self.field,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
