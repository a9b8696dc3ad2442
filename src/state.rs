//! What every handler of the process may reach: [`AppState`], shared as
//! [`SharedState`].
//!
//! Owns the process's long-lived parts (settings, authenticator, hub,
//! bus, counters, limits, the engine when it runs one) and the one way an
//! upstream handler publishes onto the bus ([`AppState::publish`]). It
//! builds nothing: `server` does.

use std::sync::Arc;

use axum::extract::FromRef;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Authenticator, Gate};
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
    pub auth: Arc<Authenticator>,
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

/// What the `Authenticated` extractor needs of it.
impl FromRef<SharedState> for Gate {
    fn from_ref(state: &SharedState) -> Self {
        Gate {
            authenticator: state.auth.clone(),
            metrics: state.metrics.clone(),
        }
    }
}
