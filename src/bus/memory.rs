//! The in-process bus: a bounded channel from publishers to this process's
//! hub, numbered under one lock so that sequence order is delivery order.
//! A full channel makes publishers wait (back-pressure on the upstream),
//! it never drops.

use std::sync::Arc;

use tokio::sync::{mpsc, Mutex};

use super::{BusError, Delivery};
use crate::event::Event;

#[derive(Clone)]
pub struct MemoryBus {
    /// The last sequence handed out, and the sender it is handed to: one
    /// lock, so two publishers cannot interleave out of sequence order.
    tx: Arc<Mutex<(u64, mpsc::Sender<Delivery>)>>,
}

impl MemoryBus {
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<Delivery>) {
        let (tx, rx) = mpsc::channel(capacity);
        (
            Self {
                tx: Arc::new(Mutex::new((0, tx))),
            },
            rx,
        )
    }

    pub async fn publish(&self, batch: Vec<Event>) -> Result<(), BusError> {
        let mut guard = self.tx.lock().await;
        for event in batch {
            let seq = guard.0 + 1;
            let delivery = Delivery {
                seq,
                event: Arc::new(event),
            };
            guard.1.send(delivery).await.map_err(|_| BusError::Closed)?;
            guard.0 = seq;
        }
        Ok(())
    }

    pub fn is_ready(&self) -> bool {
        self.tx.try_lock().map_or(true, |g| !g.1.is_closed())
    }
}
