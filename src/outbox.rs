//! One connection's bounded outgoing queue.
//!
//! Owns the slow-consumer rule: a queue is bounded by frame count and by
//! bytes; an offer past either bound does not wait, it ends the queue as
//! slow and wakes the connection, so the fan-out never blocks on one socket.
//! The hub may also end a queue for another reason ([`Ended::Revoked`]),
//! or for all at once when the server shuts down ([`Ended::Shutdown`]:
//! what is queued is still taken, then the end).
//! A queue carries one audience's frames ([`Frame`]: agent or customer,
//! two types), reference-counted: queuing shares the bytes serialized once
//! for the whole audience, it never copies them. Its byte bound is at
//! least one frame of the frame bound (`config` sees to it), so no frame
//! the hub accepted can overflow an empty queue.
//!
//! The queue is a `VecDeque` under a mutex, not a channel: it allocates
//! nothing until the first frame (tokio's bounded channel allocates a block
//! of 32 slots, about 1.1 KiB, per connection up front), the connection
//! takes frames without a wake-up per frame, and it gives its memory back
//! after a burst. The hub pushes under its own lock, so the queue's lock
//! is only ever contended by the hub and its one connection.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::Notify;

use crate::frame::Frame;

/// Bounds of one connection's queue.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    pub frames: usize,
    pub bytes: usize,
}

/// Why the hub stopped feeding a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The queue overflowed: the client fell behind (close 1013).
    Slow,
    /// The connection may no longer receive this stream (a customer token
    /// whose subject turned out not to be the session's customer).
    Revoked,
    /// The server shuts down: the frames already queued are still taken,
    /// then the connection closes (1001).
    Shutdown,
}

/// Capacity kept by an emptied queue; a burst's larger one is given back.
const KEPT_CAPACITY: usize = 16;

/// A queued frame, with when the hub took its notification off the bus
/// (for the delivery latency metric).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued<F> {
    pub frame: F,
    pub at: Instant,
}

struct Queue<F> {
    frames: VecDeque<Queued<F>>,
    bytes: usize,
    ended: Option<Ended>,
    /// The hub let go of the connection (its [`Outbox`] dropped).
    hub_gone: bool,
    /// The connection is gone (its [`Inbox`] dropped).
    conn_gone: bool,
}

struct Shared<F> {
    queue: Mutex<Queue<F>>,
    /// Wakes the connection when its queue turns non-empty or overflows.
    wake: Notify,
    limits: QueueLimits,
}

impl<F> Shared<F> {
    fn lock(&self) -> MutexGuard<'_, Queue<F>> {
        // Nothing panics while holding this lock; keep serving if it did.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends the queue (the first reason stays) and wakes the connection;
    /// but on shutdown, frees what it holds (those frames will not be
    /// sent).
    fn end(&self, why: Ended) {
        let mut q = self.lock();
        let why = *q.ended.get_or_insert(why);
        if why != Ended::Shutdown {
            q.frames = VecDeque::new();
            q.bytes = 0;
        }
        drop(q);
        self.wake.notify_one();
    }
}

/// The hub's end: offers frames without ever waiting.
pub struct Outbox<F> {
    shared: Arc<Shared<F>>,
}

/// The connection's end: receives frames, learns of an overflow.
pub struct Inbox<F> {
    shared: Arc<Shared<F>>,
}

pub fn channel<F: Frame>(limits: QueueLimits) -> (Outbox<F>, Inbox<F>) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            frames: VecDeque::new(),
            bytes: 0,
            ended: None,
            hub_gone: false,
            conn_gone: false,
        }),
        wake: Notify::new(),
        limits: QueueLimits {
            frames: limits.frames.max(1),
            bytes: limits.bytes,
        },
    });
    (
        Outbox {
            shared: shared.clone(),
        },
        Inbox { shared },
    )
}

impl<F: Frame> Outbox<F> {
    /// Queues `frame`; returns `false` (and flags the connection) when the
    /// queue is full by count or bytes. The frame is then not queued: the
    /// connection is closed as slow and its client resumes with `since`.
    pub fn offer(&self, frame: &F, at: Instant) -> bool {
        let limits = self.shared.limits;
        let mut q = self.shared.lock();
        if q.ended.is_some() {
            return false;
        }
        if q.frames.len() >= limits.frames || q.bytes + frame.len() > limits.bytes {
            drop(q);
            self.shared.end(Ended::Slow);
            return false;
        }
        let was_empty = q.frames.is_empty();
        q.frames.push_back(Queued {
            frame: frame.clone(),
            at,
        });
        q.bytes += frame.len();
        drop(q);
        // A connection waits only after finding its queue empty, so only
        // the offer that ends that needs to wake it.
        if was_empty {
            self.shared.wake.notify_one();
        }
        true
    }

    /// Ends this connection's stream for a reason other than speed.
    pub fn revoke(&self) {
        self.shared.end(Ended::Revoked);
    }

    /// Ends this connection's stream once what is queued is sent.
    pub fn shut_down(&self) {
        self.shared.end(Ended::Shutdown);
    }

    pub fn is_overflowed(&self) -> bool {
        self.shared.lock().ended == Some(Ended::Slow)
    }

    /// Bytes queued and not yet taken by the connection.
    pub fn queued_bytes(&self) -> usize {
        self.shared.lock().bytes
    }

    /// Whether the connection has gone (its inbox dropped).
    pub fn is_closed(&self) -> bool {
        self.shared.lock().conn_gone
    }
}

impl<F> Drop for Outbox<F> {
    fn drop(&mut self) {
        self.shared.lock().hub_gone = true;
        self.shared.wake.notify_one();
    }
}

/// Learns when the hub ends a queue, without borrowing the [`Inbox`]: a
/// connection blocked writing to its socket races its write against it.
pub struct EndSignal<F> {
    shared: Arc<Shared<F>>,
}

impl<F> Clone for EndSignal<F> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<F> EndSignal<F> {
    /// Completes once the queue has ended, with the reason.
    pub async fn ended(&self) -> Ended {
        loop {
            if let Some(why) = self.shared.lock().ended {
                return why;
            }
            // An end between the check and here is kept as a permit.
            self.shared.wake.notified().await;
        }
    }
}

/// What taking a frame found.
enum Take<F> {
    Frame(Queued<F>),
    Empty,
    Ended,
}

impl<F: Frame> Inbox<F> {
    fn take(&mut self) -> Take<F> {
        let mut q = self.shared.lock();
        match q.ended {
            None | Some(Ended::Shutdown) => {}
            Some(_) => return Take::Ended,
        }
        match q.frames.pop_front() {
            Some(queued) => {
                q.bytes -= queued.frame.len();
                if q.frames.is_empty() && q.frames.capacity() > KEPT_CAPACITY {
                    q.frames.shrink_to(KEPT_CAPACITY);
                }
                Take::Frame(queued)
            }
            None if q.hub_gone || q.ended.is_some() => Take::Ended,
            None => Take::Empty,
        }
    }

    /// The next frame, or `None` once the connection overflowed (frames
    /// still queued are dropped: the client resumes past the last one it
    /// received) or the hub let go of it.
    pub async fn recv(&mut self) -> Option<Queued<F>> {
        loop {
            match self.take() {
                Take::Frame(frame) => return Some(frame),
                Take::Ended => return None,
                // A wake-up between `take` and here is kept as a permit.
                Take::Empty => self.shared.wake.notified().await,
            }
        }
    }

    /// A frame already queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Queued<F>> {
        match self.take() {
            Take::Frame(frame) => Some(frame),
            Take::Empty | Take::Ended => None,
        }
    }

    pub fn overflowed(&self) -> bool {
        self.end_reason() == Some(Ended::Slow)
    }

    /// A handle that learns when the queue ends.
    pub fn end_signal(&self) -> EndSignal<F> {
        EndSignal {
            shared: self.shared.clone(),
        }
    }

    /// Why the hub ended the queue, if it did.
    pub fn end_reason(&self) -> Option<Ended> {
        self.shared.lock().ended
    }

    /// Drops every queued frame at once (the connection is closing).
    pub fn discard(&mut self) {
        let mut q = self.shared.lock();
        q.frames = VecDeque::new();
        q.bytes = 0;
    }
}

impl<F> Drop for Inbox<F> {
    fn drop(&mut self) {
        self.shared.lock().conn_gone = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::AgentFrame;

    fn frame(text: &str) -> AgentFrame {
        AgentFrame::new("1", text)
    }

    #[tokio::test]
    async fn overflow_by_count_or_bytes_flags_without_waiting() {
        let f = frame("1");
        let len = f.len();
        let (out, mut inbox) = channel(QueueLimits {
            frames: 2,
            bytes: 100 * len,
        });
        let now = Instant::now();
        assert!(out.offer(&f, now));
        assert!(out.offer(&f, now));
        assert!(!out.offer(&f, now), "third frame exceeds the count");
        assert!(inbox.overflowed());
        assert_eq!(inbox.recv().await, None);

        let (out, mut inbox) = channel(QueueLimits {
            frames: 100,
            bytes: len + len / 2,
        });
        assert!(out.offer(&f, now));
        let got = inbox.recv().await.unwrap();
        assert_eq!((got.frame, got.at), (f.clone(), now));
        assert!(out.offer(&f, now));
        assert!(!out.offer(&f, now), "two frames exceed one and a half");
    }

    #[tokio::test]
    async fn frames_come_in_order_then_the_end_when_the_hub_lets_go() {
        let (out, mut inbox) = channel::<AgentFrame>(QueueLimits {
            frames: 10,
            bytes: 10_000,
        });
        let waiter = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(q) = inbox.recv().await {
                got.push(q.frame);
            }
            got
        });
        let sent: Vec<AgentFrame> = ["1", "2", "3"].into_iter().map(frame).collect();
        for f in &sent {
            assert!(out.offer(f, Instant::now()));
            tokio::task::yield_now().await;
        }
        assert!(!out.is_closed());
        drop(out);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, sent);
    }

    #[test]
    fn a_dropped_inbox_closes_the_outbox() {
        let (out, inbox) = channel::<AgentFrame>(QueueLimits {
            frames: 1,
            bytes: 10,
        });
        drop(inbox);
        assert!(out.is_closed());
    }

    #[tokio::test]
    async fn revoke_ends_the_queue_and_wakes_a_waiting_connection() {
        let f = frame("abc");
        let (out, mut inbox) = channel(QueueLimits {
            frames: 10,
            bytes: 10_000,
        });
        assert!(out.offer(&f, Instant::now()));
        assert_eq!(out.queued_bytes(), f.len());
        assert!(inbox.recv().await.is_some());
        let signal = inbox.end_signal();
        let watcher = tokio::spawn(async move { signal.ended().await });
        tokio::task::yield_now().await;
        out.revoke();
        assert_eq!(watcher.await.unwrap(), Ended::Revoked);
        assert_eq!(
            inbox.recv().await,
            None,
            "a revoked queue hands out nothing more"
        );
        assert_eq!(inbox.end_reason(), Some(Ended::Revoked));
        assert!(!out.offer(&f, Instant::now()));
        assert!(!out.is_overflowed(), "the first reason stays");
    }

    #[tokio::test]
    async fn on_shutdown_what_is_queued_is_still_taken_then_the_end() {
        let (out, mut inbox) = channel(QueueLimits {
            frames: 10,
            bytes: 10_000,
        });
        let (a, b) = (frame("a"), frame("b"));
        assert!(out.offer(&a, Instant::now()) && out.offer(&b, Instant::now()));
        out.shut_down();
        assert!(!out.offer(&a, Instant::now()), "nothing new");
        assert_eq!(inbox.recv().await.map(|q| q.frame), Some(a));
        assert_eq!(inbox.recv().await.map(|q| q.frame), Some(b));
        assert_eq!(inbox.recv().await, None);
        assert_eq!(inbox.end_reason(), Some(Ended::Shutdown));
    }

    #[test]
    fn discard_releases_queued_frames() {
        let f = frame("abcd");
        let (out, mut inbox) = channel(QueueLimits {
            frames: 10,
            bytes: 10_000,
        });
        assert!(out.offer(&f, Instant::now()) && out.offer(&f, Instant::now()));
        assert_eq!(out.queued_bytes(), 2 * f.len());
        inbox.discard();
        assert_eq!(out.queued_bytes(), 0);
        assert!(inbox.try_recv().is_none());
    }
}
