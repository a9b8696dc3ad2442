//! HTTP surface: the router of the process.
//!
//! Owns `router(state) -> Router` (every route of the process, so tests can
//! drive it), the health, readiness, metrics and dev-token endpoints.
//! Refusals are `error`'s [`AppError`]; WebSocket handling is in `ws`,
//! ingest in `ingest`.

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Role;
use crate::error::AppError;
use crate::state::SharedState;

/// Every route of the process: the gateway's, and the engine's when it runs one.
pub fn router(state: SharedState) -> Router {
    let ingest_limit = state.config.ingest_max_bytes;
    let mut router = Router::new();
    if state.config.role.serves_clients() {
        router = router
            .route("/ws", get(crate::ws::ws_handler))
            .merge(crate::bayeux::router(state.clone()));
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
    let engine = state.engine.clone();
    let router = router.with_state(state);
    match engine {
        Some(engine) => router.merge(crate::engine::router().with_state(engine)),
        None => router,
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<SharedState>) -> Response {
    if state.publisher.bus().is_ready() && !state.shutdown.is_cancelled() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

async fn metrics(State(state): State<SharedState>) -> Response {
    let open = state.hub.connections_by_role();
    let stats = state.hub.stats();
    state
        .metrics
        .set_hub_gauges(stats.sessions, stats.retained_bytes);
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
