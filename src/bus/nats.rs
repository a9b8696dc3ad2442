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
//! with). A malformed event is logged, counted and skipped.
//!
//! # Recovering from a NATS restart
//!
//! The consumer lives on the NATS server; a server that restarts has lost
//! it, and the client library only notices after missed heartbeats and
//! its own retries (10 s or more). So the feed drops the consumer and
//! creates a new one from the last sequence it consumed + 1 as soon as the
//! connection comes back (the client's `Connected` event moves
//! `Link`'s connection count, which the feed watches), within a few
//! milliseconds of NATS accepting clients again. A watchdog covers any
//! other way a consumer can go quiet: while nothing arrives it compares,
//! every 250 ms, the stream's last sequence with what it consumed, and
//! recreates the consumer when the stream has been ahead for 500 ms. A
//! recreated consumer may deliver again what was already dispatched; the
//! hub ignores a sequence it has seen, so nothing is lost or repeated.
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
//! NATS is down and, on a gateway, while it consumes nothing it should:
//! from start-up until it has caught up with the stream as it was then,
//! and from a disconnection until the consumer recreated after it has
//! delivered what the stream held when it was recreated (usually a few
//! milliseconds after NATS is back).
//!
//! # Epoch
//!
//! [`NatsBus::epoch`] names the stream's numbering (SPEC 3): it is derived
//! from the stream's creation time, so every gateway and every restart
//! sees the same one, and a stream deleted and created again has a new one.

pub mod checkpoint;
pub mod feed;

use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::context::{CreateStreamError, GetStreamError, KeyValueError};
use async_nats::jetstream::{self, kv, message::PublishMessage, stream};
use bytes::Bytes;
use tokio::sync::watch;

use super::BusError;
use crate::config::{Config, RoleSetting};
use crate::event::{Event, EventError};
use crate::hub::Hub;
use crate::metrics::Metrics;

pub use feed::Feed;

/// Why the bus could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("CHATGATE_NATS_STREAM {0:?}: use letters, digits, '-' and '_' only")]
    StreamName(String),
    #[error(
        "CHATGATE_NATS_PREFIX {0:?}: use dot-separated tokens of letters, digits, '-' and '_'"
    )]
    Prefix(String),
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        url: String,
        source: async_nats::ConnectError,
    },
    #[error("cannot create or update the JetStream stream {stream}: {source}")]
    CreateStream {
        stream: String,
        source: CreateStreamError,
    },
    #[error("cannot read the stream {stream}: {source}")]
    GetStream {
        stream: String,
        source: GetStreamError,
    },
    #[error("cannot create or update the KV bucket {bucket}: {source}")]
    CreateBucket {
        bucket: String,
        source: CreateStreamError,
    },
    #[error("cannot open the KV bucket {bucket}: {source}")]
    OpenBucket {
        bucket: String,
        source: KeyValueError,
    },
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
}

/// The first pause between two attempts to connect to NATS.
const RECONNECT_FIRST_PAUSE: Duration = Duration::from_millis(100);
/// The longest pause between two attempts to connect to NATS.
const RECONNECT_MAX_PAUSE: Duration = Duration::from_millis(500);

/// A process's connection to the JetStream bus.
#[derive(Clone)]
pub struct NatsBus {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: String,
    prefix: String,
    link: Arc<Link>,
    /// The stream's epoch, read at connect.
    epoch: String,
}

/// What the connection's events tell the feed and `/readyz`.
pub(crate) struct Link {
    /// The current connection; the feed watches it and recreates its
    /// consumer when a new one begins. One value, so that a consumer of an
    /// earlier connection can never mark a later one caught up.
    connection: watch::Sender<Connection>,
    /// Whether this process consumes the stream (a gateway).
    consumes: bool,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Connection {
    /// Counts connections to NATS, the first one included.
    pub(crate) number: u64,
    /// Whether the consumer created on this connection has caught up with
    /// the stream (always true where nothing consumes it).
    caught_up: bool,
}

impl Link {
    fn new(consumes: bool) -> Self {
        Self {
            connection: watch::Sender::new(Connection {
                number: 0,
                caught_up: !consumes,
            }),
            consumes,
        }
    }

    /// A new connection: the consumer of the previous one is gone (or may
    /// be), so a gateway is not caught up until its new one is.
    fn on_connected(&self) {
        let consumes = self.consumes;
        self.connection.send_modify(|c| {
            c.number += 1;
            c.caught_up &= !consumes;
        });
    }

    fn on_disconnected(&self) {
        // No new connection yet: the feed is not told (it waits for one).
        let consumes = self.consumes;
        self.connection.send_if_modified(|c| {
            c.caught_up &= !consumes;
            false
        });
    }

    /// The number of the current connection.
    pub(crate) fn connection(&self) -> u64 {
        self.connection.borrow().number
    }

    /// A receiver that sees every new connection.
    pub(crate) fn watch_connections(&self) -> watch::Receiver<Connection> {
        self.connection.subscribe()
    }

    /// Marks the gateway caught up, unless `connection` (the one its
    /// consumer was created on) is no longer the current one.
    pub(crate) fn mark_caught_up(&self, connection: u64) {
        let mut marked = false;
        self.connection.send_if_modified(|c| {
            marked = c.number == connection && !c.caught_up;
            c.caught_up |= marked;
            false
        });
        if marked {
            tracing::info!(connection, "gateway caught up with the stream");
        }
    }

    fn is_caught_up(&self) -> bool {
        self.connection.borrow().caught_up
    }
}

impl NatsBus {
    /// Connects to `CHATGATE_BUS`, creates or updates the stream and reads
    /// its epoch.
    pub async fn connect(config: &Config, metrics: Arc<Metrics>) -> Result<Self, NatsError> {
        let url = config.bus.as_deref().unwrap_or_default();
        check_names(&config.nats_stream, &config.nats_prefix)?;
        let timeout = Duration::from_secs(config.nats.nats_timeout_secs.max(1));
        let link = Arc::new(Link::new(config.role.serves_clients()));
        let events = link.clone();
        let client = async_nats::ConnectOptions::new()
            .name(format!("chatgate-{}", role_name(config.role)))
            .connection_timeout(timeout)
            .request_timeout(Some(timeout))
            .max_reconnects(None)
            .reconnect_delay_callback(reconnect_delay)
            .event_callback(move |event| {
                let (metrics, link) = (metrics.clone(), events.clone());
                async move { on_event(event, &metrics, &link) }
            })
            .connect(url)
            .await
            .map_err(|source| NatsError::Connect {
                url: url.to_owned(),
                source,
            })?;
        let js = jetstream::context::ContextBuilder::new()
            .timeout(timeout)
            .build(client.clone());
        let info = js
            .create_or_update_stream(stream_config(config))
            .await
            .map_err(|source| NatsError::CreateStream {
                stream: config.nats_stream.clone(),
                source,
            })?;
        Ok(Self {
            client,
            js,
            stream: config.nats_stream.clone(),
            prefix: config.nats_prefix.clone(),
            link,
            epoch: epoch_of(info.created),
        })
    }

    /// The epoch of the stream's numbering (SPEC 3): the same on every
    /// process and across restarts of chatgate and NATS, new when the
    /// stream is created again.
    pub fn epoch(&self) -> String {
        self.epoch.clone()
    }

    /// What feeds this process's hub: for a gateway, its checkpoints are
    /// loaded into `hub` now, and the returned feed consumes from there.
    pub async fn feed(
        &self,
        config: &Config,
        hub: &Hub,
        metrics: Arc<Metrics>,
    ) -> Result<super::Feed, NatsError> {
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
        let connection = self.link.connection();
        let stream =
            self.js
                .get_stream(&self.stream)
                .await
                .map_err(|source| NatsError::GetStream {
                    stream: self.stream.clone(),
                    source,
                })?;
        if stream.cached_info().state.last_sequence <= hub.last_seq() {
            self.link.mark_caught_up(connection);
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

    /// Connected and, on a gateway, consuming what it should (module doc).
    pub fn is_ready(&self) -> bool {
        self.is_connected() && self.link.is_caught_up()
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// The subject of a session's events.
    pub fn subject(&self, session: &str) -> String {
        format!("{}.sessions.{}", self.prefix, token(session))
    }

    pub(crate) fn link(&self) -> &Link {
        &self.link
    }
}

/// The epoch named by a stream's creation time: `n` and its nanoseconds
/// since 1970 in lowercase hex.
fn epoch_of(created: async_nats::datetime::DateTime) -> String {
    format!("n{:x}", created.unix_timestamp_nanos())
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
) -> Result<kv::Store, NatsError> {
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
    .map_err(|source| NatsError::CreateBucket {
        bucket: bucket.to_owned(),
        source,
    })?;
    js.get_key_value(bucket)
        .await
        .map_err(|source| NatsError::OpenBucket {
            bucket: bucket.to_owned(),
            source,
        })
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
fn check_names(stream: &str, prefix: &str) -> Result<(), NatsError> {
    let plain = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if !plain(stream) {
        return Err(NatsError::StreamName(stream.to_owned()));
    }
    if !prefix.split('.').all(plain) {
        return Err(NatsError::Prefix(prefix.to_owned()));
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

/// The pause before connection attempt number `attempts` (from 1): the
/// first at once, then 100, 200, 400 ms, then every 500 ms, so that a
/// gateway is back within half a second of NATS (a refused attempt costs
/// NATS nothing, and an attempt it accepts is one connection).
fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let exp = u32::try_from(attempts - 2).unwrap_or(u32::MAX).min(3);
    (RECONNECT_FIRST_PAUSE * 2u32.pow(exp)).min(RECONNECT_MAX_PAUSE)
}

/// Logs connection events, counts reconnections and tells the feed and
/// readiness (`link`).
fn on_event(event: async_nats::Event, metrics: &Metrics, link: &Link) {
    match event {
        async_nats::Event::Connected => {
            if link.connection() > 0 {
                metrics.bus_reconnects.inc();
                tracing::info!("reconnected to NATS");
            }
            link.on_connected();
        }
        async_nats::Event::Disconnected => {
            link.on_disconnected();
            tracing::warn!("disconnected from NATS");
        }
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

    #[test]
    fn reconnecting_is_quick_and_bounded() {
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        assert_eq!(reconnect_delay(2), RECONNECT_FIRST_PAUSE);
        assert!(reconnect_delay(3) > reconnect_delay(2));
        assert_eq!(reconnect_delay(usize::MAX), RECONNECT_MAX_PAUSE);
    }

    #[test]
    fn an_epoch_names_a_creation_time() {
        let created = time::macros::datetime!(2024-05-01 12:00:00.000000001 UTC);
        assert_eq!(
            epoch_of(created),
            format!("n{:x}", 1_714_564_800_000_000_001_i128)
        );
        let later = created + time::Duration::nanoseconds(1);
        assert_ne!(epoch_of(later), epoch_of(created));
    }

    #[test]
    fn a_reconnection_is_seen_and_unreadies_a_gateway() {
        let link = Link::new(true);
        let mut connections = link.watch_connections();
        link.on_connected();
        let first = link.connection();
        link.mark_caught_up(first);
        assert!(link.is_caught_up());
        connections.mark_unchanged();
        link.on_disconnected();
        assert!(!link.is_caught_up(), "not ready from the disconnection");
        link.on_connected();
        assert!(connections.has_changed().unwrap());
        link.mark_caught_up(first);
        assert!(
            !link.is_caught_up(),
            "a consumer of an earlier connection does not make it ready"
        );
        link.mark_caught_up(link.connection());
        assert!(link.is_caught_up());
        let engine = Link::new(false);
        engine.on_disconnected();
        assert!(engine.is_caught_up(), "nothing to catch up on an engine");
    }
}
