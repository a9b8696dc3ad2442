//! Per-session state as the gateway sees it, kept from the notifications.
//!
//! Owns, for one session: who is in it (its agents by user id, its
//! customer, the latest listing of every participant for the sender
//! check), its latest state for snapshots, and the customer's numbering
//! (stream ids and message indices, through `view`). [`SessionState::apply`]
//! is deterministic: every gateway that applies the same notifications in
//! the same order computes the same audiences, customer views and ids.
//! The message log itself is the hub's (`hub::log`): its entries are made
//! here ([`LogEntry`]).
//!
//! Before a session's participants are known (a NewMessages for a session
//! never seen before), agents are not in its audience: only supervisors and
//! the session's customer (its visible messages) receive it; it is kept in
//! the message log, so agents see it in their snapshot once they join.
//!
//! A [`SessionCheckpoint`] is what a gateway saves so that another can
//! start from it: the latest state and the log as the upstream's own JSON,
//! plus the customer's counters. Restoring parses them again as events and
//! projects the customer's lines through the same `view` constructors as
//! live ones, so a checkpoint cannot carry anything past the privacy
//! boundary.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::event::{Event, EventError, ParticipantType, Visibility, MAX_SNAPSHOT_URI};
use crate::view::{self, CustomerCursor, CustomerFrame, CustomerLine, Listing, Target};

/// What applying one notification decided.
#[derive(Debug, PartialEq, Eq)]
pub struct Applied {
    /// Agents (user ids) who receive it: those in the session before or
    /// after it, so an agent sees the notification that adds them and the
    /// one in which they leave.
    pub audience: Arc<[Box<str>]>,
    /// The customer's frames, each with its customer stream id.
    pub customer: Vec<(u64, CustomerFrame)>,
    /// The notification's messages, for the log.
    pub log: Vec<LogEntry>,
    /// Whether the session's state (its snapshot frames) changed.
    pub state_changed: bool,
}

/// A logged message: its JSON as received, and how the customer was shown
/// it (if at all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The bus sequence of the notification that carried it.
    pub seq: u64,
    pub agent: Utf8Bytes,
    pub customer: Option<CustomerLine>,
}

/// Heap bytes an allocation costs besides its payload (allocator header
/// and rounding, as jemalloc's size classes do on average).
pub const ALLOCATION: usize = 32;

impl LogEntry {
    /// The memory this entry takes.
    pub fn cost(&self) -> usize {
        std::mem::size_of::<Self>()
            + ALLOCATION
            + self.agent.len()
            + self
                .customer
                .as_ref()
                .map_or(0, |c| ALLOCATION + c.json().len())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionState {
    id: Arc<str>,
    /// `"/facebooksessions/<id>"` as a JSON string.
    path_json: Box<str>,
    /// The bus sequence of this incarnation's first notification: a
    /// session forgotten and seen again is a new incarnation, and its
    /// customer's epoch names it.
    pub incarnation: u64,
    /// The last bus sequence reflected here.
    pub applied: u64,
    /// Agent user ids currently in the session, either visibility, sorted;
    /// shared with the notifications' audiences.
    agents: Arc<[Box<str>]>,
    /// The participant id of the session's customer.
    customer: Option<Box<str>>,
    /// Each participant ever listed, with its latest visibility.
    listing: Listing,
    completed: bool,
    /// The latest state change as a snapshot's ParticipantsUpdated.
    state: Option<Utf8Bytes>,
    /// The JSON string of the upstream's `facebooksessionUri`.
    uri: Option<Box<str>>,
    cursor: CustomerCursor,
    /// The last customer stream id handed out: ids run 1, 2, 3, ...
    customer_seq: u64,
}

const STATE_HEAD: &str = r#"{"notificationType":"ParticipantsUpdated","messageType":"FacebooksessionStateChangeMessage","facebooksession":"#;

impl SessionState {
    pub fn new(id: &str, incarnation: u64) -> Self {
        Self {
            id: Arc::from(id),
            path_json: view::session_path_json(id),
            incarnation,
            applied: 0,
            agents: Arc::from([]),
            customer: None,
            listing: Listing::default(),
            completed: false,
            state: None,
            uri: None,
            cursor: CustomerCursor::default(),
            customer_seq: 0,
        }
    }

    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    /// Applies `event` (of this session, bus sequence `seq`) and says who
    /// receives what. Customer frames fit `max_frame`.
    pub fn apply(&mut self, seq: u64, event: &Event, max_frame: usize) -> Applied {
        let state_changed = event.session().is_some();
        let audience = if state_changed {
            let before = self.agents.clone();
            self.take_session(event);
            union(&before, &self.agents)
        } else {
            // The common case (a message): no new allocation.
            self.agents.clone()
        };
        if self.uri.is_none() {
            self.uri = event
                .uri()
                .filter(|u| u.len() <= MAX_SNAPSHOT_URI)
                .map(Into::into);
        }
        let update = view::customer_view(
            event,
            &mut self.cursor,
            &self.listing,
            Target {
                path_json: &self.path_json,
                last_id: &mut self.customer_seq,
                max_frame,
            },
        );
        let log = event
            .messages()
            .iter()
            .zip(update.lines.into_iter().chain(std::iter::repeat(None)))
            .map(|(m, customer)| LogEntry {
                seq,
                agent: Utf8Bytes::from(event.at(m.text).to_owned()),
                customer,
            })
            .collect();
        self.applied = seq;
        Applied {
            audience,
            customer: update.frames,
            log,
            state_changed,
        }
    }

    fn take_session(&mut self, event: &Event) {
        let participants = event.participants();
        let agents: BTreeSet<&str> = participants
            .iter()
            .filter(|p| p.is_agent())
            .map(|p| &*p.user)
            .collect();
        if !agents.iter().copied().eq(self.agents.iter().map(|a| &**a)) {
            self.agents = agents.into_iter().map(Box::from).collect::<Vec<_>>().into();
        }
        if let Some(c) = participants
            .iter()
            .find(|p| p.kind == ParticipantType::Customer)
        {
            self.customer = Some(c.key.clone());
        }
        // A participant listed twice in one listing with two visibilities
        // is as visible as the least visible entry says.
        let mut latest = Listing::default();
        for p in participants {
            latest
                .entry(p.key.clone())
                .and_modify(|v| {
                    if p.visibility != Visibility::All {
                        *v = p.visibility;
                    }
                })
                .or_insert(p.visibility);
        }
        self.listing.extend(latest);
        let session = event.session().map(|s| event.at(s.text)).unwrap_or("{}");
        let mut state = String::with_capacity(STATE_HEAD.len() + session.len() + 1);
        state.push_str(STATE_HEAD);
        state.push_str(session);
        state.push('}');
        self.state = Some(Utf8Bytes::from(state));
        self.completed = event.session().is_some_and(|s| s.completed);
    }

    /// Whether `agent` (a user id) is a participant now.
    pub fn has_agent(&self, agent: &str) -> bool {
        self.agents.binary_search_by(|a| (**a).cmp(agent)).is_ok()
    }

    pub fn agents(&self) -> impl Iterator<Item = &str> {
        self.agents.iter().map(|a| &**a)
    }

    /// The agents in the session now, sorted, as shared.
    pub fn agent_list(&self) -> &Arc<[Box<str>]> {
        &self.agents
    }

    /// The session's customer (participant id), once known.
    pub fn customer(&self) -> Option<&str> {
        self.customer.as_deref()
    }

    /// Ended: no agent left, or `Completed`.
    pub fn ended(&self) -> bool {
        self.agents.is_empty() || self.completed
    }

    /// The latest state as the data of a snapshot's ParticipantsUpdated.
    pub fn state(&self) -> Option<&Utf8Bytes> {
        self.state.as_ref()
    }

    /// The customer's session object as last sent.
    pub fn customer_state(&self) -> Option<&Utf8Bytes> {
        self.cursor.session()
    }

    pub fn customer_seq(&self) -> u64 {
        self.customer_seq
    }

    pub fn messages_shown(&self) -> u64 {
        self.cursor.messages_shown()
    }

    pub fn path_json(&self) -> &str {
        &self.path_json
    }

    /// The JSON string of the upstream's `facebooksessionUri`, if kept.
    pub fn uri(&self) -> Option<&str> {
        self.uri.as_deref()
    }

    /// The memory this state takes (its log apart).
    pub fn cost(&self) -> usize {
        let strings = |n: usize, total: usize| n * ALLOCATION + total;
        std::mem::size_of::<Self>()
            + strings(2, self.id.len() + self.path_json.len())
            + strings(
                self.agents.len(),
                self.agents.iter().map(|a| a.len() + 16).sum(),
            )
            + strings(
                self.listing.len(),
                self.listing.keys().map(|k| k.len() + 24).sum(),
            )
            + self.customer.as_ref().map_or(0, |c| ALLOCATION + c.len())
            + self.state.as_ref().map_or(0, |s| ALLOCATION + s.len())
            + self.uri.as_ref().map_or(0, |u| ALLOCATION + u.len())
            + self.cursor.session().map_or(0, |s| ALLOCATION + s.len())
    }

    /// A checkpoint of this state with its `log`.
    pub fn checkpoint<'a>(&self, log: impl Iterator<Item = &'a LogEntry>) -> SessionCheckpoint {
        SessionCheckpoint {
            id: self.id.to_string(),
            seq: self.applied,
            incarnation: self.incarnation,
            state: self.state.as_ref().and_then(|s| raw(s.as_str())),
            uri: self.uri.as_deref().and_then(raw),
            customer_seq: self.customer_seq,
            messages_shown: self.cursor.messages_shown(),
            log: log
                .filter_map(|e| {
                    Some(CheckpointLine {
                        seq: e.seq,
                        customer_index: e.customer.as_ref().map(CustomerLine::index),
                        message: raw(e.agent.as_str())?,
                    })
                })
                .collect(),
        }
    }

    /// The state and log a checkpoint describes, rebuilt from its JSON:
    /// the state through the event parser, the customer's lines through
    /// the customer view's own constructors.
    pub fn restore(cp: &SessionCheckpoint) -> Result<(Self, Vec<LogEntry>), EventError> {
        let mut state = SessionState::new(&cp.id, cp.incarnation);
        state.applied = cp.seq;
        state.customer_seq = cp.customer_seq;
        state.uri = cp.uri.as_ref().map(|u| u.get().into());
        let event = match &cp.state {
            Some(text) => Some(Event::parse_str(text.get(), usize::MAX)?),
            None => None,
        };
        if let Some(event) = &event {
            if event.session_id() != cp.id {
                return Err(EventError::Shape("a checkpoint of another session".into()));
            }
            state.take_session(event);
        }
        state.cursor = CustomerCursor::restored(event.as_ref(), cp.messages_shown);
        let log = state.restore_log(&cp.log)?;
        Ok((state, log))
    }

    fn restore_log(&self, lines: &[CheckpointLine]) -> Result<Vec<LogEntry>, EventError> {
        if lines.is_empty() {
            return Ok(Vec::new());
        }
        let messages: Vec<&str> = lines.iter().map(|l| l.message.get()).collect();
        let text = format!(
            r#"{{"notificationType":"NewMessages","messageType":"MessageLogUpdated","facebooksessionPath":{},"messages":[{}]}}"#,
            self.path_json,
            messages.join(",")
        );
        let event = Event::parse_str(&text, usize::MAX)?;
        Ok(event
            .messages()
            .iter()
            .zip(lines)
            .map(|(m, line)| LogEntry {
                seq: line.seq,
                agent: Utf8Bytes::from(event.at(m.text).to_owned()),
                customer: line
                    .customer_index
                    .and_then(|i| view::restored_line(&event, m, i, &self.listing)),
            })
            .collect())
    }
}

/// The sorted union of two sorted lists; `a` itself when `b` adds nothing.
fn union(a: &Arc<[Box<str>]>, b: &Arc<[Box<str>]>) -> Arc<[Box<str>]> {
    if b.iter().all(|x| a.binary_search(x).is_ok()) {
        return a.clone();
    }
    if a.iter().all(|x| b.binary_search(x).is_ok()) {
        return b.clone();
    }
    let all: BTreeSet<&Box<str>> = a.iter().chain(b.iter()).collect();
    all.into_iter().cloned().collect::<Vec<_>>().into()
}

fn raw(text: &str) -> Option<Box<RawValue>> {
    RawValue::from_string(text.to_owned()).ok()
}

/// One session's state and log, and the last bus sequence they reflect:
/// what a gateway saves so that another can start from it (`bus::nats`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionCheckpoint {
    pub id: String,
    pub seq: u64,
    pub incarnation: u64,
    /// The latest state change, as a ParticipantsUpdated notification.
    pub state: Option<Box<RawValue>>,
    pub uri: Option<Box<RawValue>>,
    pub customer_seq: u64,
    pub messages_shown: u64,
    /// The message log, oldest first.
    pub log: Vec<CheckpointLine>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointLine {
    pub seq: u64,
    /// The index the customer was shown it with, if they were.
    pub customer_index: Option<u64>,
    /// The message as received.
    pub message: Box<RawValue>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Frame;

    const BOUND: usize = 512 << 10;

    fn sample(name: &str) -> Event {
        let path = format!("{}/proto-samples/{name}", env!("CARGO_MANIFEST_DIR"));
        Event::parse_str(&std::fs::read_to_string(path).unwrap(), BOUND).unwrap()
    }

    #[test]
    fn consult_reaches_both_agents_and_not_the_customer_twice() {
        let mut s = SessionState::new("0002EaAY01MT007C", 1);
        let first = s.apply(1, &sample("consult-participants-updated.json"), BOUND);
        assert_eq!(
            first.audience.iter().map(|a| &**a).collect::<Vec<_>>(),
            [
                "5e101708f14442c7ab79814bb4f799b2",
                "e2c90c960d3d40c79684818983ceb314"
            ]
        );
        assert_eq!(first.customer.iter().map(|c| c.0).collect::<Vec<_>>(), [1]);
        let second = s.apply(2, &sample("consult-new-messages.json"), BOUND);
        assert_eq!(second.audience.len(), 2);
        assert!(second.customer.is_empty());
        assert_eq!(second.log.len(), 1);
        assert_eq!(second.log[0].customer, None);
        assert_eq!(s.customer(), Some("007356263E140144"));
        assert!(s.customer_state().is_some());
        assert!(s.state().unwrap().as_str().contains("Agent2"));
        assert!(!s.customer_state().unwrap().as_str().contains("Agent2"));
    }

    #[test]
    fn a_checkpoint_restores_the_same_state_and_the_same_customer_lines() {
        let mut s = SessionState::new("s1", 3);
        let join = Event::parse_str(
            r#"{"notificationType":"ParticipantsUpdated","messageType":"m","facebooksessionUri":"http://u/s1","facebooksession":{"id":"s1","state":"Chatting",
              "participants":[{"participantId":"c","type":"Customer","visibility":"All","nickname":"Cu"},
                              {"participantId":"a","type":"Agent","visibility":"All","path":"/users/ua"}]}}"#,
            BOUND,
        )
        .unwrap();
        let lines = Event::parse_str(
            r#"{"notificationType":"NewMessages","messageType":"MessageLogUpdated","facebooksessionPath":"/facebooksessions/s1",
              "messages":[{"index":1,"type":"Text","visibility":"All","text":"hello","from":{"participantId":"c","type":"Customer","visibility":"All"}},
                          {"index":2,"type":"Text","visibility":"INT","text":"coaching"}]}"#,
            BOUND,
        )
        .unwrap();
        s.apply(3, &join, BOUND);
        let applied = s.apply(4, &lines, BOUND);
        let cp = s.checkpoint(applied.log.iter());
        let json = serde_json::to_string(&cp).unwrap();
        let back: SessionCheckpoint = serde_json::from_str(&json).unwrap();
        let (restored, log) = SessionState::restore(&back).unwrap();
        assert_eq!(restored, s);
        assert_eq!(log, applied.log);
        assert!(applied.customer[0].1.bytes().as_str().contains("hello"));
    }

    #[test]
    fn a_checkpoint_line_an_agent_only_sender_wrote_stays_hidden_when_restored() {
        let mut s = SessionState::new("s1", 1);
        let state = Event::parse_str(
            r#"{"notificationType":"ParticipantsUpdated","messageType":"m","facebooksession":{"id":"s1",
              "participants":[{"participantId":"k","type":"Agent","visibility":"Agents"}]}}"#,
            BOUND,
        )
        .unwrap();
        s.apply(1, &state, BOUND);
        let mut cp = s.checkpoint(std::iter::empty());
        // A checkpoint that claims the customer was shown a consultant's line.
        cp.log.push(CheckpointLine {
            seq: 1,
            customer_index: Some(1),
            message: raw(r#"{"index":1,"type":"Text","visibility":"All","text":"internal","from":{"participantId":"k","type":"Agent","visibility":"All"}}"#).unwrap(),
        });
        let (_, log) = SessionState::restore(&cp).unwrap();
        assert_eq!(log[0].customer, None);
    }
}
