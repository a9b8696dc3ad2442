//! Publishing as an upstream: the one way the engine and the HTTP ingest
//! put notifications on the bus.
//!
//! Owns the counting of what upstreams publish: every notification the bus
//! accepted, by source (`chatgate_notifications_in_total`), and every
//! batch it refused (`chatgate_bus_publish_errors_total`). What a publish
//! promises is the bus's (`bus`).

use std::sync::Arc;

use crate::bus::{Bus, BusError};
use crate::metrics::Metrics;
use crate::model::Notification;

/// The bus, as upstreams publish to it.
#[derive(Clone)]
pub struct Publisher {
    bus: Bus,
    metrics: Arc<Metrics>,
}

impl Publisher {
    pub fn new(bus: Bus, metrics: Arc<Metrics>) -> Self {
        Self { bus, metrics }
    }

    /// The bus itself (its readiness, say).
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Publishes a batch (with an idempotency key, see
    /// `Bus::publish_keyed`), counting it as coming from `source`.
    pub async fn publish(
        &self,
        batch: Vec<Notification>,
        source: &str,
        key: Option<&str>,
    ) -> Result<(), BusError> {
        let n = batch.len() as u64;
        self.bus
            .publish_keyed(batch, key)
            .await
            .inspect_err(|_| self.metrics.bus_publish_errors.inc())?;
        self.metrics.notifications_in.add(source, n);
        Ok(())
    }
}
