//! The session store: where session records live, and the one place where
//! an operation is applied and its notifications published.
//!
//! # Contract (every implementation keeps it)
//!
//! - [`Store::apply`] applies one operation to one session atomically: the
//!   operation function gets the current record and returns the next one
//!   plus its notifications ([`Change`]); the store publishes the
//!   notifications, in order, and the change is visible to later
//!   operations only if the publish succeeded. A refused operation
//!   (`Err` from the function) or a failed publish changes nothing.
//! - Operations on one session are serialized: none is lost, and the
//!   notifications of one session reach the bus in the order their
//!   changes were applied. Operations on different sessions run in
//!   parallel.
//! - The operation function may be called more than once (an
//!   implementation with compare-and-set retries it on a newer revision),
//!   so it must be pure: everything it needs is captured before.
//! - `revision` increases by one per applied change; the store sets it.
//! - The store keeps each session's recent messages (the `messages` of its
//!   published NewMessages, bounded), apart from the record: an operation
//!   copies only the small record, never the transcript.
//!
//! Implementations: [`MemoryStore`] (one process: a per-session async mutex
//! held across apply + publish) and
//! [`NatsStore`](super::nats_store::NatsStore) (every engine on a NATS
//! bus: a JetStream KV bucket, compare-and-set on the revision, and a
//! per-session claim held across publish + commit).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use dashmap::DashMap;
use tokio::sync::Mutex;

use super::error::OpError;
use super::record::{SessionRecord, SessionStatus};
use crate::event::{Event, EventError};
use crate::model::{Message, Notification};

/// Where an applied change's notifications go (the bus, through a
/// `Publisher`).
pub trait Publish: Send + Sync {
    /// Publishes a batch in order; `Err` means none may be assumed
    /// delivered.
    fn publish_batch(
        &self,
        batch: Vec<Notification>,
    ) -> impl Future<Output = Result<(), OpError>> + Send;

    /// Publishes with an idempotency key (see `Bus::publish_keyed`): a
    /// store that may publish a batch again uses it to store it once.
    fn publish_batch_keyed(
        &self,
        batch: Vec<Notification>,
        _key: &str,
    ) -> impl Future<Output = Result<(), OpError>> + Send {
        self.publish_batch(batch)
    }
}

/// The outcome of an operation function: the next record, the
/// notifications of the change (published in this order), and a value
/// for the caller.
pub struct Change<T> {
    pub record: SessionRecord,
    pub notifications: Vec<Notification>,
    pub output: T,
}

/// The session store of this process.
pub enum Store {
    Memory(MemoryStore),
    /// Shared by every engine on a NATS bus (see `nats_store`).
    Nats(Box<super::nats_store::NatsStore>),
}

impl Store {
    /// An in-memory store keeping `log_limit` messages per session.
    pub fn memory(log_limit: usize) -> Self {
        Store::Memory(MemoryStore::new(log_limit))
    }

    /// A copy of the current record.
    pub async fn get(&self, id: &str) -> Option<SessionRecord> {
        match self {
            Store::Memory(s) => s.get(id).await,
            Store::Nats(s) => s.get(id).await.unwrap_or_else(|e| {
                tracing::warn!(session = %id, error = %e.detail(), "cannot read a session");
                None
            }),
        }
    }

    /// Creates a session with its first notifications. Fails with
    /// `Conflict` if the id exists, `Unavailable` if the publish fails
    /// (then the session does not exist).
    pub async fn create<P: Publish>(
        &self,
        record: SessionRecord,
        notifications: Vec<Notification>,
        publisher: &P,
    ) -> Result<(), OpError> {
        match self {
            Store::Memory(s) => s.create(record, notifications, publisher).await,
            Store::Nats(s) => s.create(record, notifications, publisher).await,
        }
    }

    /// Applies `op` to session `id` (see the module contract).
    pub async fn apply<T, F, P>(&self, id: &str, op: F, publisher: &P) -> Result<T, OpError>
    where
        F: FnMut(&SessionRecord) -> Result<Change<T>, OpError> + Send,
        T: Send,
        P: Publish,
    {
        match self {
            Store::Memory(s) => s.apply(id, op, publisher).await,
            Store::Nats(s) => s.apply(id, op, publisher).await,
        }
    }

    /// The session's recent messages, oldest first (empty if unknown).
    pub async fn messages(&self, id: &str) -> Vec<Arc<Message>> {
        match self {
            Store::Memory(s) => s.messages(id).await,
            Store::Nats(s) => s.messages(id).await.unwrap_or_else(|e| {
                tracing::warn!(session = %id, error = %e.detail(), "cannot read a transcript");
                Vec::new()
            }),
        }
    }

    /// The active (not completed) sessions agent `user` is in.
    pub async fn sessions_of(&self, user: &str) -> Vec<SessionRecord> {
        match self {
            Store::Memory(s) => s.sessions_of(user).await,
            Store::Nats(s) => s.sessions_of(user).await,
        }
    }

    /// The sessions placed in a queue (Complete with `queueName`, or
    /// waiting there after every agent rejected them): queue id ->
    /// (session id, state), by session id.
    pub async fn placed(&self) -> HashMap<String, Vec<(String, SessionStatus)>> {
        let mut placed = match self {
            Store::Memory(s) => s.placed(),
            Store::Nats(s) => s.placed(),
        };
        for sessions in placed.values_mut() {
            sessions.sort_by(|a, b| a.0.cmp(&b.0));
        }
        placed
    }

    /// Active sessions per agent user id (agents in none are absent).
    pub async fn load(&self) -> HashMap<String, usize> {
        match self {
            Store::Memory(s) => s.load(),
            Store::Nats(s) => s.load(),
        }
    }

    /// The next `referenceId`, unique across the engines sharing this
    /// store; `None` when the store does not hand them out.
    pub async fn next_reference(&self) -> Result<Option<u64>, OpError> {
        match self {
            Store::Memory(_) => Ok(None),
            Store::Nats(s) => s.next_reference().await.map(Some),
        }
    }

    /// Keeps what the store mirrors up to date until `shutdown`.
    pub async fn follow(&self, shutdown: tokio_util::sync::CancellationToken) {
        if let Store::Nats(s) = self {
            s.follow(shutdown).await;
        }
    }

    /// Forgets completed sessions last changed before `cutoff_ms`.
    pub async fn sweep(&self, cutoff_ms: u64) -> usize {
        match self {
            Store::Memory(s) => s.sweep(cutoff_ms),
            Store::Nats(s) => s.sweep(cutoff_ms).await,
        }
    }
}

/// One session: its record and its recent messages, under one lock.
struct Entry {
    record: SessionRecord,
    log: VecDeque<Arc<Message>>,
}

type Slot = Arc<Mutex<Entry>>;

/// Sessions in this process's memory.
pub struct MemoryStore {
    sessions: DashMap<String, Slot>,
    /// Agent user id -> its active sessions; kept in step with the records
    /// under each session's lock.
    active: DashMap<String, BTreeSet<String>>,
    /// Session id -> the queue it was placed in and its state; kept in
    /// step with the records like `active`.
    placed: DashMap<String, (String, SessionStatus)>,
    /// Messages kept per session.
    log_limit: usize,
}

impl MemoryStore {
    pub fn new(log_limit: usize) -> Self {
        Self {
            sessions: DashMap::new(),
            active: DashMap::new(),
            placed: DashMap::new(),
            log_limit: log_limit.max(1),
        }
    }

    /// The slot of `id`, cloned out so no map guard is held across awaits.
    fn slot(&self, id: &str) -> Option<Slot> {
        self.sessions.get(id).map(|s| s.value().clone())
    }

    async fn get(&self, id: &str) -> Option<SessionRecord> {
        let slot = self.slot(id)?;
        let entry = slot.lock().await;
        Some(entry.record.clone())
    }

    async fn messages(&self, id: &str) -> Vec<Arc<Message>> {
        match self.slot(id) {
            Some(slot) => slot.lock().await.log.iter().cloned().collect(),
            None => Vec::new(),
        }
    }

    /// Appends the messages of `notifications` to the entry's log.
    fn log(&self, log: &mut VecDeque<Arc<Message>>, messages: Vec<Arc<Message>>) {
        log.extend(messages);
        while log.len() > self.log_limit {
            log.pop_front();
        }
    }

    async fn create<P: Publish>(
        &self,
        record: SessionRecord,
        notifications: Vec<Notification>,
        publisher: &P,
    ) -> Result<(), OpError> {
        let id = record.id.clone();
        let messages = messages_of(&notifications);
        let slot: Slot = Arc::new(Mutex::new(Entry {
            record,
            log: VecDeque::new(),
        }));
        // Locked before it is visible: an operation arriving before the
        // publish completes waits for it.
        let mut guard = slot.clone().lock_owned().await;
        match self.sessions.entry(id.clone()) {
            dashmap::Entry::Occupied(_) => {
                return Err(OpError::Conflict(format!("session {id} exists")))
            }
            dashmap::Entry::Vacant(v) => {
                v.insert(slot);
            }
        }
        if let Err(e) = publisher.publish_batch(notifications).await {
            self.sessions.remove(&id);
            return Err(e);
        }
        self.index(None, &guard.record);
        self.log(&mut guard.log, messages);
        Ok(())
    }

    async fn apply<T, F, P>(&self, id: &str, mut op: F, publisher: &P) -> Result<T, OpError>
    where
        F: FnMut(&SessionRecord) -> Result<Change<T>, OpError>,
        P: Publish,
    {
        let slot = self
            .slot(id)
            .ok_or_else(|| OpError::NotFound(format!("no session {id}")))?;
        let mut current = slot.lock().await;
        let Change {
            mut record,
            notifications,
            output,
        } = op(&current.record)?;
        record.revision = current.record.revision + 1;
        let messages = messages_of(&notifications);
        publisher.publish_batch(notifications).await?;
        self.index(Some(&current.record), &record);
        current.record = record;
        self.log(&mut current.log, messages);
        Ok(output)
    }

    /// Moves the session between agents' active sets, `before` -> `after`.
    fn index(&self, before: Option<&SessionRecord>, after: &SessionRecord) {
        let agents = |r: &SessionRecord| -> BTreeSet<String> {
            if r.is_active() {
                r.agent_users().map(str::to_owned).collect()
            } else {
                BTreeSet::new()
            }
        };
        let old = before.map(agents).unwrap_or_default();
        let new = agents(after);
        for gone in old.difference(&new) {
            if let dashmap::Entry::Occupied(mut e) = self.active.entry(gone.clone()) {
                e.get_mut().remove(&after.id);
                if e.get().is_empty() {
                    e.remove();
                }
            }
        }
        for added in new.difference(&old) {
            self.active
                .entry(added.clone())
                .or_default()
                .insert(after.id.clone());
        }
        match &after.placed_in {
            Some(queue) => {
                self.placed
                    .insert(after.id.clone(), (queue.clone(), after.status));
            }
            None => {
                self.placed.remove(&after.id);
            }
        }
    }

    fn placed(&self) -> HashMap<String, Vec<(String, SessionStatus)>> {
        let mut out: HashMap<String, Vec<(String, SessionStatus)>> = HashMap::new();
        for e in self.placed.iter() {
            let (queue, status) = e.value();
            out.entry(queue.clone())
                .or_default()
                .push((e.key().clone(), *status));
        }
        out
    }

    async fn sessions_of(&self, user: &str) -> Vec<SessionRecord> {
        let ids: Vec<String> = self
            .active
            .get(user)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(r) = self.get(&id).await {
                if r.is_active() && r.agent(user).is_some() {
                    out.push(r);
                }
            }
        }
        out.sort_by_key(|r| r.received_ms);
        out
    }

    fn load(&self) -> HashMap<String, usize> {
        self.active
            .iter()
            .map(|e| (e.key().clone(), e.value().len()))
            .collect()
    }

    fn sweep(&self, cutoff_ms: u64) -> usize {
        let before = self.sessions.len();
        // try_lock: a session being operated on is not idle; skip it.
        self.sessions.retain(|id, slot| {
            let keep = match slot.try_lock() {
                Ok(e) => e.record.is_active() || e.record.updated_ms >= cutoff_ms,
                Err(_) => true,
            };
            if !keep {
                self.placed.remove(id);
            }
            keep
        });
        before - self.sessions.len()
    }
}

/// The messages of the NewMessages among `notifications`, in order.
pub(super) fn messages_of(notifications: &[Notification]) -> Vec<Arc<Message>> {
    notifications
        .iter()
        .filter_map(|n| n.messages.as_ref())
        .flatten()
        .map(|m| Arc::new(m.clone()))
        .collect()
}

/// The engine's notifications as the bus carries them: serialized once,
/// and refused as a whole (HTTP 400, nothing changes) when one of their
/// frames would exceed the frame bound `max_frame`.
pub fn events_of(batch: &[Notification], max_frame: usize) -> Result<Vec<Event>, OpError> {
    batch
        .iter()
        .map(|n| {
            Event::parse(Bytes::from(n.to_json_bytes()), max_frame).map_err(|e| match e {
                EventError::TooLarge { bytes, limit } => OpError::bad(format!(
                    "the change would make a notification of {bytes} bytes, over the frame bound of {limit} (CHATGATE_MAX_FRAME_BYTES); nothing changed"
                )),
                other => {
                    // A bug of the engine's, not the caller's: logged, and
                    // the change is not made.
                    tracing::error!(error = %other, "the engine built an invalid notification");
                    OpError::Unavailable("the change could not be published; nothing changed".into())
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::record::{Member, SessionStatus};
    use crate::model::{NotificationType, ParticipantType, Visibility};
    use std::sync::Mutex as StdMutex;

    /// Collects what was published; fails when told to.
    #[derive(Default)]
    struct Sink {
        batches: StdMutex<Vec<Vec<Notification>>>,
        fail: std::sync::atomic::AtomicBool,
    }

    impl Publish for Sink {
        async fn publish_batch(&self, batch: Vec<Notification>) -> Result<(), OpError> {
            if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(OpError::Unavailable("bus down".into()));
            }
            tokio::task::yield_now().await;
            self.batches.lock().unwrap().push(batch);
            Ok(())
        }
    }

    fn record(id: &str, agent: &str) -> SessionRecord {
        let mut r = SessionRecord::new(id.into(), 1, None);
        r.participants.push(Member {
            participant_id: "p1".into(),
            kind: ParticipantType::Agent,
            user: Some(agent.into()),
            nickname: "A".into(),
            visibility: Visibility::All,
        });
        r
    }

    fn marker(r: &SessionRecord) -> Notification {
        let dir = crate::engine::directory::Directory::demo("http://h");
        r.state_change(
            NotificationType::PropertiesUpdated,
            Some(r.next_index),
            &dir,
        )
    }

    /// An operation that bumps `next_index` and announces the new value.
    fn bump(r: &SessionRecord) -> Result<Change<u64>, OpError> {
        let mut next = r.clone();
        next.next_index += 1;
        let n = marker(&next);
        Ok(Change {
            output: next.next_index,
            record: next,
            notifications: vec![n],
        })
    }

    #[tokio::test]
    async fn concurrent_operations_on_one_session_are_all_applied_in_order() {
        let store = Arc::new(Store::memory(100));
        let sink = Arc::new(Sink::default());
        store
            .create(record("s", "a"), vec![], sink.as_ref())
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (store, sink) = (store.clone(), sink.clone());
            tasks.push(tokio::spawn(async move {
                store.apply("s", bump, sink.as_ref()).await.unwrap()
            }));
        }
        let mut outputs = Vec::new();
        for t in tasks {
            outputs.push(t.await.unwrap());
        }
        outputs.sort_unstable();
        assert_eq!(outputs, (2..52).collect::<Vec<u64>>(), "no lost update");
        let r = store.get("s").await.unwrap();
        assert_eq!(r.revision, 50);
        let published: Vec<Value> = sink
            .batches
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .map(|n| n.reference_id.clone().unwrap())
            .collect();
        let expected: Vec<Value> = (2..52u64).map(Value::from).collect();
        assert_eq!(published, expected, "published in applied order");
    }

    use serde_json::Value;

    #[tokio::test]
    async fn refused_or_unpublished_operations_change_nothing() {
        let store = Store::memory(100);
        let sink = Sink::default();
        store.create(record("s", "a"), vec![], &sink).await.unwrap();
        let refused: Result<(), OpError> =
            store.apply("s", |_| Err(OpError::bad("no")), &sink).await;
        assert_eq!(refused, Err(OpError::bad("no")));
        sink.fail.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(matches!(
            store.apply("s", bump, &sink).await,
            Err(OpError::Unavailable(_))
        ));
        let r = store.get("s").await.unwrap();
        assert_eq!((r.revision, r.next_index), (0, 1));
        assert!(matches!(
            store.apply("nope", bump, &sink).await,
            Err(OpError::NotFound(_))
        ));
        assert!(matches!(
            store.create(record("t", "a"), vec![], &sink).await,
            Err(OpError::Unavailable(_))
        ));
        assert!(store.get("t").await.is_none(), "unpublished creation");
    }

    #[tokio::test]
    async fn load_and_sessions_follow_the_records_and_sweep_forgets_completed() {
        let store = Store::memory(100);
        let sink = Sink::default();
        for id in ["s1", "s2"] {
            store.create(record(id, "a"), vec![], &sink).await.unwrap();
        }
        store
            .create(record("s3", "b"), vec![], &sink)
            .await
            .unwrap();
        assert!(matches!(
            store.create(record("s3", "b"), vec![], &sink).await,
            Err(OpError::Conflict(_))
        ));
        let load = store.load().await;
        assert_eq!((load["a"], load["b"]), (2, 1));
        assert_eq!(store.sessions_of("a").await.len(), 2);

        store
            .apply(
                "s1",
                |r| {
                    let mut next = r.clone();
                    next.status = SessionStatus::Completed;
                    next.participants.clear();
                    next.updated_ms = 10;
                    Ok(Change {
                        record: next,
                        notifications: vec![],
                        output: (),
                    })
                },
                &sink,
            )
            .await
            .unwrap();
        assert_eq!(store.load().await["a"], 1);
        assert_eq!(store.sweep(5).await, 0, "completed too recently");
        assert_eq!(store.sweep(11).await, 1);
        assert!(store.get("s1").await.is_none());
        assert!(store.get("s2").await.is_some(), "active sessions stay");
    }

    /// An operation that writes one line.
    fn line(r: &SessionRecord) -> Result<Change<()>, OpError> {
        let dir = crate::engine::directory::Directory::demo("http://h");
        let mut next = r.clone();
        let from = next.participants[0].to_participant(&dir);
        let m = next.push_message(
            crate::engine::record::MessageDraft {
                kind: "Text",
                from,
                visibility: Visibility::All,
                text: Some("hi".into()),
                field: None,
            },
            5,
        );
        let n = next.new_messages(vec![m], None, &dir);
        Ok(Change {
            record: next,
            notifications: vec![n],
            output: (),
        })
    }

    #[tokio::test]
    async fn the_log_keeps_the_latest_published_messages() {
        let store = Store::Memory(MemoryStore::new(10));
        let sink = Sink::default();
        store.create(record("s", "a"), vec![], &sink).await.unwrap();
        for _ in 0..25 {
            store.apply("s", line, &sink).await.unwrap();
        }
        sink.fail.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(store.apply("s", line, &sink).await.is_err());
        let log = store.messages("s").await;
        let indices: Vec<u64> = log.iter().map(|m| m.index).collect();
        assert_eq!(
            indices,
            (16..=25).collect::<Vec<u64>>(),
            "bounded, none unpublished"
        );
        assert!(store.messages("nope").await.is_empty());
    }
}
