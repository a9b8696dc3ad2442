//! Errors that leave the process: a refused request as an HTTP response
//! ([`AppError`]), and why the process cannot start ([`StartError`]).
//!
//! A refusal says what is wrong with the request, never what went wrong
//! inside: the text of a bus error is logged, not sent. A start-up error
//! names the setting or the part at fault; `main` prints it and exits 1.

use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::auth::{AuthError, KeyError};
use crate::bus::BusError;
use crate::client_addr::ProxyListError;
use crate::config::ConfigError;
use crate::engine::nats_store::StoreError;
use crate::engine::DirectoryError;

/// A refused request.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("the bus is unavailable")]
    Bus(#[from] BusError),
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Auth(e) => e.status(),
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Bus(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let AppError::Bus(e) = &self {
            tracing::warn!(error = %e, "publish failed");
        }
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

/// Why the process cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    TrustedProxies(#[from] ProxyListError),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Connecting to the bus or opening its stream.
    #[error(transparent)]
    Bus(#[from] crate::bus::nats::NatsError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the listening address: {0}")]
    LocalAddr(#[source] std::io::Error),
    #[error("serving failed: {0}")]
    Serve(#[source] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bus_failure_tells_the_client_fixed_words_only() {
        let e = AppError::Bus(BusError::NotAcknowledged(
            "nats: timed out at 10.0.0.7:4222".into(),
        ));
        let response = e.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body, json!({"error": "the bus is unavailable"}));
    }
}
