//! The session store shared by every engine process on a NATS bus: the
//! records live in the JetStream KV bucket `<stream>_SESSIONS`, so any
//! engine accepts any operation on any session.
//!
//! # One operation at a time per session, none lost
//!
//! A key `session.<sessionId>` holds the committed record and, while an
//! operation is being published, a claim: the next record and its
//! notifications. Applying an operation:
//! 1. read the key (value and revision); if a claim is there, wait (with
//!    a growing pause) for its owner to finish;
//! 2. run the operation on the record; a refusal changes nothing;
//! 3. write the claim with compare-and-set on the revision; a conflict
//!    (another engine claimed first) starts again from 1, so concurrent
//!    operations are applied one after the other and none is lost;
//! 4. publish the notifications, each with the `Nats-Msg-Id`
//!    `<sessionId>:<record revision>:<index>`;
//! 5. commit (compare-and-set: the next record, no claim); if the publish
//!    failed, release the claim instead: nothing changed (503).
//!
//! The claim is what keeps a session's notifications in the order of its
//! changes: nobody publishes for the session between a claim and its
//! commit but its owner. Within one process, operations on a session also
//! queue on a local lock, so engines compete for a session only with each
//! other, not with their own requests.
//!
//! A claim older than [`ABANDONED_MS`] belongs to an engine that stopped
//! halfway (its owner never publishes later than [`PUBLISH_BY_MS`] after
//! claiming). The next operation on the session settles it by what reached
//! the stream: none of its notifications (the last event of the session's
//! subject is not one of them) rolls it back; some roll it forward (the
//! rest are published, deduplicated by their ids, and the next record
//! committed). Engines' clocks must agree within a few seconds.
//!
//! # Transcripts
//!
//! A session's recent messages (`log_limit`) live apart from its record,
//! under `log.<sessionId>`, with the record revision they are complete
//! for: the claim's owner appends its change's messages after publishing
//! and before committing (whoever rolls a claim forward does the same; the
//! revision makes it happen once), so an operation moves only the small
//! record through compare-and-set.
//!
//! # Reads
//!
//! `get` reads the bucket. `sessions_of` and `load` (routing) read a
//! replica every engine keeps of the committed records, fed by an ordered
//! consumer of the bucket and by its own commits: up to date for this
//! engine's own changes, a few milliseconds behind for the others'. Two
//! engines routing at the same instant may both pick the same least-busy
//! agent.
//!
//! # referenceId
//!
//! Each agent request's `referenceId` is the revision of a write to the
//! bucket's `reference` key: unique across engines and increasing in the
//! order the requests reached NATS.
//!
//! # Sweep
//!
//! Completed sessions idle past retention are deleted by every engine
//! from its replica and from the bucket (idempotent).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{self, pull, DeliverPolicy};
use async_nats::jetstream::context::{GetStreamError, PublishErrorKind};
use async_nats::jetstream::kv::{self, UpdateErrorKind};
use async_nats::jetstream::stream::{ConsumerError, LastRawMessageErrorKind, Stream};
use bytes::Bytes;
use dashmap::DashMap;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::error::OpError;
use super::now_ms;
use super::record::{SessionRecord, SessionStatus};
use super::store::{messages_of, Change, Publish};
use crate::bus::nats::{open_bucket, token, NatsBus};
use crate::config::Config;
use crate::model::{Message, Notification};

/// A claim older than this (ms) is abandoned and may be settled by others.
pub const ABANDONED_MS: u64 = 30_000;
/// A claim's owner does not start publishing later than this after
/// claiming (ms); with the publish timeout it stays well under
/// [`ABANDONED_MS`].
pub const PUBLISH_BY_MS: u64 = 10_000;
/// How long an operation waits for a busy session before giving up.
const APPLY_DEADLINE: Duration = Duration::from_secs(60);
/// Longest pause between two looks at a busy session.
const MAX_PAUSE_MS: u64 = 40;
const REFERENCE_KEY: &str = "reference";

/// What a session's key holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    /// The committed record; `None` while the session's creation is
    /// being published (it does not exist yet).
    record: Option<SessionRecord>,
    claim: Option<Claim>,
}

/// A committed record and the revision of the key that holds it.
struct Committed {
    record: SessionRecord,
    revision: u64,
}

/// A change being published.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Claim {
    next: SessionRecord,
    notifications: Vec<Notification>,
    /// When it was claimed, ms since the epoch.
    since_ms: u64,
}

impl Claim {
    fn abandoned(&self) -> bool {
        now_ms().saturating_sub(self.since_ms) > ABANDONED_MS
    }

    /// The idempotency key of its notifications.
    fn key(&self) -> String {
        format!("{}:{}", self.next.id, self.next.revision)
    }
}

/// Why the store could not be opened (the engine refuses to start).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the session bucket: {0}")]
    Bucket(#[source] crate::bus::nats::NatsError),
    #[error("cannot open the stream {stream}: {source}")]
    Stream {
        stream: String,
        #[source]
        source: GetStreamError,
    },
}

/// Why the replica stopped following the bucket (it starts again).
#[derive(Debug, thiserror::Error)]
enum ReplicaError {
    #[error("cannot read the session records: {0}")]
    Consumer(#[from] ConsumerError),
    #[error("cannot read the session records: {0}")]
    Messages(#[from] consumer::StreamError),
    #[error("cannot read the session records: {0}")]
    Message(#[from] pull::OrderedError),
    #[error("the consumer ended")]
    Ended,
}

pub struct NatsStore {
    bus: NatsBus,
    kv: kv::Store,
    events: Stream,
    replica: Arc<Replica>,
    /// Messages kept per transcript.
    log_limit: usize,
    /// Per-session queue of this process's operations, with the last
    /// committed record and revision it saw (a burst of operations then
    /// skips reading the bucket).
    locks: DashMap<String, Arc<tokio::sync::Mutex<Option<Committed>>>>,
}

impl NatsStore {
    /// Opens (creating if missing) the bucket `<stream>_SESSIONS`.
    pub async fn open(bus: &NatsBus, config: &Config) -> Result<Self, StoreError> {
        let bucket = format!("{}_SESSIONS", config.nats_stream);
        let kv = open_bucket(
            bus.jetstream(),
            &bucket,
            "chatgate engine: session records",
            config.nats.nats_replicas,
        )
        .await
        .map_err(StoreError::Bucket)?;
        let events = bus
            .jetstream()
            .get_stream(&config.nats_stream)
            .await
            .map_err(|source| StoreError::Stream {
                stream: config.nats_stream.clone(),
                source,
            })?;
        Ok(Self {
            bus: bus.clone(),
            kv,
            events,
            replica: Arc::new(Replica::default()),
            log_limit: config.log_limit.max(1),
            locks: DashMap::new(),
        })
    }

    /// Keeps the replica up to date until `shutdown`.
    pub async fn follow(&self, shutdown: CancellationToken) {
        let mut failures: u32 = 0;
        loop {
            let result = tokio::select! {
                () = shutdown.cancelled() => return,
                r = self.follow_once() => r,
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "session replica stopped; restarting it");
            }
            failures = failures.saturating_add(1);
            let pause = Duration::from_millis(100 * u64::from(failures.min(20)));
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Reads the summary of every committed record (headers only: the
    /// records themselves stay in the bucket), swaps the replica for
    /// them, then follows changes until the consumer fails.
    async fn follow_once(&self) -> Result<(), ReplicaError> {
        let consumer = self
            .kv
            .stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: format!("{}session.>", self.kv.prefix),
                deliver_policy: DeliverPolicy::LastPerSubject,
                headers_only: true,
                max_expires: Duration::from_secs(4),
                ..Default::default()
            })
            .await?;
        let mut initial = consumer.cached_info().num_pending;
        let mut fresh = Some(ReplicaInner::default());
        if initial == 0 {
            self.replica.replace(fresh.take().unwrap_or_default());
        }
        let mut messages = consumer.messages().await?;
        while let Some(message) = messages.next().await {
            let message = message?;
            let pending = message.info().map(|i| i.pending).unwrap_or(0);
            let key = message
                .subject
                .strip_prefix(self.kv.prefix.as_str())
                .unwrap_or_default()
                .to_owned();
            let change = Seen::of(message.headers.as_ref());
            match &mut fresh {
                Some(inner) => inner.see(key, change),
                None => self.replica.write().see(key, change),
            }
            if fresh.is_some() {
                initial = initial.saturating_sub(1);
                if initial == 0 || pending == 0 {
                    self.replica.replace(fresh.take().unwrap_or_default());
                }
            }
        }
        Err(ReplicaError::Ended)
    }

    pub async fn next_reference(&self) -> Result<u64, OpError> {
        self.kv
            .put(REFERENCE_KEY, Bytes::new())
            .await
            .map_err(|e| OpError::store(format!("no referenceId from the bus: {e}")))
    }

    pub async fn get(&self, id: &str) -> Result<Option<SessionRecord>, OpError> {
        Ok(self.read(id).await?.and_then(|(s, _)| s.record))
    }

    pub async fn create<P: Publish>(
        &self,
        record: SessionRecord,
        notifications: Vec<Notification>,
        publisher: &P,
    ) -> Result<(), OpError> {
        let id = record.id.clone();
        let claim = Claim {
            next: record,
            notifications,
            since_ms: now_ms(),
        };
        let stored = Stored {
            record: None,
            claim: Some(claim.clone()),
        };
        let revision = self.put(&id, &stored, 0).await.map_err(|e| match e {
            Put::Conflict => OpError::Conflict(format!("session {id} exists")),
            Put::Failed(e) => e,
        })?;
        self.publish_and_settle(claim, None, revision, publisher)
            .await
            .map(|_| ())
    }

    pub async fn apply<T, F, P>(&self, id: &str, mut op: F, publisher: &P) -> Result<T, OpError>
    where
        F: FnMut(&SessionRecord) -> Result<Change<T>, OpError> + Send,
        T: Send,
        P: Publish,
    {
        let lock = self.locks.entry(id.to_owned()).or_default().clone();
        let result = {
            let mut known = lock.lock().await;
            self.apply_locked(id, &mut op, publisher, &mut known).await
        };
        // The last one out removes the lock (a newcomer racing this only
        // makes two local operations compete through the bucket).
        self.locks.remove_if(id, |_, l| {
            Arc::strong_count(l) <= 2 && Arc::ptr_eq(l, &lock)
        });
        result
    }

    async fn apply_locked<T, F, P>(
        &self,
        id: &str,
        op: &mut F,
        publisher: &P,
        known: &mut Option<Committed>,
    ) -> Result<T, OpError>
    where
        F: FnMut(&SessionRecord) -> Result<Change<T>, OpError> + Send,
        P: Publish,
    {
        let started = Instant::now();
        let mut attempt: u32 = 0;
        loop {
            if started.elapsed() > APPLY_DEADLINE {
                return Err(OpError::Conflict(format!(
                    "session {id} stayed busy; nothing changed"
                )));
            }
            let (current, revision, cached) = match known.take() {
                Some(k) => (k.record, k.revision, true),
                None => {
                    let Some((stored, revision)) = self.read(id).await? else {
                        return Err(OpError::NotFound(format!("no session {id}")));
                    };
                    if let Some(claim) = &stored.claim {
                        if claim.abandoned() {
                            self.settle(stored, revision).await?;
                        } else {
                            pause(attempt).await;
                            attempt = attempt.saturating_add(1);
                        }
                        continue;
                    }
                    let Some(current) = stored.record else {
                        return Err(OpError::NotFound(format!("no session {id}")));
                    };
                    (current, revision, false)
                }
            };
            let Change {
                mut record,
                notifications,
                output,
            } = match op(&current) {
                Ok(change) => change,
                // A refusal must come from the current record, not a
                // remembered one another engine may have changed since.
                Err(_) if cached => continue,
                Err(e) => return Err(e),
            };
            record.revision = current.revision + 1;
            let claim = Claim {
                next: record,
                notifications,
                since_ms: now_ms(),
            };
            let claimed = Stored {
                record: Some(current),
                claim: Some(claim.clone()),
            };
            let claimed_at = match self.put(id, &claimed, revision).await {
                Ok(r) => r,
                Err(Put::Conflict) => {
                    attempt = attempt.saturating_add(1);
                    continue;
                }
                Err(Put::Failed(e)) => return Err(e),
            };
            *known = self
                .publish_and_settle(claim, claimed.record, claimed_at, publisher)
                .await?;
            return Ok(output);
        }
    }

    /// Publishes a claim's notifications and commits it (returning what
    /// was committed), or releases it when the publish failed (nothing
    /// changed).
    async fn publish_and_settle<P: Publish>(
        &self,
        claim: Claim,
        before: Option<SessionRecord>,
        revision: u64,
        publisher: &P,
    ) -> Result<Option<Committed>, OpError> {
        let id = claim.next.id.clone();
        let claimed = Instant::now();
        let late = now_ms().saturating_sub(claim.since_ms) > PUBLISH_BY_MS;
        let published = if late {
            // Others may soon take the claim for abandoned: hands off.
            Err(OpError::Unavailable(
                "the session store answered too slowly; nothing changed".into(),
            ))
        } else if claim.notifications.is_empty() {
            Ok(())
        } else {
            publisher
                .publish_batch_keyed(claim.notifications.clone(), &claim.key())
                .await
        };
        if let Err(e) = published {
            if let Err(release) = self.release(&id, before, revision).await {
                tracing::warn!(session = %id, error = %release.detail(), "cannot release a claim; it is settled later");
            }
            return Err(e);
        }
        if claimed.elapsed() > Duration::from_millis(PUBLISH_BY_MS) {
            tracing::warn!(session = %id, "a change was published late; committing it anyway");
        }
        let messages = messages_of(&claim.notifications);
        if let Err(e) = self.append_log(&id, claim.next.revision, messages).await {
            // Published: the change has happened. The claim stays for the
            // next operation to roll forward (transcript included).
            tracing::warn!(session = %id, error = %e.detail(), "a published change awaits its transcript and commit");
            return Ok(None);
        }
        let next = claim.next;
        let committed = Stored {
            record: Some(next.clone()),
            claim: None,
        };
        match self.put(&id, &committed, revision).await {
            Ok(revision) => {
                self.replica
                    .write()
                    .see(session_key(&id), Seen::Committed(Summary::of(&next)));
                Ok(Some(Committed {
                    record: next,
                    revision,
                }))
            }
            // Published but not committed: the change has happened (the
            // gateways have it); the next operation rolls the claim forward.
            Err(e) => {
                tracing::warn!(session = %id, error = %e.message(), "a published change awaits its commit");
                Ok(None)
            }
        }
    }

    /// Undoes a claim nothing of which was published: back to `before`,
    /// or no session at all for a creation. A conflict means someone else
    /// settled it first, which is as good.
    async fn release(
        &self,
        id: &str,
        before: Option<SessionRecord>,
        revision: u64,
    ) -> Result<(), OpError> {
        let result = match before {
            Some(record) => {
                let stored = Stored {
                    record: Some(record),
                    claim: None,
                };
                self.put(id, &stored, revision).await.map(|_| ())
            }
            None => self
                .kv
                .purge_expect_revision(session_key(id), Some(revision))
                .await
                .map_err(|e| match e.kind() {
                    UpdateErrorKind::WrongLastRevision => Put::Conflict,
                    _ => Put::Failed(OpError::store(e)),
                }),
        };
        match result {
            Ok(()) | Err(Put::Conflict) => Ok(()),
            Err(Put::Failed(e)) => Err(e),
        }
    }

    /// Settles an abandoned claim by what reached the stream.
    async fn settle(&self, stored: Stored, revision: u64) -> Result<(), OpError> {
        let Some(claim) = stored.claim else {
            return Ok(());
        };
        let id = claim.next.id.clone();
        let published = self.published_of(&claim).await?;
        if published == 0 {
            tracing::warn!(session = %id, "rolling back an abandoned change");
            return self.release(&id, stored.record, revision).await;
        }
        tracing::warn!(session = %id, published, "rolling forward an abandoned change");
        let rest: Vec<Notification> = claim.notifications[published..].to_vec();
        if !rest.is_empty() {
            // Within the frame bound: checked when the claim was published.
            let rest = super::store::events_of(&rest, usize::MAX)?;
            self.bus
                .publish_from(rest, Some(&claim.key()), published)
                .await
                .map_err(OpError::bus)?;
        }
        let messages = messages_of(&claim.notifications);
        self.append_log(&id, claim.next.revision, messages).await?;
        let committed = Stored {
            record: Some(claim.next.clone()),
            claim: None,
        };
        match self.put(&id, &committed, revision).await {
            Ok(_) | Err(Put::Conflict) => Ok(()),
            Err(Put::Failed(e)) => Err(e),
        }
    }

    /// How many of the claim's notifications reached the stream: the
    /// session's last event is its k-th (nothing else publishes for the
    /// session while it is claimed), or none of them.
    async fn published_of(&self, claim: &Claim) -> Result<usize, OpError> {
        let subject = self.bus.subject(&claim.next.id);
        let last = match self.events.get_last_raw_message_by_subject(&subject).await {
            Ok(m) => m,
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(0),
            Err(e) => return Err(OpError::bus(e)),
        };
        let id = last
            .headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        let prefix = format!("{}:", claim.key());
        Ok(id
            .strip_prefix(&prefix)
            .and_then(|k| k.parse::<usize>().ok())
            .map_or(0, |k| (k + 1).min(claim.notifications.len())))
    }

    /// Writes a session's key if it is at `revision` (0: absent), as the
    /// KV bucket's own update does, plus a header the replicas read
    /// instead of the record: its summary when `stored` is committed.
    async fn put(&self, id: &str, stored: &Stored, revision: u64) -> Result<u64, Put> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            revision.to_string().as_str(),
        );
        if let (Some(record), None) = (&stored.record, &stored.claim) {
            let summary = serde_json::to_string(&Summary::of(record))
                .map_err(|e| Put::Failed(OpError::store(e)))?;
            headers.insert(SUMMARY_HEADER, summary.as_str());
        }
        let subject = format!("{}{}", self.kv.prefix, session_key(id));
        let ack = self
            .bus
            .jetstream()
            .publish_with_headers(subject, headers, encode(stored).map_err(Put::Failed)?)
            .await
            .map_err(|e| Put::Failed(OpError::store(e)))?;
        match ack.await {
            Ok(ack) => Ok(ack.sequence),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Err(Put::Conflict),
            Err(e) => Err(Put::Failed(OpError::store(e))),
        }
    }

    /// The session's recent messages, oldest first.
    pub async fn messages(&self, id: &str) -> Result<Vec<Arc<Message>>, OpError> {
        Ok(self.read_log(id).await?.messages.into_iter().collect())
    }

    async fn read_log(&self, id: &str) -> Result<Transcript, OpError> {
        let value = self
            .kv
            .get(log_key(id))
            .await
            .map_err(|e| OpError::store(format!("cannot read the messages of {id}: {e}")))?;
        Ok(value
            .and_then(|v| serde_json::from_slice::<Transcript>(&v).ok())
            .unwrap_or_default())
    }

    /// Adds the messages of the change that made `revision` to the
    /// transcript, unless it has them already. Only the claim's owner (or
    /// whoever settles it) writes, so no compare-and-set is needed.
    async fn append_log(
        &self,
        id: &str,
        revision: u64,
        messages: Vec<Arc<Message>>,
    ) -> Result<(), OpError> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut log = self.read_log(id).await?;
        if log.revision.is_some_and(|r| r >= revision) {
            return Ok(());
        }
        log.messages.extend(messages);
        while log.messages.len() > self.log_limit {
            log.messages.pop_front();
        }
        log.revision = Some(revision);
        let bytes = serde_json::to_vec(&log)
            .map_err(|e| OpError::store(format!("cannot encode a transcript: {e}")))?;
        self.kv
            .put(log_key(id), bytes.into())
            .await
            .map(|_| ())
            .map_err(OpError::store)
    }

    async fn read(&self, id: &str) -> Result<Option<(Stored, u64)>, OpError> {
        let entry = self
            .kv
            .entry(session_key(id))
            .await
            .map_err(|e| OpError::store(format!("cannot read session {id}: {e}")))?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return Ok(None);
        };
        let stored = serde_json::from_slice::<Stored>(&entry.value)
            .map_err(|e| OpError::store(format!("session {id} is unreadable: {e}")))?;
        Ok(Some((stored, entry.revision)))
    }

    /// The active sessions of agent `user`: the replica says which, the
    /// bucket gives their records.
    pub async fn sessions_of(&self, user: &str) -> Vec<SessionRecord> {
        let mut out = Vec::new();
        for id in self.replica.sessions_of(user) {
            match self.get(&id).await {
                Ok(Some(r)) if r.is_active() && r.agent(user).is_some() => out.push(r),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(session = %id, error = %e.detail(), "cannot read a session")
                }
            }
        }
        out.sort_by_key(|r| r.received_ms);
        out
    }

    pub fn load(&self) -> HashMap<String, usize> {
        self.replica.load()
    }

    pub fn placed(&self) -> HashMap<String, Vec<(String, SessionStatus)>> {
        let mut out: HashMap<String, Vec<(String, SessionStatus)>> = HashMap::new();
        for s in self.replica.read().sessions.values() {
            if let Some((queue, status)) = &s.placed {
                out.entry(queue.clone())
                    .or_default()
                    .push((s.id.clone(), *status));
            }
        }
        out
    }

    /// Deletes completed sessions last changed before `cutoff_ms`.
    pub async fn sweep(&self, cutoff_ms: u64) -> usize {
        let done = self.replica.completed_before(cutoff_ms);
        for id in &done {
            let key = session_key(id);
            self.replica.write().see(key.clone(), Seen::Removed);
            for key in [key, log_key(id)] {
                let subject = format!("{}{}", self.kv.prefix, key);
                if let Err(e) = self.kv.stream.purge().filter(subject).await {
                    tracing::warn!(session = %id, error = %e, "cannot delete a completed session");
                }
            }
        }
        done.len()
    }
}

fn session_key(id: &str) -> String {
    format!("session.{}", token(id))
}

fn log_key(id: &str) -> String {
    format!("log.{}", token(id))
}

/// A session's recent messages, complete up to record `revision`
/// (`None`: no change has added any yet).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Transcript {
    revision: Option<u64>,
    messages: std::collections::VecDeque<Arc<Message>>,
}

fn encode(stored: &Stored) -> Result<Bytes, OpError> {
    serde_json::to_vec(stored)
        .map(Bytes::from)
        .map_err(|e| OpError::store(format!("cannot encode a session: {e}")))
}

/// A growing pause, with jitter so that waiters do not look in step.
async fn pause(attempt: u32) {
    let base = (1u64 << attempt.min(6)).min(MAX_PAUSE_MS);
    let jitter = rand::random::<u64>() % (base + 1);
    tokio::time::sleep(Duration::from_millis(base / 2 + jitter)).await;
}

/// The header carrying a committed record's [`Summary`].
const SUMMARY_HEADER: &str = "Chatgate-Session";

/// What a write to a session's key failed with.
enum Put {
    /// The key was not at the expected revision.
    Conflict,
    Failed(OpError),
}

impl Put {
    fn message(&self) -> String {
        match self {
            Put::Conflict => "the session changed meanwhile".into(),
            Put::Failed(e) => e.detail(),
        }
    }
}

/// What the replicas keep of a committed record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Summary {
    id: String,
    revision: u64,
    active: bool,
    agents: Vec<String>,
    received_ms: u64,
    updated_ms: u64,
    /// The queue the session was placed in, with its state then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    placed: Option<(String, SessionStatus)>,
}

impl Summary {
    fn of(record: &SessionRecord) -> Self {
        Summary {
            id: record.id.clone(),
            revision: record.revision,
            active: record.is_active(),
            agents: record.agent_users().map(str::to_owned).collect(),
            received_ms: record.received_ms,
            updated_ms: record.updated_ms,
            placed: record.placed_in.clone().map(|q| (q, record.status)),
        }
    }
}

/// What a message of the bucket says about its key.
enum Seen {
    Committed(Summary),
    /// Deleted.
    Removed,
    /// A claim or a creation in progress: nothing committed changed.
    InFlight,
}

impl Seen {
    fn of(headers: Option<&async_nats::HeaderMap>) -> Self {
        let Some(headers) = headers else {
            return Seen::InFlight;
        };
        if let Some(summary) = headers.get(SUMMARY_HEADER) {
            return serde_json::from_str(summary.as_str()).map_or(Seen::InFlight, Seen::Committed);
        }
        match headers.get("KV-Operation").map(|v| v.as_str()) {
            Some("DEL") | Some("PURGE") => Seen::Removed,
            _ => Seen::InFlight,
        }
    }
}

/// This engine's summaries of the committed records, by key, for routing
/// and listings.
#[derive(Default)]
struct Replica {
    inner: RwLock<ReplicaInner>,
}

#[derive(Default)]
struct ReplicaInner {
    sessions: HashMap<String, Summary>,
    /// Agent user id -> the keys of its active sessions.
    active: HashMap<String, BTreeSet<String>>,
}

impl Replica {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, ReplicaInner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, ReplicaInner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn replace(&self, inner: ReplicaInner) {
        *self.write() = inner;
    }

    /// Ids of the active sessions of `user`.
    fn sessions_of(&self, user: &str) -> Vec<String> {
        let inner = self.read();
        inner
            .active
            .get(user)
            .into_iter()
            .flatten()
            .filter_map(|key| inner.sessions.get(key))
            .map(|s| s.id.clone())
            .collect()
    }

    fn load(&self) -> HashMap<String, usize> {
        self.read()
            .active
            .iter()
            .map(|(agent, sessions)| (agent.clone(), sessions.len()))
            .collect()
    }

    fn completed_before(&self, cutoff_ms: u64) -> Vec<String> {
        self.read()
            .sessions
            .values()
            .filter(|s| !s.active && s.updated_ms < cutoff_ms)
            .map(|s| s.id.clone())
            .collect()
    }
}

impl ReplicaInner {
    fn see(&mut self, key: String, seen: Seen) {
        match seen {
            Seen::InFlight => {}
            Seen::Removed => self.remove(&key),
            Seen::Committed(summary) => {
                // An older revision arriving late changes nothing.
                if self
                    .sessions
                    .get(&key)
                    .is_some_and(|s| s.revision > summary.revision)
                {
                    return;
                }
                self.remove(&key);
                if summary.active {
                    for agent in &summary.agents {
                        self.active
                            .entry(agent.clone())
                            .or_default()
                            .insert(key.clone());
                    }
                }
                self.sessions.insert(key, summary);
            }
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some(old) = self.sessions.remove(key) {
            for agent in &old.agents {
                if let Some(keys) = self.active.get_mut(agent) {
                    keys.remove(key);
                    if keys.is_empty() {
                        self.active.remove(agent);
                    }
                }
            }
        }
    }
}
