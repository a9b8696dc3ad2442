//! Gateway checkpoints in the KV bucket `<stream>_CHECKPOINTS` (the design
//! is in the parent module's doc).
//!
//! Owns the bucket's keys: `session.<sessionId>` (a session's
//! [`SessionCheckpoint`]) and `watermark` (`{"seq":W}`). Both are written
//! with compare-and-set on the key's revision and only ever forward: a
//! value whose `seq` is not above the stored one is not written. This
//! gateway remembers the revision and sequence it last saw for each key,
//! so a round costs one write per changed session.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use async_nats::jetstream::kv::{self, Operation};
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::{open_bucket, token, NatsError};
use crate::config::Config;
use crate::hub::Hub;
use crate::session::SessionCheckpoint;

const WATERMARK: &str = "watermark";
/// Checkpoints copied from the hub and written at once in a round.
const WRITE_CONCURRENCY: usize = 32;
/// Attempts at one compare-and-set before the round gives up on a key.
const CAS_ATTEMPTS: usize = 4;
/// Room left for headers under the server's largest message.
const HEADER_ROOM: usize = 4096;

/// Why checkpoints could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read checkpoints: {0}")]
    Reader(#[from] async_nats::jetstream::stream::ConsumerError),
    #[error("cannot read checkpoints: {0}")]
    Reading(#[from] async_nats::jetstream::consumer::StreamError),
    #[error("cannot read checkpoints: {0}")]
    Delivery(#[from] pull::OrderedError),
    #[error("a checkpoint without its stream metadata: {0}")]
    Metadata(async_nats::Error),
    #[error("timed out reading checkpoints")]
    TimedOut,
    #[error("the checkpoint reader ended")]
    ReaderEnded,
    #[error("cannot read {key}: {source}")]
    Entry { key: String, source: kv::EntryError },
    #[error("gave up after {CAS_ATTEMPTS} conflicts: {0}")]
    Conflicts(WriteError),
    #[error("session {id}: {source}")]
    Session {
        id: String,
        source: Box<CheckpointError>,
    },
    #[error("the last round timed out")]
    LastRoundTimedOut,
}

/// A compare-and-set write that did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Update(#[from] kv::UpdateError),
    #[error(transparent)]
    Create(#[from] kv::CreateError),
}

/// What this gateway last saw of a stored key.
#[derive(Debug, Clone, Copy)]
struct Known {
    revision: u64,
    seq: u64,
}

/// The `seq` of any stored value.
#[derive(Deserialize)]
struct Seq {
    seq: u64,
}

pub struct Checkpoints {
    kv: kv::Store,
    /// By session id.
    known: HashMap<String, Known>,
    watermark: Option<Known>,
    /// Every session with activity up to this sequence is saved.
    covered: u64,
    max_value: usize,
}

impl Checkpoints {
    /// Creates the bucket if missing (one value per key, no expiry: keys
    /// are deleted when their session is forgotten).
    pub async fn open(js: &jetstream::Context, config: &Config) -> Result<Self, NatsError> {
        let bucket = format!("{}_CHECKPOINTS", config.nats_stream);
        let kv = open_bucket(
            js,
            &bucket,
            "chatgate gateway checkpoints: session states",
            config.nats.nats_replicas,
        )
        .await?;
        let max_payload = js.client().server_info().max_payload;
        Ok(Self {
            kv,
            known: HashMap::new(),
            watermark: None,
            covered: 0,
            max_value: max_payload.saturating_sub(HEADER_ROOM).max(1024),
        })
    }

    /// Reads the watermark, then every checkpoint (in this order: values
    /// only move forward, so each checkpoint read covers the watermark).
    pub async fn load(&mut self) -> Result<(u64, Vec<SessionCheckpoint>), CheckpointError> {
        self.watermark = read_known(&self.kv, WATERMARK).await?;
        let watermark = self.watermark.map_or(0, |k| k.seq);
        self.covered = watermark;
        let stream = &self.kv.stream;
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: format!("{}session.>", self.kv.prefix),
                deliver_policy: DeliverPolicy::LastPerSubject,
                ..Default::default()
            })
            .await?;
        let mut left = consumer.cached_info().num_pending;
        let mut sessions = Vec::new();
        if left > 0 {
            let mut messages = consumer.messages().await?;
            while left > 0 {
                let message = tokio::time::timeout(Duration::from_secs(30), messages.next())
                    .await
                    .map_err(|_| CheckpointError::TimedOut)?
                    .ok_or(CheckpointError::ReaderEnded)??;
                let info = message.info().map_err(CheckpointError::Metadata)?;
                left = info.pending;
                let revision = info.stream_sequence;
                if message.payload.is_empty() {
                    continue; // a delete marker
                }
                match serde_json::from_slice::<SessionCheckpoint>(&message.payload) {
                    Ok(cp) => {
                        self.known.insert(
                            cp.id.clone(),
                            Known {
                                revision,
                                seq: cp.seq,
                            },
                        );
                        sessions.push(cp);
                    }
                    Err(e) => {
                        tracing::warn!(subject = %message.subject, error = %e, "ignoring an unreadable checkpoint")
                    }
                }
            }
        }
        Ok((watermark, sessions))
    }

    /// A round every `every` until `shutdown`, and a last one then.
    pub async fn run(mut self, hub: &Hub, every: Duration, shutdown: &CancellationToken) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let last = tokio::select! {
                () = shutdown.cancelled() => true,
                _ = ticks.tick() => false,
            };
            let round = self.round(hub);
            let result = if last {
                tokio::time::timeout(Duration::from_secs(2), round)
                    .await
                    .unwrap_or(Err(CheckpointError::LastRoundTimedOut))
            } else {
                round.await
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "checkpoint round incomplete");
            }
            if last {
                return;
            }
        }
    }

    /// Saves every session changed since the last complete round, forgets
    /// sessions the hub forgot, then moves the watermark.
    pub async fn round(&mut self, hub: &Hub) -> Result<(), CheckpointError> {
        let covered = self.covered;
        let (watermark, changed) = hub.changed_since(covered);
        let mut failed = None;
        for ids in changed.chunks(WRITE_CONCURRENCY) {
            let kv = &self.kv;
            let max_value = self.max_value;
            let writes = hub.checkpoints_of(ids).into_iter().map(|mut cp| {
                let known = self.known.get(&cp.id).copied();
                async move {
                    let id = cp.id.clone();
                    let bytes = encode(&mut cp, max_value);
                    let key = session_key(&id);
                    (id, write_forward(kv, &key, bytes, cp.seq, known).await)
                }
            });
            let results: Vec<_> = futures::future::join_all(writes).await;
            for (id, result) in results {
                match result {
                    Ok(known) => {
                        self.known.insert(id, known);
                    }
                    Err(e) => {
                        failed = Some(CheckpointError::Session {
                            id,
                            source: Box::new(e),
                        })
                    }
                }
            }
        }
        self.forget_purged(hub).await;
        if let Some(e) = failed {
            return Err(e);
        }
        if watermark > covered {
            let bytes = Bytes::from(format!("{{\"seq\":{watermark}}}"));
            self.watermark =
                Some(write_forward(&self.kv, WATERMARK, bytes, watermark, self.watermark).await?);
            self.covered = watermark;
        }
        Ok(())
    }

    /// Deletes the checkpoints of sessions the hub no longer knows (the
    /// key's messages are purged: no marker is left behind).
    async fn forget_purged(&mut self, hub: &Hub) {
        let gone: Vec<String> = self
            .known
            .keys()
            .filter(|id| !hub.has_session(id))
            .cloned()
            .collect();
        for id in gone {
            let subject = format!("{}{}", self.kv.prefix, session_key(&id));
            match self.kv.stream.purge().filter(subject).await {
                Ok(_) => {
                    self.known.remove(&id);
                }
                Err(e) => tracing::warn!(session = %id, error = %e, "cannot delete a checkpoint"),
            }
        }
    }
}

fn session_key(id: &str) -> String {
    format!("session.{}", token(id))
}

/// The checkpoint as JSON, its message log shortened (oldest first) until
/// it fits in one NATS message: a gateway starting from it then shows a
/// shorter history in snapshots, nothing else changes.
fn encode(cp: &mut SessionCheckpoint, max: usize) -> Bytes {
    loop {
        // Serializing model types and JSON values cannot fail.
        let bytes = serde_json::to_vec(&*cp).unwrap_or_default();
        if bytes.len() <= max || cp.log.is_empty() {
            return Bytes::from(bytes);
        }
        let drop = cp.log.len().div_ceil(2);
        cp.log.drain(..drop);
    }
}

/// Writes `bytes` (whose `seq` is `seq`) to `key` unless the stored value
/// is already at `seq` or beyond; compare-and-set on the revision,
/// re-reading the key after a conflict.
async fn write_forward(
    kv: &kv::Store,
    key: &str,
    bytes: Bytes,
    seq: u64,
    mut known: Option<Known>,
) -> Result<Known, CheckpointError> {
    let mut attempts = 0;
    loop {
        if let Some(k) = known.filter(|k| k.seq >= seq) {
            return Ok(k);
        }
        let written: Result<u64, WriteError> = match known {
            Some(k) => kv
                .update(key, bytes.clone(), k.revision)
                .await
                .map_err(Into::into),
            None => kv.create(key, bytes.clone()).await.map_err(Into::into),
        };
        attempts += 1;
        match written {
            Ok(revision) => return Ok(Known { revision, seq }),
            Err(e) if attempts >= CAS_ATTEMPTS => return Err(CheckpointError::Conflicts(e)),
            Err(_) => known = read_known(kv, key).await?,
        }
    }
}

/// The stored revision and `seq` of `key`; a deleted key is at `seq` 0.
async fn read_known(kv: &kv::Store, key: &str) -> Result<Option<Known>, CheckpointError> {
    let entry = kv
        .entry(key)
        .await
        .map_err(|source| CheckpointError::Entry {
            key: key.to_owned(),
            source,
        })?;
    Ok(entry.map(|e| Known {
        revision: e.revision,
        seq: match e.operation {
            Operation::Put => serde_json::from_slice::<Seq>(&e.value).map_or(0, |s| s.seq),
            Operation::Delete | Operation::Purge => 0,
        },
    }))
}
