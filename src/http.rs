//! HTTP surface: the router, shared state, and how errors become responses.
//!
//! Owns `router(state) -> Router` (every route of the process, so tests can
//! drive it), the health, readiness, metrics and dev-token endpoints.
//! Refusals are `error`'s [`AppError`]; WebSocket handling is in `ws`,
//! ingest in `ingest`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{bearer_token, AuthError, Authenticator, Principal, Role};
use crate::bus::Bus;
use crate::config::Config;
use crate::error::AppError;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::model::Notification;

pub type SharedState = Arc<AppState>;

/// What every handler may reach.
pub struct AppState {
    pub config: Config,
    pub auth: Authenticator,
    pub hub: Arc<Hub>,
    pub bus: Bus,
    pub metrics: Arc<Metrics>,
    /// Open WebSocket connections per client address (`limits`).
    pub address_limiter: crate::limits::AddressLimiter,
    /// The session engine (roles `all` and `engine`).
    pub engine: Option<Arc<crate::engine::Engine>>,
    /// Cancelled on shutdown: connections close with 1001.
    pub shutdown: CancellationToken,
    /// Tracks connection tasks, so shutdown can wait for them.
    pub tracker: TaskTracker,
}

impl AppState {
    /// Publishes a batch to the bus, counting it by source.
    pub async fn publish(&self, batch: Vec<Notification>, source: &str) -> Result<(), AppError> {
        self.publish_keyed(batch, source, None).await
    }

    /// [`AppState::publish`] with an idempotency key (see `Bus::publish_keyed`).
    pub async fn publish_keyed(
        &self,
        batch: Vec<Notification>,
        source: &str,
        key: Option<&str>,
    ) -> Result<(), AppError> {
        let n = batch.len();
        self.bus.publish_keyed(batch, key).await.map_err(|e| {
            self.metrics.bus_publish_errors.inc();
            AppError::Bus(e)
        })?;
        for _ in 0..n {
            self.metrics.notifications_in.inc(source);
        }
        Ok(())
    }
}

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
