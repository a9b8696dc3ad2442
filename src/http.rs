//! HTTP surface: the router of the process.
//!
//! Owns `router(state) -> Router` (every route of the process, so tests can
//! drive it), the health, readiness, metrics and dev-token endpoints.
//! Refusals are `error`'s [`AppError`]; WebSocket handling is in `ws`,
//! ingest in `ingest`.

use axum::extract::rejection::QueryRejection;
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
        .route("/openapi.json", get(crate::openapi::serve))
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

#[utoipa::path(get, path = "/healthz", tag = "ops", summary = "Liveness",
    responses((status = 200, description = "The process serves", content_type = "text/plain", body = String, example = "ok")))]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(get, path = "/readyz", tag = "ops", summary = "Readiness",
    responses(
        (status = 200, description = "The bus is ready and the process is not shutting down", content_type = "text/plain", body = String, example = "ready"),
        (status = 503, description = "Not ready: the bus is not, or shutdown began", content_type = "text/plain", body = String, example = "not ready"),
    ))]
pub(crate) async fn readyz(State(state): State<SharedState>) -> Response {
    if state.publisher.bus().is_ready() && !state.shutdown.is_cancelled() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

#[utoipa::path(get, path = "/metrics", tag = "ops", summary = "Prometheus metrics",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String)))]
pub(crate) async fn metrics(State(state): State<SharedState>) -> Response {
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

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DevTokenQuery {
    /// The token's role.
    #[param(inline, value_type = String, pattern = "^(agent|customer|supervisor|service)$")]
    role: Role,
    sub: String,
    sid: Option<String>,
    ttl: Option<u64>,
}

/// Dev mode only (no secret, loopback): mints a demo token.
#[utoipa::path(get, path = "/dev/token", tag = "ops", summary = "A demo token (dev mode only)",
    description = "Served only without CHATGATE_JWT_SECRET, on a loopback address. `ttl` in seconds, default 8 hours, at most 7 days.",
    params(DevTokenQuery),
    responses(
        (status = 200, description = "A token", body = crate::openapi::DevToken),
        (status = 400, description = "A bad query: an unknown role, no sub, a customer without sid", body = crate::openapi::GatewayError),
    ))]
pub(crate) async fn dev_token(
    State(state): State<SharedState>,
    query: Result<Query<DevTokenQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, AppError> {
    // A bad query is answered in the gateway's JSON, as every refusal.
    let Query(q) = query.map_err(|e| AppError::BadRequest(e.body_text()))?;
    if q.role == Role::Customer && q.sid.is_none() {
        return Err(AppError::BadRequest("a customer token needs sid".into()));
    }
    let ttl = q.ttl.unwrap_or(8 * 3600).min(7 * 24 * 3600);
    let token = state.auth.mint(q.role, &q.sub, q.sid.as_deref(), ttl);
    Ok(Json(json!({ "token": token })))
}
