//! What `since` can reach: each session's recent frames and their floors,
//! and the one memory budget over everything the hub keeps.
//!
//! Per session ([`Retention`]): every frame is kept while it is among the
//! session's last `count` frames or younger than `age`, and never more than
//! `max` frames. Whatever is evicted raises a floor (the session's, and the
//! customer's): a `since` below a floor is a miss, never a gap.
//!
//! Over all sessions ([`Budget`]): retained frames, message logs and
//! session states are counted as the memory they take (payloads, their
//! allocations, the bookkeeping around them), against one limit
//! (`CHATGATE_RETENTION_BYTES`). The budget keeps the order in which
//! frames and log entries came, and the order of sessions' activity, so
//! that the hub can evict the oldest first: frames and log entries, and
//! then, if session states alone exceed the limit, the least recently
//! active sessions. The orders are queues whose entries may be stale (what
//! they name was already evicted by a per-session rule): stale entries are
//! skipped when reached, and compacted away when they pile up.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smallvec::SmallVec;

use crate::frame::{AgentFrame, Frame};
use crate::session::ALLOCATION;
use crate::view::CustomerFrame;

/// One notification's frames, kept for resume.
pub struct Retained {
    /// Its bus sequence (the agents' stream id).
    pub seq: u64,
    /// Agents it was for (user ids).
    pub audience: Arc<[Box<str>]>,
    pub agent: AgentFrame,
    /// The customer's frames, with their customer ids (usually none or one).
    pub customer: SmallVec<[(u64, CustomerFrame); 1]>,
    pub at: Instant,
}

impl Retained {
    /// The memory these frames take.
    pub fn cost(&self) -> usize {
        std::mem::size_of::<Self>()
            + ALLOCATION
            + self.agent.len()
            + self
                .customer
                .iter()
                .map(|(_, f)| ALLOCATION + f.len())
                .sum::<usize>()
            + ALLOCATION
            + self
                .audience
                .iter()
                .map(|a| ALLOCATION + a.len() + 16)
                .sum::<usize>()
    }

    /// Whether `agent` was in its audience.
    pub fn reached(&self, agent: &str) -> bool {
        self.audience.iter().any(|a| &**a == agent)
    }
}

/// The per-session retention rule (see the module doc).
#[derive(Debug, Clone, Copy)]
pub struct RetentionRule {
    pub count: usize,
    pub age: Duration,
    pub max: usize,
}

/// One session's retained frames and floors.
pub struct Retention {
    frames: VecDeque<Retained>,
    /// Every frame of this session with a sequence above this is retained.
    seq_floor: u64,
    /// Every customer frame with a customer id above this is retained.
    customer_floor: u64,
}

impl Retention {
    /// Nothing retained: nothing at or below `seq_floor` nor `customer_floor`
    /// can be replayed.
    pub fn new(seq_floor: u64, customer_floor: u64) -> Self {
        Self {
            frames: VecDeque::new(),
            seq_floor,
            customer_floor,
        }
    }

    pub fn seq_floor(&self) -> u64 {
        self.seq_floor
    }

    pub fn customer_floor(&self) -> u64 {
        self.customer_floor
    }

    pub fn push(&mut self, r: Retained) {
        self.frames.push_back(r);
    }

    /// The sequence of the last frame of this session.
    pub fn last_seq(&self) -> u64 {
        self.frames.back().map_or(self.seq_floor, |r| r.seq)
    }

    /// Retained frames after `since`, oldest first.
    pub fn after(&self, since: u64) -> impl Iterator<Item = &Retained> {
        let start = self.frames.partition_point(|r| r.seq <= since);
        self.frames.range(start..)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Retained> {
        self.frames.iter()
    }

    pub fn front_seq(&self) -> Option<u64> {
        self.frames.front().map(|r| r.seq)
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Evicts the oldest frame, raising the floors; returns its cost.
    pub fn pop_oldest(&mut self) -> Option<usize> {
        let front = self.frames.pop_front()?;
        self.seq_floor = front.seq;
        if let Some((c, _)) = front.customer.last() {
            self.customer_floor = *c;
        }
        Some(front.cost())
    }

    /// Applies `rule` at `now`; returns the frames and bytes evicted.
    pub fn enforce(&mut self, rule: &RetentionRule, now: Instant) -> (usize, usize) {
        let (mut frames, mut bytes) = (0, 0);
        while let Some(front) = self.frames.front() {
            let len = self.frames.len();
            let old = now.duration_since(front.at) > rule.age;
            if !(len > rule.max || (len > rule.count && old)) {
                break;
            }
            if let Some(cost) = self.pop_oldest() {
                frames += 1;
                bytes += cost;
            }
        }
        (frames, bytes)
    }

    /// The cost of everything retained.
    pub fn cost(&self) -> usize {
        self.frames.iter().map(Retained::cost).sum()
    }
}

/// What an entry of the eviction order names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// A retained frame of that sequence.
    Frame,
    /// The log entries of that sequence.
    Log,
}

/// The memory budget and the orders of eviction.
#[derive(Debug, Default)]
pub struct Budget {
    pub limit: usize,
    bytes: usize,
    frames: usize,
    /// What came, oldest first: (sequence, session, what).
    order: VecDeque<(u64, Arc<str>, Held)>,
    /// Sessions by their last activity (a sequence), oldest first.
    activity: VecDeque<(u64, Arc<str>)>,
    /// The length of `order` after its last compaction.
    compacted: usize,
}

impl Budget {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn frames(&self) -> usize {
        self.frames
    }

    pub fn over(&self) -> bool {
        self.bytes > self.limit
    }

    pub fn add(&mut self, bytes: usize) {
        self.bytes += bytes;
    }

    pub fn remove(&mut self, bytes: usize) {
        self.bytes = self.bytes.saturating_sub(bytes);
    }

    pub fn frame_added(&mut self, seq: u64, session: &Arc<str>, cost: usize) {
        self.frames += 1;
        self.bytes += cost;
        self.order.push_back((seq, session.clone(), Held::Frame));
    }

    pub fn frames_removed(&mut self, frames: usize, bytes: usize) {
        self.frames = self.frames.saturating_sub(frames);
        self.remove(bytes);
    }

    pub fn log_added(&mut self, seq: u64, session: &Arc<str>, bytes: usize) {
        self.bytes += bytes;
        self.order.push_back((seq, session.clone(), Held::Log));
    }

    pub fn touched(&mut self, seq: u64, session: &Arc<str>) {
        self.activity.push_back((seq, session.clone()));
    }

    /// The oldest frame or log entries, to evict (possibly stale).
    pub fn oldest(&mut self) -> Option<(u64, Arc<str>, Held)> {
        self.order.pop_front()
    }

    /// The least recently active session (possibly stale: its activity
    /// since is further down the queue).
    pub fn least_active(&mut self) -> Option<(u64, Arc<str>)> {
        self.activity.pop_front()
    }

    /// Drops stale entries once they outnumber live ones, using `live`
    /// (whether an order entry still names something kept) and
    /// `current` (whether an activity entry is a session's latest).
    pub fn compact(
        &mut self,
        sessions: usize,
        live: impl Fn(u64, &str, Held) -> bool,
        current: impl Fn(u64, &str) -> bool,
    ) {
        // Compacting only once the queue has doubled since the last time
        // keeps its cost constant per entry.
        if self.order.len() > 2 * self.compacted + 4096 {
            self.order.retain(|(seq, s, held)| live(*seq, s, *held));
            self.compacted = self.order.len();
        }
        if self.activity.len() > 2 * sessions + 4096 {
            self.activity.retain(|(seq, s)| current(*seq, s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retained(seq: u64, customer: Option<u64>, at: Instant) -> Retained {
        let agent = AgentFrame::new(&seq.to_string(), "{}");
        Retained {
            seq,
            audience: vec![Box::from("a1")].into(),
            agent,
            customer: customer
                .map(|c| (c, crate::view::tests_support::frame(c)))
                .into_iter()
                .collect(),
            at,
        }
    }

    const RULE: RetentionRule = RetentionRule {
        count: 2,
        age: Duration::from_secs(60),
        max: 4,
    };

    #[test]
    fn the_count_and_age_rule_keeps_recent_frames_and_raises_floors() {
        let t0 = Instant::now();
        let mut r = Retention::new(10, 0);
        assert_eq!(r.last_seq(), 10, "nothing retained: the floor");
        for (seq, c) in [(11, Some(1)), (12, None), (13, Some(2))] {
            r.push(retained(seq, c, t0));
        }
        // Young frames stay beyond the count.
        assert_eq!(r.enforce(&RULE, t0 + Duration::from_secs(1)).0, 0);
        assert_eq!(r.len(), 3);
        // Old ones go down to the count, raising both floors.
        let (frames, bytes) = r.enforce(&RULE, t0 + Duration::from_secs(61));
        assert_eq!(frames, 1);
        assert!(bytes > 0);
        assert_eq!((r.seq_floor(), r.customer_floor()), (11, 1));
        assert_eq!(r.after(11).map(|f| f.seq).collect::<Vec<_>>(), [12, 13]);
        assert_eq!(r.after(12).map(|f| f.seq).collect::<Vec<_>>(), [13]);
    }

    #[test]
    fn the_max_holds_whatever_the_age() {
        let t0 = Instant::now();
        let mut r = Retention::new(0, 0);
        for seq in 1..=6 {
            r.push(retained(seq, None, t0));
        }
        assert_eq!(r.enforce(&RULE, t0).0, 2);
        assert_eq!(r.front_seq(), Some(3));
        assert_eq!(r.seq_floor(), 2);
        assert_eq!(r.cost(), r.iter().map(Retained::cost).sum::<usize>());
    }

    #[test]
    fn the_budget_counts_and_orders_what_it_holds() {
        let mut b = Budget::new(100);
        let s: Arc<str> = Arc::from("s");
        b.frame_added(1, &s, 60);
        b.log_added(1, &s, 30);
        b.touched(1, &s);
        assert!(!b.over());
        b.frame_added(2, &s, 20);
        assert!(b.over());
        assert_eq!(b.oldest(), Some((1, s.clone(), Held::Frame)));
        b.frames_removed(1, 60);
        assert_eq!((b.bytes(), b.frames()), (50, 1));
        assert_eq!(b.oldest(), Some((1, s.clone(), Held::Log)));
        assert_eq!(b.least_active(), Some((1, s)));
    }
}
