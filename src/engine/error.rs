//! Why an engine request was refused, as an HTTP status and the
//! Genesys Web Services body `{"statusCode":N,"statusMessage":"..."}`.
//!
//! `statusCode` values (0 is success):
//!
//! | statusCode | HTTP | meaning |
//! |---|---|---|
//! | 1 | 400 | bad request: not JSON, unknown `operationName`, missing or bad parameter |
//! | 2 | 400 | the operation is not in the agent's capabilities now |
//! | 3 | 403 | the caller is not a participant of the session, or has the wrong role |
//! | 4 | 404 | no such session |
//! | 5 | 401 | missing, bad or expired token |
//! | 6 | 429 | too many requests: new sessions from one client address, or operations of one agent (`Retry-After` says when to retry) |
//! | 7 | 503 | the bus did not take the notifications; nothing changed |
//! | 8 | 409 | a concurrent change could not be reconciled; nothing changed |

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::directory::UnknownTarget;
use crate::auth::AuthError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotCapable(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthorized(String),
    /// With the seconds after which a retry may succeed.
    #[error("{0}")]
    TooManyRequests(String, u64),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Conflict(String),
}

impl OpError {
    pub fn bad(message: impl Into<String>) -> Self {
        OpError::BadRequest(message.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            OpError::BadRequest(_) | OpError::NotCapable(_) => StatusCode::BAD_REQUEST,
            OpError::Forbidden(_) => StatusCode::FORBIDDEN,
            OpError::NotFound(_) => StatusCode::NOT_FOUND,
            OpError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            OpError::TooManyRequests(..) => StatusCode::TOO_MANY_REQUESTS,
            OpError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            OpError::Conflict(_) => StatusCode::CONFLICT,
        }
    }

    pub fn status_code(&self) -> u32 {
        match self {
            OpError::BadRequest(_) => 1,
            OpError::NotCapable(_) => 2,
            OpError::Forbidden(_) => 3,
            OpError::NotFound(_) => 4,
            OpError::Unauthorized(_) => 5,
            OpError::TooManyRequests(..) => 6,
            OpError::Unavailable(_) => 7,
            OpError::Conflict(_) => 8,
        }
    }
}

impl From<AuthError> for OpError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::WrongRole => OpError::Forbidden(e.to_string()),
            _ => OpError::Unauthorized(e.to_string()),
        }
    }
}

impl From<UnknownTarget> for OpError {
    fn from(e: UnknownTarget) -> Self {
        OpError::BadRequest(e.to_string())
    }
}

impl IntoResponse for OpError {
    fn into_response(self) -> Response {
        if let OpError::Unavailable(reason) = &self {
            tracing::warn!(%reason, "engine operation not published");
        }
        let body = json!({
            "statusCode": self.status_code(),
            "statusMessage": self.to_string(),
        });
        let mut response = (self.status(), Json(body)).into_response();
        if let OpError::TooManyRequests(_, secs) = self {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}
