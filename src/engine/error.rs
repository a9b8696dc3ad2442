//! Why an engine request was refused, as an HTTP status and the
//! Genesys Web Services body `{"statusCode":N,"statusMessage":"..."}`.
//!
//! `statusCode` values are those of the GWS Return Values page (0 is
//! success), so a GWS client reads them as it would from GWS:
//!
//! | statusCode | GWS meaning | HTTP | chatgate refuses with it |
//! |---|---|---|---|
//! | 1 | a required parameter is missing | 400 | missing `operationName` or a mandatory parameter (`text`, `targetUri`/`targetPath`, ...) |
//! | 2 | a parameter is not valid for the current state | 400 | the operation is not in the caller's capabilities now; a target already in (or all of a queue in) the session |
//! | 3 | the operation is forbidden | 429 | too many requests (new sessions of one address, operations of one agent; `Retry-After` says when to retry) |
//! | 4 | an internal error occurred | 503, 409 | the bus or the session store did not answer, a concurrent change could not be reconciled; nothing changed |
//! | 5 | the user has no permission for this operation | 403 | not a participant of the session, or a token of the wrong role or session |
//! | 6 | the requested resource could not be found | 404, 400 | no such session (404); a `targetUri`, `targetPath`, `participantId`, `queue` or `queueName` naming nobody (400) |
//! | 10 | input validation error: a value out of the valid range | 400, 413 | not JSON, unknown `operationName`, a parameter of the wrong type, empty, too long or malformed (400); a body over 64 KiB (413) |
//! | 20 | the user is not authenticated | 401 | missing, bad or expired token |
//!
//! Codes 7-9 and 11-19 (partial success, password changes, resources
//! created, assigned and so on) name nothing the facebooksession API
//! does and are not used.

use std::fmt::Display;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::directory::UnknownTarget;
use crate::auth::AuthError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// A mandatory parameter is absent.
    #[error("{0}")]
    Missing(String),
    /// A parameter (or the body) is not a valid value.
    #[error("{0}")]
    BadRequest(String),
    /// The body is over the engine routes' bound.
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    NotCapable(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// A parameter names a user, queue or participant that does not exist.
    #[error("{0}")]
    UnknownResource(String),
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

    pub fn missing(message: impl Into<String>) -> Self {
        OpError::Missing(message.into())
    }

    /// Not valid in the session's current state.
    pub fn state(message: impl Into<String>) -> Self {
        OpError::NotCapable(message.into())
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
            OpError::Missing(_)
            | OpError::BadRequest(_)
            | OpError::NotCapable(_)
            | OpError::UnknownResource(_) => StatusCode::BAD_REQUEST,
            OpError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            OpError::Forbidden(_) => StatusCode::FORBIDDEN,
            OpError::NotFound(_) => StatusCode::NOT_FOUND,
            OpError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            OpError::TooManyRequests(..) => StatusCode::TOO_MANY_REQUESTS,
            OpError::Unavailable(_) | OpError::Backend { .. } => StatusCode::SERVICE_UNAVAILABLE,
            OpError::Conflict(_) => StatusCode::CONFLICT,
        }
    }

    /// The GWS `statusCode` (see the module's table).
    pub fn status_code(&self) -> u32 {
        match self {
            OpError::Missing(_) => 1,
            OpError::NotCapable(_) => 2,
            OpError::TooManyRequests(..) => 3,
            OpError::Unavailable(_) | OpError::Backend { .. } | OpError::Conflict(_) => 4,
            OpError::Forbidden(_) => 5,
            OpError::NotFound(_) | OpError::UnknownResource(_) => 6,
            OpError::BadRequest(_) | OpError::TooLarge(_) => 10,
            OpError::Unauthorized(_) => 20,
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
        match e {
            UnknownTarget::Neither(_) => OpError::BadRequest(e.to_string()),
            UnknownTarget::User(_) | UnknownTarget::Queue(_) => {
                OpError::UnknownResource(e.to_string())
            }
        }
    }
}

impl IntoResponse for OpError {
    fn into_response(self) -> Response {
        self.respond(None)
    }
}

/// A refused agent operation as answered: the error, and the referenceId
/// of the `Error` notification that announced it to the session's agents
/// (when the caller is one of them), so the caller can tie the two.
#[derive(Debug)]
pub struct Refused {
    pub error: OpError,
    pub announced: Option<u64>,
}

impl From<OpError> for Refused {
    fn from(error: OpError) -> Self {
        Refused {
            error,
            announced: None,
        }
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        self.error.respond(self.announced)
    }
}

impl OpError {
    /// The HTTP answer, with `referenceId` when an Error notification
    /// carries it.
    fn respond(self, reference_id: Option<u64>) -> Response {
        match &self {
            OpError::Unavailable(reason) => tracing::warn!(%reason, "engine request refused"),
            OpError::Backend { backend, detail } => {
                tracing::warn!(?backend, %detail, "engine request refused: a backend failed");
            }
            _ => {}
        }
        let mut body = json!({
            "statusCode": self.status_code(),
            "statusMessage": self.to_string(),
        });
        if let Some(r) = reference_id {
            body["referenceId"] = json!(r);
        }
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
            assert_eq!(body, json!({"statusCode": 4, "statusMessage": words}));
        }
    }
}
