//! The engine's router state: what its handlers reach, and nothing of
//! the gateway's.
//!
//! Owns [`EngineState`] (the engine, the bus as it publishes to it, the
//! authenticator and counters, the trusted proxies) and what its
//! extractors take from it by `FromRef`; the engine publishes as source `engine` ([`Publish`] for
//! [`Publisher`]).

use std::sync::Arc;

use axum::extract::FromRef;

use super::error::OpError;
use super::store::{events_of, Publish};
use super::Engine;
use crate::auth::{Authenticator, Gate};
use crate::client_addr::TrustedProxies;
use crate::metrics::Metrics;
use crate::model::Notification;
use crate::publisher::Publisher;

/// The `source` label of what the engine publishes.
const SOURCE: &str = "engine";

/// What every engine route may reach.
#[derive(Clone)]
pub struct EngineState {
    pub engine: Arc<Engine>,
    pub publisher: Publisher,
    /// Verifies agent and customer tokens, and mints customer ones.
    pub auth: Arc<Authenticator>,
    pub metrics: Arc<Metrics>,
    /// Whose forwarding headers name the client (the session rate is per
    /// client address).
    pub trusted_proxies: TrustedProxies,
}

impl FromRef<EngineState> for TrustedProxies {
    fn from_ref(state: &EngineState) -> Self {
        state.trusted_proxies.clone()
    }
}

impl FromRef<EngineState> for Gate {
    fn from_ref(state: &EngineState) -> Self {
        Gate {
            authenticator: state.auth.clone(),
            metrics: state.metrics.clone(),
        }
    }
}

impl Publish for Publisher {
    async fn publish_batch(&self, batch: Vec<Notification>) -> Result<(), OpError> {
        if batch.is_empty() {
            return Ok(());
        }
        let events = events_of(&batch, self.max_frame())?;
        self.publish(events, SOURCE, None)
            .await
            .map_err(OpError::bus)
    }

    async fn publish_batch_keyed(
        &self,
        batch: Vec<Notification>,
        key: &str,
    ) -> Result<(), OpError> {
        if batch.is_empty() {
            return Ok(());
        }
        let events = events_of(&batch, self.max_frame())?;
        self.publish(events, SOURCE, Some(key))
            .await
            .map_err(OpError::bus)
    }
}
