//! The bus between upstreams (engine, HTTP ingest) and gateways.
//!
//! Semantics every implementation keeps:
//! - `publish` returns only once the bus has accepted every notification
//!   of the batch, in order; an error means the caller must treat the
//!   batch as not delivered (never a silent drop).
//! - Deliveries reach the gateway in one total order, each with a
//!   sequence number that increases along it; per session this is the
//!   upstream order. Sequence numbers are the gateway's agent stream ids,
//!   so every gateway on one bus hands out the same ids.
//! - A delivery may be repeated after a reconnect; the hub ignores a
//!   sequence it has already dispatched.
//!
//! Implementations: [`memory::MemoryBus`] (one process).

pub mod memory;

use std::sync::Arc;

use crate::model::Notification;

/// One notification as delivered to the gateway.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub seq: u64,
    pub notification: Arc<Notification>,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("the bus is shut down")]
    Closed,
    #[error("the bus did not acknowledge the publish: {0}")]
    NotAcknowledged(String),
}

/// The bus a process publishes to.
#[derive(Clone)]
pub enum Bus {
    Memory(memory::MemoryBus),
}

impl Bus {
    pub async fn publish(&self, batch: Vec<Notification>) -> Result<(), BusError> {
        match self {
            Bus::Memory(bus) => bus.publish(batch).await,
        }
    }

    /// Whether the bus can take publishes now (`/readyz`).
    pub fn is_ready(&self) -> bool {
        match self {
            Bus::Memory(bus) => bus.is_ready(),
        }
    }
}
