//! One Bayeux client (a `clientId`): its hub attachment and its deliveries.
//!
//! Owns what a client has between its requests: the hub's queue and
//! backlog for its party (the same [`Attachment`] as a `/ws` connection,
//! so the same views and bounds), whether it subscribed, the batches not
//! yet acknowledged (the ack extension), and the one `/meta/connect` held
//! at a time. Both transports deliver through [`Client::connect`].
//!
//! Bounds: a response carries at most [`MAX_MESSAGES`] notifications and,
//! past its first one, no more than the frame bound in bytes; what a client
//! has not acknowledged counts against its queue's bounds, so a client
//! that never acknowledges is, like one that falls behind, told to
//! handshake again (and resumes with `since`).

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::message::{self, Request};
use crate::auth::Principal;
use crate::frame::Frame;
use crate::hub::{Attached, Attachment, Backlog, Registration};
use crate::limits::AddressPermit;
use crate::outbox::{Ended, Inbox, QueueLimits};

/// Notifications per response.
pub const MAX_MESSAGES: usize = 64;

/// A client's subscription to the one channel there is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subscription {
    /// Not yet: what the hub queues waits for it (the snapshot included).
    Pending,
    Subscribed,
    /// Unsubscribed: what the hub queues is dropped.
    Unsubscribed,
}

struct Status {
    subscription: Subscription,
    /// The last request that named this client, or the end of its last
    /// connect: `maxInterval` counts from there.
    last_seen: Instant,
    /// Connects in progress (a client with one is never expired).
    polling: usize,
    /// Whether a connect has been answered already (the first is at once).
    connected: bool,
    /// Disconnected or expired.
    gone: bool,
}

/// One audience's hub feed, behind an object-safe face.
trait Feed: Send {
    /// The next frame owed now: the backlog first, then the queue.
    fn try_next(&mut self) -> Option<Bytes>;
    /// Completes once a frame is owed or the queue has ended.
    fn ready(&mut self) -> BoxFuture<'_, ()>;
    /// Why the hub stopped feeding, once nothing more will come.
    fn end(&self) -> Option<Ended>;
    /// Drops what is queued (an unsubscribed client).
    fn discard(&mut self);
}

struct FeedOf<F: Frame> {
    inbox: Inbox<F>,
    backlog: Option<Backlog<F>>,
    /// A frame `ready` took off the queue.
    peeked: Option<F>,
    /// The queue gave its last frame.
    finished: bool,
    /// Dropped with the client: the hub then frees its queue.
    _registration: Registration,
}

impl<F: Frame> FeedOf<F> {
    fn new(a: Attachment<F>) -> Self {
        Self {
            inbox: a.inbox,
            backlog: Some(a.backlog),
            peeked: None,
            finished: false,
            _registration: a.registration,
        }
    }
}

impl<F: Frame> Feed for FeedOf<F> {
    fn try_next(&mut self) -> Option<Bytes> {
        loop {
            let frame = match self.peeked.take() {
                Some(f) => f,
                None => match self.backlog.as_mut().map(Iterator::next) {
                    Some(Some(f)) => f,
                    Some(None) => {
                        self.backlog = None;
                        continue;
                    }
                    None => self.inbox.try_recv()?.frame,
                },
            };
            match message::notification(frame.bytes()) {
                Some(n) => return Some(n),
                None => tracing::error!("a hub frame that is no notification, not sent"),
            }
        }
    }

    fn ready(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if self.peeked.is_some() || self.backlog.is_some() || self.finished {
                return;
            }
            match self.inbox.recv().await {
                Some(q) => self.peeked = Some(q.frame),
                None => self.finished = true,
            }
        })
    }

    fn end(&self) -> Option<Ended> {
        let why = self.inbox.end_reason();
        match why {
            Some(Ended::Slow | Ended::Revoked) => why,
            // The hub let go of the queue without a reason: it is gone.
            _ if self.finished => Some(why.unwrap_or(Ended::Revoked)),
            _ => None,
        }
    }

    fn discard(&mut self) {
        self.peeked = None;
        self.backlog = None;
        self.inbox.discard();
    }
}

/// A batch of notifications sent and not yet acknowledged.
struct Batch {
    number: i64,
    messages: Vec<Bytes>,
}

/// What one connect at a time works on.
struct Stream {
    feed: Box<dyn Feed>,
    /// A notification taken off the feed that did not fit the last response.
    carry: Option<Bytes>,
    unacked: VecDeque<Batch>,
    unacked_bytes: usize,
    unacked_count: usize,
    /// The number of the last batch sent.
    batch: i64,
}

impl Stream {
    /// Forgets the batches up to `number`: the client has them.
    fn acknowledge(&mut self, number: i64) {
        while self.unacked.front().is_some_and(|b| b.number <= number) {
            if let Some(b) = self.unacked.pop_front() {
                self.unacked_count -= b.messages.len();
                self.unacked_bytes -= b.messages.iter().map(Bytes::len).sum::<usize>();
            }
        }
    }

    /// Takes what is owed now, within a response's bounds.
    fn take(&mut self, max_bytes: usize) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut bytes = 0;
        while out.len() < MAX_MESSAGES {
            let Some(n) = self.carry.take().or_else(|| self.feed.try_next()) else {
                break;
            };
            if !out.is_empty() && bytes + n.len() > max_bytes {
                self.carry = Some(n);
                break;
            }
            bytes += n.len();
            out.push(n);
        }
        out
    }
}

/// Settings a connect runs with.
#[derive(Debug, Clone, Copy)]
pub struct ConnectLimits {
    /// The longest a connect is held.
    pub timeout: Duration,
    /// Bytes of notifications per response (the frame bound).
    pub max_bytes: usize,
    /// What a client may hold unacknowledged (its queue's bounds).
    pub queue: QueueLimits,
}

/// How a client's life ends, from a connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Fell behind its bounded queue: handshake again, with `since`.
    Slow,
    /// The token expired.
    Expired,
    /// The hub revoked the stream (not this session's customer).
    Revoked,
    /// The server shuts down.
    Shutdown,
    /// Disconnected, or expired after `maxInterval`.
    Gone,
}

/// A connect's answer: notifications, then the reply; with `Some` ending,
/// the client is to be removed.
pub struct Delivery {
    pub messages: Vec<Bytes>,
    pub reply: Value,
    pub ending: Option<Ending>,
}

pub struct Client {
    pub id: Box<str>,
    pub principal: Principal,
    /// The client asked for the ack extension at its handshake.
    ack: bool,
    stream: tokio::sync::Mutex<Stream>,
    status: Mutex<Status>,
    /// Wakes a held connect: a subscription, a newer connect, the end.
    wake: Notify,
    /// Counts connects, so that a held one knows a newer one came.
    generation: AtomicU64,
    /// When the token runs out.
    expiry: Instant,
    /// The address's connection slot, for the client's life.
    _permit: AddressPermit,
}

impl Client {
    pub fn new(
        id: Box<str>,
        principal: Principal,
        attached: Attached,
        ack: bool,
        expiry: Instant,
        permit: AddressPermit,
    ) -> Self {
        let feed: Box<dyn Feed> = match attached {
            Attached::Agent(a) => Box::new(FeedOf::new(a)),
            Attached::Customer(a) => Box::new(FeedOf::new(a)),
        };
        Self {
            id,
            principal,
            ack,
            stream: tokio::sync::Mutex::new(Stream {
                feed,
                carry: None,
                unacked: VecDeque::new(),
                unacked_bytes: 0,
                unacked_count: 0,
                batch: 0,
            }),
            status: Mutex::new(Status {
                subscription: Subscription::Pending,
                last_seen: Instant::now(),
                polling: 0,
                connected: false,
                gone: false,
            }),
            wake: Notify::new(),
            generation: AtomicU64::new(0),
            expiry,
            _permit: permit,
        }
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn ack_enabled(&self) -> bool {
        self.ack
    }

    /// A request named this client.
    pub fn touch(&self) {
        self.status().last_seen = Instant::now();
    }

    pub fn token_expired(&self) -> bool {
        Instant::now() >= self.expiry
    }

    /// Whether the client has gone `max_interval` without a connect.
    pub fn idle_for(&self, max_interval: Duration) -> bool {
        let s = self.status();
        s.polling == 0 && s.last_seen.elapsed() > max_interval
    }

    pub fn subscribe(&self) {
        self.status().subscription = Subscription::Subscribed;
        self.wake.notify_waiters();
    }

    pub fn unsubscribe(&self) {
        self.status().subscription = Subscription::Unsubscribed;
        self.wake.notify_waiters();
    }

    /// Ends the client (disconnect, expiry): a held connect returns.
    pub fn end(&self) {
        self.status().gone = true;
        self.wake.notify_waiters();
    }

    /// Answers a `/meta/connect`: at once with what is owed, else when
    /// something comes, or after the timeout. A newer connect of the same
    /// client answers this one at once, empty.
    pub async fn connect(
        &self,
        req: &Request,
        limits: ConnectLimits,
        shutdown: &CancellationToken,
    ) -> Delivery {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.wake.notify_waiters();
        let first = {
            let mut s = self.status();
            s.polling += 1;
            s.last_seen = Instant::now();
            !std::mem::replace(&mut s.connected, true)
        };
        let _polling = Polling(self);
        let mut stream = self.stream.lock().await;
        if self.ack {
            if let Some(n) = req.ack() {
                stream.acknowledge(n);
            }
        }
        // The first connect is answered at once (as CometD servers do),
        // and so is one whose client asks for no wait.
        let timeout = match (first, req.advised_timeout()) {
            (true, _) => Duration::ZERO,
            (false, Some(ms)) => Duration::from_millis(ms).min(limits.timeout),
            (false, None) => limits.timeout,
        };
        let deadline = Instant::now() + timeout;
        let fresh = loop {
            let woken = self.wake.notified();
            let mut woken = pin!(woken);
            woken.as_mut().enable();
            if shutdown.is_cancelled() {
                return ended(req, Ending::Shutdown);
            }
            if let Some(ending) = self.ending_now(&stream) {
                return ended(req, ending);
            }
            let (subscription, displaced) = (
                self.status().subscription,
                self.generation.load(Ordering::SeqCst) != generation,
            );
            if subscription == Subscription::Unsubscribed {
                stream.carry = None;
                stream.feed.discard();
            }
            let fresh = match subscription {
                Subscription::Subscribed => stream.take(limits.max_bytes),
                _ => Vec::new(),
            };
            let now = Instant::now();
            if !fresh.is_empty() || !stream.unacked.is_empty() || now >= deadline || displaced {
                break fresh;
            }
            let feed_ready = subscription == Subscription::Subscribed;
            let until = deadline.min(self.expiry);
            tokio::select! {
                () = stream.feed.ready(), if feed_ready => {}
                () = woken => {}
                () = sleep_until(until) => {}
                () = shutdown.cancelled() => {}
            }
        };
        self.deliver(req, &mut stream, fresh, limits)
    }

    /// Why the client ends now, if it does.
    fn ending_now(&self, stream: &Stream) -> Option<Ending> {
        if self.status().gone {
            return Some(Ending::Gone);
        }
        if self.token_expired() {
            return Some(Ending::Expired);
        }
        match stream.feed.end() {
            Some(Ended::Slow) => Some(Ending::Slow),
            Some(Ended::Revoked) => Some(Ending::Revoked),
            Some(Ended::Shutdown) => Some(Ending::Shutdown),
            None => None,
        }
    }

    /// The response: with the ack extension, every batch not yet
    /// acknowledged (a lost response's again) and the new one.
    fn deliver(
        &self,
        req: &Request,
        stream: &mut Stream,
        fresh: Vec<Bytes>,
        limits: ConnectLimits,
    ) -> Delivery {
        let mut reply = message::success(req);
        reply.insert(
            "advice".into(),
            json!({"reconnect": "retry", "interval": 0,
                   "timeout": limits.timeout.as_millis() as u64}),
        );
        if !self.ack {
            return Delivery {
                messages: fresh,
                reply: Value::Object(reply),
                ending: None,
            };
        }
        if !fresh.is_empty() {
            stream.batch += 1;
            stream.unacked_count += fresh.len();
            stream.unacked_bytes += fresh.iter().map(Bytes::len).sum::<usize>();
            stream.unacked.push_back(Batch {
                number: stream.batch,
                messages: fresh,
            });
        }
        if stream.unacked_count > limits.queue.frames || stream.unacked_bytes > limits.queue.bytes {
            return ended(req, Ending::Slow);
        }
        let messages = stream
            .unacked
            .iter()
            .flat_map(|b| b.messages.iter().cloned())
            .collect();
        reply.insert("ext".into(), json!({"ack": stream.batch}));
        Delivery {
            messages,
            reply: Value::Object(reply),
            ending: None,
        }
    }
}

/// Counts a connect in progress, for expiry.
struct Polling<'a>(&'a Client);

impl Drop for Polling<'_> {
    fn drop(&mut self) {
        let mut s = self.0.status();
        s.polling -= 1;
        s.last_seen = Instant::now();
    }
}

/// The reply of a connect that ends its client.
fn ended(req: &Request, ending: Ending) -> Delivery {
    let reply = match ending {
        Ending::Slow => message::refuse(
            req,
            409,
            "the client fell behind: handshake again with since and epoch",
            Some(message::handshake_again()),
        ),
        Ending::Expired => {
            message::refuse(req, 401, "token expired", Some(message::no_reconnect()))
        }
        Ending::Revoked => message::refuse(
            req,
            403,
            "the token's subject is not the customer of this session",
            Some(message::no_reconnect()),
        ),
        Ending::Shutdown => message::refuse(
            req,
            503,
            "server shutting down: handshake again with since and epoch",
            Some(json!({"reconnect": "handshake", "interval": 1000})),
        ),
        Ending::Gone => message::refuse(req, 402, "unknown client", Some(message::no_reconnect())),
    };
    Delivery {
        messages: Vec::new(),
        reply,
        ending: Some(ending),
    }
}
