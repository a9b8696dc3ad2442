//! Invariant checks on arbitrary input, shared by the fuzz targets
//! (`fuzz/fuzz_targets/`) and the proptest cases of the normal test suite
//! (`tests/fuzzlike_parser.rs`). Each takes any bytes and panics only when
//! chatgate breaks one of its rules.
//!
//! What a customer may see is decided here again, independently of
//! chatgate: from a `serde_json::Value` of each notification as received,
//! with this file's own record of each session (who was listed with which
//! visibility, what the customer was shown). Duplicate keys are found by
//! this file's own scan. Only the exact string `All` is visible.
#![allow(dead_code)] // each includer uses a part

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fmt;

use bytes::Bytes;
use chatgate::event::{Event, EventError, Visibility};
use chatgate::frame::{frame_len, Frame, CHANNEL};
use chatgate::ingest::{parse_batch, BatchError};
use chatgate::session::{LogEntry, SessionState};
use chatgate::view::{self, CustomerFrame};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

/// The frame bound the checks parse and project with (the default of
/// `CHATGATE_MAX_FRAME_BYTES`).
pub const BOUND: usize = 512 << 10;

/// Log entries kept per session for the final snapshot (a trailing
/// window, as the hub's log limit keeps).
const LOG_KEEP: usize = 8;

/// Keys a customer view may have at each level (SPEC section 2).
const NOTIFICATION_KEYS: [&str; 5] = [
    "notificationType",
    "messageType",
    "facebooksession",
    "facebooksessionPath",
    "messages",
];
const SESSION_KEYS: [&str; 3] = ["id", "state", "participants"];
const PARTICIPANT_KEYS: [&str; 3] = ["participantId", "nickname", "type"];
const MESSAGE_KEYS: [&str; 8] = [
    "index",
    "type",
    "visibility",
    "text",
    "url",
    "timestamp",
    "timestampSeconds",
    "from",
];
/// Message fields a customer gets only as strings or numbers.
const SCALAR_KEYS: [&str; 3] = ["url", "timestamp", "timestampSeconds"];
const ENVELOPE_KEYS: [&str; 4] = ["type", "id", "channel", "data"];

// ---------------------------------------------------------------------
// The parser
// ---------------------------------------------------------------------

/// The upstream parser (`POST /upstream/events` and the bus payload) on
/// arbitrary bytes, as a JSON body and as NDJSON: it never panics; a
/// refusal names the first bad item of the batch and says why; every
/// accepted event names a session, keeps its item's bytes exactly as sent
/// and parses from them again to the same event; each item on its own
/// keeps the duplicate-key, visibility and frame-bound rules.
pub fn check_parse(data: &[u8]) {
    let body = Bytes::copy_from_slice(data);
    for ndjson in [false, true] {
        let items = items_as_sent(data, ndjson);
        for item in items.iter().flatten() {
            check_item(item);
        }
        match parse_batch(&body, ndjson, BOUND) {
            Ok(batch) => {
                let items = items.expect("an accepted batch has items");
                assert!(!batch.is_empty(), "an accepted batch is never empty");
                assert_eq!(batch.len(), items.len(), "one event per item");
                for (event, item) in batch.iter().zip(&items) {
                    assert_eq!(
                        event.raw().as_bytes(),
                        *item,
                        "an event keeps its item's bytes as sent"
                    );
                    check_accepted(event);
                }
            }
            Err(BatchError::Empty) => {
                assert_eq!(items.map(|i| i.len()), Some(0), "only no item is empty");
            }
            Err(BatchError::Item { item, reason }) => {
                assert!(item >= 1, "items are numbered from 1");
                assert!(!reason.to_string().is_empty(), "a refusal says why");
                match &items {
                    Some(items) => check_named_item(items, item, &reason),
                    None => {
                        // A body that is no JSON array: the break is in one
                        // of its elements (at most one per comma), or
                        // after the last one read.
                        let commas = data.iter().filter(|b| **b == b',').count();
                        assert!(item <= commas + 2, "item {item} of {commas} commas");
                    }
                }
            }
        }
    }
}

/// The items of a body as the client sent them, found without chatgate:
/// the trimmed non-blank lines of NDJSON, the elements of a JSON array, or
/// the trimmed body. `None` for an array body that is not a JSON array.
fn items_as_sent(data: &[u8], ndjson: bool) -> Option<Vec<&[u8]>> {
    if ndjson {
        return Some(
            data.split(|b| *b == b'\n')
                .map(<[u8]>::trim_ascii)
                .filter(|l| !l.is_empty())
                .collect(),
        );
    }
    let trimmed = data.trim_ascii();
    if trimmed.first() != Some(&b'[') {
        return Some(vec![trimmed]);
    }
    let text = std::str::from_utf8(data).ok()?;
    let elements: Vec<&RawValue> = serde_json::from_str(text).ok()?;
    Some(elements.iter().map(|e| e.get().as_bytes()).collect())
}

/// A refused batch names its first bad item, for that item's own reason.
fn check_named_item(items: &[&[u8]], item: usize, reason: &EventError) {
    assert!(item <= items.len(), "item {item} of {}", items.len());
    for (i, earlier) in items[..item - 1].iter().enumerate() {
        assert!(
            parse(earlier, BOUND).is_ok(),
            "item {item} named, but item {} is bad too",
            i + 1
        );
    }
    assert_eq!(
        parse(items[item - 1], BOUND).err().as_ref(),
        Some(reason),
        "the named item is refused for the reason given"
    );
}

fn parse(item: &[u8], bound: usize) -> Result<Event, EventError> {
    Event::parse(Bytes::copy_from_slice(item), bound)
}

/// What every accepted event keeps.
fn check_accepted(event: &Event) {
    let id = event.session_id();
    let chars = id.chars().count();
    assert!((1..=256).contains(&chars), "session id {id:?}");
    let input: Value = serde_json::from_str(event.raw()).expect("an event's bytes are JSON");
    assert_eq!(
        first_duplicate_key(event.raw()),
        Ok(None),
        "an accepted event has unique keys"
    );
    let again = Event::parse_str(event.raw(), BOUND).expect("an event's bytes parse again");
    assert_eq!(
        &again, event,
        "the event changed on a round trip of its bytes"
    );
    check_visibilities(event, &input);
}

/// chatgate's visibilities are those of the input: visible exactly when
/// the value is the string `All`.
fn check_visibilities(event: &Event, input: &Value) {
    let participants = input
        .pointer("/facebooksession/participants")
        .and_then(Value::as_array);
    for (i, p) in event.participants().iter().enumerate() {
        let original = &participants.expect("participants")[i];
        assert_eq!(
            p.visibility == Visibility::All,
            says_all(original),
            "participant {original}"
        );
    }
    let messages = input["messages"].as_array();
    for (i, m) in event.messages().iter().enumerate() {
        let original = &messages.expect("messages")[i];
        assert_eq!(
            m.visibility == Visibility::All,
            says_all(original),
            "message {original}"
        );
        if let Some(from) = &m.from {
            assert_eq!(
                from.visibility == Visibility::All,
                says_all(&original["from"]),
                "from of {original}"
            );
        }
    }
}

/// Each item on its own: a duplicate key (found by this file's scan) is
/// refused as such, naming the first key repeated; the frame bound is
/// exact: an event refused for its size is accepted at the size it says
/// it needs, and an accepted one is refused one byte below that.
fn check_item(item: &[u8]) {
    let parsed = parse(item, BOUND);
    if let Ok(text) = std::str::from_utf8(item) {
        match (first_duplicate_key(text), &parsed) {
            (Ok(Some(key)), _) => assert_eq!(
                parsed.as_ref().err(),
                Some(&EventError::DuplicateKey(key)),
                "a key twice is refused as ambiguous"
            ),
            (Ok(None), Err(EventError::DuplicateKey(key))) => {
                panic!("{key:?} refused as a duplicate, but no key repeats")
            }
            _ => {}
        }
    }
    let needed = match &parsed {
        Err(EventError::TooLarge { bytes, limit }) => {
            assert_eq!(*limit, BOUND, "the refusal names the bound");
            assert!(*bytes > BOUND, "{bytes} bytes refused under {BOUND}");
            *bytes
        }
        Err(_) => return,
        Ok(event) => {
            let agent_frame = frame_len(1, event.raw().len());
            match parse(item, agent_frame - 1) {
                Err(EventError::TooLarge { bytes, .. }) => bytes,
                other => panic!("accepted under the size of its own frame: {other:?}"),
            }
        }
    };
    assert!(parse(item, needed).is_ok(), "refused at the size it needs");
    assert!(
        parse(item, needed - 1).is_err_and(|e| e.is_too_large()),
        "accepted one byte below the size it needs"
    );
}

/// The first key found twice in one object, in document order; `Err` when
/// `text` is not one JSON value. chatgate's check is not used here.
pub fn first_duplicate_key(text: &str) -> Result<Option<String>, String> {
    let first = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    Scan { first: &first }
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| e.to_string())?;
    Ok(first.into_inner())
}

/// A JSON value walked for keys repeated within one object.
#[derive(Clone, Copy)]
struct Scan<'a> {
    first: &'a RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for Scan<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Scan<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !keys.insert(key.clone()) {
                self.first.borrow_mut().get_or_insert(key);
            }
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------
// The customer view
// ---------------------------------------------------------------------

/// The customer projection on arbitrary input: each line of `data` that
/// parses is applied, in order, to its session's state (bus sequences
/// 1, 2, 3, ...), and every customer frame produced, and each session's
/// final customer snapshot, must keep the rules: only allow-listed keys;
/// exactly the participants listed `All`; exactly the messages that say
/// `All`, whose `from` says `All` and whose sender's latest listing is
/// `All` where listed; indices and customer ids 1, 2, 3, ... without gaps
/// per session; `url`, `timestamp`, `timestampSeconds` only as strings or
/// numbers, as sent; nothing of an agent-only participant.
pub fn check_projection(data: &[u8]) {
    let mut sessions: HashMap<String, Tracked> = HashMap::new();
    let mut seq = 0;
    for line in data.split(|b| *b == b'\n') {
        let Ok(event) = parse(line, BOUND) else {
            continue;
        };
        seq += 1;
        let id = event.session_id().to_owned();
        sessions
            .entry(id)
            .or_insert_with_key(|id| Tracked::new(id, seq))
            .apply(seq, &event);
    }
    for tracked in sessions.values() {
        tracked.check_snapshot();
    }
}

/// Checks `view` (the data of a customer frame) as the first customer
/// view of `event`'s session.
pub fn check_first_view(event: &Event, view: &Value) {
    let input: Value = serde_json::from_str(event.raw()).expect("an event is JSON");
    Model::new(event.session_id()).check(event.raw(), &input, &[(1, view.clone())]);
}

/// One session: chatgate's state and log, and this file's own record.
struct Tracked {
    state: SessionState,
    log: VecDeque<LogEntry>,
    model: Model,
}

impl Tracked {
    fn new(id: &str, incarnation: u64) -> Self {
        Self {
            state: SessionState::new(id, incarnation),
            log: VecDeque::new(),
            model: Model::new(id),
        }
    }

    fn apply(&mut self, seq: u64, event: &Event) {
        let input: Value = serde_json::from_str(event.raw()).expect("an event is JSON");
        let applied = self.state.apply(seq, event, BOUND);
        let frames: Vec<(u64, Value)> = applied
            .customer
            .iter()
            .map(|(id, frame)| (*id, envelope_data(frame, &id.to_string())))
            .collect();
        self.model.check(event.raw(), &input, &frames);
        assert_eq!(
            self.state.customer_seq(),
            self.model.last_id,
            "customer ids"
        );
        assert_eq!(
            self.state.messages_shown(),
            self.model.shown,
            "messages shown"
        );
        let messages = input["messages"].as_array().map_or(&[][..], Vec::as_slice);
        assert_eq!(
            applied.log.len(),
            messages.len(),
            "one log entry per message"
        );
        for (entry, message) in applied.log.iter().zip(messages) {
            assert_eq!(entry.seq, seq);
            let logged: Value = serde_json::from_str(entry.agent.as_str()).expect("logged JSON");
            assert_eq!(&logged, message, "the log keeps the message as received");
            if let Some(line) = &entry.customer {
                let shown: Value = serde_json::from_str(line.json()).expect("a line is JSON");
                assert_eq!(
                    self.model.lines.get(&line.index()),
                    Some(&shown),
                    "a logged line is what the customer was shown"
                );
            }
        }
        self.log.extend(applied.log);
        while self.log.len() > LOG_KEEP {
            self.log.pop_front();
        }
    }

    /// The customer's snapshot from the kept log: the session object last
    /// sent, then the kept lines as they were shown, contiguous, up to
    /// the last one shown; every frame with the current customer id.
    fn check_snapshot(&self) {
        let lines: Vec<_> = self
            .log
            .iter()
            .filter_map(|e| e.customer.as_ref())
            .collect();
        let frames = view::snapshot(
            self.state.customer_seq(),
            self.state.path_json(),
            self.state.customer_state(),
            lines.iter().copied(),
            BOUND,
        );
        let id = self.state.customer_seq().to_string();
        let mut data: VecDeque<Value> = frames.iter().map(|f| envelope_data(f, &id)).collect();
        if let Some(session) = &self.model.session {
            let state = data
                .pop_front()
                .expect("the snapshot starts with the session");
            check_keys(&state, &NOTIFICATION_KEYS, "snapshot state");
            assert_eq!(state["notificationType"], "ParticipantsUpdated");
            assert_eq!(
                &state["facebooksession"], session,
                "the session as last sent"
            );
        }
        let mut indices = Vec::new();
        for frame in &data {
            check_keys(frame, &NOTIFICATION_KEYS, "snapshot messages");
            assert_eq!(frame["notificationType"], "NewMessages");
            assert_eq!(frame["facebooksessionPath"], self.model.path);
            for m in frame["messages"].as_array().expect("messages") {
                check_message_keys(m);
                let index = m["index"].as_u64().expect("an index");
                assert_eq!(self.model.lines.get(&index), Some(m), "shown so before");
                indices.push(index);
            }
        }
        assert_eq!(indices.len(), lines.len(), "every kept line");
        if let (Some(first), Some(last)) = (indices.first(), indices.last()) {
            let contiguous: Vec<u64> = (*first..=*last).collect();
            assert_eq!(indices, contiguous, "snapshot indices are contiguous");
            assert_eq!(*last, self.model.shown, "up to the last line shown");
        }
    }
}

/// The data of a customer frame, after checking its envelope.
fn envelope_data(frame: &CustomerFrame, id: &str) -> Value {
    let v: Value = serde_json::from_str(frame.bytes().as_str()).expect("a frame is JSON");
    check_keys(&v, &ENVELOPE_KEYS, "envelope");
    assert_eq!(v["type"], "notification");
    assert_eq!(v["id"], id, "the frame's id");
    assert_eq!(v["channel"], CHANNEL);
    v["data"].clone()
}

/// What the customer of one session may see, decided from the inputs.
struct Model {
    session_id: String,
    path: String,
    /// Every participant listed, by key, and whether its latest listing
    /// says `All`.
    listing: HashMap<String, bool>,
    /// The session object the customer was last sent.
    session: Option<Value>,
    /// Whether it came from a notification with escapes.
    session_escaped: bool,
    /// Messages shown: the last index.
    shown: u64,
    /// The last customer id.
    last_id: u64,
    /// Each message shown, by index.
    lines: HashMap<u64, Value>,
}

impl Model {
    fn new(session_id: &str) -> Self {
        Self {
            session_id: session_id.to_owned(),
            path: format!("/facebooksessions/{session_id}"),
            listing: HashMap::new(),
            session: None,
            session_escaped: false,
            shown: 0,
            last_id: 0,
            lines: HashMap::new(),
        }
    }

    /// Checks the customer frames `frames` (id, data) of notification
    /// `input` (its text `raw`) and records what they showed.
    fn check(&mut self, raw: &str, input: &Value, frames: &[(u64, Value)]) {
        for (k, (id, _)) in (1u64..).zip(frames) {
            assert_eq!(*id, self.last_id + k, "customer ids run without gaps");
        }
        self.last_id += frames.len() as u64;
        // A state the notification carries is the listing its own
        // messages are checked against.
        if let Some(session) = present(input, "facebooksession") {
            // Listed twice in one listing: as visible as its least
            // visible entry.
            let mut latest: HashMap<String, bool> = HashMap::new();
            for p in list(session, "participants") {
                *latest.entry(key_of(p)).or_insert(true) &= says_all(p);
            }
            self.listing.extend(latest);
        }
        match input["notificationType"].as_str() {
            Some("NewMessages") => self.check_messages(input, frames),
            Some("Error") => assert!(frames.is_empty(), "an Error is not for customers"),
            _ => self.check_state(raw, input, frames),
        }
    }

    fn check_state(&mut self, raw: &str, input: &Value, frames: &[(u64, Value)]) {
        let Some(expected) = present(input, "facebooksession").map(|s| self.session_view(s)) else {
            assert!(frames.is_empty(), "no session, no state frame");
            return;
        };
        // chatgate compares the session views' bytes: the same view
        // written with other escapes may be sent again (nothing new).
        let escaped = raw.contains('\\');
        if Some(&expected) == self.session.as_ref() {
            if !(escaped || self.session_escaped) {
                assert!(frames.is_empty(), "an unchanged session view is not sent");
            }
            if frames.is_empty() {
                return;
            }
        }
        assert_eq!(frames.len(), 1, "one state frame");
        let got = &frames[0].1;
        check_keys(got, &NOTIFICATION_KEYS, "notification");
        assert_eq!(got["notificationType"], input["notificationType"]);
        assert_eq!(got["messageType"], input["messageType"]);
        let session = &got["facebooksession"];
        check_keys(session, &SESSION_KEYS, "session");
        for p in session["participants"].as_array().expect("participants") {
            check_keys(p, &PARTICIPANT_KEYS, "participant");
            self.check_not_hidden(p, input);
        }
        assert_eq!(session, &expected, "exactly the participants listed All");
        self.session = Some(expected);
        self.session_escaped = escaped;
    }

    /// The session object a customer gets: `id`, `state`, and the
    /// participants whose visibility is `All` (and not listed a second
    /// time otherwise: fail closed), reduced.
    fn session_view(&self, session: &Value) -> Value {
        let mut out = Map::new();
        out.insert("id".into(), session["id"].clone());
        if let Some(state) = present(session, "state") {
            out.insert("state".into(), state.clone());
        }
        let participants = list(session, "participants");
        let hidden_twice = |p: &Value| {
            participants
                .iter()
                .any(|q| key_of(q) == key_of(p) && !says_all(q))
        };
        let visible: Vec<Value> = participants
            .iter()
            .filter(|p| says_all(p) && !hidden_twice(p))
            .map(reduced)
            .collect();
        out.insert("participants".into(), Value::Array(visible));
        Value::Object(out)
    }

    fn check_messages(&mut self, input: &Value, frames: &[(u64, Value)]) {
        let mut got = Vec::new();
        for (_, frame) in frames {
            check_keys(frame, &NOTIFICATION_KEYS, "notification");
            assert_eq!(frame["notificationType"], "NewMessages");
            assert_eq!(frame["messageType"], input["messageType"]);
            assert_eq!(frame["facebooksessionPath"], self.path);
            let messages = frame["messages"].as_array().expect("messages");
            assert!(!messages.is_empty(), "an empty view is not sent");
            for m in messages {
                check_message_keys(m);
                if let Some(from) = m.get("from") {
                    self.check_not_hidden(from, input);
                }
                got.push(m.clone());
            }
        }
        let visible: Vec<&Value> = list(input, "messages")
            .iter()
            .filter(|m| self.customer_may_see(m))
            .collect();
        let expected: Vec<Value> = (self.shown + 1..)
            .zip(visible)
            .map(|(index, m)| projected(m, index))
            .collect();
        self.shown += expected.len() as u64;
        assert_eq!(got, expected, "exactly the visible messages, renumbered");
        for m in got {
            let index = m["index"].as_u64().expect("an index");
            self.lines.insert(index, m);
        }
    }

    /// The sender rule, restated: the message and its `from` say `All`,
    /// and the sender's latest listing in the session says `All` too.
    fn customer_may_see(&self, m: &Value) -> bool {
        says_all(m)
            && present(m, "from").is_none_or(|from| {
                says_all(from) && self.listing.get(&key_of(from)).is_none_or(|all| *all)
            })
    }

    /// A participant a customer was shown is not agent-only: neither
    /// listed so in the session nor hidden in this notification (unless
    /// the same notification also lists it `All`).
    fn check_not_hidden(&self, shown: &Value, input: &Value) {
        let key = shown["participantId"].as_str().expect("a participantId");
        let participants =
            present(input, "facebooksession").map_or(&[][..], |s| list(s, "participants"));
        let listed = |all: bool| {
            participants
                .iter()
                .any(|p| key_of(p) == key && says_all(p) == all)
        };
        assert!(!listed(false), "agent-only participant {key:?} shown");
        if input["notificationType"] == "NewMessages" {
            assert_ne!(
                self.listing.get(key),
                Some(&false),
                "a line of agent-only {key:?} shown"
            );
        }
    }
}

/// Whether `v`'s `visibility` is exactly the string `All`.
fn says_all(v: &Value) -> bool {
    v.get("visibility") == Some(&Value::String("All".into()))
}

/// `v[key]` unless absent or null.
fn present<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| !x.is_null())
}

/// `v[key]` as an array (absent or null: empty).
fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// A participant's key in its session: `participantId`, else `id`.
fn key_of(p: &Value) -> String {
    present(p, "participantId")
        .or_else(|| present(p, "id"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// A participant as a customer sees it.
fn reduced(p: &Value) -> Value {
    let mut out = Map::new();
    out.insert("participantId".into(), Value::String(key_of(p)));
    if let Some(nickname) = present(p, "nickname") {
        out.insert("nickname".into(), nickname.clone());
    }
    out.insert("type".into(), p["type"].clone());
    Value::Object(out)
}

/// A visible message as a customer sees it, numbered `index`.
fn projected(m: &Value, index: u64) -> Value {
    let mut out = Map::new();
    out.insert("index".into(), json!(index));
    out.insert("type".into(), m["type"].clone());
    out.insert("visibility".into(), json!("All"));
    if let Some(text) = present(m, "text") {
        out.insert("text".into(), text.clone());
    }
    for key in SCALAR_KEYS {
        if let Some(v) = m.get(key).filter(|v| v.is_string() || v.is_number()) {
            out.insert(key.into(), v.clone());
        }
    }
    if let Some(from) = present(m, "from") {
        out.insert("from".into(), reduced(from));
    }
    Value::Object(out)
}

fn check_message_keys(m: &Value) {
    check_keys(m, &MESSAGE_KEYS, "message");
    for key in SCALAR_KEYS {
        if let Some(v) = m.get(key) {
            assert!(v.is_string() || v.is_number(), "{key} is {v}");
        }
    }
    if let Some(from) = m.get("from") {
        check_keys(from, &PARTICIPANT_KEYS, "from");
    }
}

fn check_keys(v: &Value, allowed: &[&str], what: &str) {
    let object = v
        .as_object()
        .unwrap_or_else(|| panic!("{what} is not an object: {v}"));
    for key in object.keys() {
        assert!(
            allowed.contains(&key.as_str()),
            "{what} carries {key:?}: {v}"
        );
    }
}

// ---------------------------------------------------------------------
// The upstream's dialects, generated from bytes
// ---------------------------------------------------------------------

/// Visibility values upstreams send (`None`: no visibility at all). Only
/// the first is visible.
pub fn visibility_dialects() -> [Option<Value>; 10] {
    [
        Some(json!("All")),
        Some(json!("Agents")),
        Some(json!("INT")),
        Some(json!("VIP")),
        Some(json!("ALL")),
        Some(json!("all")),
        Some(json!("")),
        Some(Value::Null),
        None,
        Some(json!(1)),
    ]
}

/// Sets `v`'s visibility to `dialect` (`None`: removes it).
pub fn set_visibility(v: &mut Value, dialect: Option<Value>) {
    if let Some(object) = v.as_object_mut() {
        match dialect {
            Some(d) => object.insert("visibility".into(), d),
            None => object.remove("visibility"),
        };
    }
}

/// The JSON pointers of every object in `v` (`""` is `v` itself).
pub fn object_pointers(v: &Value) -> Vec<String> {
    fn walk(v: &Value, at: String, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    let k = k.replace('~', "~0").replace('/', "~1");
                    walk(child, format!("{at}/{k}"), out);
                }
                out.push(at);
            }
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    walk(child, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, String::new(), &mut out);
    out
}

/// A key no generated notification has, replaced in the text by the pair
/// of duplicates.
const DUPLICATE_SLOT: &str = "\u{1}duplicate-slot";

/// The JSON text of `v` with `key` written twice, `first` then `second`
/// (JSON texts), in the object at `pointer`: text no serializer would
/// produce, built by hand.
pub fn with_duplicate(v: &Value, pointer: &str, key: &str, first: &str, second: &str) -> String {
    let mut v = v.clone();
    let target = v
        .pointer_mut(pointer)
        .and_then(Value::as_object_mut)
        .expect("an object at the pointer");
    target.insert(DUPLICATE_SLOT.into(), json!(0));
    let text = v.to_string();
    let slot = format!("{}:0", Value::String(DUPLICATE_SLOT.into()));
    assert_eq!(text.matches(&slot).count(), 1, "one slot in {text}");
    let key = Value::String(key.into());
    text.replacen(&slot, &format!("{key}:{first},{key}:{second}"), 1)
}

/// Choices read from fuzz input; zeros once it runs out.
struct Choices<'a>(std::slice::Iter<'a, u8>);

impl Choices<'_> {
    /// A number below `n`.
    fn below(&mut self, n: usize) -> usize {
        self.0.next().map_or(0, |b| usize::from(*b) % n.max(1))
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn visibility(&mut self) -> Option<Value> {
        // `All` half the time, so that customers see something.
        if self.chance(2) {
            return Some(json!("All"));
        }
        let dialects = visibility_dialects();
        dialects[self.below(dialects.len())].clone()
    }
}

/// A participant of a generated notification.
fn dialect_participant(c: &mut Choices<'_>) -> Value {
    let id = c.below(4);
    let agent = c.chance(2);
    let mut p = json!({
        "participantId": format!("P{id}"),
        "id": format!("P{id}"),
        "type": if agent { "Agent" } else { "Customer" },
        "nickname": format!("nick-{id}"),
        "uri": format!("http://upstream/api/v2/users/U{id}"),
    });
    if agent {
        p["path"] = json!(format!("/users/U{id}"));
    }
    set_visibility(&mut p, c.visibility());
    p
}

/// One notification of session S0 or S1 whose visibilities are drawn from
/// the dialects, and whether a pair of duplicate keys was written into it
/// (which key).
fn dialect_item(c: &mut Choices<'_>, n: usize) -> (String, Option<String>) {
    let session = format!("S{}", c.below(2));
    let v = if c.chance(2) {
        let participants: Vec<Value> = (0..c.below(5)).map(|_| dialect_participant(c)).collect();
        let kinds = [
            "ParticipantsUpdated",
            "StatusChange",
            "PropertiesUpdated",
            "Error",
        ];
        let kind = kinds[c.below(kinds.len())];
        let state = if c.chance(4) { "Completed" } else { "Chatting" };
        json!({
            "notificationType": kind,
            "messageType": "FacebooksessionStateChangeMessage",
            "facebooksession": {
                "id": session,
                "state": state,
                "participants": participants,
                "userData": {"secret": format!("USERDATA-{n}")},
            },
        })
    } else {
        let messages: Vec<Value> = (0..c.below(4))
            .map(|i| {
                let kind = ["Text", "PushUrl", "TypingStarted"][c.below(3)];
                let url = [json!("https://x/o"), json!(7), json!({"o": 1}), Value::Null];
                let url = url[c.below(url.len())].clone();
                let mut m = json!({
                    "index": i + 1,
                    "type": kind,
                    "text": format!("line-{n}-{i}"),
                    "url": url,
                    "timestampSeconds": 1_445_346_881_000u64 + i as u64,
                    "internalNote": format!("NOTE-{n}"),
                });
                set_visibility(&mut m, c.visibility());
                if !c.chance(4) {
                    m["from"] = dialect_participant(c);
                }
                m
            })
            .collect();
        json!({
            "notificationType": "NewMessages",
            "messageType": "MessageLogUpdated",
            "facebooksessionPath": format!("/facebooksessions/{session}"),
            "messages": messages,
        })
    };
    if !c.chance(5) {
        return (v.to_string(), None);
    }
    let pointers = object_pointers(&v);
    let pointer = &pointers[c.below(pointers.len())];
    let key = ["visibility", "participantId", "text", "notificationType"][c.below(4)];
    let (first, second) = if c.chance(2) {
        (r#""Agents""#, r#""All""#)
    } else {
        (r#""All""#, r#""Agents""#)
    };
    (
        with_duplicate(&v, pointer, key, first, second),
        Some(key.to_owned()),
    )
}

/// A stream of notifications built from `data` as choices, in the
/// upstream's dialects (visibility values, duplicate keys): the parser and
/// projection checks hold; an item with a key twice is refused as
/// ambiguous, naming that key, and refuses its batch, naming it; every
/// other item is accepted.
pub fn check_dialects(data: &[u8]) {
    let mut c = Choices(data.iter());
    let items: Vec<(String, Option<String>)> =
        (0..=c.below(12)).map(|n| dialect_item(&mut c, n)).collect();
    let stream = items
        .iter()
        .map(|(text, _)| text.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    check_parse(stream.as_bytes());
    check_projection(stream.as_bytes());
    for (text, duplicate) in &items {
        let parsed = Event::parse_str(text, BOUND);
        match duplicate {
            Some(key) => assert_eq!(
                parsed.err(),
                Some(EventError::DuplicateKey(key.clone())),
                "{text}"
            ),
            None => assert!(parsed.is_ok(), "{text}: {parsed:?}"),
        }
    }
    let first_bad = items.iter().position(|(_, d)| d.is_some());
    match (parse_batch(&Bytes::from(stream), true, BOUND), first_bad) {
        (Ok(batch), None) => assert_eq!(batch.len(), items.len()),
        (Err(BatchError::Item { item, reason }), Some(bad)) => {
            assert_eq!(item, bad + 1, "the first ambiguous item is named");
            assert!(matches!(reason, EventError::DuplicateKey(_)), "{reason}");
        }
        (other, bad) => panic!("batch with first bad item {bad:?}: {other:?}"),
    }
}
