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
//! frame exactly once across the seam between replay and live. Nothing
//! under the lock awaits or blocks: fan-out is `try_send` onto bounded
//! queues, and the lock is held for microseconds per notification.
//!
//! Stream ids: an agent's (and supervisor's) frame id is the bus sequence
//! of the notification, the same on every gateway of one bus. Snapshot
//! frames are `"G:1"`, `"G:2"`, ... and the last one `"G"`, where G is the
//! sequence the snapshot covers. A customer's ids are the session's
//! customer sequence, "1", "2", "3", ...; both snapshot frames carry the
//! current one.

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
    /// ... but never more than this many per session (memory bound).
    pub retention_max: usize,
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

struct Retained {
    seq: u64,
    customer_seq: Option<u64>,
    audience: Arc<[String]>,
    agent_frame: Utf8Bytes,
    customer_frame: Option<Utf8Bytes>,
    at: Instant,
}

struct SessionEntry {
    state: SessionState,
    retained: VecDeque<Retained>,
    /// Every frame of this session with a sequence above this is retained.
    seq_floor: u64,
    /// Every customer frame with a customer id above this is retained.
    customer_floor: u64,
    /// The last bus sequence reflected in `state`: the last applied, or the
    /// one a restored checkpoint covers (later deliveries at or below it are
    /// skipped).
    applied: u64,
    last_activity: Instant,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<String, SessionEntry>,
    /// Sessions each agent has been in the audience of, for resume and
    /// snapshot; pruned with the sessions.
    agent_sessions: HashMap<String, HashSet<String>>,
    agents: HashMap<String, HashMap<u64, Outbox>>,
    customers: HashMap<String, HashMap<u64, Outbox>>,
    supervisors: HashMap<u64, Outbox>,
    /// The last bus sequence dispatched.
    last_seq: u64,
    /// The sequence before the first this hub saw; nothing at or below it
    /// can be replayed (raised as sessions are purged).
    seq_floor: Option<u64>,
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
        let count = |m: &HashMap<String, HashMap<u64, Outbox>>| m.values().map(HashMap::len).sum();
        vec![
            ("agent", count(&inner.agents)),
            ("customer", count(&inner.customers)),
            ("supervisor", inner.supervisors.len()),
        ]
    }

    /// Applies one notification with bus sequence `seq` and fans it out.
    /// Sequences must increase; a repeated or older one (a bus redelivery)
    /// is ignored, so nobody gets a frame twice.
    pub fn dispatch(&self, seq: u64, n: &Notification) {
        let Some(session_id) = n.session_id() else {
            return;
        };
        let mut inner = self.lock();
        if seq <= inner.last_seq {
            self.metrics.redeliveries_ignored.inc();
            return;
        }
        let hub_floor = *inner.seq_floor.get_or_insert(seq - 1);
        inner.last_seq = seq;
        self.dispatched.send_replace(seq);
        let now = Instant::now();
        // Looked up before inserting: the entry API would allocate the key
        // for every notification.
        if !inner.sessions.contains_key(session_id) {
            let entry = SessionEntry {
                state: SessionState::new(session_id),
                retained: VecDeque::new(),
                seq_floor: hub_floor,
                customer_floor: 0,
                applied: 0,
                last_activity: now,
            };
            inner.sessions.insert(session_id.to_owned(), entry);
        }
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
        entry.retained.push_back(Retained {
            seq,
            customer_seq: applied.customer.as_ref().map(|c| c.0),
            audience: audience.clone(),
            agent_frame: agent_frame.clone(),
            customer_frame: customer_frame.clone(),
            at: now,
        });
        evict(entry, &self.config, now);

        for agent in audience.iter() {
            note_agent_session(&mut inner.agent_sessions, agent, session_id);
        }
        self.fan_out(
            &mut inner,
            session_id,
            &audience,
            &agent_frame,
            customer_frame.as_ref(),
            now,
        );
        self.metrics.notifications_dispatched.inc();
    }

    fn fan_out(
        &self,
        inner: &mut Inner,
        session_id: &str,
        audience: &[String],
        agent_frame: &Utf8Bytes,
        customer_frame: Option<&Utf8Bytes>,
        at: Instant,
    ) {
        let metrics = &self.metrics;
        let offer = |conns: &mut HashMap<u64, Outbox>, frame: &Utf8Bytes, audience: &str| {
            conns.retain(|_, out| {
                let ok = out.offer(frame, at);
                if ok {
                    metrics.frames_out(audience, frame.len());
                } else {
                    metrics.queue_overflows.inc();
                }
                ok
            });
        };
        for agent in audience {
            if let Some(conns) = inner.agents.get_mut(agent) {
                offer(conns, agent_frame, "agent");
            }
        }
        offer(&mut inner.supervisors, agent_frame, "agent");
        if let (Some(frame), Some(conns)) = (customer_frame, inner.customers.get_mut(session_id)) {
            offer(conns, frame, "customer");
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
                .get(session)
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
            Party::Customer { session, .. } => {
                inner
                    .customers
                    .entry(session.clone())
                    .or_default()
                    .insert(conn, outbox);
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
        let mut inner = self.lock();
        let mut purged = Vec::new();
        for (id, entry) in inner.sessions.iter_mut() {
            evict(entry, &self.config, now);
            let ended = entry.state.agents.is_empty() || is_completed(&entry.state);
            if ended && now.duration_since(entry.last_activity) > self.config.retention_age {
                purged.push(id.clone());
            }
        }
        for id in purged {
            if let Some(entry) = inner.sessions.remove(&id) {
                let last = entry.retained.back().map_or(entry.seq_floor, |r| r.seq);
                let floor = inner.seq_floor.get_or_insert(0);
                *floor = (*floor).max(last);
            }
            inner.agent_sessions.retain(|_, sessions| {
                sessions.remove(&id);
                !sessions.is_empty()
            });
        }
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
                        .get(session)
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

    /// The sessions `select(session id, last sequence)` picks, as
    /// checkpoints, with the last sequence dispatched: every session this
    /// hub knows with activity up to it is reflected.
    pub fn checkpoints(
        &self,
        mut select: impl FnMut(&str, u64) -> bool,
    ) -> (u64, Vec<SessionCheckpoint>) {
        let inner = self.lock();
        let picked = inner
            .sessions
            .iter()
            .filter(|(id, e)| select(id, e.applied))
            .map(|(_, e)| SessionCheckpoint {
                seq: e.applied,
                state: e.state.clone(),
            })
            .collect();
        (inner.last_seq, picked)
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
        let mut inner = self.lock();
        inner.last_seq = inner.last_seq.max(watermark);
        let floor = inner.last_seq;
        inner.seq_floor = Some(inner.seq_floor.map_or(floor, |f| f.max(floor)));
        self.dispatched.send_replace(floor);
        for cp in checkpoints {
            if inner.sessions.contains_key(&cp.state.id) {
                continue;
            }
            let id = cp.state.id.clone();
            for agent in &cp.state.agents {
                inner
                    .agent_sessions
                    .entry(agent.clone())
                    .or_default()
                    .insert(id.clone());
            }
            inner.sessions.insert(
                id,
                SessionEntry {
                    customer_floor: cp.state.customer_seq,
                    state: cp.state,
                    retained: VecDeque::new(),
                    seq_floor: floor.max(cp.seq),
                    applied: cp.seq,
                    last_activity: now,
                },
            );
        }
    }

    /// The current state of a session as seen by this gateway (for tests
    /// and operations).
    pub fn session_state(&self, id: &str) -> Option<SessionState> {
        self.lock().sessions.get(id).map(|e| e.state.clone())
    }
}

/// Records that `agent` is in the audience of `session`, allocating only
/// the first time (this runs for every notification and agent).
fn note_agent_session(map: &mut HashMap<String, HashSet<String>>, agent: &str, session: &str) {
    match map.get_mut(agent) {
        Some(sessions) => {
            if !sessions.contains(session) {
                sessions.insert(session.to_owned());
            }
        }
        None => {
            map.insert(agent.to_owned(), HashSet::from([session.to_owned()]));
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

fn remove_conn(map: &mut HashMap<String, HashMap<u64, Outbox>>, key: &str, conn: u64) {
    if let Some(conns) = map.get_mut(key) {
        conns.remove(&conn);
        if conns.is_empty() {
            map.remove(key);
        }
    }
}

fn evict(entry: &mut SessionEntry, config: &HubConfig, now: Instant) {
    while let Some(front) = entry.retained.front() {
        let len = entry.retained.len();
        let over_count = len > config.retention_count;
        let old = now.duration_since(front.at) > config.retention_age;
        if !(len > config.retention_max || (over_count && old)) {
            break;
        }
        entry.seq_floor = front.seq;
        if let Some(c) = front.customer_seq {
            entry.customer_floor = c;
        }
        entry.retained.pop_front();
    }
}

/// The frames `party` missed after `since`, or `None` when they are not
/// all retained (or `since` is not an id this hub handed out).
fn replay(inner: &Inner, party: &Party, since: &str) -> Option<Vec<Utf8Bytes>> {
    match party {
        Party::Customer { session, .. } => {
            let since: u64 = since.parse().ok()?;
            let Some(entry) = inner.sessions.get(session) else {
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
        Party::Agent(_) | Party::Supervisor => {
            // "G:k" ids belong to an unfinished snapshot: not resumable.
            let since: u64 = since.parse().ok()?;
            if since > inner.last_seq || inner.seq_floor.is_some_and(|f| since < f) {
                return None;
            }
            let agent = match party {
                Party::Agent(a) => Some(a.as_str()),
                _ => None,
            };
            let entries: Vec<&SessionEntry> = match agent {
                Some(a) => inner
                    .agent_sessions
                    .get(a)
                    .into_iter()
                    .flatten()
                    .filter_map(|s| inner.sessions.get(s))
                    .collect(),
                None => inner.sessions.values().collect(),
            };
            if entries.iter().any(|e| e.seq_floor > since) {
                return None;
            }
            let mut frames: Vec<&Retained> = entries
                .iter()
                .flat_map(|e| e.retained.iter())
                .filter(|r| r.seq > since)
                .filter(|r| agent.is_none_or(|a| r.audience.iter().any(|x| x == a)))
                .collect();
            frames.sort_by_key(|r| r.seq);
            Some(frames.into_iter().map(|r| r.agent_frame.clone()).collect())
        }
    }
}

/// A snapshot of each session `party` is in.
fn snapshot(inner: &Inner, party: &Party) -> Vec<Utf8Bytes> {
    match party {
        Party::Customer { session, .. } => {
            let Some(entry) = inner.sessions.get(session) else {
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
