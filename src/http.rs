//! HTTP surface: the router of the process.
//!
//! Owns `router(state) -> Router` (every route of the process, so tests can
//! drive it), the health, readiness, metrics and dev-token endpoints.
//! Refusals are `error`'s [`AppError`]; WebSocket handling is in `ws`,
//! ingest in `ingest`.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{bearer_token, AuthError, Principal, Role};
use crate::error::AppError;
use crate::state::{AppState, SharedState};

/// Authenticates a request by its bearer token (header or `access_token`)
/// and checks that its role is one of `roles`.
pub fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    access_token: Option<&str>,
    roles: &[Role],
) -> Result<Principal, AuthError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let token = bearer_token(authorization, access_token).ok_or(AuthError::Missing);
    // Refusals are logged by reason only: a token is never logged.
    let principal = token.and_then(|t| state.auth.verify(t)).inspect_err(|e| {
        state.metrics.auth_rejects.inc(e.label());
        tracing::debug!(reason = e.label(), "authentication refused");
    })?;
    if !roles.contains(&principal.role) {
        state.metrics.auth_rejects.inc(AuthError::WrongRole.label());
        tracing::debug!(role = principal.role.as_str(), "role refused");
        return Err(AuthError::WrongRole);
    }
    Ok(principal)
}

/// Every route of the process: the gateway's, and the engine's when it runs one.
pub fn router(state: SharedState) -> Router {
    let ingest_limit = state.config.ingest_max_bytes;
    let mut router = Router::new();
    if state.config.role.serves_clients() {
        router = router.route("/ws", get(crate::ws::ws_handler));
    }
    router = router
        .route(
            "/upstream/events",
            post(crate::ingest::post_events)
                .layer(axum::extract::DefaultBodyLimit::max(ingest_limit)),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(crate::web::router());
    if state.config.dev_mode() {
        router = router.route("/dev/token", get(dev_token));
    }
    if state.engine.is_some() {
        router = router.merge(crate::engine::router());
    }
    router.with_state(state)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<SharedState>) -> Response {
    if state.bus.is_ready() && !state.shutdown.is_cancelled() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

async fn metrics(State(state): State<SharedState>) -> Response {
    let open = state.hub.connections_by_role();
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.render(&open),
    )
        .into_response()
}

#[derive(Deserialize)]
struct DevTokenQuery {
    role: Role,
    sub: String,
    sid: Option<String>,
    ttl: Option<u64>,
}

/// Dev mode only (no secret, loopback): mints a demo token.
async fn dev_token(
    State(state): State<SharedState>,
    Query(q): Query<DevTokenQuery>,
) -> Result<Json<serde_json::Value>, AppError> {
    if q.role == Role::Customer && q.sid.is_none() {
        return Err(AppError::BadRequest("a customer token needs sid".into()));
    }
    let ttl = q.ttl.unwrap_or(8 * 3600).min(7 * 24 * 3600);
    let token = state.auth.mint(q.role, &q.sub, q.sid.as_deref(), ttl);
    Ok(Json(json!({ "token": token })))
}
