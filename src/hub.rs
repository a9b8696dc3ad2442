//! The fan-out hub: sessions, subscriptions, retention, resume.
//!
//! Owns, for this gateway process: every session's [`SessionState`], the
//! retention window of each session's recent frames, and the registry of
//! connected parties (agents by user id, customers by session, supervisors).
//! [`Hub::dispatch`] takes notifications in bus order, serializes each once
//! per audience (agent view, customer view) and offers the shared bytes to
//! every connection entitled to it; it never waits on a connection.
//! [`Hub::attach`] registers a connection and computes what it must get
//! first (a replay after `since`, or a snapshot).
//!
//! One mutex guards all of it on purpose: `dispatch` and `attach` must be
//! atomic with respect to each other, so that a resuming client gets every
//! frame exactly once across the seam between replay and live: the replay
//! holds every frame dispatched before the connection is registered, the
//! live queue every frame after. Nothing under the lock awaits or blocks:
//! fan-out is `try_send` onto bounded queues, and the lock is held for
//! microseconds per notification.
//!
//! Stream ids: an agent's (and supervisor's) frame id is the bus sequence
//! of the notification, the same on every gateway of one bus. Snapshot
//! frames are `"G:1"`, `"G:2"`, ... and the last one `"G"`, where G is the
//! sequence the snapshot covers (a `since` of `"G:k"` is not resumable: the
//! snapshot is sent again). A customer's ids are the session's customer
//! sequence, "1", "2", "3", ...; both snapshot frames carry the current one.
//! A customer's replay re-sends the very bytes of the first delivery: same
//! ids, same renumbered indices.
//!
//! Retention (what `since` can reach), per session: every frame is kept
//! while it is among the session's last `retention_count` frames or younger
//! than `retention_age`, and never more than `retention_max` frames; across
//! all sessions, at most `retention_bytes` of frames are kept (oldest
//! evicted first). A frame costs its agent bytes, its customer bytes and
//! about 200 bytes of bookkeeping (counted in the byte budget). A session that ended (no agent left, or
//! `Completed`) is forgotten once idle for `retention_age`. Whatever was
//! evicted raises a floor; a `since` below the floor of anything the party
//! would have received is a miss (`resumed:false`, snapshot), never a gap.
//!
//! A customer token may connect before its session is known: it gets an
//! empty snapshot and then the session's customer view. Once the session's
//! customer is known, a connection whose subject is another participant is
//! refused at the handshake, and one already open is closed (1008).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::model::{Notification, CHANNEL};
use crate::outbox::{self, Inbox, Outbox, QueueLimits};
use crate::session::SessionState;

/// Limits of the hub, all configurable (see `config`).
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub queue: QueueLimits,
    /// Frames kept per session at least...
    pub retention_count: usize,
    /// ... and for at least this long...
    pub retention_age: Duration,
    /// ... but never more than this many per session (memory bound)...
    pub retention_max: usize,
    /// ... nor more than this many bytes of frames over all sessions.
    pub retention_bytes: usize,
    /// Messages kept per session for snapshots.
    pub log_limit: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            queue: QueueLimits {
                frames: 1024,
                bytes: 1 << 20,
            },
            retention_count: 1000,
            retention_age: Duration::from_secs(600),
            retention_max: 10_000,
            retention_bytes: 256 << 20,
            log_limit: 1000,
        }
    }
}

/// Who a connection is, as far as routing goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Party {
    Agent(String),
    Supervisor,
    Customer {
        session: String,
        participant: String,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AttachError {
    #[error("the token's subject is not the customer of this session")]
    NotTheCustomer,
    #[error("the server is at its connection limit")]
    Full,
}

/// A registered connection: its queue, and what to send before it.
pub struct Attachment {
    pub inbox: Inbox,
    pub resumed: bool,
    pub backlog: Vec<Utf8Bytes>,
    pub registration: Registration,
}

/// Removes the connection from the hub when dropped.
pub struct Registration {
    hub: Arc<Hub>,
    party: Party,
    conn: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.detach(&self.party, self.conn);
    }
}

/// What the hub holds, for tests, metrics and operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HubStats {
    pub sessions: usize,
    pub retained_frames: usize,
    pub retained_bytes: usize,
    pub connections: usize,
    /// Bytes waiting in connections' queues (mostly shared with retention).
    pub queued_bytes: usize,
}

/// Bookkeeping bytes counted per retained frame besides its payloads.
const FRAME_OVERHEAD: usize = std::mem::size_of::<Retained>() + 64;

struct Retained {
    seq: u64,
    customer_seq: Option<u64>,
    audience: Arc<[String]>,
    agent_frame: Utf8Bytes,
    customer_frame: Option<Utf8Bytes>,
    at: Instant,
}

impl Retained {
    fn cost(&self) -> usize {
        FRAME_OVERHEAD
            + self.agent_frame.len()
            + self.customer_frame.as_ref().map_or(0, |f| f.len())
            + self.audience.iter().map(String::len).sum::<usize>()
    }
}

struct SessionEntry {
    state: SessionState,
    retained: VecDeque<Retained>,
    /// Every frame of this session with a sequence above this is retained.
    seq_floor: u64,
    /// Every customer frame with a customer id above this is retained.
    customer_floor: u64,
    /// Each agent ever in an audience of this session, with the last
    /// sequence they were in.
    members: HashMap<String, u64>,
    /// The last bus sequence reflected in `state`: the last applied, or the
    /// one a restored checkpoint covers (later deliveries at or below it are
    /// skipped).
    applied: u64,
    last_activity: Instant,
}

impl SessionEntry {
    fn new(id: &str, seq_floor: u64, now: Instant) -> Self {
        Self {
            state: SessionState::new(id),
            retained: VecDeque::new(),
            seq_floor,
            customer_floor: 0,
            members: HashMap::new(),
            applied: 0,
            last_activity: now,
        }
    }

    /// The sequence of the last frame of this session.
    fn last_seq(&self) -> u64 {
        self.retained.back().map_or(self.seq_floor, |r| r.seq)
    }

    /// Retained frames after `since`, oldest first.
    fn retained_after(&self, since: u64) -> impl Iterator<Item = &Retained> {
        let start = self.retained.partition_point(|r| r.seq <= since);
        self.retained.range(start..)
    }
}

/// Retained frames: how many, how many bytes.
#[derive(Default)]
struct Budget {
    frames: usize,
    bytes: usize,
}

impl Budget {
    fn add(&mut self, r: &Retained) {
        self.frames += 1;
        self.bytes += r.cost();
    }

    fn remove(&mut self, r: &Retained) {
        self.frames = self.frames.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(r.cost());
    }
}

/// A customer's connection: the participant its token names.
struct CustomerConn {
    participant: String,
    outbox: Outbox,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<Arc<str>, SessionEntry>,
    /// Sessions each agent has been in the audience of, for resume and
    /// snapshot; pruned with the sessions.
    agent_sessions: HashMap<String, HashSet<Arc<str>>>,
    /// Per agent, the last sequence they received in a forgotten session:
    /// their replay cannot start below it.
    agent_floors: HashMap<String, u64>,
    /// The last sequence of any forgotten session: a supervisor's replay
    /// cannot start below it.
    purged_floor: u64,
    agents: HashMap<String, HashMap<u64, Outbox>>,
    customers: HashMap<String, HashMap<u64, CustomerConn>>,
    supervisors: HashMap<u64, Outbox>,
    /// The last bus sequence dispatched.
    last_seq: u64,
    /// The sequence before the first this hub saw; nothing at or below it
    /// can be replayed.
    start_floor: Option<u64>,
    /// Retained frames in dispatch order, for the global byte budget. An
    /// entry whose frame a session already evicted is stale: skipped when
    /// reached, compacted away when stale entries pile up.
    order: VecDeque<(u64, Arc<str>)>,
    budget: Budget,
    connections: usize,
}

/// One session's state and the last bus sequence it reflects: what a
/// gateway saves so that another can start from it (see `bus::nats`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionCheckpoint {
    pub seq: u64,
    pub state: SessionState,
}

pub struct Hub {
    inner: Mutex<Inner>,
    /// The last sequence dispatched, for waiters (`wait_for`).
    dispatched: watch::Sender<u64>,
    config: HubConfig,
    metrics: Arc<Metrics>,
    next_conn: AtomicU64,
    max_connections: usize,
}

impl Hub {
    pub fn new(config: HubConfig, max_connections: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner::default()),
            dispatched: watch::Sender::new(0),
            config,
            metrics,
            next_conn: AtomicU64::new(1),
            max_connections,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock would be a bug in this module; the
        // data stays consistent per notification, so keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn last_seq(&self) -> u64 {
        self.lock().last_seq
    }

    pub fn connection_count(&self) -> usize {
        self.lock().connections
    }

    /// Open connections by role, for `/metrics`.
    pub fn connections_by_role(&self) -> Vec<(&'static str, usize)> {
        let inner = self.lock();
        let agents = inner.agents.values().map(HashMap::len).sum();
        let customers = inner.customers.values().map(HashMap::len).sum();
        vec![
            ("agent", agents),
            ("customer", customers),
            ("supervisor", inner.supervisors.len()),
        ]
    }

    /// What the hub holds now.
    pub fn stats(&self) -> HubStats {
        let inner = self.lock();
        let agent_queues = inner.agents.values().flat_map(HashMap::values);
        let customer_queues = inner
            .customers
            .values()
            .flat_map(HashMap::values)
            .map(|c| &c.outbox);
        let queued_bytes = agent_queues
            .chain(customer_queues)
            .chain(inner.supervisors.values())
            .map(Outbox::queued_bytes)
            .sum();
        HubStats {
            sessions: inner.sessions.len(),
            retained_frames: inner.budget.frames,
            retained_bytes: inner.budget.bytes,
            connections: inner.connections,
            queued_bytes,
        }
    }

    /// Applies one notification with bus sequence `seq` and fans it out.
    /// Sequences must increase; a repeated or older one (a bus redelivery)
    /// is ignored, so nobody gets a frame twice.
    pub fn dispatch(&self, seq: u64, n: &Notification) {
        let Some(session_id) = n.session_id() else {
            return;
        };
        let mut guard = self.lock();
        let inner = &mut *guard;
        if seq <= inner.last_seq {
            self.metrics.redeliveries_ignored.inc();
            return;
        }
        let start_floor = *inner.start_floor.get_or_insert(seq - 1);
        inner.last_seq = seq;
        self.dispatched.send_replace(seq);
        let now = Instant::now();
        let key: Arc<str> = match inner.sessions.get_key_value(session_id) {
            Some((key, _)) => key.clone(),
            None => {
                let key: Arc<str> = Arc::from(session_id);
                let entry = SessionEntry::new(session_id, start_floor, now);
                inner.sessions.insert(key.clone(), entry);
                key
            }
        };
        let Some(entry) = inner.sessions.get_mut(session_id) else {
            return;
        };
        if seq <= entry.applied {
            // Already in the checkpoint this session was restored from.
            return;
        }
        entry.applied = seq;
        let applied = entry.state.apply(n, self.config.log_limit);
        entry.last_activity = now;

        let agent_frame = notification_frame(&seq.to_string(), n);
        self.metrics.serializations.inc();
        let customer_frame = applied.customer.as_ref().map(|(cseq, view)| {
            self.metrics.serializations.inc();
            notification_frame(&cseq.to_string(), view)
        });
        let audience: Arc<[String]> = applied.audience.into();
        // Allocating only the first time (this runs for every notification
        // and agent).
        for agent in audience.iter() {
            match entry.members.get_mut(agent) {
                Some(last) => *last = seq,
                None => {
                    entry.members.insert(agent.clone(), seq);
                }
            }
            if !inner
                .agent_sessions
                .get(agent)
                .is_some_and(|s| s.contains(session_id))
            {
                inner
                    .agent_sessions
                    .entry(agent.clone())
                    .or_default()
                    .insert(key.clone());
            }
        }
        let retained = Retained {
            seq,
            customer_seq: applied.customer.as_ref().map(|c| c.0),
            audience: audience.clone(),
            agent_frame: agent_frame.clone(),
            customer_frame: customer_frame.clone(),
            at: now,
        };
        inner.budget.add(&retained);
        entry.retained.push_back(retained);
        inner.order.push_back((seq, key));
        evict(entry, &self.config, now, &mut inner.budget);
        let customer = entry.state.customer.clone();

        self.fan_out(
            inner,
            session_id,
            &audience,
            &agent_frame,
            customer_frame.as_ref().map(|f| (f, customer.as_deref())),
            now,
        );
        self.keep_budget(inner);
        self.metrics.notifications_dispatched.inc();
    }

    /// Offers the frames to their audiences. `customer` is the customer
    /// frame with the session's customer, if known: another participant's
    /// connection is revoked instead. `at` is when the notification was
    /// taken off the bus.
    fn fan_out(
        &self,
        inner: &mut Inner,
        session_id: &str,
        audience: &[String],
        agent_frame: &Utf8Bytes,
        customer: Option<(&Utf8Bytes, Option<&str>)>,
        at: Instant,
    ) {
        let metrics = &self.metrics;
        let offer = |out: &Outbox, frame: &Utf8Bytes, audience: &str| {
            let ok = out.offer(frame, at);
            if ok {
                metrics.frames_out(audience, frame.len());
            } else {
                metrics.queue_overflows.inc();
            }
            ok
        };
        for agent in audience {
            if let Some(conns) = inner.agents.get_mut(agent) {
                conns.retain(|_, out| offer(out, agent_frame, "agent"));
            }
        }
        inner
            .supervisors
            .retain(|_, out| offer(out, agent_frame, "agent"));
        let Some((frame, known)) = customer else {
            return;
        };
        if let Some(conns) = inner.customers.get_mut(session_id) {
            conns.retain(|_, c| {
                if known.is_some_and(|k| k != c.participant) {
                    c.outbox.revoke();
                    return false;
                }
                offer(&c.outbox, frame, "customer")
            });
        }
    }

    /// Evicts the oldest frames of all sessions while retention is over
    /// its byte budget, and drops stale entries of the eviction order.
    fn keep_budget(&self, inner: &mut Inner) {
        let Inner {
            sessions,
            order,
            budget,
            ..
        } = inner;
        while budget.bytes > self.config.retention_bytes {
            let Some((seq, session)) = order.pop_front() else {
                break;
            };
            if let Some(entry) = sessions.get_mut(&session) {
                if entry.retained.front().is_some_and(|r| r.seq == seq) {
                    pop_oldest(entry, budget);
                }
            }
        }
        if order.len() > 2 * budget.frames + 1024 {
            order.retain(|(seq, session)| {
                sessions
                    .get(session)
                    .and_then(|e| e.retained.front())
                    .is_some_and(|front| front.seq <= *seq)
            });
        }
    }

    /// Registers a connection of `party` and computes what it gets first:
    /// with `since` inside the retention window, every missed frame, in
    /// order (`resumed`); otherwise a snapshot of each session it is in.
    pub fn attach(
        self: &Arc<Self>,
        party: &Party,
        since: Option<&str>,
    ) -> Result<Attachment, AttachError> {
        let mut inner = self.lock();
        if inner.connections >= self.max_connections {
            return Err(AttachError::Full);
        }
        if let Party::Customer {
            session,
            participant,
        } = party
        {
            let known = inner
                .sessions
                .get(session.as_str())
                .and_then(|e| e.state.customer.as_deref());
            if known.is_some_and(|c| c != participant) {
                return Err(AttachError::NotTheCustomer);
            }
        }
        let replay = since.and_then(|s| replay(&inner, party, s));
        let resumed = replay.is_some();
        match (since.is_some(), resumed) {
            (true, true) => self.metrics.resume_hits.inc(),
            (true, false) => self.metrics.resume_misses.inc(),
            _ => {}
        }
        let backlog = match replay {
            Some(frames) => frames,
            None => snapshot(&inner, party),
        };
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (outbox, inbox) = outbox::channel(self.config.queue);
        match party {
            Party::Agent(a) => {
                inner
                    .agents
                    .entry(a.clone())
                    .or_default()
                    .insert(conn, outbox);
            }
            Party::Supervisor => {
                inner.supervisors.insert(conn, outbox);
            }
            Party::Customer {
                session,
                participant,
            } => {
                let customer = CustomerConn {
                    participant: participant.clone(),
                    outbox,
                };
                inner
                    .customers
                    .entry(session.clone())
                    .or_default()
                    .insert(conn, customer);
            }
        }
        inner.connections += 1;
        Ok(Attachment {
            inbox,
            resumed,
            backlog,
            registration: Registration {
                hub: self.clone(),
                party: party.clone(),
                conn,
            },
        })
    }

    fn detach(&self, party: &Party, conn: u64) {
        let mut inner = self.lock();
        inner.connections = inner.connections.saturating_sub(1);
        match party {
            Party::Agent(a) => remove_conn(&mut inner.agents, a, conn),
            Party::Supervisor => {
                inner.supervisors.remove(&conn);
            }
            Party::Customer { session, .. } => remove_conn(&mut inner.customers, session, conn),
        }
    }

    /// Evicts frames past the retention window and forgets ended sessions
    /// idle for longer than it. Called periodically.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut guard = self.lock();
        let inner = &mut *guard;
        let mut purged = Vec::new();
        for (id, entry) in inner.sessions.iter_mut() {
            evict(entry, &self.config, now, &mut inner.budget);
            let ended = entry.state.agents.is_empty() || is_completed(&entry.state);
            if ended && now.duration_since(entry.last_activity) > self.config.retention_age {
                purged.push(id.clone());
            }
        }
        for id in purged {
            if let Some(entry) = inner.sessions.remove(&id) {
                forget(inner, &id, entry);
            }
        }
        self.keep_budget(inner);
    }

    /// Waits up to `wait` until this hub has dispatched what `since` (a
    /// resume id `party` was given, possibly by another gateway of the same
    /// bus) refers to, so that a resume on a gateway a little behind
    /// another one still finds every frame. Returns at once when it has.
    pub async fn wait_for(&self, party: &Party, since: &str, wait: Duration) {
        let mut dispatched = self.dispatched.subscribe();
        let reached = |hub: &Hub| -> bool {
            let inner = hub.lock();
            match party {
                Party::Customer { session, .. } => since.parse::<u64>().map_or(true, |s| {
                    inner
                        .sessions
                        .get(session.as_str())
                        .is_some_and(|e| e.state.customer_seq >= s)
                }),
                Party::Agent(_) | Party::Supervisor => {
                    let covered = since.split(':').next().unwrap_or_default();
                    covered.parse::<u64>().map_or(true, |s| inner.last_seq >= s)
                }
            }
        };
        let _ = tokio::time::timeout(wait, async {
            while !reached(self) {
                if dispatched.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }

    /// The last sequence dispatched, and the sessions changed after
    /// sequence `after` as of it (their checkpoints, taken afterwards with
    /// [`Hub::checkpoints_of`], reflect at least that much).
    pub fn changed_since(&self, after: u64) -> (u64, Vec<String>) {
        let inner = self.lock();
        let ids = inner
            .sessions
            .iter()
            .filter(|(_, e)| e.applied > after)
            .map(|(id, _)| id.to_string())
            .collect();
        (inner.last_seq, ids)
    }

    /// The current checkpoints of the sessions `ids` this hub still knows.
    /// Asked a few at a time, so that copying states never holds the hub
    /// for long.
    pub fn checkpoints_of(&self, ids: &[String]) -> Vec<SessionCheckpoint> {
        let inner = self.lock();
        ids.iter()
            .filter_map(|id| inner.sessions.get(id.as_str()))
            .map(|e| SessionCheckpoint {
                seq: e.applied,
                state: e.state.clone(),
            })
            .collect()
    }

    /// Whether this hub knows the session (it is purged once ended and idle).
    pub fn has_session(&self, id: &str) -> bool {
        self.lock().sessions.contains_key(id)
    }

    /// Starts this hub from saved checkpoints instead of the bus's whole
    /// history: the next delivery expected is `watermark + 1`, and each
    /// session skips the deliveries its checkpoint already covers. Nothing
    /// at or below `watermark` can be replayed to a resuming client (they
    /// get a snapshot). Meant for a hub that has dispatched nothing yet;
    /// sessions it already knows are kept as they are.
    pub fn restore(&self, watermark: u64, checkpoints: Vec<SessionCheckpoint>) {
        let now = Instant::now();
        let mut guard = self.lock();
        let inner = &mut *guard;
        inner.last_seq = inner.last_seq.max(watermark);
        let floor = inner.last_seq;
        inner.start_floor = Some(inner.start_floor.map_or(floor, |f| f.max(floor)));
        self.dispatched.send_replace(floor);
        for cp in checkpoints {
            if inner.sessions.contains_key(cp.state.id.as_str()) {
                continue;
            }
            let key: Arc<str> = Arc::from(cp.state.id.as_str());
            // Its agents may have had frames up to the checkpoint: their
            // replays cannot start below it.
            let members = cp
                .state
                .agents
                .iter()
                .map(|agent| (agent.clone(), cp.seq))
                .collect();
            for agent in &cp.state.agents {
                inner
                    .agent_sessions
                    .entry(agent.clone())
                    .or_default()
                    .insert(key.clone());
            }
            let entry = SessionEntry {
                customer_floor: cp.state.customer_seq,
                state: cp.state,
                retained: VecDeque::new(),
                seq_floor: floor.max(cp.seq),
                members,
                applied: cp.seq,
                last_activity: now,
            };
            inner.sessions.insert(key, entry);
        }
    }

    /// The current state of a session as seen by this gateway (for tests
    /// and operations).
    pub fn session_state(&self, id: &str) -> Option<SessionState> {
        self.lock().sessions.get(id).map(|e| e.state.clone())
    }
}

/// Forgets a purged session, raising the floors of whoever was in it.
fn forget(inner: &mut Inner, id: &str, entry: SessionEntry) {
    for r in &entry.retained {
        inner.budget.remove(r);
    }
    inner.purged_floor = inner.purged_floor.max(entry.last_seq());
    for (agent, last) in entry.members {
        let floor = inner.agent_floors.entry(agent.clone()).or_default();
        *floor = (*floor).max(last);
        if let Some(sessions) = inner.agent_sessions.get_mut(&agent) {
            sessions.remove(id);
            if sessions.is_empty() {
                inner.agent_sessions.remove(&agent);
            }
        }
    }
}

fn is_completed(state: &SessionState) -> bool {
    state
        .session
        .as_ref()
        .and_then(|s| s.state.as_deref())
        .is_some_and(|s| s == "Completed")
}

fn remove_conn<T>(map: &mut HashMap<String, HashMap<u64, T>>, key: &str, conn: u64) {
    if let Some(conns) = map.get_mut(key) {
        conns.remove(&conn);
        if conns.is_empty() {
            map.remove(key);
        }
    }
}

/// Applies the per-session retention rule (see the module doc).
fn evict(entry: &mut SessionEntry, config: &HubConfig, now: Instant, budget: &mut Budget) {
    while let Some(front) = entry.retained.front() {
        let len = entry.retained.len();
        let over_count = len > config.retention_count;
        let old = now.duration_since(front.at) > config.retention_age;
        if !(len > config.retention_max || (over_count && old)) {
            break;
        }
        pop_oldest(entry, budget);
    }
}

/// Evicts the oldest retained frame of a session, raising its floors.
fn pop_oldest(entry: &mut SessionEntry, budget: &mut Budget) {
    if let Some(front) = entry.retained.pop_front() {
        entry.seq_floor = front.seq;
        if let Some(c) = front.customer_seq {
            entry.customer_floor = c;
        }
        budget.remove(&front);
    }
}

/// The frames `party` missed after `since`, or `None` when they are not
/// all retained (or `since` is not an id this hub handed out).
fn replay(inner: &Inner, party: &Party, since: &str) -> Option<Vec<Utf8Bytes>> {
    let since_seq: u64 = since.parse().ok()?;
    match party {
        Party::Customer { session, .. } => customer_replay(inner, session, since_seq),
        Party::Agent(agent) => agent_replay(inner, agent, since_seq),
        Party::Supervisor => supervisor_replay(inner, since_seq),
    }
}

fn customer_replay(inner: &Inner, session: &str, since: u64) -> Option<Vec<Utf8Bytes>> {
    let Some(entry) = inner.sessions.get(session) else {
        // Nothing was ever sent: only "nothing seen yet" is a valid resume.
        return (since == 0).then(Vec::new);
    };
    if since > entry.state.customer_seq || since < entry.customer_floor {
        return None;
    }
    Some(
        entry
            .retained
            .iter()
            .filter(|r| r.customer_seq.is_some_and(|c| c > since))
            .filter_map(|r| r.customer_frame.clone())
            .collect(),
    )
}

/// Ids this hub cannot vouch for: above what it dispatched, or below what
/// it has seen.
fn outside_stream(inner: &Inner, since: u64) -> bool {
    since > inner.last_seq || inner.start_floor.is_some_and(|f| since < f)
}

fn agent_replay(inner: &Inner, agent: &str, since: u64) -> Option<Vec<Utf8Bytes>> {
    if outside_stream(inner, since) || inner.agent_floors.get(agent).is_some_and(|&f| since < f) {
        return None;
    }
    let mut frames: Vec<&Retained> = Vec::new();
    for session in inner.agent_sessions.get(agent).into_iter().flatten() {
        let entry = inner.sessions.get(session)?;
        if entry.members.get(agent).is_none_or(|&last| last <= since) {
            continue; // nothing of this session for the agent after `since`
        }
        if entry.seq_floor > since {
            return None;
        }
        frames.extend(
            entry
                .retained_after(since)
                .filter(|r| r.audience.iter().any(|a| a == agent)),
        );
    }
    frames.sort_unstable_by_key(|r| r.seq);
    Some(frames.into_iter().map(|r| r.agent_frame.clone()).collect())
}

fn supervisor_replay(inner: &Inner, since: u64) -> Option<Vec<Utf8Bytes>> {
    if outside_stream(inner, since) || since < inner.purged_floor {
        return None;
    }
    let mut frames: Vec<&Retained> = Vec::new();
    for entry in inner.sessions.values() {
        if entry.seq_floor > since {
            return None;
        }
        frames.extend(entry.retained_after(since));
    }
    frames.sort_unstable_by_key(|r| r.seq);
    Some(frames.into_iter().map(|r| r.agent_frame.clone()).collect())
}

/// A snapshot of each session `party` is in.
fn snapshot(inner: &Inner, party: &Party) -> Vec<Utf8Bytes> {
    match party {
        Party::Customer { session, .. } => {
            let Some(entry) = inner.sessions.get(session.as_str()) else {
                return Vec::new();
            };
            let id = entry.state.customer_seq;
            if id == 0 {
                return Vec::new();
            }
            entry
                .state
                .customer_snapshot()
                .iter()
                .map(|v| notification_frame(&id.to_string(), v))
                .collect()
        }
        Party::Agent(_) | Party::Supervisor => {
            let mut states: Vec<&SessionState> = match party {
                Party::Agent(a) => inner
                    .agent_sessions
                    .get(a)
                    .into_iter()
                    .flatten()
                    .filter_map(|s| inner.sessions.get(s))
                    .map(|e| &e.state)
                    .filter(|s| s.has_agent(a))
                    .collect(),
                _ => inner.sessions.values().map(|e| &e.state).collect(),
            };
            states.sort_by(|a, b| a.id.cmp(&b.id));
            let values: Vec<_> = states.iter().flat_map(|s| s.agent_snapshot()).collect();
            let last = inner.last_seq;
            let count = values.len();
            values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let id = if i + 1 == count {
                        last.to_string()
                    } else {
                        format!("{last}:{}", i + 1)
                    };
                    notification_frame(&id, v)
                })
                .collect()
        }
    }
}

/// `{"type":"notification","id":..,"channel":..,"data":..}` as shared bytes.
pub fn notification_frame(id: &str, data: &impl Serialize) -> Utf8Bytes {
    #[derive(Serialize)]
    struct Frame<'a, T> {
        #[serde(rename = "type")]
        kind: &'static str,
        id: &'a str,
        channel: &'static str,
        data: &'a T,
    }
    let frame = Frame {
        kind: "notification",
        id,
        channel: CHANNEL,
        data,
    };
    // Serializing JSON values and model types into a String cannot fail.
    Utf8Bytes::from(serde_json::to_string(&frame).unwrap_or_default())
}
