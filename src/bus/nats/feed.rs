//! A gateway's consumption of the stream: an ordered consumer from the
//! last sequence consumed + 1, every event to `hub.dispatch` under its
//! stream sequence; and, beside it, the checkpoint rounds.
//!
//! A consumer is dropped and created again, from where the last one was:
//! - at once when a new connection to NATS begins (a restarted server has
//!   lost every consumer, and the client library takes seconds to notice);
//! - when the stream has been ahead of it for [`STALL_AFTER`] with nothing
//!   arriving (a watchdog, checking every [`WATCH_EVERY`] while idle);
//! - after a pause that grows with repeated failures, when it fails (a
//!   new connection cuts the pause short).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, DeliverPolicy, StreamError};
use async_nats::jetstream::context::GetStreamError;
use async_nats::jetstream::stream::{ConsumerError, Stream};
use futures::StreamExt;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::checkpoint::Checkpoints;
use super::{parse_event, Connection, NatsBus};
use crate::hub::Hub;
use crate::metrics::Metrics;

/// Longest wait of one pull request (see `consume_from`).
const PULL_EXPIRY: Duration = Duration::from_secs(4);
/// First pause after a failure; it doubles with each failure in a row.
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Longest pause between two attempts to consume.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);
/// How often the watchdog looks at an idle consumer.
pub const WATCH_EVERY: Duration = Duration::from_millis(250);
/// How long the stream may be ahead of an idle consumer before it is
/// recreated.
pub const STALL_AFTER: Duration = Duration::from_millis(500);
/// Longest wait for the stream's state (the watchdog's request).
const WATCH_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a consumer could not go on.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("cannot reach the stream: {0}")]
    Stream(#[from] GetStreamError),
    #[error("cannot create a consumer: {0}")]
    Consumer(#[from] ConsumerError),
    #[error("cannot consume: {0}")]
    Consume(#[from] StreamError),
    #[error("the consumer failed: {0}")]
    Delivery(#[from] pull::OrderedError),
    #[error("a delivery without its stream metadata: {0}")]
    Metadata(async_nats::Error),
    #[error("the consumer ended")]
    Ended,
}

/// Why a consumer was dropped while it worked.
#[derive(Debug)]
enum Recreate {
    /// A new connection to NATS began.
    Reconnected,
    /// The stream is at `stream_last` and nothing arrives.
    Stalled { stream_last: u64 },
}

pub struct Feed {
    bus: NatsBus,
    checkpoints: Checkpoints,
    every: Duration,
    metrics: Arc<Metrics>,
}

impl Feed {
    pub(super) fn new(
        bus: NatsBus,
        checkpoints: Checkpoints,
        every: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            bus,
            checkpoints,
            every,
            metrics,
        }
    }

    /// Consumes and checkpoints until `shutdown`.
    pub async fn run(self, hub: Arc<Hub>, shutdown: CancellationToken) {
        let Feed {
            bus,
            checkpoints,
            every,
            metrics,
        } = self;
        tokio::join!(
            consume(&bus, &hub, &metrics, &shutdown),
            checkpoints.run(&hub, every, &shutdown),
        );
    }
}

async fn consume(bus: &NatsBus, hub: &Hub, metrics: &Metrics, shutdown: &CancellationToken) {
    let mut connections = bus.link().watch_connections();
    // The last stream sequence consumed, dispatched or not (a malformed
    // event is not, and must not be read again).
    let mut consumed = hub.last_seq();
    let mut failures: u32 = 0;
    loop {
        let before = consumed.max(hub.last_seq());
        let result = tokio::select! {
            () = shutdown.cancelled() => return,
            r = consume_from(bus, hub, metrics, &mut connections, &mut consumed) => r,
        };
        let progressed = consumed.max(hub.last_seq()) > before;
        failures = if progressed { 0 } else { failures + 1 };
        let pause = match result {
            Ok(Recreate::Reconnected) => {
                tracing::info!(
                    next = next_seq(hub, consumed),
                    "reconnected: recreating the stream consumer"
                );
                failures = 0;
                continue;
            }
            Ok(Recreate::Stalled { stream_last }) => {
                tracing::warn!(
                    stream_last,
                    next = next_seq(hub, consumed),
                    "the stream is ahead and nothing arrives: recreating the stream consumer"
                );
                // At once the first time; the watchdog itself takes
                // `STALL_AFTER` to notice again.
                retry_pause(failures.saturating_sub(1))
            }
            Err(e) => {
                tracing::warn!(error = %e, next = next_seq(hub, consumed), "stream consumer stopped; recreating it");
                retry_pause(failures)
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
            // A new connection: no reason to wait any longer.
            _ = connections.changed() => {}
        }
    }
}

fn next_seq(hub: &Hub, consumed: u64) -> u64 {
    consumed.max(hub.last_seq()) + 1
}

/// The pause after `failures` failures in a row (none after a success).
fn retry_pause(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    (FIRST_RETRY_PAUSE * 2u32.pow(failures.min(8))).min(MAX_RETRY_PAUSE)
}

/// One consumer's life, from the sequence after `consumed`: returns when
/// it must be recreated.
async fn consume_from(
    bus: &NatsBus,
    hub: &Hub,
    metrics: &Metrics,
    connections: &mut watch::Receiver<Connection>,
    consumed: &mut u64,
) -> Result<Recreate, FeedError> {
    let connection = connections.borrow_and_update().number;
    let start = next_seq(hub, *consumed);
    let stream = bus.js.get_stream(&bus.stream).await?;
    let last = stream.cached_info().state.last_sequence;
    if last + 1 < start {
        // Sequences only grow: the stream was deleted and created again.
        // Its new events would be taken for ones already dispatched.
        tracing::error!(
            last,
            dispatched = start - 1,
            "the stream is behind this gateway: was it recreated? restart every gateway after deleting the checkpoints bucket"
        );
    }
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            // Heartbeats follow the pull expiry: a short one lets the
            // library notice a lost consumer within seconds too.
            max_expires: PULL_EXPIRY,
            ..Default::default()
        })
        .await?;
    if last < start || consumer.cached_info().num_pending == 0 {
        // Nothing to deliver up to `last` (a tail of deleted events, say).
        *consumed = (*consumed).max(last);
        bus.link().mark_caught_up(connection);
    }
    let mut messages = consumer.messages().await?;
    tracing::info!(start, last, connection, "consuming the stream");
    let mut watchdog = Watchdog::new(*consumed);
    let mut ticks = tokio::time::interval_at(Instant::now() + WATCH_EVERY, WATCH_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = connections.changed() => {
                if changed.is_ok() {
                    return Ok(Recreate::Reconnected);
                }
                // The bus (and its sender) outlives its feed.
                return Err(FeedError::Ended);
            }
            item = messages.next() => {
                let message = item.ok_or(FeedError::Ended)??;
                let info = message.info().map_err(FeedError::Metadata)?;
                let (seq, pending) = (info.stream_sequence, info.pending);
                match parse_event(&message.payload, hub.config().max_frame) {
                    Ok(n) => hub.dispatch(seq, &n),
                    Err(e) if e.is_too_large() => {
                        metrics.bus_events_too_large.inc();
                        tracing::warn!(seq, subject = %message.subject, error = %e, "skipping an event of the stream over the frame bound");
                    }
                    Err(e) => {
                        metrics.bus_events_skipped.inc();
                        tracing::warn!(seq, subject = %message.subject, error = %e, "skipping a malformed event of the stream");
                    }
                }
                *consumed = (*consumed).max(seq);
                if pending == 0 || seq >= last {
                    bus.link().mark_caught_up(connection);
                }
            }
            _ = ticks.tick() => {
                if let Some(stream_last) = watchdog.check(bus, &stream, *consumed).await {
                    return Ok(Recreate::Stalled { stream_last });
                }
            }
        }
    }
}

/// Notices a consumer that has gone quiet while the stream moved on.
struct Watchdog {
    /// What was consumed at the last check.
    seen: u64,
    /// Checks in a row that found the stream ahead with nothing consumed.
    ahead: u32,
}

impl Watchdog {
    /// Checks in a row, [`WATCH_EVERY`] apart, that span [`STALL_AFTER`].
    const STALLED_AT: u32 = (STALL_AFTER.as_millis() / WATCH_EVERY.as_millis()) as u32 + 1;

    fn new(consumed: u64) -> Self {
        Self {
            seen: consumed,
            ahead: 0,
        }
    }

    /// `Some(the stream's last sequence)` once the stream has been ahead
    /// of `consumed` for [`STALL_AFTER`] without any progress. Asks NATS
    /// only while nothing arrives, and not while disconnected (the new
    /// connection recreates the consumer anyway).
    async fn check(&mut self, bus: &NatsBus, stream: &Stream, consumed: u64) -> Option<u64> {
        if consumed != self.seen || !bus.is_connected() {
            self.seen = consumed;
            self.ahead = 0;
            return None;
        }
        let last = match tokio::time::timeout(WATCH_TIMEOUT, stream.get_info()).await {
            Ok(Ok(info)) => info.state.last_sequence,
            // Unknown: look again at the next check.
            _ => return None,
        };
        self.observe(consumed, last).then_some(last)
    }

    /// Counts a check that found the stream at `last`; true when that
    /// makes it stalled.
    fn observe(&mut self, consumed: u64, last: u64) -> bool {
        self.ahead = if last > consumed { self.ahead + 1 } else { 0 };
        self.ahead >= Self::STALLED_AT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_with_failures_and_stay_bounded() {
        assert_eq!(retry_pause(0), Duration::ZERO);
        assert!(retry_pause(1) < retry_pause(2));
        assert!(retry_pause(1) <= Duration::from_millis(100));
        assert_eq!(retry_pause(100), MAX_RETRY_PAUSE);
    }

    #[test]
    fn the_watchdog_waits_for_the_stream_to_stay_ahead() {
        assert_eq!(Watchdog::STALLED_AT, 3, "a first look, then 500 ms");
        let mut dog = Watchdog::new(10);
        assert!(!dog.observe(10, 10), "not ahead");
        assert!(!dog.observe(10, 12));
        assert!(!dog.observe(10, 12));
        assert!(!dog.observe(10, 10), "caught up meanwhile: counts again");
        assert!(!dog.observe(10, 11));
        assert!(!dog.observe(10, 11));
        assert!(dog.observe(10, 11), "ahead at three looks in a row");
    }
}
