//! The fan-out hub: sessions, subscriptions, retention, resume.
//!
//! Owns, for this gateway process, every session's state, its recent
//! frames and message log, and the registry of connected parties. Its
//! parts: [`registry`] (connections and fan-out), [`retention`] (what
//! `since` can reach, and the one memory budget), [`log`] (a session's
//! message log), [`replay`] and [`snapshot`] (what a connection gets
//! first).
//!
//! # Two locks, and the seam between replay and live
//!
//! [`Hub::dispatch`] takes notifications in bus order and works in two
//! steps:
//! 1. *Prepare*, under the `projector` lock only: the session's state
//!    applies the notification, the customer view is projected and
//!    serialized, the agent frame is the notification's bytes as received
//!    in the envelope. Nothing a connection needs is locked meanwhile.
//! 2. *Commit*, under the hub lock (`inner`): the frames are retained,
//!    the log appended, the session's cached snapshot data replaced, the
//!    frames offered to the audience's queues (`try` only: nothing under
//!    the lock waits on a connection), and the memory budget kept. This
//!    takes microseconds, and `/metrics` has its histogram
//!    (`chatgate_hub_lock_hold_seconds`).
//!
//! [`Hub::attach`] registers a connection under the same hub lock and, in
//! the same critical section, takes what the connection must get first:
//! the retained frames after its `since` (a replay), or the handles of a
//! snapshot with the last committed sequence G. Every frame committed
//! before the registration is in the replay or covered by the snapshot
//! (which reads the logs afterwards, cut at G), every frame after it is
//! in the connection's queue: each frame exactly once across the seam.
//! Per-session order is the bus order, since one dispatcher commits.
//! The projector lock is taken only by the dispatcher and by the rare
//! whole-state operations (sweep, checkpoints, restore); it is always
//! taken before the hub lock, and a log's lock after both, so the locks
//! cannot deadlock.
//!
//! # Ids and epochs
//!
//! An agent's (and supervisor's) frame id is the bus sequence of the
//! notification, the same on every gateway of one bus; snapshot frames are
//! `"G:1"`, ..., `"G"`. A customer's ids are the session's customer
//! sequence, "1", "2", "3", ...; every customer snapshot frame carries the
//! current one; a replay re-sends the very bytes of the first delivery.
//! Ids count within an epoch (SPEC 3): agents resume only with the hub's
//! epoch (the bus's: new at every start of an in-memory bus, the stream's
//! on NATS), customers only with `<epoch>.<incarnation>`, where the
//! incarnation is the sequence of the first notification of the session
//! as this history knows it: a session forgotten and seen again is a new
//! incarnation, so a customer's `since` of the old one never resumes into
//! the new numbering.
//!
//! # Memory and forgetting
//!
//! Retained frames, logs and session states count against one budget
//! (`CHATGATE_RETENTION_BYTES`); beyond it the oldest goes first (see
//! [`retention`]). A session is forgotten once ended (no agent left, or
//! `Completed`) and idle for the retention age, or after the session idle
//! time with no notification at all; whatever a forgotten session held
//! raises the floors of its members, so a `since` into it is a miss.
//!
//! A customer token may connect before its session is known: it gets an
//! empty snapshot and then the session's customer view, and its epoch
//! `<epoch>.after-<cut>` resumes in the session's first incarnation after
//! that cut (the one it was numbered in), and in no other. Once the session's
//! customer is known, a connection whose subject is another participant is
//! refused at the handshake, and one already open is closed (1008).

pub mod log;
pub mod registry;
pub mod replay;
pub mod retention;
pub mod snapshot;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use smallvec::SmallVec;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::event::Event;
use crate::frame::AgentFrame;
use crate::metrics::Metrics;
use crate::outbox::{self, Inbox, QueueLimits};
use crate::session::{Applied, LogEntry, SessionCheckpoint, SessionState, ALLOCATION};
use crate::view::CustomerFrame;
use log::Log;
use registry::Registry;
use retention::{Budget, Held, Retained, Retention, RetentionRule};
use snapshot::{AgentSnapshot, CustomerSnap, SessionSnap};

/// Limits of the hub, all configurable (see `config`, which holds every
/// default).
#[derive(Debug, Clone)]
pub struct HubConfig {
    pub queue: QueueLimits,
    pub retention: RetentionRule,
    /// The memory budget of everything kept for resume and snapshots.
    pub retention_bytes: usize,
    /// Messages kept per session for snapshots.
    pub log_limit: usize,
    /// No frame exceeds this.
    pub max_frame: usize,
    /// A session without any notification for this long is forgotten.
    pub session_idle: Duration,
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

/// Where a reconnecting client says it was.
#[derive(Debug, Clone, Copy)]
pub struct Resume<'a> {
    pub since: &'a str,
    pub epoch: Option<&'a str>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AttachError {
    #[error("the token's subject is not the customer of this session")]
    NotTheCustomer,
    #[error("the server is at its connection limit")]
    Full,
}

/// The hub's maps: keyed by session and user ids, hashed on every
/// notification, with a fast hasher seeded per process.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type FastSet<T> = HashSet<T, foldhash::fast::RandomState>;

/// What a connection sends before its live queue.
pub type Backlog<F> = Box<dyn Iterator<Item = F> + Send>;

/// A registered connection: its queue, and what to send before it.
pub struct Attachment<F> {
    pub inbox: Inbox<F>,
    pub resumed: bool,
    /// The epoch of this stream's ids, for the welcome.
    pub epoch: String,
    pub backlog: Backlog<F>,
    pub registration: Registration,
}

/// A registration of either audience.
pub enum Attached {
    Agent(Attachment<AgentFrame>),
    Customer(Attachment<CustomerFrame>),
}

/// Removes the connection from the hub when dropped.
pub struct Registration {
    hub: Arc<Hub>,
    party: Party,
    conn: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut inner = self.hub.inner();
        match &self.party {
            Party::Agent(a) => inner.registry.remove_agent(a, self.conn),
            Party::Supervisor => inner.registry.remove_supervisor(self.conn),
            Party::Customer { session, .. } => inner.registry.remove_customer(session, self.conn),
        }
    }
}

/// What the hub holds, for tests, metrics and operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HubStats {
    pub sessions: usize,
    pub retained_frames: usize,
    /// Bytes counted against the memory budget: retained frames, logs and
    /// session states.
    pub retained_bytes: usize,
    pub connections: usize,
    /// Bytes waiting in connections' queues (mostly shared with retention).
    pub queued_bytes: usize,
}

/// Bookkeeping of one session besides its state (counted in the budget).
const ENTRY_COST: usize = std::mem::size_of::<Entry>() + 4 * ALLOCATION;

/// The dispatch side: every session's state, applied in bus order.
#[derive(Default)]
struct Projector {
    states: FastMap<Arc<str>, SessionState>,
    /// The last bus sequence dispatched.
    last_seq: u64,
}

/// One session as the commit side holds it.
struct Entry {
    incarnation: u64,
    /// Agents in the session now (user ids, sorted).
    agents: Arc<[Box<str>]>,
    customer: Option<Box<str>>,
    customer_seq: u64,
    ended: bool,
    /// The latest state, as a snapshot's ParticipantsUpdated data.
    state: Option<Utf8Bytes>,
    /// The customer's session object as last sent.
    customer_state: Option<Utf8Bytes>,
    path_json: Arc<str>,
    uri: Option<Arc<str>>,
    log: Arc<Log>,
    retention: Retention,
    /// Each agent ever in an audience of this session, with the last
    /// sequence they were in.
    members: FastMap<Box<str>, u64>,
    /// The last bus sequence committed here.
    applied: u64,
    last_activity: Instant,
    /// The session's state and bookkeeping, as counted in the budget.
    cost: usize,
}

impl Entry {
    /// A new entry for `state`: nothing at or below `seq_floor` (bus) nor
    /// `customer_floor` (customer ids) can be replayed from it.
    fn new(state: &SessionState, seq_floor: u64, customer_floor: u64, now: Instant) -> Self {
        Self {
            incarnation: state.incarnation,
            agents: Arc::from([]),
            customer: None,
            customer_seq: state.customer_seq(),
            ended: true,
            state: None,
            customer_state: None,
            path_json: Arc::from(state.path_json()),
            uri: None,
            log: Arc::default(),
            retention: Retention::new(seq_floor, customer_floor),
            members: FastMap::default(),
            applied: state.applied,
            last_activity: now,
            cost: 0,
        }
    }

    /// Takes the committed copies of what attach and sweep read.
    fn take_state(&mut self, state: &SessionState, changed: bool) {
        if changed {
            self.agents = state.agent_list().clone();
            self.customer = state.customer().map(Box::from);
            self.state = state.state().cloned();
            self.ended = state.ended();
        }
        if self.uri.is_none() {
            self.uri = state.uri().map(Arc::from);
        }
        self.customer_seq = state.customer_seq();
        self.customer_state = state.customer_state().cloned();
        self.applied = state.applied;
    }

    fn has_agent(&self, agent: &str) -> bool {
        self.agents.binary_search_by(|a| (**a).cmp(agent)).is_ok()
    }

    fn members_cost(&self) -> usize {
        self.members.keys().map(|k| ALLOCATION + k.len() + 24).sum()
    }
}

struct Inner {
    sessions: FastMap<Arc<str>, Entry>,
    registry: Registry,
    /// Sessions each agent has been in the audience of, for resume and
    /// snapshot; pruned with the sessions.
    agent_sessions: FastMap<Box<str>, FastSet<Arc<str>>>,
    /// Per agent, the last sequence they received in a forgotten session:
    /// their replay cannot start below it.
    agent_floors: FastMap<Box<str>, u64>,
    /// The last sequence of any forgotten session: a supervisor's replay
    /// cannot start below it.
    purged_floor: u64,
    /// The last sequence committed when a session was last forgotten: an
    /// `after-` epoch given out before it no longer names one incarnation.
    forgotten_at: u64,
    /// The last bus sequence committed.
    last_seq: u64,
    /// The sequence before the first this hub saw; nothing at or below it
    /// can be replayed.
    start_floor: Option<u64>,
    budget: Budget,
    /// The server shuts down: every stream ends, and new ones at once.
    closed: bool,
}

pub struct Hub {
    projector: Mutex<Projector>,
    inner: Mutex<Inner>,
    /// The last sequence committed, for waiters (`wait_for`).
    dispatched: watch::Sender<u64>,
    config: HubConfig,
    metrics: Arc<Metrics>,
    next_conn: AtomicU64,
    max_connections: usize,
    epoch: String,
}

/// The hub lock, timed for `/metrics` from acquisition to release.
struct Locked<'a> {
    guard: MutexGuard<'a, Inner>,
    since: Instant,
    metrics: &'a Metrics,
}

impl std::ops::Deref for Locked<'_> {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.guard
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.guard
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.metrics.hub_lock_hold.observe(self.since.elapsed());
    }
}

impl Hub {
    /// A hub whose ids count in `epoch`.
    pub fn new(
        config: HubConfig,
        max_connections: usize,
        metrics: Arc<Metrics>,
        epoch: String,
    ) -> Arc<Self> {
        Arc::new(Self {
            projector: Mutex::new(Projector::default()),
            inner: Mutex::new(Inner {
                sessions: FastMap::default(),
                registry: Registry::default(),
                agent_sessions: FastMap::default(),
                agent_floors: FastMap::default(),
                purged_floor: 0,
                forgotten_at: 0,
                last_seq: 0,
                start_floor: None,
                budget: Budget::new(config.retention_bytes),
                closed: false,
            }),
            dispatched: watch::Sender::new(0),
            config,
            metrics,
            next_conn: AtomicU64::new(1),
            max_connections,
            epoch,
        })
    }

    fn inner(&self) -> Locked<'_> {
        // A panic while holding the lock would be a bug in this module; the
        // data stays consistent per notification, so keep serving.
        let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        Locked {
            guard,
            since: Instant::now(),
            metrics: &self.metrics,
        }
    }

    fn projector(&self) -> MutexGuard<'_, Projector> {
        self.projector.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The epoch agents' ids count in.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    pub fn last_seq(&self) -> u64 {
        self.inner().last_seq
    }

    pub fn connection_count(&self) -> usize {
        self.inner().registry.count()
    }

    /// Open connections by role, for `/metrics`.
    pub fn connections_by_role(&self) -> [(&'static str, usize); 3] {
        self.inner().registry.by_role()
    }

    /// What the hub holds now.
    pub fn stats(&self) -> HubStats {
        let inner = self.inner();
        HubStats {
            sessions: inner.sessions.len(),
            retained_frames: inner.budget.frames(),
            retained_bytes: inner.budget.bytes(),
            connections: inner.registry.count(),
            queued_bytes: inner.registry.queued_bytes(),
        }
    }

    /// Applies one notification with bus sequence `seq` and fans it out.
    /// Sequences must increase; a repeated or older one (a bus redelivery)
    /// is ignored, so nobody gets a frame twice.
    pub fn dispatch(&self, seq: u64, event: &Event) {
        let mut projector = self.projector();
        if seq <= projector.last_seq {
            self.metrics.redeliveries_ignored.inc();
            return;
        }
        projector.last_seq = seq;
        let id = event.session_id();
        if !projector.states.contains_key(id) {
            let state = SessionState::new(id, seq);
            projector.states.insert(state.id().clone(), state);
        }
        let Projector { states, .. } = &mut *projector;
        let Some(state) = states.get_mut(id) else {
            return;
        };
        if seq <= state.applied {
            // Already in the checkpoint this session was restored from.
            self.inner().last_seq = seq;
            self.dispatched.send_replace(seq);
            return;
        }
        let applied = state.apply(seq, event, self.config.max_frame);
        let agent = AgentFrame::new(itoa::Buffer::new().format(seq), event.raw());
        self.metrics
            .serializations
            .add(applied.customer.len() as u64);
        let now = Instant::now();
        {
            let mut inner = self.inner();
            inner.commit(&self.config, &self.metrics, state, applied, agent, now);
            inner.keep_budget(states, &self.metrics);
        }
        drop(projector);
        self.dispatched.send_replace(seq);
        self.metrics.notifications_dispatched.inc();
    }

    /// Registers a connection of `party` and computes what it gets first:
    /// with `since` and the current epoch inside the retention window,
    /// every missed frame, in order (`resumed`); otherwise a snapshot of
    /// each session it is in.
    pub fn attach(
        self: &Arc<Self>,
        party: &Party,
        resume: Option<Resume<'_>>,
    ) -> Result<Attached, AttachError> {
        let mut inner = self.inner();
        if inner.registry.count() >= self.max_connections {
            return Err(AttachError::Full);
        }
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        // Made only once registered, after the lock is let go: dropping one
        // takes the lock.
        let registration = || Registration {
            hub: self.clone(),
            party: party.clone(),
            conn,
        };
        let cut = inner.last_seq;
        let max_frame = self.config.max_frame;
        match party {
            Party::Customer {
                session,
                participant,
            } => {
                let entry = inner.sessions.get(session.as_str());
                if entry
                    .and_then(|e| e.customer.as_deref())
                    .is_some_and(|c| c != participant)
                {
                    return Err(AttachError::NotTheCustomer);
                }
                let epoch = customer_epoch(&self.epoch, entry, cut);
                let replay = resume
                    .filter(|r| inner.customer_resumes_in(&self.epoch, entry, r.epoch, &epoch))
                    .and_then(|r| r.since.parse().ok())
                    .and_then(|since| replay::customer(entry, since));
                let snapshot = entry.map(|e| CustomerSnap {
                    id: e.customer_seq,
                    cut,
                    state: e.customer_state.clone(),
                    log: e.log.clone(),
                    path_json: e.path_json.clone(),
                });
                let (outbox, inbox) = outbox::channel(self.config.queue);
                inner
                    .registry
                    .add_customer(session, participant, conn, outbox);
                drop(inner);
                self.count_resume(resume.is_some(), replay.is_some());
                let resumed = replay.is_some();
                let backlog: Vec<CustomerFrame> = match replay {
                    Some(frames) => frames,
                    None => snapshot.map(|s| s.frames(max_frame)).unwrap_or_default(),
                };
                Ok(Attached::Customer(Attachment {
                    inbox,
                    resumed,
                    epoch,
                    backlog: Box::new(backlog.into_iter()),
                    registration: registration(),
                }))
            }
            Party::Agent(_) | Party::Supervisor => {
                let replay = resume
                    .filter(|r| r.epoch == Some(self.epoch.as_str()))
                    .and_then(|r| r.since.parse().ok())
                    .and_then(|since| match party {
                        Party::Agent(a) => replay::agent(&inner, a, since),
                        _ => replay::supervisor(&inner, since),
                    });
                let sessions = match replay {
                    Some(_) => Vec::new(),
                    None => inner.snapshot_handles(party),
                };
                let (outbox, inbox) = outbox::channel(self.config.queue);
                if inner.closed {
                    outbox.shut_down();
                }
                match party {
                    Party::Agent(a) => inner.registry.add_agent(a, conn, outbox),
                    _ => inner.registry.add_supervisor(conn, outbox),
                }
                drop(inner);
                self.count_resume(resume.is_some(), replay.is_some());
                let resumed = replay.is_some();
                let backlog: Backlog<AgentFrame> = match replay {
                    Some(frames) => Box::new(frames.into_iter()),
                    None => Box::new(AgentSnapshot::new(cut, sessions, max_frame)),
                };
                Ok(Attached::Agent(Attachment {
                    inbox,
                    resumed,
                    epoch: self.epoch.clone(),
                    backlog,
                    registration: registration(),
                }))
            }
        }
    }

    /// The server shuts down: every connection's stream ends once what is
    /// queued for it is sent (its connection then closes with 1001), and
    /// so does any registered from now on.
    pub fn shutdown(&self) {
        let mut inner = self.inner();
        inner.closed = true;
        inner.registry.shut_down_all();
    }

    fn count_resume(&self, asked: bool, hit: bool) {
        match (asked, hit) {
            (true, true) => self.metrics.resume_hits.inc(),
            (true, false) => self.metrics.resume_misses.inc(),
            _ => {}
        }
    }

    /// Evicts frames past the retention window and forgets sessions that
    /// ended and stayed idle for the retention age, or saw nothing for the
    /// session idle time. Called periodically.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut projector = self.projector();
        let mut inner = self.inner();
        let rule = self.config.retention;
        let mut evicted = (0, 0);
        let mut forget = Vec::new();
        for (id, entry) in inner.sessions.iter_mut() {
            let (frames, bytes) = entry.retention.enforce(&rule, now);
            evicted = (evicted.0 + frames, evicted.1 + bytes);
            let idle = now.duration_since(entry.last_activity);
            if (entry.ended && idle > rule.age) || idle > self.config.session_idle {
                forget.push(id.clone());
            }
        }
        inner.budget.frames_removed(evicted.0, evicted.1);
        for id in forget {
            inner.forget(&mut projector.states, &id);
        }
        inner.keep_budget(&mut projector.states, &self.metrics);
    }

    /// Waits up to `wait` until this hub has dispatched what `since` (a
    /// resume id `party` was given, possibly by another gateway of the same
    /// bus) refers to, so that a resume on a gateway a little behind
    /// another one still finds every frame. Returns at once when it has.
    pub async fn wait_for(&self, party: &Party, since: &str, wait: Duration) {
        let reached = |hub: &Hub| -> bool {
            let inner = hub.inner();
            match party {
                Party::Customer { session, .. } => since.parse::<u64>().map_or(true, |s| {
                    inner
                        .sessions
                        .get(session.as_str())
                        .is_some_and(|e| e.customer_seq >= s)
                }),
                Party::Agent(_) | Party::Supervisor => {
                    let covered = since.split(':').next().unwrap_or_default();
                    covered.parse::<u64>().map_or(true, |s| inner.last_seq >= s)
                }
            }
        };
        self.wait_until(reached, wait).await;
    }

    async fn wait_until(&self, reached: impl Fn(&Hub) -> bool, wait: Duration) {
        let mut dispatched = self.dispatched.subscribe();
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
        let inner = self.inner();
        let ids = inner
            .sessions
            .iter()
            .filter(|(_, e)| e.applied > after)
            .map(|(id, _)| id.to_string())
            .collect();
        (inner.last_seq, ids)
    }

    /// The current checkpoints of the sessions `ids` this hub still knows.
    /// Asked a few at a time, so that copying states never holds the
    /// dispatcher for long.
    pub fn checkpoints_of(&self, ids: &[String]) -> Vec<SessionCheckpoint> {
        let projector = self.projector();
        let logs: Vec<Option<Arc<Log>>> = {
            let inner = self.inner();
            ids.iter()
                .map(|id| inner.sessions.get(id.as_str()).map(|e| e.log.clone()))
                .collect()
        };
        ids.iter()
            .zip(logs)
            .filter_map(|(id, log)| {
                let state = projector.states.get(id.as_str())?;
                let entries = log.map(|l| l.all()).unwrap_or_default();
                Some(state.checkpoint(entries.iter()))
            })
            .collect()
    }

    /// Whether this hub knows the session (it is forgotten once ended and
    /// idle).
    pub fn has_session(&self, id: &str) -> bool {
        self.inner().sessions.contains_key(id)
    }

    /// Starts this hub from saved checkpoints instead of the bus's whole
    /// history: the next delivery expected is `watermark + 1`, and each
    /// session skips the deliveries its checkpoint already covers. Nothing
    /// at or below `watermark` can be replayed to a resuming client (they
    /// get a snapshot). Meant for a hub that has dispatched nothing yet;
    /// sessions it already knows are kept as they are; a checkpoint that
    /// does not parse is skipped (logged).
    pub fn restore(&self, watermark: u64, checkpoints: Vec<SessionCheckpoint>) {
        let now = Instant::now();
        let mut projector = self.projector();
        let mut inner = self.inner();
        projector.last_seq = projector.last_seq.max(watermark);
        inner.last_seq = inner.last_seq.max(watermark);
        let floor = inner.last_seq;
        inner.start_floor = Some(inner.start_floor.map_or(floor, |f| f.max(floor)));
        for cp in checkpoints {
            if projector.states.contains_key(cp.id.as_str()) {
                continue;
            }
            match SessionState::restore(&cp) {
                Ok((state, log)) => {
                    inner.restore_session(&state, log, floor, now);
                    projector.states.insert(state.id().clone(), state);
                }
                Err(e) => {
                    tracing::warn!(session = %cp.id, error = %e, "skipping a checkpoint that does not restore");
                }
            }
        }
        inner.keep_budget(&mut projector.states, &self.metrics);
        drop(inner);
        drop(projector);
        self.dispatched.send_replace(floor);
    }

    /// The current state of a session as seen by this gateway (for tests
    /// and operations).
    pub fn session_state(&self, id: &str) -> Option<SessionState> {
        self.projector().states.get(id).cloned()
    }

    /// A session's message log as this gateway keeps it (for tests and
    /// operations).
    pub fn session_log(&self, id: &str) -> Vec<LogEntry> {
        let log = self.inner().sessions.get(id).map(|e| e.log.clone());
        log.map(|l| l.all()).unwrap_or_default()
    }
}

/// The marker of a customer epoch given out before the session was known.
const AFTER: &str = "after-";

/// A customer's epoch: `<hub epoch>.<incarnation>` once the session is
/// known; before, `<hub epoch>.after-<cut>`, naming the incarnation that
/// begins after the cut (see [`Inner::customer_resumes_in`]).
fn customer_epoch(hub_epoch: &str, entry: Option<&Entry>, cut: u64) -> String {
    match entry {
        Some(e) => format!("{hub_epoch}.{}", e.incarnation),
        None => format!("{hub_epoch}.{AFTER}{cut}"),
    }
}

impl Inner {
    /// Whether a customer's resume `given` counts in the numbering of the
    /// session as it stands (`current` is its epoch now). An `after-<cut>`
    /// epoch (the customer connected before the session was known) counts
    /// in the session's incarnation only if that is provably the first one
    /// after the cut: it began after the cut, this history covers
    /// everything after the cut, and no session was forgotten since. Any
    /// doubt is a miss: the customer gets the snapshot, never a wrong
    /// resume.
    fn customer_resumes_in(
        &self,
        hub_epoch: &str,
        entry: Option<&Entry>,
        given: Option<&str>,
        current: &str,
    ) -> bool {
        let Some(given) = given else {
            return false;
        };
        if given == current {
            return true;
        }
        let cut = given
            .strip_prefix(hub_epoch)
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|rest| rest.strip_prefix(AFTER))
            .and_then(|cut| cut.parse::<u64>().ok());
        match (cut, entry) {
            (Some(cut), Some(e)) => {
                e.incarnation > cut
                    && self.start_floor.is_some_and(|floor| floor <= cut)
                    && self.forgotten_at <= cut
            }
            _ => false,
        }
    }

    /// Commits one applied notification (see the module doc).
    fn commit(
        &mut self,
        config: &HubConfig,
        metrics: &Metrics,
        state: &SessionState,
        applied: Applied,
        agent: AgentFrame,
        now: Instant,
    ) {
        let seq = state.applied;
        self.last_seq = seq;
        let start_floor = *self.start_floor.get_or_insert(seq - 1);
        let key = state.id();
        let entry = self
            .sessions
            .entry(key.clone())
            .or_insert_with(|| Entry::new(state, start_floor, 0, now));
        entry.take_state(state, applied.state_changed);
        entry.last_activity = now;
        for a in applied.audience.iter() {
            match entry.members.get_mut(a) {
                Some(last) => *last = seq,
                None => {
                    entry.members.insert(a.clone(), seq);
                }
            }
            if !self.agent_sessions.get(a).is_some_and(|s| s.contains(key)) {
                self.agent_sessions
                    .entry(a.clone())
                    .or_default()
                    .insert(key.clone());
            }
        }
        if let Some(customer) = &entry.customer {
            if applied.state_changed {
                self.registry.revoke_strangers(key, customer);
            }
        }
        self.registry.fan_out(
            metrics,
            &applied.audience,
            &agent,
            key,
            &applied.customer,
            now,
        );
        let retained = Retained {
            seq,
            audience: applied.audience,
            agent,
            customer: SmallVec::from_vec(applied.customer),
            at: now,
        };
        self.budget.frame_added(seq, key, retained.cost());
        entry.retention.push(retained);
        let (frames, bytes) = entry.retention.enforce(&config.retention, now);
        self.budget.frames_removed(frames, bytes);
        if !applied.log.is_empty() {
            let (added, freed) = entry.log.append(applied.log, config.log_limit);
            self.budget.log_added(seq, key, added);
            self.budget.remove(freed);
        }
        let cost = ENTRY_COST + state.cost() + entry.members_cost();
        self.budget.add(cost);
        self.budget.remove(entry.cost);
        entry.cost = cost;
        self.budget.touched(seq, key);
    }

    /// Evicts the oldest of what the budget counts until it holds again:
    /// frames and log entries first, then, if states alone exceed it, the
    /// least recently active sessions.
    fn keep_budget(&mut self, states: &mut FastMap<Arc<str>, SessionState>, metrics: &Metrics) {
        while self.budget.over() {
            let Some((seq, session, held)) = self.budget.oldest() else {
                break;
            };
            let Some(entry) = self.sessions.get_mut(&session) else {
                continue;
            };
            match held {
                Held::Frame if entry.retention.front_seq() == Some(seq) => {
                    if let Some(cost) = entry.retention.pop_oldest() {
                        self.budget.frames_removed(1, cost);
                    }
                }
                Held::Log => {
                    let freed = entry.log.evict(seq);
                    self.budget.remove(freed);
                }
                Held::Frame => {}
            }
        }
        while self.budget.over() {
            let Some((seq, session)) = self.budget.least_active() else {
                break;
            };
            let current = states.get(&session).is_some_and(|s| s.applied == seq);
            if current {
                metrics.sessions_evicted.inc();
                self.forget(states, &session);
            }
        }
        let sessions = &self.sessions;
        self.budget.compact(
            sessions.len(),
            |seq, s, held| {
                sessions.get(s).is_some_and(|e| match held {
                    Held::Frame => e.retention.front_seq().is_some_and(|f| f <= seq),
                    Held::Log => e.log.front_seq().is_some_and(|f| f <= seq),
                })
            },
            |seq, s| states.get(s).is_some_and(|st| st.applied == seq),
        );
        metrics.set_hub_gauges(self.sessions.len(), self.budget.bytes());
    }

    /// Forgets a session, raising the floors of whoever was in it.
    fn forget(&mut self, states: &mut FastMap<Arc<str>, SessionState>, id: &str) {
        states.remove(id);
        let Some(entry) = self.sessions.remove(id) else {
            return;
        };
        self.budget
            .frames_removed(entry.retention.len(), entry.retention.cost());
        self.budget.remove(entry.log.cost() + entry.cost);
        self.purged_floor = self.purged_floor.max(entry.retention.last_seq());
        self.forgotten_at = self.last_seq;
        for (agent, last) in entry.members {
            let floor = self.agent_floors.entry(agent.clone()).or_default();
            *floor = (*floor).max(last);
            if let Some(sessions) = self.agent_sessions.get_mut(&agent) {
                sessions.remove(id);
                if sessions.is_empty() {
                    self.agent_sessions.remove(&agent);
                }
            }
        }
    }

    /// The snapshot handles of each session `party` is in.
    fn snapshot_handles(&self, party: &Party) -> Vec<SessionSnap> {
        let handle = |(id, e): (&Arc<str>, &Entry)| SessionSnap {
            id: id.clone(),
            state: e.state.clone(),
            log: e.log.clone(),
            path_json: e.path_json.clone(),
            uri: e.uri.clone(),
        };
        match party {
            Party::Agent(a) => self
                .agent_sessions
                .get(a.as_str())
                .into_iter()
                .flatten()
                .filter_map(|s| self.sessions.get_key_value(s))
                .filter(|(_, e)| e.has_agent(a))
                .map(handle)
                .collect(),
            _ => self.sessions.iter().map(handle).collect(),
        }
    }

    fn restore_session(
        &mut self,
        state: &SessionState,
        log: Vec<LogEntry>,
        floor: u64,
        now: Instant,
    ) {
        let key = state.id().clone();
        let mut entry = Entry::new(state, floor.max(state.applied), state.customer_seq(), now);
        entry.take_state(state, true);
        // Its agents may have had frames up to the checkpoint: their
        // replays cannot start below it.
        for agent in state.agents() {
            entry.members.insert(agent.into(), state.applied);
            self.agent_sessions
                .entry(agent.into())
                .or_default()
                .insert(key.clone());
        }
        let seqs: Vec<u64> = log.iter().map(|e| e.seq).collect();
        let log_cost = entry.log.fill(log);
        self.budget.add(log_cost);
        let mut last = None;
        for seq in seqs {
            if last != Some(seq) {
                self.budget.log_added(seq, &key, 0);
                last = Some(seq);
            }
        }
        entry.cost = ENTRY_COST + state.cost() + entry.members_cost();
        self.budget.add(entry.cost);
        self.budget.touched(state.applied, &key);
        self.sessions.insert(key, entry);
    }
}

#[cfg(test)]
mod tests;
