//! What every handler of the process may reach: [`AppState`], shared as
//! [`SharedState`].
//!
//! Owns the process's long-lived parts (settings, authenticator, hub,
//! bus, counters, limits, the engine's state when it runs one) and the
//! gateway's way to publish onto the bus ([`AppState::publish`], for the
//! ingest). It builds nothing: `server` does.

use std::sync::Arc;

use axum::extract::FromRef;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Authenticator, Gate};
use crate::client_addr::TrustedProxies;
use crate::config::Config;
use crate::engine::EngineState;
use crate::error::AppError;
use crate::event::Event;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::publisher::Publisher;

pub type SharedState = Arc<AppState>;

/// What every handler may reach.
pub struct AppState {
    pub config: Config,
    pub auth: Arc<Authenticator>,
    pub hub: Arc<Hub>,
    /// The bus, as upstreams (the ingest, the engine) publish to it.
    pub publisher: Publisher,
    pub metrics: Arc<Metrics>,
    /// Open WebSocket connections per client address (`limits`).
    pub address_limiter: crate::limits::AddressLimiter,
    /// Whose forwarding headers name the client (`client_addr`).
    pub trusted_proxies: TrustedProxies,
    /// The session engine and its routes' state (roles `all` and `engine`).
    pub engine: Option<EngineState>,
    /// Cancelled on shutdown: connections close with 1001.
    pub shutdown: CancellationToken,
    /// Tracks connection tasks, so shutdown can wait for them.
    pub tracker: TaskTracker,
}

impl AppState {
    /// Publishes a batch to the bus, counting it by source.
    pub async fn publish(&self, batch: Vec<Event>, source: &str) -> Result<(), AppError> {
        self.publish_keyed(batch, source, None).await
    }

    /// [`AppState::publish`] with an idempotency key (see `Bus::publish_keyed`).
    pub async fn publish_keyed(
        &self,
        batch: Vec<Event>,
        source: &str,
        key: Option<&str>,
    ) -> Result<(), AppError> {
        Ok(self.publisher.publish(batch, source, key).await?)
    }
}

/// What the `ClientAddr` extractor needs of it.
impl FromRef<SharedState> for TrustedProxies {
    fn from_ref(state: &SharedState) -> Self {
        state.trusted_proxies.clone()
    }
}

/// What the `Authenticated` extractor needs of it.
impl FromRef<SharedState> for Gate {
    fn from_ref(state: &SharedState) -> Self {
        Gate {
            authenticator: state.auth.clone(),
            metrics: state.metrics.clone(),
        }
    }
}
