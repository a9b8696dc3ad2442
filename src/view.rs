//! The customer view: the privacy boundary of chatgate.
//!
//! Pure functions, no I/O. Everything a customer ever receives is built
//! here, by these constructors only: a [`CustomerFrame`] (the one type a
//! customer's connection queues) and a [`CustomerLine`] (a message as the
//! customer was shown it) have private fields, so no other module can
//! make one, and an agent frame is another type altogether.
//!
//! What a customer sees (SPEC section 2), from an allow-list, so that a
//! field the upstream adds tomorrow cannot leak:
//! - participants with visibility exactly `All`, each reduced to
//!   `participantId`, `nickname`, `type`;
//! - messages with visibility `All` whose sender is visible: the message's
//!   `from` says `All` and, where the session has listed that participant,
//!   its latest listing says `All` too (a consultant's line is hidden even
//!   when it claims `All`); indices renumbered 1, 2, 3, ... without gaps;
//!   of the message's other fields `url`, `timestamp`, `timestampSeconds`,
//!   only as strings or numbers;
//! - the session reduced to `id`, `state`, `participants`;
//! - nothing when the view is empty or unchanged.
//!
//! The output is written straight to bytes from typed views whose string
//! parts are the upstream's JSON text, verbatim: a customer frame is one
//! serialization per notification, never a `serde_json::Value`. A view
//! too large for the frame bound is split into several frames; a single
//! message too large for one (impossible for what the ingest accepts) is
//! left out: the customer sees less, never more.

use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::event::{
    Event, MessagePart, NotificationType, Participant, ParticipantType, Visibility,
};
use crate::frame::{envelope, frame_len, Frame};

/// A frame for a customer's connection. Only this module builds one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerFrame(Utf8Bytes);

impl Frame for CustomerFrame {
    fn bytes(&self) -> &Utf8Bytes {
        &self.0
    }
}

/// A message as the customer was shown it: its index and its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerLine {
    index: u64,
    json: Utf8Bytes,
}

impl CustomerLine {
    pub fn index(&self) -> u64 {
        self.index
    }

    pub fn json(&self) -> &str {
        self.json.as_str()
    }
}

/// What the customer side of a session has been shown so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerCursor {
    /// The session object (`id`, `state`, `participants`) last sent.
    last_session: Option<Utf8Bytes>,
    /// How many messages the customer has been shown: the last index.
    messages_shown: u64,
}

impl CustomerCursor {
    /// A cursor that has shown `messages_shown` messages and the session
    /// view of `session` (restoring a checkpoint).
    pub fn restored(state: Option<&Event>, messages_shown: u64) -> Self {
        Self {
            last_session: state.and_then(session_json),
            messages_shown,
        }
    }

    pub fn messages_shown(&self) -> u64 {
        self.messages_shown
    }

    /// The customer's current session object, if one was sent.
    pub fn session(&self) -> Option<&Utf8Bytes> {
        self.last_session.as_ref()
    }
}

/// For the sender check: every participant the session has listed, with
/// the visibility of its latest listing.
pub type Listing = std::collections::HashMap<Box<str>, Visibility, foldhash::fast::RandomState>;

/// What one notification shows the customer.
#[derive(Debug, Default)]
pub struct CustomerUpdate {
    /// The frames to send, each with its customer stream id.
    pub frames: Vec<(u64, CustomerFrame)>,
    /// Per message of the notification, how the customer was shown it.
    pub lines: Vec<Option<CustomerLine>>,
    /// The customer's new session object, when it changed.
    pub session: Option<Utf8Bytes>,
}

/// Where a customer view goes: its session's path and numbering.
pub struct Target<'a> {
    /// `"/facebooksessions/<id>"` as a JSON string.
    pub path_json: &'a str,
    /// The last customer stream id handed out; advanced per frame.
    pub last_id: &'a mut u64,
    pub max_frame: usize,
}

/// The customer view of `event`, given what the customer was shown
/// (`cursor`, advanced) and the session's `listing` (after `event`).
pub fn customer_view(
    event: &Event,
    cursor: &mut CustomerCursor,
    listing: &Listing,
    target: Target<'_>,
) -> CustomerUpdate {
    match event.kind() {
        NotificationType::NewMessages => messages_view(event, cursor, listing, target),
        NotificationType::StatusChange
        | NotificationType::ParticipantsUpdated
        | NotificationType::PropertiesUpdated => state_view(event, cursor, target),
        // An Error answers an agent's request; a customer has none to see.
        NotificationType::Error => CustomerUpdate::default(),
    }
}

fn state_view(event: &Event, cursor: &mut CustomerCursor, target: Target<'_>) -> CustomerUpdate {
    let Some(session) = session_json(event) else {
        return CustomerUpdate::default();
    };
    if cursor.last_session.as_ref() == Some(&session) {
        return CustomerUpdate::default();
    }
    let data_len = session.len() + event.message_type().len() + 64;
    if frame_len(20, data_len) > target.max_frame {
        // Cannot happen for an accepted event (its view is smaller than
        // its agent frame); fail closed rather than send an oversized one.
        return CustomerUpdate::default();
    }
    cursor.last_session = Some(session.clone());
    *target.last_id += 1;
    let id = *target.last_id;
    let frame = state_frame(id, event.kind().as_str(), event.message_type(), &session);
    CustomerUpdate {
        frames: vec![(id, frame)],
        lines: Vec::new(),
        session: Some(session),
    }
}

fn messages_view(
    event: &Event,
    cursor: &mut CustomerCursor,
    listing: &Listing,
    target: Target<'_>,
) -> CustomerUpdate {
    let mut next = cursor.messages_shown + 1;
    let lines: Vec<Option<CustomerLine>> = event
        .messages()
        .iter()
        .map(|m| {
            let shown = is_visible(m, listing).then(|| line(event, m, next))?;
            if single_message_frame_len(target.path_json, event.message_type(), &shown)
                > target.max_frame
            {
                return None;
            }
            next += 1;
            Some(shown)
        })
        .collect();
    cursor.messages_shown = next - 1;
    let shown = lines.iter().flatten();
    let frames = message_frames(
        target.last_id,
        target.path_json,
        event.message_type(),
        shown,
        target.max_frame,
    );
    CustomerUpdate {
        frames,
        lines,
        session: None,
    }
}

/// Whether a customer may see `m`: visible itself, its `from` visible,
/// and its sender's latest listing in the session (if any) visible too.
pub fn is_visible(m: &MessagePart, listing: &Listing) -> bool {
    m.visibility == Visibility::All
        && m.from.as_ref().is_none_or(|f| {
            f.visibility == Visibility::All
                && listing
                    .get(&f.key)
                    .is_none_or(|listed| *listed == Visibility::All)
        })
}

/// The customer's line for a message of a checkpoint, shown before with
/// `index`: through the same check and projection as a live one.
pub fn restored_line(
    event: &Event,
    m: &MessagePart,
    index: u64,
    listing: &Listing,
) -> Option<CustomerLine> {
    is_visible(m, listing).then(|| line(event, m, index))
}

/// The customer's session object of a state change: `id`, `state`,
/// visible `participants`.
fn session_json(event: &Event) -> Option<Utf8Bytes> {
    let session = event.session()?;
    let mut out = String::with_capacity(64 + 96 * session.participants.len());
    out.push_str(r#"{"id":"#);
    push_json_string(&mut out, event.session_id());
    if let Some(state) = session.state {
        out.push_str(r#","state":"#);
        out.push_str(event.at(state));
    }
    out.push_str(r#","participants":["#);
    // A participant listed twice with two visibilities is hidden: the
    // customer sees less, never more.
    let hidden_twice = |p: &Participant| {
        session
            .participants
            .iter()
            .any(|q| q.key == p.key && q.visibility != Visibility::All)
    };
    let visible = session
        .participants
        .iter()
        .filter(|p| p.visibility == Visibility::All && !hidden_twice(p));
    for (i, p) in visible.enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_participant(&mut out, event, p);
    }
    out.push_str("]}");
    Some(Utf8Bytes::from(out))
}

/// `{"participantId":..,"nickname":..,"type":..}`.
fn push_participant(out: &mut String, event: &Event, p: &Participant) {
    out.push_str(r#"{"participantId":"#);
    out.push_str(event.at(p.key_text));
    if let Some(nick) = p.nickname {
        out.push_str(r#","nickname":"#);
        out.push_str(event.at(nick));
    }
    out.push_str(r#","type":""#);
    out.push_str(match p.kind {
        ParticipantType::Customer => "Customer",
        ParticipantType::Agent => "Agent",
    });
    out.push_str(r#""}"#);
}

/// A visible message as the customer sees it, numbered `index`.
fn line(event: &Event, m: &MessagePart, index: u64) -> CustomerLine {
    let mut out = String::with_capacity(m.text.len() + 32);
    out.push_str(r#"{"index":"#);
    out.push_str(itoa::Buffer::new().format(index));
    out.push_str(r#","type":"#);
    out.push_str(event.at(m.kind));
    out.push_str(r#","visibility":"All""#);
    for (key, value) in [
        (r#","text":"#, m.body),
        (r#","url":"#, m.url),
        (r#","timestamp":"#, m.timestamp),
        (r#","timestampSeconds":"#, m.timestamp_seconds),
    ] {
        if let Some(span) = value {
            out.push_str(key);
            out.push_str(event.at(span));
        }
    }
    if let Some(from) = &m.from {
        out.push_str(r#","from":"#);
        push_participant(&mut out, event, from);
    }
    out.push('}');
    CustomerLine {
        index,
        json: Utf8Bytes::from(out),
    }
}

/// A state frame: `{"notificationType","messageType","facebooksession"}`.
fn state_frame(id: u64, kind: &str, message_type_json: &str, session: &Utf8Bytes) -> CustomerFrame {
    let id = id.to_string();
    let size = session.len() + message_type_json.len() + 64;
    CustomerFrame(envelope(&id, size, |out| {
        out.push_str(r#"{"notificationType":""#);
        out.push_str(kind);
        out.push_str(r#"","messageType":"#);
        out.push_str(message_type_json);
        out.push_str(r#","facebooksession":"#);
        out.push_str(session.as_str());
        out.push('}');
    }))
}

const MESSAGES_HEAD: &str = r#"{"notificationType":"NewMessages","messageType":"#;
const MESSAGES_PATH: &str = r#","facebooksessionPath":"#;
const MESSAGES_LIST: &str = r#","messages":["#;
const MESSAGES_TAIL: &str = "]}";

fn messages_data_len(path_json: &str, message_type_json: &str) -> usize {
    MESSAGES_HEAD.len()
        + message_type_json.len()
        + MESSAGES_PATH.len()
        + path_json.len()
        + MESSAGES_LIST.len()
        + MESSAGES_TAIL.len()
}

fn single_message_frame_len(
    path_json: &str,
    message_type_json: &str,
    line: &CustomerLine,
) -> usize {
    frame_len(
        20,
        messages_data_len(path_json, message_type_json) + line.json.len(),
    )
}

/// NewMessages frames of `lines`, as few as the frame bound allows, each
/// with the next customer id.
fn message_frames<'a>(
    last_id: &mut u64,
    path_json: &str,
    message_type_json: &str,
    lines: impl Iterator<Item = &'a CustomerLine>,
    max_frame: usize,
) -> Vec<(u64, CustomerFrame)> {
    chunks(lines, path_json, message_type_json, max_frame)
        .into_iter()
        .map(|chunk| {
            *last_id += 1;
            let id = *last_id;
            (
                id,
                messages_frame(&id.to_string(), path_json, message_type_json, &chunk),
            )
        })
        .collect()
}

/// Splits `lines` into groups whose NewMessages frame fits `max_frame`.
fn chunks<'a>(
    lines: impl Iterator<Item = &'a CustomerLine>,
    path_json: &str,
    message_type_json: &str,
    max_frame: usize,
) -> Vec<Vec<&'a CustomerLine>> {
    let fixed = frame_len(20, messages_data_len(path_json, message_type_json));
    let mut out: Vec<Vec<&CustomerLine>> = Vec::new();
    let mut size = fixed;
    for line in lines {
        let add = line.json.len() + 1;
        match out.last_mut() {
            Some(chunk) if size + add <= max_frame => chunk.push(line),
            _ => {
                out.push(vec![line]);
                size = fixed;
            }
        }
        size += add;
    }
    out
}

fn messages_frame(
    id: &str,
    path_json: &str,
    message_type_json: &str,
    lines: &[&CustomerLine],
) -> CustomerFrame {
    let size = messages_data_len(path_json, message_type_json)
        + lines.iter().map(|l| l.json.len() + 1).sum::<usize>();
    CustomerFrame(envelope(id, size, |out| {
        out.push_str(MESSAGES_HEAD);
        out.push_str(message_type_json);
        out.push_str(MESSAGES_PATH);
        out.push_str(path_json);
        out.push_str(MESSAGES_LIST);
        for (i, l) in lines.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(l.json.as_str());
        }
        out.push_str(MESSAGES_TAIL);
    }))
}

/// The customer's snapshot: a ParticipantsUpdated with the session as the
/// customer was last shown it, then the lines they were shown, with their
/// indices of then, in as many NewMessages frames as the bound needs;
/// every frame carries the customer's current id `id`.
pub fn snapshot<'a>(
    id: u64,
    path_json: &str,
    session: Option<&Utf8Bytes>,
    lines: impl Iterator<Item = &'a CustomerLine>,
    max_frame: usize,
) -> Vec<CustomerFrame> {
    let id_text = id.to_string();
    let mut out = Vec::new();
    if let Some(session) = session {
        out.push(state_frame(
            id,
            NotificationType::ParticipantsUpdated.as_str(),
            STATE_CHANGE_MESSAGE_JSON,
            session,
        ));
    }
    for chunk in chunks(lines, path_json, MESSAGE_LOG_UPDATED_JSON, max_frame) {
        out.push(messages_frame(
            &id_text,
            path_json,
            MESSAGE_LOG_UPDATED_JSON,
            &chunk,
        ));
    }
    out
}

/// `messageType` of snapshot frames, as JSON strings.
const STATE_CHANGE_MESSAGE_JSON: &str = r#""FacebooksessionStateChangeMessage""#;
const MESSAGE_LOG_UPDATED_JSON: &str = r#""MessageLogUpdated""#;

/// `s` as a JSON string.
pub fn push_json_string(out: &mut String, s: &str) {
    // Serializing a str into JSON cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

/// `"/facebooksessions/<id>"` as a JSON string.
pub fn session_path_json(session_id: &str) -> Box<str> {
    let mut out = String::with_capacity(session_id.len() + 22);
    push_json_string(&mut out, &format!("/facebooksessions/{session_id}"));
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const BOUND: usize = 512 << 10;

    fn sample(name: &str) -> Event {
        let path = format!("{}/proto-samples/{name}", env!("CARGO_MANIFEST_DIR"));
        Event::parse_str(&std::fs::read_to_string(path).unwrap(), BOUND).unwrap()
    }

    fn listing_of(event: &Event) -> Listing {
        event
            .participants()
            .iter()
            .map(|p| (p.key.clone(), p.visibility))
            .collect()
    }

    fn view(
        event: &Event,
        cursor: &mut CustomerCursor,
        listing: &Listing,
        last: &mut u64,
    ) -> CustomerUpdate {
        let path = session_path_json(event.session_id());
        customer_view(
            event,
            cursor,
            listing,
            Target {
                path_json: &path,
                last_id: last,
                max_frame: BOUND,
            },
        )
    }

    fn data(frame: &CustomerFrame) -> Value {
        let v: Value = serde_json::from_str(frame.bytes().as_str()).unwrap();
        v["data"].clone()
    }

    #[test]
    fn seed_consult_participants_view_hides_the_consultant() {
        let n = sample("consult-participants-updated.json");
        let mut cursor = CustomerCursor::default();
        let mut last = 0;
        let update = view(&n, &mut cursor, &listing_of(&n), &mut last);
        let (id, frame) = &update.frames[0];
        assert_eq!(*id, 1);
        let text = frame.bytes().as_str();
        for never in [
            "Agent2",
            "007356263E410147",
            "userData",
            "capabilities",
            "uri",
        ] {
            assert!(!text.contains(never), "{never} in {text}");
        }
        let view = data(frame);
        assert_eq!(
            view["facebooksession"]["participants"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            view["facebooksession"]["participants"][1],
            json!({"participantId":"007356263E230146","nickname":"TestName","type":"Agent"})
        );
        // The same state again is unchanged for the customer: not sent.
        let again = super::customer_view(
            &n,
            &mut cursor,
            &listing_of(&n),
            Target {
                path_json: &session_path_json(n.session_id()),
                last_id: &mut last,
                max_frame: BOUND,
            },
        );
        assert!(again.frames.is_empty());
        assert_eq!(last, 1);
    }

    #[test]
    fn seed_consult_join_message_is_not_sent_to_the_customer() {
        let n = sample("consult-new-messages.json");
        let mut cursor = CustomerCursor::default();
        let mut last = 0;
        let update = view(&n, &mut cursor, &Listing::default(), &mut last);
        assert!(update.frames.is_empty());
        assert_eq!(update.lines, vec![None]);
        assert_eq!(cursor.messages_shown(), 0);
    }

    fn parse(text: &str) -> Event {
        Event::parse_str(text, BOUND).unwrap()
    }

    #[test]
    fn visible_messages_are_renumbered_without_gaps() {
        let n = parse(
            r#"{"notificationType":"NewMessages","messageType":"MessageLogUpdated",
                "facebooksessionPath":"/facebooksessions/s1","referenceId":9,
                "messages":[
                 {"index":5,"type":"Text","visibility":"All","text":"hi","secret":1},
                 {"index":6,"type":"Text","visibility":"Agents","text":"internal"},
                 {"index":7,"type":"Text","visibility":"All","text":"bye"},
                 {"index":8,"type":"PushUrl","visibility":"All","url":"https://example.com/o/1"}]}"#,
        );
        let mut cursor = CustomerCursor {
            last_session: None,
            messages_shown: 2,
        };
        let mut last = 4;
        let update = view(&n, &mut cursor, &Listing::default(), &mut last);
        assert_eq!(update.frames.len(), 1);
        assert_eq!(update.frames[0].0, 5);
        let v = data(&update.frames[0].1);
        let msgs = v["messages"].as_array().unwrap();
        assert_eq!(msgs[0]["index"], 3);
        assert_eq!(msgs[1]["index"], 4);
        assert_eq!(msgs[1]["text"], "bye");
        assert_eq!(
            msgs[2]["url"], "https://example.com/o/1",
            "a pushed URL is its content"
        );
        let text = update.frames[0].1.bytes().as_str();
        assert!(!text.contains("internal"));
        assert!(!text.contains("secret"));
        assert!(v.get("referenceId").is_none());
        assert_eq!(v["facebooksessionPath"], "/facebooksessions/s1");
        assert_eq!(cursor.messages_shown(), 5);
        assert_eq!(update.lines.iter().flatten().count(), 3);
    }

    #[test]
    fn a_projected_message_keeps_exactly_the_allow_list_in_order() {
        let n = parse(
            r#"{"notificationType":"NewMessages","messageType":"MessageLogUpdated",
                "facebooksessionPath":"/facebooksessions/s1",
                "messages":[{"secret":1,"timestampSeconds":2,"from":{"participantId":"p","id":"p",
                  "type":"Customer","nickname":"n","visibility":"All","uri":"u"},
                  "text":"hi","url":"https://x","visibility":"All","type":"Text","index":9,"timestamp":"t"}]}"#,
        );
        let update = view(
            &n,
            &mut CustomerCursor::default(),
            &Listing::default(),
            &mut 0,
        );
        assert_eq!(
            update.lines[0].as_ref().unwrap().json(),
            r#"{"index":1,"type":"Text","visibility":"All","text":"hi","url":"https://x","timestamp":"t","timestampSeconds":2,"from":{"participantId":"p","nickname":"n","type":"Customer"}}"#
        );
    }

    #[test]
    fn a_sender_listed_as_agent_only_is_hidden_even_when_the_line_claims_all() {
        let n = parse(
            r#"{"notificationType":"NewMessages","messageType":"MessageLogUpdated",
                "facebooksessionPath":"/facebooksessions/s1",
                "messages":[{"index":1,"type":"Text","visibility":"All","text":"from a consultant",
                  "from":{"participantId":"c1","type":"Agent","visibility":"All"}}]}"#,
        );
        let listing: Listing = [("c1".into(), Visibility::AgentsOnly)]
            .into_iter()
            .collect();
        let update = view(&n, &mut CustomerCursor::default(), &listing, &mut 0);
        assert!(update.frames.is_empty());
        let listed_visible: Listing = [("c1".into(), Visibility::All)].into_iter().collect();
        let update = view(&n, &mut CustomerCursor::default(), &listed_visible, &mut 0);
        assert_eq!(update.frames.len(), 1);
    }

    #[test]
    fn a_participant_listed_twice_with_two_visibilities_is_hidden() {
        let n = parse(
            r#"{"notificationType":"ParticipantsUpdated","messageType":"m","facebooksession":{"id":"s1","participants":[
              {"participantId":"c","type":"Customer","visibility":"All"},
              {"participantId":"k","nickname":"Twice","type":"Agent","visibility":"All"},
              {"participantId":"k","nickname":"Twice","type":"Agent","visibility":"Agents"}]}}"#,
        );
        let update = view(
            &n,
            &mut CustomerCursor::default(),
            &Listing::default(),
            &mut 0,
        );
        let text = update.frames[0].1.bytes().as_str();
        assert!(!text.contains("Twice"), "{text}");
    }

    #[test]
    fn a_view_over_the_bound_comes_in_several_frames_with_their_own_ids() {
        let msgs: Vec<String> = (1..=30)
            .map(|i| {
                format!(
                    r#"{{"index":{i},"type":"Text","visibility":"All","text":"{}"}}"#,
                    "y".repeat(1000)
                )
            })
            .collect();
        let n = parse(&format!(
            r#"{{"notificationType":"NewMessages","messageType":"MessageLogUpdated","facebooksessionPath":"/facebooksessions/s1","messages":[{}]}}"#,
            msgs.join(",")
        ));
        let path = session_path_json("s1");
        let mut last = 0;
        let update = customer_view(
            &n,
            &mut CustomerCursor::default(),
            &Listing::default(),
            Target {
                path_json: &path,
                last_id: &mut last,
                max_frame: 8 << 10,
            },
        );
        assert!(update.frames.len() >= 4, "{} frames", update.frames.len());
        let ids: Vec<u64> = update.frames.iter().map(|f| f.0).collect();
        assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
        let mut indices = Vec::new();
        for (_, f) in &update.frames {
            assert!(f.len() <= 8 << 10);
            for m in data(f)["messages"].as_array().unwrap() {
                indices.push(m["index"].as_u64().unwrap());
            }
        }
        assert_eq!(indices, (1..=30).collect::<Vec<_>>());
    }

    #[test]
    fn the_snapshot_shows_what_was_shown() {
        let n = parse(
            r#"{"notificationType":"NewMessages","messageType":"MessageLogUpdated","facebooksessionPath":"/facebooksessions/s1",
                "messages":[{"index":1,"type":"Text","visibility":"All","text":"a"},{"index":2,"type":"Text","visibility":"All","text":"b"}]}"#,
        );
        let update = view(
            &n,
            &mut CustomerCursor::default(),
            &Listing::default(),
            &mut 0,
        );
        let lines: Vec<CustomerLine> = update.lines.into_iter().flatten().collect();
        let frames = snapshot(7, &session_path_json("s1"), None, lines.iter(), BOUND);
        assert_eq!(frames.len(), 1);
        let v: Value = serde_json::from_str(frames[0].bytes().as_str()).unwrap();
        assert_eq!(v["id"], "7");
        assert_eq!(v["data"]["messages"][1]["text"], "b");
        assert_eq!(v["data"]["messageType"], "MessageLogUpdated");
    }
}

/// Customer frames for other modules' unit tests (nothing else may build one).
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    pub fn frame(id: u64) -> CustomerFrame {
        CustomerFrame(envelope(&id.to_string(), 2, |out| out.push_str("{}")))
    }
}
