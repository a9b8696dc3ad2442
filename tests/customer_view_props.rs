//! Properties of the customer view over random sessions and event
//! sequences: participants of both visibilities (consultants that are
//! never visible, agents whose visibility changes), joins and leaves,
//! messages of both visibilities (and agent-only typing), unknown fields
//! everywhere. Whatever happens, no customer frame, live or snapshot,
//! carries an agent-only participant's id, nickname or URI, an agent-only
//! text, an index gap or a field outside the allow-list; projecting a view
//! again changes nothing. Checked on `SessionState` (the pure core) and
//! through a real server.

mod support;

use std::collections::HashSet;

use std::collections::VecDeque;

use chatgate::auth::Role;
use chatgate::event::Event as Upstream;
use chatgate::frame::Frame;
use chatgate::session::{LogEntry, SessionState};
use chatgate::view::{self, CustomerCursor, CustomerFrame, Listing, Target};
use proptest::prelude::*;
use serde_json::{json, Value};
use support::*;

const SID: &str = "prop-session";
const CUSTOMER: &str = "CUST-1";
/// Agents 0..3 change visibility from event to event; 3..5 are
/// consultants, never visible.
const AGENTS: usize = 5;
const CONSULTANTS_FROM: usize = 3;

/// Strings that may never reach a customer, whatever the visibility.
const NEVER: [&str; 9] = [
    "SECRET",
    "HIDDEN",
    "USER-",
    "LEAK",
    "x-unknown",
    "userData",
    "capabilities",
    "referenceId",
    "facebooksessionUri",
];

#[derive(Debug, Clone)]
enum Kind {
    ParticipantsUpdated,
    StatusChange,
    PropertiesUpdated,
    Error,
}

#[derive(Debug, Clone)]
enum Sender {
    Customer,
    /// An agent, and whether the message's `from` says it is visible.
    Agent(usize, bool),
    /// A line with no sender (a notice).
    Nobody,
}

#[derive(Debug, Clone)]
struct Msg {
    sender: Sender,
    visible: bool,
    typing: bool,
    junk: bool,
}

#[derive(Debug, Clone)]
enum Event {
    State {
        kind: Kind,
        completed: bool,
        /// Agents in the session, each with whether it is visible.
        members: Vec<(usize, bool)>,
        with_customer: bool,
        junk: bool,
    },
    Messages {
        msgs: Vec<Msg>,
        junk: bool,
    },
}

fn agent_strings(k: usize) -> (String, String, String) {
    if k >= CONSULTANTS_FROM {
        (
            format!("P-HIDDEN-{k}"),
            format!("NICK-HIDDEN-{k}"),
            format!("USER-HIDDEN-{k}"),
        )
    } else {
        (
            format!("P-AGENT-{k}"),
            format!("NICK-AGENT-{k}"),
            format!("USER-AGENT-{k}"),
        )
    }
}

/// Unknown fields, with values that must never reach a customer.
fn add_junk(v: &mut Value, tag: &str) {
    let obj = v.as_object_mut().unwrap();
    obj.insert(format!("x-unknown-{tag}"), json!(format!("LEAK-{tag}")));
    obj.insert(
        format!("x-unknown-{tag}-obj"),
        json!({"nested": format!("LEAK-{tag}-nested"), "n": 1}),
    );
}

fn agent_participant(k: usize, visible: bool, junk: bool) -> Value {
    let (pid, nick, user) = agent_strings(k);
    let visible = visible && k < CONSULTANTS_FROM;
    let mut p = json!({
        "participantId": pid, "id": pid, "type": "Agent", "nickname": nick,
        "visibility": if visible { "All" } else { "Agents" },
        "uri": format!("http://upstream.test/api/v2/users/{user}"),
        "path": format!("/users/{user}"),
    });
    if junk {
        add_junk(&mut p, "participant");
    }
    p
}

fn customer_participant(junk: bool) -> Value {
    let mut p = json!({
        "participantId": CUSTOMER, "id": CUSTOMER, "type": "Customer",
        "nickname": "Customer Name", "visibility": "All",
    });
    if junk {
        add_junk(&mut p, "customer");
    }
    p
}

/// The upstream notification of `event` (number `n`), advancing the
/// upstream's message index and the session's `listing` (whether each
/// agent's latest listing is visible); and the texts a customer must see
/// of it.
fn build(
    event: &Event,
    n: usize,
    next_index: &mut u64,
    listing: &mut std::collections::HashMap<usize, bool>,
) -> (Value, Vec<String>) {
    match event {
        Event::State {
            kind,
            completed,
            members,
            with_customer,
            junk,
        } => {
            let mut participants = Vec::new();
            if *with_customer {
                participants.push(customer_participant(*junk));
            }
            for (k, v) in members {
                listing.insert(*k, *v && *k < CONSULTANTS_FROM);
            }
            participants.extend(
                members
                    .iter()
                    .map(|(k, v)| agent_participant(*k, *v, *junk)),
            );
            let mut session = json!({
                "id": SID,
                "state": if *completed { "Completed" } else { "Chatting" },
                "participants": participants,
                "userData": {"Secret": "SECRET-user-data"},
                "capabilities": ["SendMessage", "SECRET-capability"],
                "uri": format!("http://upstream.test/api/v2/facebooksessions/{SID}"),
            });
            if *junk {
                add_junk(&mut session, "session");
            }
            let kind = match kind {
                Kind::ParticipantsUpdated => "ParticipantsUpdated",
                Kind::StatusChange => "StatusChange",
                Kind::PropertiesUpdated => "PropertiesUpdated",
                Kind::Error => "Error",
            };
            let mut v = json!({
                "notificationType": kind,
                "messageType": "FacebooksessionStateChangeMessage",
                "referenceId": n,
                "facebooksession": session,
            });
            if *junk {
                add_junk(&mut v, "notification");
            }
            (v, Vec::new())
        }
        Event::Messages { msgs, junk } => {
            let mut shown = Vec::new();
            let messages: Vec<Value> = msgs
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let (from, from_visible) = match &m.sender {
                        Sender::Customer => (Some(customer_participant(m.junk)), true),
                        Sender::Agent(k, v) => {
                            let visible = *v && *k < CONSULTANTS_FROM;
                            // The sender check: a line whose sender the
                            // session lists as agent-only stays hidden.
                            let listed = listing.get(k).copied().unwrap_or(true);
                            (
                                Some(agent_participant(*k, visible, m.junk)),
                                visible && listed,
                            )
                        }
                        Sender::Nobody => (None, true),
                    };
                    let seen = m.visible && from_visible;
                    let text = if seen {
                        format!("SHOWN-{n}-{i}")
                    } else {
                        format!("SECRET-TEXT-{n}-{i}")
                    };
                    *next_index += 1;
                    let mut msg = json!({
                        "index": *next_index,
                        "type": if m.typing { "TypingStarted" } else { "Text" },
                        "visibility": if m.visible { "All" } else { "Agents" },
                        "timestamp": "2015-10-20T16:14:41.000+0300",
                        "timestampSeconds": 1445346881000u64,
                    });
                    if !m.typing {
                        msg["text"] = json!(text);
                        if seen {
                            shown.push(text);
                        }
                    }
                    if let Some(from) = from {
                        msg["from"] = from;
                    }
                    if m.junk {
                        add_junk(&mut msg, "message");
                    }
                    msg
                })
                .collect();
            let mut v = json!({
                "notificationType": "NewMessages",
                "messageType": "MessageLogUpdated",
                "referenceId": n,
                "facebooksessionUri": format!("http://upstream.test/api/v2/facebooksessions/{SID}"),
                "facebooksessionPath": format!("/facebooksessions/{SID}"),
                "messages": messages,
            });
            if *junk {
                add_junk(&mut v, "notification");
            }
            (v, shown)
        }
    }
}

/// Participant ids and nicknames this notification marks agent-only and
/// nowhere visible: none may appear in its customer view.
fn hidden_in(n: &Value) -> Vec<String> {
    let mut people: Vec<&Value> = Vec::new();
    if let Some(ps) = n["facebooksession"]["participants"].as_array() {
        people.extend(ps);
    }
    if let Some(ms) = n["messages"].as_array() {
        people.extend(ms.iter().filter_map(|m| m.get("from")));
    }
    let visible: HashSet<&str> = people
        .iter()
        .filter(|p| p["visibility"] == "All")
        .filter_map(|p| p["participantId"].as_str())
        .collect();
    people
        .iter()
        .filter(|p| p["visibility"] == "Agents")
        .filter(|p| !visible.contains(p["participantId"].as_str().unwrap()))
        .flat_map(|p| {
            [
                p["participantId"].as_str().unwrap().to_owned(),
                p["nickname"].as_str().unwrap().to_owned(),
            ]
        })
        .collect()
}

fn check_keys(v: &Value, allowed: &[&str], what: &str) -> Result<(), TestCaseError> {
    let obj = v
        .as_object()
        .ok_or_else(|| TestCaseError::fail(format!("{what} is not an object: {v}")))?;
    for key in obj.keys() {
        prop_assert!(allowed.contains(&key.as_str()), "{what} carries {key}: {v}");
    }
    Ok(())
}

fn check_participant(p: &Value) -> Result<(), TestCaseError> {
    check_keys(p, &["participantId", "nickname", "type"], "a participant")
}

/// One customer view, against the allow-list (SPEC section 2).
fn check_allow_list(view: &Value) -> Result<(), TestCaseError> {
    check_keys(
        view,
        &[
            "notificationType",
            "messageType",
            "facebooksession",
            "facebooksessionPath",
            "messages",
        ],
        "a notification",
    )?;
    if let Some(session) = view.get("facebooksession") {
        check_keys(session, &["id", "state", "participants"], "the session")?;
        for p in session["participants"].as_array().into_iter().flatten() {
            check_participant(p)?;
        }
    }
    for m in view["messages"].as_array().into_iter().flatten() {
        check_keys(
            m,
            &[
                "index",
                "type",
                "visibility",
                "text",
                "url",
                "timestamp",
                "timestampSeconds",
                "from",
            ],
            "a message",
        )?;
        prop_assert_eq!(&m["visibility"], "All");
        if let Some(from) = m.get("from") {
            check_participant(from)?;
        }
    }
    let text = view.to_string();
    for never in NEVER {
        prop_assert!(!text.contains(never), "{never} in {text}");
    }
    Ok(())
}

/// What a customer was sent, checked frame by frame as it comes.
#[derive(Default)]
struct CustomerStream {
    last_id: u64,
    last_session: Option<Value>,
    shown: Vec<Value>,
}

impl CustomerStream {
    fn take(&mut self, id: u64, view: &Value, upstream: &Value) -> Result<(), TestCaseError> {
        prop_assert_eq!(id, self.last_id + 1, "ids run 1, 2, 3, ...");
        self.last_id = id;
        check_allow_list(view)?;
        let text = view.to_string();
        for hidden in hidden_in(upstream) {
            prop_assert!(!text.contains(&hidden), "{hidden} in {text}");
        }
        match view.get("messages") {
            Some(messages) => {
                let messages = messages.as_array().unwrap();
                prop_assert!(!messages.is_empty(), "an empty view was sent");
                for m in messages {
                    let expected = self.shown.len() as u64 + 1;
                    prop_assert_eq!(m["index"].as_u64(), Some(expected), "index gap");
                    self.shown.push(m.clone());
                }
                check_reprojection_of_messages(messages)?;
            }
            None => {
                let session = &view["facebooksession"];
                prop_assert!(
                    self.last_session.as_ref() != Some(session),
                    "an unchanged view was sent"
                );
                check_reprojection_of_session(session)?;
                self.last_session = Some(session.clone());
            }
        }
        Ok(())
    }

    fn texts(&self) -> Vec<String> {
        self.shown
            .iter()
            .filter_map(|m| m["text"].as_str().map(str::to_owned))
            .collect()
    }

    /// The snapshot a customer connecting now must get: the last session
    /// view, and the shown messages the log still holds, as first shown.
    fn check_snapshot(&self, snapshot: &[Value], in_log: usize) -> Result<(), TestCaseError> {
        let mut frames = snapshot.iter();
        if let Some(session) = &self.last_session {
            let first = frames
                .next()
                .ok_or_else(|| TestCaseError::fail("no state"))?;
            prop_assert_eq!(&first["notificationType"], "ParticipantsUpdated");
            prop_assert_eq!(&first["facebooksession"], session);
        }
        let messages: Vec<Value> = frames
            .flat_map(|f| f["messages"].as_array().cloned().unwrap_or_default())
            .collect();
        let expected = &self.shown[self.shown.len() - in_log..];
        prop_assert_eq!(messages.as_slice(), expected);
        for frame in snapshot {
            check_allow_list(frame)?;
        }
        Ok(())
    }
}

/// A view's participants lack `visibility` (all of them are `All`): put it
/// back, so that a view can be read as upstream input again.
fn rehydrate(participant: &Value) -> Value {
    let mut p = participant.clone();
    p["visibility"] = json!("All");
    p
}

const BOUND: usize = 512 << 10;

fn parse(v: &Value) -> Upstream {
    Upstream::parse_str(&v.to_string(), BOUND).unwrap()
}

/// The data of a customer frame.
fn data(frame: &CustomerFrame) -> Value {
    let v: Value = serde_json::from_str(frame.bytes().as_str()).unwrap();
    v["data"].clone()
}

/// The customer view of `n` given a cursor, as values.
fn project(n: &Value, cursor: &mut CustomerCursor) -> Vec<Value> {
    let event = parse(n);
    let path = view::session_path_json(event.session_id());
    let update = view::customer_view(
        &event,
        cursor,
        &Listing::default(),
        Target {
            path_json: &path,
            last_id: &mut 0,
            max_frame: BOUND,
        },
    );
    update.frames.iter().map(|(_, f)| data(f)).collect()
}

/// Projecting a projected session again changes nothing.
fn check_reprojection_of_session(session: &Value) -> Result<(), TestCaseError> {
    let mut again = session.clone();
    let parts: Vec<Value> = session["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(rehydrate)
        .collect();
    again["participants"] = Value::Array(parts);
    let n = json!({"notificationType": "ParticipantsUpdated", "messageType": "m", "facebooksession": again});
    let views = project(&n, &mut CustomerCursor::default());
    prop_assert_eq!(&views[0]["facebooksession"], session);
    Ok(())
}

/// Projecting projected messages again (from the same first index)
/// changes nothing.
fn check_reprojection_of_messages(messages: &[Value]) -> Result<(), TestCaseError> {
    let rehydrated: Vec<Value> = messages
        .iter()
        .map(|m| {
            let mut m = m.clone();
            if let Some(from) = m.get("from") {
                m["from"] = rehydrate(from);
            }
            m
        })
        .collect();
    let first = messages[0]["index"].as_u64().unwrap();
    let n = json!({"notificationType": "NewMessages", "messageType": "MessageLogUpdated",
                   "facebooksessionPath": format!("/facebooksessions/{SID}"), "messages": rehydrated});
    let views = project(&n, &mut CustomerCursor::restored(None, first - 1));
    prop_assert_eq!(
        views[0]["messages"].as_array().unwrap().as_slice(),
        messages
    );
    Ok(())
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        4 => Just(Kind::ParticipantsUpdated),
        1 => Just(Kind::StatusChange),
        1 => Just(Kind::PropertiesUpdated),
        1 => Just(Kind::Error),
    ]
}

fn sender() -> impl Strategy<Value = Sender> {
    prop_oneof![
        2 => Just(Sender::Customer),
        4 => (0..AGENTS, any::<bool>()).prop_map(|(k, v)| Sender::Agent(k, v)),
        1 => Just(Sender::Nobody),
    ]
}

fn msg() -> impl Strategy<Value = Msg> {
    (
        sender(),
        any::<bool>(),
        prop::bool::weighted(0.15),
        any::<bool>(),
    )
        .prop_map(|(sender, visible, typing, junk)| Msg {
            sender,
            visible,
            typing,
            junk,
        })
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        2 => (
            kind(),
            prop::bool::weighted(0.1),
            prop::collection::vec((0..AGENTS, any::<bool>()), 0..=AGENTS),
            prop::bool::weighted(0.85),
            any::<bool>(),
        )
            .prop_map(|(kind, completed, mut members, with_customer, junk)| {
                members.sort_by_key(|m| m.0);
                members.dedup_by_key(|m| m.0);
                Event::State { kind, completed, members, with_customer, junk }
            }),
        3 => (prop::collection::vec(msg(), 1..5), any::<bool>())
            .prop_map(|(msgs, junk)| Event::Messages { msgs, junk }),
    ]
}

/// The upstream notifications of `events`, with the texts the customer
/// must see, in order.
fn upstream(events: &[Event]) -> (Vec<Value>, Vec<String>) {
    let mut next_index = 0;
    let mut listing = std::collections::HashMap::new();
    let mut notifications = Vec::new();
    let mut shown = Vec::new();
    for (n, e) in events.iter().enumerate() {
        let (v, texts) = build(e, n + 1, &mut next_index, &mut listing);
        notifications.push(v);
        shown.extend(texts);
    }
    (notifications, shown)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn customer_frames_never_leak_never_gap_and_reproject_to_themselves(
        events in prop::collection::vec(event(), 1..40),
        log_limit in 1usize..30,
    ) {
        let (notifications, expected_texts) = upstream(&events);
        let mut state = SessionState::new(SID, 1);
        let mut stream = CustomerStream::default();
        let mut log: VecDeque<LogEntry> = VecDeque::new();
        for (seq, v) in (1u64..).zip(&notifications) {
            let n = parse(v);
            let before = state.clone();
            let applied = state.apply(seq, &n, BOUND);
            for (id, frame) in &applied.customer {
                stream.take(*id, &data(frame), v)?;
            }
            if n.session().is_some() && n.messages().is_empty() {
                // The same state again is nothing new for the customer.
                let mut again = state.clone();
                prop_assert!(again.apply(seq + 1, &n, BOUND).customer.is_empty());
            }
            // Applying is deterministic: every gateway computes the same.
            let mut twin = before;
            prop_assert_eq!(&twin.apply(seq, &n, BOUND), &applied);
            log.extend(applied.log);
            while log.len() > log_limit {
                log.pop_front();
            }
        }
        prop_assert_eq!(stream.texts(), expected_texts);
        prop_assert_eq!(state.customer_seq(), stream.last_id);

        let lines: Vec<_> = log.iter().filter_map(|e| e.customer.as_ref()).collect();
        let snapshot: Vec<Value> = view::snapshot(
            state.customer_seq(),
            state.path_json(),
            state.customer_state(),
            lines.iter().copied(),
            BOUND,
        )
        .iter()
        .map(data)
        .collect();
        stream.check_snapshot(&snapshot, lines.len())?;
    }
}

proptest! {
    // Each case starts a server: a few cases, each a whole random session.
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn through_a_real_server_the_customer_sees_only_its_view(
        events in prop::collection::vec(event(), 1..30),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(through_a_real_server(events))?;
    }
}

async fn through_a_real_server(events: Vec<Event>) -> Result<(), TestCaseError> {
    let server = start(|_| {}).await;
    // Connected before the session is known; a supervisor sees everything.
    let mut customer = server.connect(Role::Customer, CUSTOMER, Some(SID)).await;
    let mut supervisor = server.connect(Role::Supervisor, "boss", None).await;
    let (mut notifications, mut expected_texts) = upstream(&events);
    // A last visible message marks the end of the customer's stream.
    notifications.push(json!({
        "notificationType": "NewMessages", "messageType": "MessageLogUpdated",
        "facebooksessionPath": format!("/facebooksessions/{SID}"),
        "messages": [{"index": 100_000, "type": "Text", "visibility": "All", "text": "THE-END"}],
    }));
    expected_texts.push("THE-END".into());
    let body: String = notifications.iter().map(|v| format!("{v}\n")).collect();
    let (status, reply) = server.ingest(&body, "application/x-ndjson").await;
    prop_assert_eq!(status, 202, "{}", reply);

    // The core's answer, frame by frame: which notification each customer
    // id comes from, and its view.
    let mut core = SessionState::new(SID, 1);
    let mut sources = std::collections::HashMap::new();
    for (seq, v) in (1u64..).zip(&notifications) {
        for (id, frame) in core.apply(seq, &parse(v), BOUND).customer {
            sources.insert(id, (v, data(&frame)));
        }
    }

    let mut stream = CustomerStream::default();
    let mut first_time = Vec::new();
    while stream.texts().last().map(String::as_str) != Some("THE-END") {
        let raw = customer
            .next_text_within(WAIT)
            .await
            .map_err(|()| TestCaseError::fail("no frame in time"))?
            .ok_or_else(|| TestCaseError::fail("the customer's stream closed"))?;
        let frame: Value = serde_json::from_str(&raw).unwrap();
        if frame["type"] == "heartbeat" {
            continue;
        }
        let id: u64 = frame["id"].as_str().unwrap().parse().unwrap();
        let view = &frame["data"];
        let (source, expected) = sources
            .get(&id)
            .ok_or_else(|| TestCaseError::fail(format!("frame {id} has no source")))?;
        prop_assert_eq!(view, expected, "the server sends what the core computes");
        stream.take(id, view, source)?;
        first_time.push(raw);
    }
    prop_assert_eq!(stream.texts(), expected_texts);
    customer
        .expect_silence(std::time::Duration::from_millis(50))
        .await;

    // Agents' view: the supervisor gets every notification unchanged.
    let got = supervisor.notifications(notifications.len()).await;
    for (frame, sent) in got.iter().zip(&notifications) {
        prop_assert_eq!(&frame["data"], sent);
    }

    // A second customer connection: the snapshot as first shown; a resume
    // from 0: the very same frames again.
    let mut again = server.connect(Role::Customer, CUSTOMER, Some(SID)).await;
    let mut snapshot = Vec::new();
    let expected_frames = usize::from(stream.last_session.is_some()) + 1;
    for _ in 0..expected_frames {
        snapshot.push(again.next_notification().await["data"].clone());
    }
    stream.check_snapshot(&snapshot, stream.shown.len())?;
    let mut replay = server
        .resume(Role::Customer, CUSTOMER, Some(SID), "0")
        .await;
    for expected in &first_time {
        let raw = replay.next_text_within(WAIT).await.unwrap().unwrap();
        prop_assert_eq!(&raw, expected);
    }
    server.stop().await;
    Ok(())
}
