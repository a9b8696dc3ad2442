//! The NATS JetStream bus: any number of gateway and engine processes
//! share one ordered stream of session events.
//!
//! # The stream
//!
//! One stream (`CHATGATE_NATS_STREAM`, default `CHATGATE`) holds every
//! event, subject `<prefix>.sessions.<sessionId>` (`CHATGATE_NATS_PREFIX`,
//! default `chatgate`), payload one notification as JSON. A session id
//! byte outside `[A-Za-z0-9_-]` is written `=XX` (hex) in the subject, so
//! any id makes one subject token. Every process creates the stream, or
//! updates it to its settings, at start. Its limits (see
//! [`NatsSettings`](crate::config::NatsSettings)):
//! - max age (`CHATGATE_NATS_MAX_AGE_SECS`, default one day) and max bytes
//!   (`CHATGATE_NATS_MAX_BYTES`, default 1 GiB): beyond, the oldest events
//!   are discarded (they have long been dispatched and checkpointed);
//! - max events per session (`CHATGATE_NATS_MAX_MSGS_PER_SESSION`, default
//!   10,000): beyond, that session's oldest are discarded;
//! - a duplicate window (`CHATGATE_NATS_DUPLICATE_WINDOW_SECS`, default
//!   two minutes) for idempotent publishes; file storage; replicas
//!   (`CHATGATE_NATS_REPLICAS`).
//!
//! # Publishing
//!
//! [`NatsBus::publish`] sends the batch in order on one connection, then
//! awaits every acknowledgment; a publish JetStream did not acknowledge in
//! `CHATGATE_NATS_TIMEOUT_SECS` is an error to the caller (ingest answers
//! 503). While the connection is down it fails at once rather than being
//! queued for later. With an idempotency key, each event carries the
//! `Nats-Msg-Id` `<key>:<index>`, so a retry stores nothing twice.
//!
//! # Gateways
//!
//! Every gateway consumes the whole stream in order through an ordered
//! consumer (see [`feed`]) and feeds `hub.dispatch(stream sequence, event)`:
//! agent stream ids are JetStream stream sequences, the same on every
//! node, and customer ids and message indices come from
//! `SessionState::apply` run on the same ordered history, so they are the
//! same on every node too. A client that was on gateway A resumes on
//! gateway B with `since`: B retains the same frames under the same ids (it
//! first waits, up to `CHATGATE_RESUME_WAIT_MS`, to reach an id A was ahead
//! with). When NATS goes away the consumer is recreated from the hub's
//! last sequence + 1 once it is back; redeliveries are ignored by the hub,
//! so nothing is lost or repeated. A malformed event is logged, counted and
//! skipped.
//!
//! # Starting without replaying history: checkpoints
//!
//! A gateway must not replay the whole stream to serve sessions that are
//! live when it starts. Every gateway saves, every `CHATGATE_CHECKPOINT_SECS`
//! (see [`checkpoint`]), into the KV bucket `<stream>_CHECKPOINTS`:
//! - per session changed since its last round, a checkpoint: the session's
//!   state (`SessionState`: participants, customer numbering, message log)
//!   and the stream sequence it reflects (key `session.<sessionId>`);
//! - then, when every one of them is saved, the watermark (key
//!   `watermark`): the stream sequence up to which every session's
//!   checkpoint is current.
//!
//! Both only ever move forward (compare-and-set on the key's revision; a
//! gateway behind another never overwrites a newer checkpoint), so the
//! watermark's promise holds whoever wrote what. A starting gateway reads
//! the watermark W, then every checkpoint, restores them into its hub and
//! consumes from W + 1, each session skipping what its checkpoint already
//! covers. Start-up reads the live sessions plus a few seconds of events,
//! whatever the stream's size. Ids it hands out are the same as everyone
//! else's; a resume from before W gets a snapshot (`resumed:false`), as any
//! id outside the retention window. A session the hub forgets (ended and
//! idle past retention) has its checkpoint deleted. Without any watermark
//! (a new deployment) a gateway reads the stream from its start.
//!
//! # Readiness
//!
//! [`NatsBus::is_ready`] (so `/readyz`) is false while the connection to
//! NATS is down and, on a gateway, until it has caught up with the stream
//! as it was when it started.

pub mod checkpoint;
pub mod feed;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::{self, kv, message::PublishMessage, stream};
use bytes::Bytes;

use super::BusError;
use crate::config::{Config, RoleSetting};
use crate::event::{Event, EventError};
use crate::hub::Hub;
use crate::metrics::Metrics;

pub use feed::Feed;

/// A process's connection to the JetStream bus.
#[derive(Clone)]
pub struct NatsBus {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: String,
    prefix: String,
    /// False on a gateway until it has caught up with the stream.
    caught_up: Arc<AtomicBool>,
}

impl NatsBus {
    /// Connects to `CHATGATE_BUS` and creates or updates the stream.
    pub async fn connect(config: &Config, metrics: Arc<Metrics>) -> Result<Self, String> {
        let url = config.bus.as_deref().unwrap_or_default();
        check_names(&config.nats_stream, &config.nats_prefix)?;
        let timeout = Duration::from_secs(config.nats.nats_timeout_secs.max(1));
        let connected_once = Arc::new(AtomicBool::new(false));
        let client = async_nats::ConnectOptions::new()
            .name(format!("chatgate-{}", role_name(config.role)))
            .connection_timeout(timeout)
            .request_timeout(Some(timeout))
            .max_reconnects(None)
            .reconnect_delay_callback(reconnect_delay)
            .event_callback(move |event| {
                let (metrics, connected_once) = (metrics.clone(), connected_once.clone());
                async move { on_event(event, &metrics, &connected_once) }
            })
            .connect(url)
            .await
            .map_err(|e| format!("cannot connect to NATS at {url}: {e}"))?;
        let js = jetstream::context::ContextBuilder::new()
            .timeout(timeout)
            .build(client.clone());
        js.create_or_update_stream(stream_config(config))
            .await
            .map_err(|e| {
                format!(
                    "cannot create or update the JetStream stream {}: {e}",
                    config.nats_stream
                )
            })?;
        Ok(Self {
            client,
            js,
            stream: config.nats_stream.clone(),
            prefix: config.nats_prefix.clone(),
            caught_up: Arc::new(AtomicBool::new(!config.role.serves_clients())),
        })
    }

    /// What feeds this process's hub: for a gateway, its checkpoints are
    /// loaded into `hub` now, and the returned feed consumes from there.
    pub async fn feed(
        &self,
        config: &Config,
        hub: &Hub,
        metrics: Arc<Metrics>,
    ) -> Result<super::Feed, String> {
        if !config.role.serves_clients() {
            return Ok(super::Feed::None);
        }
        let mut checkpoints = checkpoint::Checkpoints::open(&self.js, config).await?;
        let (watermark, sessions) = checkpoints.load().await?;
        tracing::info!(
            watermark,
            sessions = sessions.len(),
            "gateway restored from checkpoints"
        );
        hub.restore(watermark, sessions);
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| format!("cannot read the stream {}: {e}", self.stream))?;
        if stream.cached_info().state.last_sequence <= hub.last_seq() {
            self.mark_caught_up();
        }
        Ok(super::Feed::Nats(Box::new(Feed::new(
            self.clone(),
            checkpoints,
            Duration::from_secs(config.nats.checkpoint_secs.max(1)),
            metrics,
        ))))
    }

    /// Publishes `batch` in order and waits until JetStream has stored
    /// every notification; see the module doc.
    pub async fn publish(&self, batch: Vec<Event>, key: Option<&str>) -> Result<(), BusError> {
        self.publish_from(batch, key, 0).await
    }

    /// [`NatsBus::publish`] of the tail of a keyed batch: its first
    /// notification is number `first` (`<key>:<first>`), and so on.
    pub async fn publish_from(
        &self,
        batch: Vec<Event>,
        key: Option<&str>,
        first: usize,
    ) -> Result<(), BusError> {
        if self.client.connection_state() != State::Connected {
            return Err(BusError::NotAcknowledged("not connected to NATS".into()));
        }
        let mut acks = Vec::with_capacity(batch.len());
        for (i, n) in batch.iter().enumerate() {
            let session = n.session_id();
            // The bytes as received: nothing is serialized again.
            let mut message = PublishMessage::build().payload(Bytes::from(n.raw_bytes().clone()));
            if let Some(key) = key {
                message = message.message_id(format!("{key}:{}", first + i));
            }
            let ack = self
                .js
                .send_publish(self.subject(session), message)
                .await
                .map_err(|e| BusError::NotAcknowledged(e.to_string()))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await
                .map_err(|e| BusError::NotAcknowledged(e.to_string()))?;
        }
        Ok(())
    }

    /// The epoch of the stream's sequences: its creation time, the same on
    /// every gateway and across restarts, new when the stream is created
    /// again.
    pub async fn epoch(&self) -> Result<String, String> {
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| format!("cannot read the stream {}: {e}", self.stream))?;
        let created = stream.cached_info().created.unix_timestamp_nanos();
        Ok(format!("n{created:x}"))
    }

    pub fn is_ready(&self) -> bool {
        self.client.connection_state() == State::Connected && self.caught_up.load(Ordering::Relaxed)
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// The subject of a session's events.
    pub fn subject(&self, session: &str) -> String {
        format!("{}.sessions.{}", self.prefix, token(session))
    }

    pub(crate) fn mark_caught_up(&self) {
        if !self.caught_up.swap(true, Ordering::Relaxed) {
            tracing::info!("gateway caught up with the stream");
        }
    }
}

/// The stream as the settings describe it.
fn stream_config(config: &Config) -> stream::Config {
    let s = &config.nats;
    stream::Config {
        name: config.nats_stream.clone(),
        description: Some("chatgate session events".into()),
        subjects: vec![format!("{}.sessions.>", config.nats_prefix)],
        max_age: Duration::from_secs(s.nats_max_age_secs),
        max_bytes: s.nats_max_bytes,
        max_messages_per_subject: s.nats_max_msgs_per_session,
        discard: stream::DiscardPolicy::Old,
        storage: stream::StorageType::File,
        num_replicas: s.nats_replicas.max(1),
        duplicate_window: Duration::from_secs(s.nats_duplicate_window_secs),
        ..Default::default()
    }
}

/// Opens a KV bucket, creating or updating its stream first with the
/// settings `async_nats` gives a bucket. (Its own bucket creation asks
/// for account details that NATS servers before 2.10, such as Debian 12's,
/// do not send; the stream works the same on all of them.)
pub async fn open_bucket(
    js: &jetstream::Context,
    bucket: &str,
    description: &str,
    replicas: usize,
) -> Result<kv::Store, String> {
    js.create_or_update_stream(stream::Config {
        name: format!("KV_{bucket}"),
        description: Some(description.into()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_bytes: -1,
        max_message_size: -1,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        num_replicas: replicas.max(1),
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .map_err(|e| format!("cannot create or update the KV bucket {bucket}: {e}"))?;
    js.get_key_value(bucket)
        .await
        .map_err(|e| format!("cannot open the KV bucket {bucket}: {e}"))
}

/// `s` as one subject token or KV key segment: bytes outside
/// `[A-Za-z0-9_-]` become `=XX`, so the mapping is one-to-one.
pub fn token(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

/// Stream and bucket names are one token of `[A-Za-z0-9_-]`; the prefix is
/// dot-separated tokens of the same.
fn check_names(stream: &str, prefix: &str) -> Result<(), String> {
    let plain = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if !plain(stream) {
        return Err(format!(
            "CHATGATE_NATS_STREAM {stream:?}: use letters, digits, '-' and '_' only"
        ));
    }
    if !prefix.split('.').all(plain) {
        return Err(format!(
            "CHATGATE_NATS_PREFIX {prefix:?}: use dot-separated tokens of letters, digits, '-' and '_'"
        ));
    }
    Ok(())
}

fn role_name(role: RoleSetting) -> &'static str {
    match role {
        RoleSetting::All => "all",
        RoleSetting::Gateway => "gateway",
        RoleSetting::Engine => "engine",
    }
}

/// Connect at once, reconnect quickly at first, then every two seconds at
/// most.
fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let exp = u32::try_from(attempts.min(5)).unwrap_or(5);
    Duration::from_millis(100 * 2u64.pow(exp)).min(Duration::from_secs(2))
}

/// Logs connection events and counts reconnections.
fn on_event(event: async_nats::Event, metrics: &Metrics, connected_once: &AtomicBool) {
    match event {
        async_nats::Event::Connected => {
            if connected_once.swap(true, Ordering::Relaxed) {
                metrics.bus_reconnects.inc();
                tracing::info!("reconnected to NATS");
            }
        }
        async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS"),
        other => tracing::warn!(event = %other, "NATS"),
    }
}

/// Parses an event of the stream, within the frame bound.
pub fn parse_event(payload: &Bytes, max_frame: usize) -> Result<Event, EventError> {
    Event::parse(payload.clone(), max_frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_plain_and_one_to_one() {
        assert_eq!(token("0002EaAY01MT007C"), "0002EaAY01MT007C");
        assert_eq!(token("a.b c"), "a=2Eb=20c");
        assert_eq!(token("a=2E"), "a=3D2E");
        assert_ne!(token("a.b"), token("a=2Eb"));
        assert_eq!(token("é"), "=C3=A9");
    }

    #[test]
    fn names_are_checked() {
        assert!(check_names("CHATGATE", "chatgate").is_ok());
        assert!(check_names("T-1_x", "a.b-c").is_ok());
        assert!(check_names("A.B", "x").is_err());
        assert!(check_names("A", "x..y").is_err());
        assert!(check_names("A", "x.*").is_err());
    }
}
