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
//! | 7 | 503 | the bus or the session store did not answer; nothing changed |
//! | 8 | 409 | a concurrent change could not be reconciled; nothing changed |

use std::fmt::Display;

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
    /// Our own words for a request that cannot be served now.
    #[error("{0}")]
    Unavailable(String),
    /// The bus or the session store failed. The client is told which, in
    /// fixed words; `detail` (the failure's own text, which may name
    /// servers, subjects or buckets) is only logged.
    #[error("{}", backend.message())]
    Backend { backend: Backend, detail: String },
    #[error("{0}")]
    Conflict(String),
}

/// A part the engine depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The bus, which takes the notifications of every change.
    Bus,
    /// The session store (on the NATS bus: its KV bucket).
    Store,
}

impl Backend {
    /// What a client is told when it fails.
    pub fn message(self) -> &'static str {
        match self {
            Backend::Bus => "the bus is unavailable; nothing changed",
            Backend::Store => "the session store is unavailable; nothing changed",
        }
    }
}

impl OpError {
    pub fn bad(message: impl Into<String>) -> Self {
        OpError::BadRequest(message.into())
    }

    /// The bus failed with `detail` (logged, never sent).
    pub fn bus(detail: impl Display) -> Self {
        OpError::Backend {
            backend: Backend::Bus,
            detail: detail.to_string(),
        }
    }

    /// The session store failed with `detail` (logged, never sent).
    pub fn store(detail: impl Display) -> Self {
        OpError::Backend {
            backend: Backend::Store,
            detail: detail.to_string(),
        }
    }

    /// What to log: a backend failure's own text; the message otherwise.
    /// (A client gets only the message.)
    pub fn detail(&self) -> String {
        match self {
            OpError::Backend { detail, .. } => detail.clone(),
            other => other.to_string(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            OpError::BadRequest(_) | OpError::NotCapable(_) => StatusCode::BAD_REQUEST,
            OpError::Forbidden(_) => StatusCode::FORBIDDEN,
            OpError::NotFound(_) => StatusCode::NOT_FOUND,
            OpError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            OpError::TooManyRequests(..) => StatusCode::TOO_MANY_REQUESTS,
            OpError::Unavailable(_) | OpError::Backend { .. } => StatusCode::SERVICE_UNAVAILABLE,
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
            OpError::Unavailable(_) | OpError::Backend { .. } => 7,
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
        match &self {
            OpError::Unavailable(reason) => tracing::warn!(%reason, "engine request refused"),
            OpError::Backend { backend, detail } => {
                tracing::warn!(?backend, %detail, "engine request refused: a backend failed");
            }
            _ => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_backend_failure_tells_the_client_fixed_words_only() {
        let detail = "nats: connection refused at 10.0.0.7:4222 (KV_CHATGATE_SESSIONS)";
        for (e, words) in [
            (OpError::bus(detail), Backend::Bus.message()),
            (OpError::store(detail), Backend::Store.message()),
        ] {
            assert_eq!(e.detail(), detail, "the detail is kept for the log");
            let response = e.into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap();
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(body, json!({"statusCode": 7, "statusMessage": words}));
        }
    }
}
