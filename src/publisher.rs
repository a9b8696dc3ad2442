//! Publishing as an upstream: the one way the engine and the HTTP ingest
//! put notifications on the bus.
//!
//! Owns the counting of what upstreams publish: every notification the bus
//! accepted, by source (`chatgate_notifications_in_total`), and every
//! batch it refused (`chatgate_bus_publish_errors_total`). What a publish
//! promises is the bus's (`bus`).

use std::sync::Arc;

use crate::bus::{Bus, BusError};
use crate::event::Event;
use crate::metrics::Metrics;

/// The bus, as upstreams publish to it.
#[derive(Clone)]
pub struct Publisher {
    bus: Bus,
    metrics: Arc<Metrics>,
    /// The frame bound every published notification fits in.
    max_frame: usize,
}

impl Publisher {
    pub fn new(bus: Bus, metrics: Arc<Metrics>, max_frame: usize) -> Self {
        Self {
            bus,
            metrics,
            max_frame,
        }
    }

    /// The frame bound (`CHATGATE_MAX_FRAME_BYTES`) what is published must
    /// fit in.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// The bus itself (its readiness, say).
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// Publishes a batch (with an idempotency key, see
    /// `Bus::publish_keyed`), counting it as coming from `source`.
    pub async fn publish(
        &self,
        batch: Vec<Event>,
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
