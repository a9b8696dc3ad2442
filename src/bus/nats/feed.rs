//! A gateway's consumption of the stream: an ordered consumer from the
//! hub's last sequence + 1, every event to `hub.dispatch` under its stream
//! sequence, recreated (after a pause that grows with repeated failures)
//! whenever it fails or NATS goes away; and, beside it, the checkpoint
//! rounds.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::checkpoint::Checkpoints;
use super::{parse_event, NatsBus};
use crate::hub::Hub;
use crate::metrics::Metrics;

/// Longest wait of one pull request (see `consume_from`).
const PULL_EXPIRY: Duration = Duration::from_secs(4);
/// Longest pause between two attempts to consume.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);

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
    let mut failures: u32 = 0;
    loop {
        let start = hub.last_seq() + 1;
        let before = hub.last_seq();
        let result = tokio::select! {
            () = shutdown.cancelled() => return,
            r = consume_from(bus, hub, metrics, start) => r,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, next = hub.last_seq() + 1, "stream consumer stopped; recreating it");
        }
        failures = if hub.last_seq() > before {
            0
        } else {
            failures + 1
        };
        let pause = (Duration::from_millis(100) * 2u32.pow(failures.min(6))).min(MAX_RETRY_PAUSE);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// One consumer's life: returns when it fails.
async fn consume_from(
    bus: &NatsBus,
    hub: &Hub,
    metrics: &Metrics,
    start: u64,
) -> Result<(), String> {
    let stream = bus
        .js
        .get_stream(&bus.stream)
        .await
        .map_err(|e| format!("cannot reach the stream: {e}"))?;
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
    if last < start {
        bus.mark_caught_up();
    }
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            // Heartbeats follow the pull expiry: a short one notices a
            // NATS restart within seconds.
            max_expires: PULL_EXPIRY,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("cannot create a consumer: {e}"))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| format!("cannot consume: {e}"))?;
    tracing::info!(start, last, "consuming the stream");
    while let Some(item) = messages.next().await {
        let message = item.map_err(|e| e.to_string())?;
        let info = message.info().map_err(|e| e.to_string())?;
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
        if pending == 0 || seq >= last {
            bus.mark_caught_up();
        }
    }
    Err("the consumer ended".into())
}
