//! One upstream notification as received: its bytes, and what routing and
//! the customer view need from them.
//!
//! Owns parsing and validation of the gateway's input (the ingest's items,
//! the bus's payloads). An [`Event`] keeps the notification's bytes exactly
//! as received (agents get them unchanged, without a serialization) and
//! extracts, as typed fields and as positions in those bytes: the session
//! id, the participants (key, user, type, visibility, nickname), the
//! messages (index, sender, visibility, and the allow-listed fields a
//! customer may see). Nothing else is parsed into memory; no
//! `serde_json::Value` is built.
//!
//! Ambiguous input fails closed (SPEC 1):
//! - an object with the same key twice, anywhere in the notification,
//!   makes it invalid ([`EventError::DuplicateKey`]);
//! - a visibility is [`Visibility::All`] only when it is exactly the
//!   string `All`; any other value (`Agents`, `INT`, `VIP`, `ALL`, `""`,
//!   `null`, a number, none at all) is agent-only: accepted, delivered to
//!   agents unchanged, never shown to a customer;
//! - the customer's allow-listed message fields (`url`, `timestamp`,
//!   `timestampSeconds`) are kept only as strings or numbers.
//!
//! The frame bound is checked here too: an item whose agent frame, or a
//! snapshot frame built from it, would exceed it is refused
//! ([`EventError::TooLarge`]), so no frame the gateway accepted can fail a
//! connection.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::frame::{frame_len, MAX_ID_BYTES};

/// `notificationType` (SPEC 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
pub enum NotificationType {
    StatusChange,
    ParticipantsUpdated,
    PropertiesUpdated,
    Error,
    NewMessages,
}

impl NotificationType {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationType::StatusChange => "StatusChange",
            NotificationType::ParticipantsUpdated => "ParticipantsUpdated",
            NotificationType::PropertiesUpdated => "PropertiesUpdated",
            NotificationType::Error => "Error",
            NotificationType::NewMessages => "NewMessages",
        }
    }
}

/// Who may see a participant or a message. Only the exact string `All`
/// is [`Visibility::All`]; everything else, including no value, is
/// agent-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Visibility {
    All,
    #[default]
    AgentsOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum ParticipantType {
    Customer,
    Agent,
}

impl ParticipantType {
    pub fn as_str(self) -> &'static str {
        match self {
            ParticipantType::Customer => "Customer",
            ParticipantType::Agent => "Agent",
        }
    }
}

/// Why an upstream notification was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("invalid notification: {0}")]
    Shape(String),
    #[error("ambiguous: the key {0:?} appears twice in one object")]
    DuplicateKey(String),
    #[error("notification names no session (facebooksession.id, facebooksessionPath or facebooksessionUri)")]
    NoSession,
    #[error("{0} carries no {1}")]
    Missing(&'static str, &'static str),
    #[error("its frame would take {bytes} bytes, over the frame bound of {limit} (CHATGATE_MAX_FRAME_BYTES)")]
    TooLarge { bytes: usize, limit: usize },
}

impl EventError {
    /// Whether the item is refused for its size (HTTP 413) rather than its
    /// content (HTTP 400).
    pub fn is_too_large(&self) -> bool {
        matches!(self, EventError::TooLarge { .. })
    }
}

/// A position in an event's bytes: the text of one JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }

    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }

    pub fn is_empty(self) -> bool {
        self.start == self.end
    }
}

/// A session participant as routing and the customer view need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    /// `participantId`, else `id`: the key within the session.
    pub key: Box<str>,
    /// For an agent, the user it stands for: the userId of its
    /// `/users/{userId}` path, else the last segment of its `uri`, else
    /// its key. Agent tokens carry this as `sub`.
    pub user: Box<str>,
    pub kind: ParticipantType,
    pub visibility: Visibility,
    /// The JSON string of the key, as received.
    pub key_text: Span,
    /// The JSON string of `nickname`, as received.
    pub nickname: Option<Span>,
}

impl Participant {
    pub fn is_agent(&self) -> bool {
        self.kind == ParticipantType::Agent
    }
}

/// The `facebooksession` object of a state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPart {
    /// The whole object, as received.
    pub text: Span,
    /// The JSON string of `state`.
    pub state: Option<Span>,
    /// The plain value of `state` (`Completed` ends a session).
    pub completed: bool,
    pub participants: Vec<Participant>,
}

/// One message of a NewMessages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagePart {
    /// The whole message object, as received.
    pub text: Span,
    pub index: u64,
    /// The JSON string of `type`.
    pub kind: Span,
    pub visibility: Visibility,
    pub from: Option<Participant>,
    /// The JSON string of `text`.
    pub body: Option<Span>,
    /// `url`, `timestamp`, `timestampSeconds`, each a JSON string or
    /// number as received (other types are not kept).
    pub url: Option<Span>,
    pub timestamp: Option<Span>,
    pub timestamp_seconds: Option<Span>,
}

/// One upstream notification: its bytes and what was extracted from them.
#[derive(Clone, PartialEq, Eq)]
pub struct Event {
    raw: Utf8Bytes,
    kind: NotificationType,
    session_id: Box<str>,
    /// The JSON string of `messageType`.
    message_type: Span,
    /// The JSON string of `facebooksessionUri`.
    uri: Option<Span>,
    session: Option<SessionPart>,
    messages: Vec<MessagePart>,
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("kind", &self.kind)
            .field("session_id", &self.session_id)
            .field("bytes", &self.raw.len())
            .finish_non_exhaustive()
    }
}

/// Room a snapshot frame built from an event may need besides the event's
/// own parts: its wrapper keys, the session's path (an id of up to 256
/// characters, each escaped in at most 6 bytes) and its URI (kept for
/// snapshots only up to [`MAX_SNAPSHOT_URI`] bytes).
const SNAPSHOT_STATE_WRAPPER: usize =
    r#"{"notificationType":"ParticipantsUpdated","messageType":"FacebooksessionStateChangeMessage","facebooksession":}"#.len();
const SNAPSHOT_MESSAGES_WRAPPER: usize = r#"{"notificationType":"NewMessages","messageType":"MessageLogUpdated","facebooksessionPath":"/facebooksessions/","facebooksessionUri":,"messages":[]}"#.len();
/// The longest `facebooksessionUri` a session keeps for its snapshots.
pub const MAX_SNAPSHOT_URI: usize = 1024;
const MAX_SESSION_ID: usize = 256;

impl Event {
    /// Parses and validates one notification; `max_frame` is the frame
    /// bound its frames must fit in.
    pub fn parse(bytes: Bytes, max_frame: usize) -> Result<Self, EventError> {
        let raw =
            Utf8Bytes::try_from(bytes).map_err(|_| EventError::Json("not valid UTF-8".into()))?;
        let event = parse_text(raw)?;
        let needed = event.largest_frame();
        if needed > max_frame {
            return Err(EventError::TooLarge {
                bytes: needed,
                limit: max_frame,
            });
        }
        Ok(event)
    }

    /// [`Event::parse`] of text.
    pub fn parse_str(text: &str, max_frame: usize) -> Result<Self, EventError> {
        Self::parse(Bytes::copy_from_slice(text.as_bytes()), max_frame)
    }

    /// The notification exactly as received.
    pub fn raw(&self) -> &str {
        self.raw.as_str()
    }

    /// The bytes as received, shared.
    pub fn raw_bytes(&self) -> &Utf8Bytes {
        &self.raw
    }

    /// The text of `span`.
    pub fn at(&self, span: Span) -> &str {
        &self.raw.as_str()[span.range()]
    }

    pub fn kind(&self) -> NotificationType {
        self.kind
    }

    /// The session this notification belongs to: `facebooksession.id`,
    /// else the last segment of `facebooksessionPath` or
    /// `facebooksessionUri`.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The JSON string of `messageType`.
    pub fn message_type(&self) -> &str {
        self.at(self.message_type)
    }

    /// The JSON string of `facebooksessionUri`, if any.
    pub fn uri(&self) -> Option<&str> {
        self.uri.map(|s| self.at(s))
    }

    pub fn session(&self) -> Option<&SessionPart> {
        self.session.as_ref()
    }

    pub fn participants(&self) -> &[Participant] {
        self.session.as_ref().map_or(&[], |s| &s.participants)
    }

    pub fn messages(&self) -> &[MessagePart] {
        &self.messages
    }

    /// The largest frame built from this event: its agent frame, a
    /// snapshot's state frame of its session, a snapshot's message frame
    /// holding one of its messages.
    fn largest_frame(&self) -> usize {
        let live = frame_len(MAX_ID_BYTES, self.raw.len());
        let state = self.session.as_ref().map_or(0, |s| {
            frame_len(MAX_ID_BYTES, SNAPSHOT_STATE_WRAPPER + s.text.len())
        });
        let messages = self
            .messages
            .iter()
            .map(|m| m.text.len())
            .max()
            .map_or(0, |m| {
                let room = SNAPSHOT_MESSAGES_WRAPPER + 6 * MAX_SESSION_ID + MAX_SNAPSHOT_URI;
                frame_len(MAX_ID_BYTES, room + m)
            });
        live.max(state).max(messages)
    }
}

/// The first parse: the notification's top level, its parts as raw text.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireNotification<'a> {
    notification_type: NotificationType,
    #[serde(borrow)]
    message_type: &'a RawValue,
    #[serde(borrow, default)]
    facebooksession: Option<&'a RawValue>,
    #[serde(borrow, default)]
    facebooksession_uri: Option<&'a RawValue>,
    #[serde(borrow, default)]
    facebooksession_path: Option<&'a RawValue>,
    #[serde(borrow, default)]
    messages: Option<Vec<&'a RawValue>>,
}

#[derive(Deserialize)]
struct WireSession<'a> {
    #[serde(borrow)]
    id: &'a RawValue,
    #[serde(borrow, default)]
    state: Option<&'a RawValue>,
    #[serde(borrow, default)]
    participants: Option<Vec<WireParticipant<'a>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireParticipant<'a> {
    #[serde(borrow, default)]
    participant_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(rename = "type")]
    kind: ParticipantType,
    #[serde(borrow, default)]
    nickname: Option<&'a RawValue>,
    #[serde(default)]
    visibility: Visibility,
    #[serde(borrow, default)]
    uri: Option<&'a RawValue>,
    #[serde(borrow, default)]
    path: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMessage<'a> {
    index: u64,
    #[serde(rename = "type", borrow)]
    kind: &'a RawValue,
    #[serde(borrow, default)]
    from: Option<WireParticipant<'a>>,
    #[serde(default)]
    visibility: Visibility,
    #[serde(borrow, default)]
    text: Option<&'a RawValue>,
    #[serde(borrow, default)]
    url: Option<&'a RawValue>,
    #[serde(borrow, default)]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow, default)]
    timestamp_seconds: Option<&'a RawValue>,
}

/// Positions within one event's text.
struct Text<'a> {
    whole: &'a str,
}

impl<'a> Text<'a> {
    /// The span of `part`, a slice of the event's text.
    fn span(&self, part: &str) -> Span {
        let start = part.as_ptr() as usize - self.whole.as_ptr() as usize;
        // Events are far below 4 GiB: the ingest body and NATS payloads are
        // bounded well under it.
        let start = u32::try_from(start).unwrap_or(u32::MAX);
        let end = start.saturating_add(u32::try_from(part.len()).unwrap_or(u32::MAX));
        Span { start, end }
    }

    /// A JSON string value: its span, and its decoded text.
    fn string(&self, raw: &'a RawValue, what: &str) -> Result<(Span, Cow<'a, str>), EventError> {
        let text = raw.get();
        if !text.starts_with('"') {
            return Err(EventError::Shape(format!("{what} must be a string")));
        }
        let value: Cow<'a, str> = decode_str(text)?;
        Ok((self.span(text), value))
    }

    /// An optional string (null counts as absent).
    fn opt_string(
        &self,
        raw: Option<&'a RawValue>,
        what: &str,
    ) -> Result<Option<(Span, Cow<'a, str>)>, EventError> {
        match raw {
            None => Ok(None),
            Some(r) if r.get() == "null" => Ok(None),
            Some(r) => self.string(r, what).map(Some),
        }
    }

    /// A value kept for the customer only if it is a string or a number.
    fn scalar(&self, raw: Option<&'a RawValue>) -> Option<Span> {
        let text = raw?.get();
        let first = text.as_bytes().first()?;
        (*first == b'"' || *first == b'-' || first.is_ascii_digit()).then(|| self.span(text))
    }
}

/// Decodes a JSON string, borrowing when it has no escapes.
fn decode_str(text: &str) -> Result<Cow<'_, str>, EventError> {
    let inner = &text[1..text.len().saturating_sub(1).max(1)];
    if !inner.contains('\\') {
        return Ok(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(text)
        .map(Cow::Owned)
        .map_err(|e| EventError::Json(e.to_string()))
}

fn parse_text(raw: Utf8Bytes) -> Result<Event, EventError> {
    let whole = raw.as_str();
    check_unique_keys(whole)?;
    let first = whole.trim_start().as_bytes().first().copied();
    if first != Some(b'{') {
        return Err(EventError::Shape("expected a JSON object".into()));
    }
    let wire: WireNotification<'_> = serde_json::from_str(whole).map_err(shape_or_json)?;
    let text = Text { whole };
    let (message_type, _) = text.string(wire.message_type, "messageType")?;
    let session = wire
        .facebooksession
        .filter(|r| r.get() != "null")
        .map(|r| parse_session(&text, r))
        .transpose()?;
    let messages = wire
        .messages
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|r| parse_message(&text, r))
        .collect::<Result<Vec<_>, _>>()?;
    let uri = text.opt_string(wire.facebooksession_uri, "facebooksessionUri")?;
    let path = text.opt_string(wire.facebooksession_path, "facebooksessionPath")?;
    match wire.notification_type {
        NotificationType::NewMessages if wire.messages.is_none() => {
            return Err(EventError::Missing("NewMessages", "messages"));
        }
        NotificationType::ParticipantsUpdated | NotificationType::StatusChange
            if session.is_none() =>
        {
            return Err(EventError::Missing("a state change", "facebooksession"));
        }
        _ => {}
    }
    let session_id: Box<str> = match (&session, &path, &uri) {
        (Some((_, id)), _, _) => id.as_str().into(),
        (None, Some((_, p)), _) | (None, None, Some((_, p))) => {
            last_segment(p).ok_or(EventError::NoSession)?.into()
        }
        (None, None, None) => return Err(EventError::NoSession),
    };
    if session_id.is_empty() || session_id.chars().count() > MAX_SESSION_ID {
        return Err(EventError::Shape(
            "session id must be 1 to 256 characters".into(),
        ));
    }
    Ok(Event {
        kind: wire.notification_type,
        session_id,
        message_type,
        uri: uri.map(|(s, _)| s),
        session: session.map(|(part, _)| part),
        messages,
        raw: raw.clone(),
    })
}

/// A serde error as the refusal it is: not JSON at all, or JSON of the
/// wrong shape.
fn shape_or_json(e: serde_json::Error) -> EventError {
    match e.classify() {
        serde_json::error::Category::Data => EventError::Shape(e.to_string()),
        _ => EventError::Json(e.to_string()),
    }
}

fn parse_session(text: &Text<'_>, raw: &RawValue) -> Result<(SessionPart, String), EventError> {
    let wire: WireSession<'_> = serde_json::from_str(raw.get())
        .map_err(|e| EventError::Shape(format!("facebooksession: {e}")))?;
    let (_, id) = text.string(wire.id, "facebooksession.id")?;
    let state = text.opt_string(wire.state, "facebooksession.state")?;
    let participants = wire
        .participants
        .unwrap_or_default()
        .into_iter()
        .map(|p| participant(text, p))
        .collect::<Result<Vec<_>, _>>()?;
    let part = SessionPart {
        text: text.span(raw.get()),
        completed: state.as_ref().is_some_and(|(_, s)| s == "Completed"),
        state: state.map(|(s, _)| s),
        participants,
    };
    Ok((part, id.into_owned()))
}

fn parse_message(text: &Text<'_>, raw: &RawValue) -> Result<MessagePart, EventError> {
    let wire: WireMessage<'_> = serde_json::from_str(raw.get())
        .map_err(|e| EventError::Shape(format!("a message: {e}")))?;
    let (kind, _) = text.string(wire.kind, "a message's type")?;
    let body = text.opt_string(wire.text, "a message's text")?;
    Ok(MessagePart {
        text: text.span(raw.get()),
        index: wire.index,
        kind,
        visibility: wire.visibility,
        from: wire.from.map(|p| participant(text, p)).transpose()?,
        body: body.map(|(s, _)| s),
        url: text.scalar(wire.url),
        timestamp: text.scalar(wire.timestamp),
        timestamp_seconds: text.scalar(wire.timestamp_seconds),
    })
}

fn participant(text: &Text<'_>, p: WireParticipant<'_>) -> Result<Participant, EventError> {
    let participant_id = text.opt_string(p.participant_id, "participantId")?;
    let id = text.opt_string(p.id, "a participant's id")?;
    let uri = text.opt_string(p.uri, "a participant's uri")?;
    let path = text.opt_string(p.path, "a participant's path")?;
    let nickname = text.opt_string(p.nickname, "nickname")?;
    let Some((key_text, key)) = participant_id.clone().or_else(|| id.clone()) else {
        return Err(EventError::Shape(
            "a participant has neither participantId nor id".into(),
        ));
    };
    let user = path
        .as_ref()
        .and_then(|(_, p)| user_of_path(p))
        .or_else(|| uri.as_ref().and_then(|(_, u)| last_segment(u)))
        .or(id.as_ref().map(|(_, i)| i.as_ref()))
        .unwrap_or(key.as_ref())
        .into();
    Ok(Participant {
        key: key.as_ref().into(),
        user,
        kind: p.kind,
        visibility: p.visibility,
        key_text,
        nickname: nickname.map(|(s, _)| s),
    })
}

fn user_of_path(path: &str) -> Option<&str> {
    path.trim_end_matches('/')
        .strip_prefix("/users/")
        .filter(|s| !s.is_empty() && !s.contains('/'))
}

fn last_segment(s: &str) -> Option<&str> {
    s.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|seg| !seg.is_empty())
}

impl<'de> Deserialize<'de> for Visibility {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(VisibilityVisitor)
    }
}

/// Takes any JSON value: the exact string `All` is visible, anything else
/// agent-only.
struct VisibilityVisitor;

impl<'de> Visitor<'de> for VisibilityVisitor {
    type Value = Visibility;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a visibility")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Visibility, E> {
        Ok(if v == "All" {
            Visibility::All
        } else {
            Visibility::AgentsOnly
        })
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Visibility, E> {
        Ok(Visibility::AgentsOnly)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Visibility, E> {
        Ok(Visibility::AgentsOnly)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Visibility, E> {
        Ok(Visibility::AgentsOnly)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Visibility, E> {
        Ok(Visibility::AgentsOnly)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Visibility, E> {
        Ok(Visibility::AgentsOnly)
    }

    fn visit_none<E: de::Error>(self) -> Result<Visibility, E> {
        Ok(Visibility::AgentsOnly)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Visibility, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Visibility, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Visibility::AgentsOnly)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Visibility, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Visibility::AgentsOnly)
    }
}

/// Refuses a document with the same key twice in one object, at any
/// depth (serde would keep the last one silently).
///
/// A scan of the bytes, not a parse: it keeps, per open object, the keys
/// seen so far (as written, decoded only when they hold an escape, so that
/// `"a"` and `"\u0061"` are the same key), and allocates nothing for the
/// few keys of an ordinary object. It does not validate the JSON (the
/// typed parse that follows does): on malformed input it ends without
/// panicking, and what it says then does not matter.
pub fn check_unique_keys(text: &str) -> Result<(), EventError> {
    let bytes = text.as_bytes();
    // Per open container: `Some(keys)` for an object, `None` for an array.
    let mut open: smallvec::SmallVec<[Option<Keys<'_>>; 8]> = smallvec::SmallVec::new();
    // Whether the next string of the innermost object is a key.
    let mut expect_key = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' => {
                open.push(Some(Keys::default()));
                expect_key = true;
            }
            b'[' => {
                open.push(None);
                expect_key = false;
            }
            b'}' | b']' => {
                open.pop();
                expect_key = false;
            }
            b',' => expect_key = matches!(open.last(), Some(Some(_))),
            b'"' => {
                let end = string_end(bytes, i + 1);
                if expect_key {
                    if let Some(Some(keys)) = open.last_mut() {
                        keys.insert(&text[i..end.min(text.len())])?;
                    }
                    expect_key = false;
                }
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// The index just past the closing quote of the string whose content
/// starts at `from` (or the end of the input).
fn string_end(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    while let Some(at) = bytes
        .get(i..)
        .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
    {
        i += at;
        if bytes[i] == b'"' {
            return i + 1;
        }
        i += 2; // an escape: the next byte is not the end
    }
    bytes.len()
}

/// Objects up to this many keys are checked by comparing each new key
/// with the previous ones (no allocation); larger ones use a set.
const SMALL_OBJECT: usize = 16;

type KeySet<'a> = std::collections::HashSet<Cow<'a, str>, foldhash::fast::RandomState>;

/// The keys of one object seen so far.
#[derive(Default)]
struct Keys<'a> {
    few: smallvec::SmallVec<[Cow<'a, str>; SMALL_OBJECT]>,
    /// foldhash, seeded per process: the keys come from the authenticated
    /// upstream, and SipHash was a fifth of the parse of a large object.
    many: Option<KeySet<'a>>,
}

impl<'a> Keys<'a> {
    /// Adds a key (its JSON string, quotes included); a key seen before is
    /// an error.
    fn insert(&mut self, quoted: &'a str) -> Result<(), EventError> {
        if quoted.len() < 2 || !quoted.ends_with('"') {
            // A string cut short: malformed, the typed parse will say why.
            return Ok(());
        }
        let key = match decode_str(quoted) {
            Ok(k) => k,
            // Malformed: the typed parse will say why.
            Err(_) => return Ok(()),
        };
        let repeated = match &mut self.many {
            Some(set) => !set.insert(key.clone()),
            None if self.few.len() < SMALL_OBJECT => {
                let seen = self.few.contains(&key);
                self.few.push(key.clone());
                seen
            }
            None => {
                let mut set: KeySet<'a> = self.few.drain(..).collect();
                let seen = !set.insert(key.clone());
                self.many = Some(set);
                seen
            }
        };
        if repeated {
            return Err(EventError::DuplicateKey(key.into_owned()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: usize = 512 << 10;

    fn sample(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/proto-samples/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn parse(text: &str) -> Result<Event, EventError> {
        Event::parse_str(text, BOUND)
    }

    #[test]
    fn the_seed_samples_keep_their_bytes_and_give_their_routing_fields() {
        let text = sample("consult-participants-updated.json");
        let n = parse(&text).unwrap();
        assert_eq!(n.raw(), text, "the bytes are kept as received");
        assert_eq!(n.session_id(), "0002EaAY01MT007C");
        assert_eq!(n.kind(), NotificationType::ParticipantsUpdated);
        let parts = n.participants();
        assert_eq!(parts.len(), 3);
        assert_eq!(&*parts[1].user, "e2c90c960d3d40c79684818983ceb314");
        assert_eq!(parts[1].visibility, Visibility::AgentsOnly);
        assert_eq!(&*parts[0].user, "007356263E140144");
        assert_eq!(parts[0].kind, ParticipantType::Customer);
        assert_eq!(n.at(parts[1].nickname.unwrap()), r#""Agent2""#);

        let m = parse(&sample("consult-new-messages.json")).unwrap();
        assert_eq!(m.session_id(), "0002EaAY01MT007C");
        let msg = &m.messages()[0];
        assert_eq!(msg.visibility, Visibility::AgentsOnly);
        assert_eq!(msg.index, 4);
        assert_eq!(m.at(msg.kind), r#""ParticipantJoined""#);
        assert_eq!(m.at(msg.timestamp_seconds.unwrap()), "1445346881000");
        let whole: serde_json::Value = serde_json::from_str(m.at(msg.text)).unwrap();
        assert_eq!(whole["from"]["nickname"], "Agent2");
    }

    #[test]
    fn only_the_exact_string_all_is_visible() {
        for (v, expected) in [
            (r#""All""#, Visibility::All),
            (r#""Agents""#, Visibility::AgentsOnly),
            (r#""INT""#, Visibility::AgentsOnly),
            (r#""VIP""#, Visibility::AgentsOnly),
            (r#""ALL""#, Visibility::AgentsOnly),
            (r#""all""#, Visibility::AgentsOnly),
            (r#""""#, Visibility::AgentsOnly),
            ("null", Visibility::AgentsOnly),
            ("1", Visibility::AgentsOnly),
            (r#"["All"]"#, Visibility::AgentsOnly),
            (r#"{"All":1}"#, Visibility::AgentsOnly),
        ] {
            let text = format!(
                r#"{{"notificationType":"NewMessages","messageType":"MessageLogUpdated","facebooksessionPath":"/facebooksessions/s1","messages":[{{"index":1,"type":"Text","visibility":{v},"text":"t"}}]}}"#
            );
            let n = parse(&text).unwrap_or_else(|e| panic!("{v}: {e}"));
            assert_eq!(n.messages()[0].visibility, expected, "{v}");
        }
        let missing = parse(
            r#"{"notificationType":"NewMessages","messageType":"m","facebooksessionPath":"/facebooksessions/s1","messages":[{"index":1,"type":"Text","text":"t"}]}"#,
        )
        .unwrap();
        assert_eq!(missing.messages()[0].visibility, Visibility::AgentsOnly);
    }

    #[test]
    fn a_key_twice_anywhere_is_refused_in_either_order() {
        for body in [
            r#"{"index":1,"type":"Text","visibility":"Agents","visibility":"All"}"#,
            r#"{"index":1,"type":"Text","visibility":"All","visibility":"Agents"}"#,
            r#"{"index":1,"type":"Text","visibility":"All","x":{"a":1,"b":{"c":1,"c":2}}}"#,
        ] {
            let text = format!(
                r#"{{"notificationType":"NewMessages","messageType":"m","facebooksessionPath":"/facebooksessions/s1","messages":[{body}]}}"#
            );
            let err = parse(&text).unwrap_err();
            assert!(matches!(err, EventError::DuplicateKey(_)), "{body}: {err}");
        }
        let many: String = (0..40).map(|i| format!(r#""k{i}":1,"#)).collect();
        let text = format!(
            r#"{{{many}"k7":2,"notificationType":"NewMessages","messageType":"m","facebooksessionPath":"/facebooksessions/s1","messages":[]}}"#
        );
        assert_eq!(
            parse(&text).unwrap_err(),
            EventError::DuplicateKey("k7".into())
        );
        let escaped = r#"{"notificationType":"NewMessages","notification\u0054ype":"NewMessages","messageType":"m","facebooksessionPath":"/facebooksessions/s1","messages":[]}"#;
        assert!(matches!(parse(escaped), Err(EventError::DuplicateKey(_))));
    }

    #[test]
    fn the_key_scan_survives_malformed_input() {
        for text in [
            "{\"\u{e9}",
            "{\"a\\",
            "{\"a\":\"b\\\"",
            "[{\"a\":1,\"a\"",
            "}}]]{",
            "\"",
            "{\"\"",
            "{,,\"a\"",
        ] {
            let _ = check_unique_keys(text);
        }
        assert!(check_unique_keys(r#"{"a":{"a":1},"b":[{"a":1},{"a":2}]}"#).is_ok());
        assert_eq!(
            check_unique_keys(r#"{"s":"x\"y","s":1}"#),
            Err(EventError::DuplicateKey("s".into()))
        );
        assert!(
            check_unique_keys(r#"{"k":"\"k\"","v":["k","k"]}"#).is_ok(),
            "strings that are not keys"
        );
    }

    #[test]
    fn customer_fields_are_kept_only_as_strings_or_numbers() {
        let n = parse(
            r#"{"notificationType":"NewMessages","messageType":"m","facebooksessionPath":"/facebooksessions/s1",
               "messages":[{"index":1,"type":"PushUrl","visibility":"All","url":{"x":"y"},"timestamp":"t","timestampSeconds":-2.5}]}"#,
        )
        .unwrap();
        let m = &n.messages()[0];
        assert_eq!(m.url, None);
        assert_eq!(n.at(m.timestamp.unwrap()), r#""t""#);
        assert_eq!(n.at(m.timestamp_seconds.unwrap()), "-2.5");
    }

    #[test]
    fn bad_notifications_are_refused_with_a_reason() {
        assert!(matches!(parse("{"), Err(EventError::Json(_))));
        assert!(matches!(parse("[1]"), Err(EventError::Shape(_))));
        assert!(matches!(
            parse(r#"{"notificationType":"Nope","messageType":"x"}"#),
            Err(EventError::Shape(_))
        ));
        assert_eq!(
            parse(
                r#"{"notificationType":"NewMessages","messageType":"MessageLogUpdated","messages":[]}"#
            ),
            Err(EventError::NoSession)
        );
        assert_eq!(
            parse(r#"{"notificationType":"StatusChange","messageType":"m"}"#),
            Err(EventError::Missing("a state change", "facebooksession"))
        );
        assert!(matches!(
            parse(
                r#"{"notificationType":"StatusChange","messageType":"m","facebooksession":{"id":"s","participants":[{"type":"Agent"}]}}"#
            ),
            Err(EventError::Shape(_))
        ));
        assert!(matches!(
            parse(
                r#"{"notificationType":"NewMessages","messageType":"m","facebooksessionPath":"/facebooksessions/s1","messages":[{"index":1,"type":"Text","text":5}]}"#
            ),
            Err(EventError::Shape(_))
        ));
        assert!(Event::parse(Bytes::from_static(b"{\"a\":\"\xff\"}"), BOUND).is_err());
    }

    #[test]
    fn an_event_over_the_frame_bound_is_refused_for_its_size() {
        let text = format!(
            r#"{{"notificationType":"NewMessages","messageType":"m","facebooksessionPath":"/facebooksessions/s1","messages":[{{"index":1,"type":"Text","visibility":"All","text":"{}"}}]}}"#,
            "x".repeat(5000)
        );
        let err = Event::parse_str(&text, 4096).unwrap_err();
        assert!(err.is_too_large(), "{err}");
        assert!(Event::parse_str(&text, 16 << 10).is_ok());
    }

    #[test]
    fn escaped_strings_are_decoded_for_routing_and_kept_raw_for_output() {
        let n = parse(
            r#"{"notificationType":"StatusChange","messageType":"m","facebooksession":{"id":"s\u0031","state":"Completed",
               "participants":[{"participantId":"p\"1","type":"Agent","visibility":"All","path":"/users/u\u00e9"}]}}"#,
        )
        .unwrap();
        assert_eq!(n.session_id(), "s1");
        let p = &n.participants()[0];
        assert_eq!(&*p.key, "p\"1");
        assert_eq!(&*p.user, "ué");
        assert_eq!(n.at(p.key_text), r#""p\"1""#);
        assert!(n.session().unwrap().completed);
    }
}
