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
//! Implementations: [`memory::MemoryBus`] (one process) and
//! [`nats::NatsBus`] (NATS JetStream: many gateways and engines; its
//! module doc says how gateways start, checkpoint and recover).
//! A [`Feed`] is what drives this process's hub from the bus.

pub mod memory;
pub mod nats;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::event::Event;
use crate::hub::Hub;

/// One notification as delivered to the gateway.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub seq: u64,
    pub event: Arc<Event>,
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
    Nats(Box<nats::NatsBus>),
}

impl Bus {
    pub async fn publish(&self, batch: Vec<Event>) -> Result<(), BusError> {
        self.publish_keyed(batch, None).await
    }

    /// Publishes with an idempotency key: on the NATS bus, a batch
    /// published again with the same key within the duplicate window is
    /// stored once (each notification is identified as `<key>:<index>`),
    /// so a caller may retry a publish that failed without duplicating it.
    /// The in-memory bus cannot fail ambiguously and ignores the key.
    pub async fn publish_keyed(
        &self,
        batch: Vec<Event>,
        key: Option<&str>,
    ) -> Result<(), BusError> {
        match self {
            Bus::Memory(bus) => bus.publish(batch).await,
            Bus::Nats(bus) => bus.publish(batch, key).await,
        }
    }

    /// Whether the bus can take publishes now (`/readyz`).
    pub fn is_ready(&self) -> bool {
        match self {
            Bus::Memory(bus) => bus.is_ready(),
            Bus::Nats(bus) => bus.is_ready(),
        }
    }
}

/// What drives this process's hub, run until shutdown.
pub enum Feed {
    /// Deliveries of the in-memory bus.
    Memory(mpsc::Receiver<Delivery>),
    /// A gateway's consumption of the JetStream stream (and its
    /// checkpoints); ends on shutdown, after a last checkpoint.
    Nats(Box<nats::Feed>),
    /// Nothing: an engine-only process has no hub to feed.
    None,
}

impl Feed {
    pub async fn run(self, hub: Arc<Hub>, shutdown: CancellationToken) {
        match self {
            Feed::Memory(mut deliveries) => {
                // Until the process ends: publishers in flight at shutdown
                // must not wait on a full channel.
                while let Some(d) = deliveries.recv().await {
                    hub.dispatch(d.seq, &d.event);
                }
            }
            Feed::Nats(feed) => feed.run(hub, shutdown).await,
            Feed::None => {}
        }
    }
}
