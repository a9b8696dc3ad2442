//! One connection's bounded outgoing queue.
//!
//! Owns the slow-consumer rule: a queue is bounded by frame count and by
//! bytes; an offer past either bound does not wait, it marks the connection
//! as overflowed and wakes it, so the fan-out never blocks on one socket.
//! Frames are `Utf8Bytes` (reference-counted): queuing a frame shares the
//! bytes serialized once for the whole audience, it never copies them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{mpsc, Notify};

/// Bounds of one connection's queue.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    pub frames: usize,
    pub bytes: usize,
}

struct Shared {
    queued_bytes: AtomicUsize,
    overflowed: AtomicBool,
    wake: Notify,
    max_bytes: usize,
}

/// A queued frame, with when the hub took its notification off the bus
/// (for the delivery latency metric).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub frame: Utf8Bytes,
    pub at: Instant,
}

/// The hub's end: offers frames without ever waiting.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Queued>,
    shared: Arc<Shared>,
}

/// The connection's end: receives frames, learns of an overflow.
pub struct Inbox {
    rx: mpsc::Receiver<Queued>,
    shared: Arc<Shared>,
}

pub fn channel(limits: QueueLimits) -> (Outbox, Inbox) {
    let (tx, rx) = mpsc::channel(limits.frames.max(1));
    let shared = Arc::new(Shared {
        queued_bytes: AtomicUsize::new(0),
        overflowed: AtomicBool::new(false),
        wake: Notify::new(),
        max_bytes: limits.bytes,
    });
    (
        Outbox {
            tx,
            shared: shared.clone(),
        },
        Inbox { rx, shared },
    )
}

impl Outbox {
    /// Queues `frame`; returns `false` (and flags the connection) when the
    /// queue is full by count or bytes. The frame is then not queued: the
    /// connection is closed as slow and its client resumes with `since`.
    pub fn offer(&self, frame: &Utf8Bytes, at: Instant) -> bool {
        if self.is_overflowed() {
            return false;
        }
        let len = frame.len();
        let queued = self.shared.queued_bytes.fetch_add(len, Ordering::AcqRel) + len;
        let item = Queued {
            frame: frame.clone(),
            at,
        };
        if queued > self.shared.max_bytes || self.tx.try_send(item).is_err() {
            self.shared.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            self.mark_overflowed();
            return false;
        }
        true
    }

    fn mark_overflowed(&self) {
        self.shared.overflowed.store(true, Ordering::Release);
        self.shared.wake.notify_one();
    }

    pub fn is_overflowed(&self) -> bool {
        self.shared.overflowed.load(Ordering::Acquire)
    }

    /// Whether the connection has gone (its inbox dropped).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl Inbox {
    /// The next frame, or `None` once the connection overflowed (frames
    /// still queued are dropped: the client resumes past the last one it
    /// received) or the hub let go of it.
    pub async fn recv(&mut self) -> Option<Queued> {
        loop {
            if self.shared.overflowed.load(Ordering::Acquire) {
                return None;
            }
            tokio::select! {
                biased;
                () = self.shared.wake.notified() => continue,
                frame = self.rx.recv() => {
                    let queued = frame?;
                    self.shared.queued_bytes.fetch_sub(queued.frame.len(), Ordering::AcqRel);
                    return Some(queued);
                }
            }
        }
    }

    /// A frame already queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Queued> {
        if self.shared.overflowed.load(Ordering::Acquire) {
            return None;
        }
        let queued = self.rx.try_recv().ok()?;
        self.shared
            .queued_bytes
            .fetch_sub(queued.frame.len(), Ordering::AcqRel);
        Some(queued)
    }

    pub fn overflowed(&self) -> bool {
        self.shared.overflowed.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn overflow_by_count_or_bytes_flags_without_waiting() {
        let (out, mut inbox) = channel(QueueLimits {
            frames: 2,
            bytes: 1000,
        });
        let f = Utf8Bytes::from_static("abc");
        let now = Instant::now();
        assert!(out.offer(&f, now));
        assert!(out.offer(&f, now));
        assert!(!out.offer(&f, now), "third frame exceeds the count");
        assert!(inbox.overflowed());
        assert_eq!(inbox.recv().await, None);

        let (out, mut inbox) = channel(QueueLimits {
            frames: 100,
            bytes: 5,
        });
        assert!(out.offer(&f, now));
        let got = inbox.recv().await.unwrap();
        assert_eq!((got.frame.as_str(), got.at), ("abc", now));
        assert!(out.offer(&f, now));
        assert!(!out.offer(&f, now), "6 bytes exceed 5");
    }
}
