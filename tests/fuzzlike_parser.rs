//! The fuzz targets' invariants (`fuzz/checks.rs`) driven by proptest in
//! the normal test suite: arbitrary bytes, arbitrary JSON, mutated seed
//! samples and generated notification streams never panic the upstream
//! parser or the customer projection, bad input is always a clear error,
//! and a batch with one bad item is refused as a whole, naming that item.
//!
//! The upstream's dialects too: visibility values other than the exact
//! string `All` (`Agents`, `INT`, `VIP`, `ALL`, `all`, `""`, null, none, a
//! number) on participants, messages and senders are agent-only; a key
//! written twice, at any depth and in either order, refuses its item as
//! ambiguous and never reaches a customer; an item over the frame bound
//! is refused for its size, naming it.

#[path = "../fuzz/checks.rs"]
mod checks;

use bytes::Bytes;
use chatgate::event::{Event, EventError};
use chatgate::frame::{frame_len, Frame, MAX_ID_BYTES};
use chatgate::ingest::{parse_batch, BatchError};
use chatgate::session::SessionState;
use chatgate::view::{self, CustomerCursor, Listing, Target};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// The frame bound of `one_bad_item_refuses_the_batch_and_names_it` and
/// of the projections (the default).
const BOUND: usize = 512 << 10;
/// A small frame bound every seed sample fits in.
const SMALL_BOUND: usize = 8 << 10;

fn sample_text(name: &str) -> String {
    let path = format!("{}/proto-samples/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path).unwrap()
}

fn sample(name: &str) -> Value {
    serde_json::from_str(&sample_text(name)).unwrap()
}

/// Every notification sample of `proto-samples/`, read once.
fn samples() -> Vec<Value> {
    static SAMPLES: std::sync::OnceLock<Vec<Value>> = std::sync::OnceLock::new();
    SAMPLES
        .get_or_init(|| {
            let dir = format!("{}/proto-samples", env!("CARGO_MANIFEST_DIR"));
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.ends_with(".json"))
                .collect();
            names.sort();
            names.iter().map(|n| sample(n)).collect()
        })
        .clone()
}

/// Any JSON value, a few levels deep, with the words notifications use as
/// keys and strings (so that random values sometimes look right).
fn any_json() -> impl Strategy<Value = Value> {
    let words = prop::sample::select(vec![
        "notificationType",
        "messageType",
        "facebooksession",
        "facebooksessionPath",
        "facebooksessionUri",
        "messages",
        "participants",
        "visibility",
        "userData",
        "All",
        "Agents",
        "INT",
        "VIP",
        "ALL",
        "all",
        "Customer",
        "Agent",
        "NewMessages",
        "ParticipantsUpdated",
        "StatusChange",
        "Error",
        "index",
        "type",
        "from",
        "id",
        "participantId",
        "text",
        "/facebooksessions/s1",
        "s1",
    ])
    .prop_map(str::to_owned);
    // A compiled regex strategy: a `&str` one is parsed anew per value.
    let free_text = prop::string::string_regex(".{0,12}").unwrap();
    let string = prop_oneof![words.clone(), free_text];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        string.clone().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((string.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A seed sample with a few random edits: a field replaced by arbitrary
/// JSON or removed, at any depth.
fn mutated_sample() -> impl Strategy<Value = Value> {
    let edits = prop::collection::vec((any::<u64>(), any_json(), any::<bool>()), 1..4);
    (prop::sample::select(samples()), edits).prop_map(|(mut v, edits)| {
        for (seed, replacement, remove) in edits {
            let depth = (seed % 6) as usize;
            edit(&mut v, depth, seed / 6, replacement, remove);
        }
        v
    })
}

/// Walks `depth` levels down along children picked by `seed`, then
/// replaces the node reached (or removes the key leading to it).
fn edit(v: &mut Value, depth: usize, seed: u64, replacement: Value, remove: bool) {
    if depth == 0 {
        *v = replacement;
        return;
    }
    let pick = |len: usize| (seed % len as u64) as usize;
    match v {
        Value::Object(m) if !m.is_empty() => {
            let key = m.keys().nth(pick(m.len())).cloned().unwrap_or_default();
            if remove && depth == 1 {
                m.remove(&key);
            } else if let Some(child) = m.get_mut(&key) {
                edit(child, depth - 1, seed / 31, replacement, remove);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            let i = pick(a.len());
            edit(&mut a[i], depth - 1, seed / 31, replacement, remove);
        }
        _ => *v = replacement,
    }
}

/// A visibility in one of the upstream's dialects (`None`: no visibility
/// key at all); `All`, the only visible one, often enough that customers
/// see something.
fn visibility() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        3 => Just(Some(json!("All"))),
        2 => prop::sample::select(checks::visibility_dialects().to_vec()),
    ]
}

/// A participant: a customer or agent of any visibility dialect,
/// identified by one of a few ids (so that they collide across
/// notifications).
fn participant() -> impl Strategy<Value = Value> {
    (0..4u8, any::<bool>(), visibility(), any::<bool>()).prop_map(
        |(id, agent, visibility, path)| {
            let mut p = json!({
                "participantId": format!("P{id}"),
                "id": format!("P{id}"),
                "type": if agent { "Agent" } else { "Customer" },
                "nickname": format!("nick-{id}"),
            });
            checks::set_visibility(&mut p, visibility);
            if agent && path {
                p["path"] = json!(format!("/users/U{id}"));
                p["uri"] = json!(format!("http://upstream/api/v2/users/U{id}"));
            }
            p
        },
    )
}

/// A stream of well-formed notifications of one or two sessions: state
/// changes with random participants, messages of random visibility and
/// senders (every dialect), errors, with extra fields a customer must
/// never see.
fn notification_stream() -> impl Strategy<Value = Vec<Value>> {
    let state_change = (
        0..2u8,
        prop::sample::select(vec![
            "ParticipantsUpdated",
            "StatusChange",
            "PropertiesUpdated",
            "Error",
        ]),
        prop::collection::vec(participant(), 0..5),
        any::<bool>(),
    )
        .prop_map(|(s, kind, participants, done)| {
            json!({
                "notificationType": kind,
                "messageType": "FacebooksessionStateChangeMessage",
                "referenceId": 7,
                "facebooksession": {
                    "id": format!("S{s}"),
                    "state": if done { "Completed" } else { "Chatting" },
                    "participants": participants,
                    "userData": {"secret": "agent-only user data"},
                    "capabilities": ["Consult"],
                },
            })
        });
    let message = (
        visibility(),
        prop::option::of(participant()),
        prop::sample::select(vec![
            "Text",
            "TypingStarted",
            "ParticipantJoined",
            "PushUrl",
        ]),
        prop::string::string_regex(".{0,8}").unwrap(),
        prop::sample::select(vec![
            json!("https://example.com/o/1"),
            json!(12),
            json!({"href": "x"}),
            json!(["x"]),
            json!(true),
            Value::Null,
        ]),
    )
        .prop_map(|(visibility, from, kind, text, url)| {
            let mut m = json!({
                "index": 1,
                "type": kind,
                "text": text,
                "url": url,
                "timestamp": "2026-11-25 16:03:12.997+0000",
                "internalNote": "never for customers",
            });
            checks::set_visibility(&mut m, visibility);
            if let Some(from) = from {
                m["from"] = from;
            }
            m
        });
    let new_messages = (0..2u8, prop::collection::vec(message, 0..4)).prop_map(|(s, messages)| {
        json!({
            "notificationType": "NewMessages",
            "messageType": "MessageLogUpdated",
            "facebooksessionPath": format!("/facebooksessions/S{s}"),
            "facebooksessionUri": format!("http://upstream/api/v2/facebooksessions/S{s}"),
            "referenceId": 9,
            "messages": messages,
        })
    });
    prop::collection::vec(prop_oneof![state_change, new_messages], 1..12)
}

/// Where in a notification a key is written twice.
#[derive(Debug, Clone, Copy)]
enum Place {
    TopLevel,
    Session,
    Participant,
    UserData,
    Message,
    From,
    AnyObject,
}

impl Place {
    fn fits(self, pointer: &str) -> bool {
        let last = pointer.rsplit('/').next().unwrap_or_default();
        let parent = pointer.rsplit('/').nth(1).unwrap_or_default();
        match self {
            Place::TopLevel => pointer.is_empty(),
            Place::Session => pointer == "/facebooksession",
            Place::Participant => parent == "participants" && last.parse::<usize>().is_ok(),
            Place::UserData => last == "userData",
            Place::Message => parent == "messages" && last.parse::<usize>().is_ok(),
            Place::From => last == "from",
            Place::AnyObject => true,
        }
    }
}

fn place() -> impl Strategy<Value = Place> {
    prop::sample::select(vec![
        Place::TopLevel,
        Place::Session,
        Place::Participant,
        Place::UserData,
        Place::Message,
        Place::From,
        Place::AnyObject,
    ])
}

/// A key written twice in `v`: at an object of `place` (picked by
/// `pick`; the top level when `v` has none there), `key` with two
/// visibility values in the order given.
fn duplicated(
    v: &Value,
    place: Place,
    pick: prop::sample::Index,
    key: &str,
    agents_first: bool,
) -> String {
    let pointers: Vec<String> = checks::object_pointers(v)
        .into_iter()
        .filter(|p| place.fits(p))
        .collect();
    let pointer = if pointers.is_empty() {
        ""
    } else {
        &pointers[pick.index(pointers.len())]
    };
    let (first, second) = if agents_first {
        (r#""Agents""#, r#""All""#)
    } else {
        (r#""All""#, r#""Agents""#)
    };
    checks::with_duplicate(v, pointer, key, first, second)
}

/// Makes everything of `v` a customer could be shown say `marker`, and
/// every visibility `All`: were it accepted, a customer would see it.
fn mark_visible(v: &mut Value, marker: &str) {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                match k.as_str() {
                    "visibility" => *child = json!("All"),
                    "text" | "nickname" if child.is_string() => *child = json!(marker),
                    _ => mark_visible(child, marker),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|c| mark_visible(c, marker)),
        _ => {}
    }
}

fn ndjson(items: &[Value]) -> Vec<u8> {
    lines(&items.iter().map(Value::to_string).collect::<Vec<_>>())
}

fn lines(items: &[String]) -> Vec<u8> {
    items.join("\n").into_bytes()
}

/// A visible text message of session s1 whose text is `len` bytes.
fn text_message(len: usize) -> String {
    json!({
        "notificationType": "NewMessages",
        "messageType": "MessageLogUpdated",
        "facebooksessionPath": "/facebooksessions/s1",
        "messages": [{"index": 1, "type": "Text", "visibility": "All", "text": "x".repeat(len)}],
    })
    .to_string()
}

/// Every customer frame of `items` (NDJSON lines) applied in order, one
/// session state per session; lines that do not parse are skipped.
fn customer_frames(items: &[String]) -> Vec<String> {
    let mut states: std::collections::HashMap<String, SessionState> = Default::default();
    let mut out = Vec::new();
    for (seq, item) in (1u64..).zip(items) {
        let Ok(event) = Event::parse_str(item, BOUND) else {
            continue;
        };
        let state = states
            .entry(event.session_id().to_owned())
            .or_insert_with_key(|id| SessionState::new(id, seq));
        let applied = state.apply(seq, &event, BOUND);
        out.extend(
            applied
                .customer
                .iter()
                .map(|(_, f)| f.bytes().as_str().to_owned()),
        );
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        checks::check_parse(&data);
        checks::check_projection(&data);
    }

    #[test]
    fn arbitrary_json_is_accepted_or_refused_with_a_reason(items in prop::collection::vec(any_json(), 0..4)) {
        let array = Value::Array(items.clone()).to_string();
        checks::check_parse(array.as_bytes());
        checks::check_parse(&ndjson(&items));
        checks::check_projection(&ndjson(&items));
    }

    #[test]
    fn mutated_seed_samples_never_break_a_rule(items in prop::collection::vec(mutated_sample(), 1..4)) {
        checks::check_parse(&ndjson(&items));
        checks::check_parse(Value::Array(items.clone()).to_string().as_bytes());
        let mut stream = samples();
        stream.extend(items);
        checks::check_projection(&ndjson(&stream));
    }

    #[test]
    fn generated_streams_keep_the_customer_view_rules(stream in notification_stream()) {
        checks::check_parse(&ndjson(&stream));
        checks::check_projection(&ndjson(&stream));
    }

    #[test]
    fn byte_driven_dialect_streams_keep_every_rule(data in prop::collection::vec(any::<u8>(), 0..256)) {
        checks::check_dialects(&data);
    }

    #[test]
    fn a_key_twice_refuses_its_item_naming_it_and_never_reaches_a_customer(
        stream in notification_stream(),
        at in any::<prop::sample::Index>(),
        place in place(),
        pick in any::<prop::sample::Index>(),
        key in prop::sample::select(vec!["visibility", "participantId", "text", "notificationType", "id"]),
        agents_first in any::<bool>(),
    ) {
        let position = at.index(stream.len());
        let mut ambiguous = stream[position].clone();
        mark_visible(&mut ambiguous, "AMBIGUOUS");
        let mut items: Vec<String> = stream.iter().map(Value::to_string).collect();
        items[position] = duplicated(&ambiguous, place, pick, key, agents_first);

        let expected = EventError::DuplicateKey(key.to_owned());
        prop_assert_eq!(Event::parse_str(&items[position], BOUND).err(), Some(expected.clone()));
        let array = format!("[{}]", items.join(","));
        for (body, ndjson) in [(lines(&items), true), (array.into_bytes(), false)] {
            match parse_batch(&Bytes::from(body), ndjson, BOUND) {
                Err(BatchError::Item { item, reason }) => {
                    prop_assert_eq!(item, position + 1);
                    prop_assert_eq!(&reason, &expected);
                }
                other => prop_assert!(false, "expected item {} refused, got {:?}", position + 1, other),
            }
        }
        for frame in customer_frames(&items) {
            prop_assert!(!frame.contains("AMBIGUOUS"), "{}", frame);
        }
        checks::check_parse(&lines(&items));
        checks::check_projection(&lines(&items));
    }

    #[test]
    fn an_item_over_the_frame_bound_is_refused_for_its_size_naming_it(
        good in prop::collection::vec(prop::sample::select(samples()), 1..6),
        at in any::<prop::sample::Index>(),
        len in SMALL_BOUND..3 * SMALL_BOUND,
    ) {
        let mut items: Vec<String> = good.iter().map(Value::to_string).collect();
        let position = at.index(items.len() + 1);
        items.insert(position, text_message(len));
        let array = format!("[{}]", items.join(","));
        for (body, ndjson) in [(lines(&items), true), (array.into_bytes(), false)] {
            let body = Bytes::from(body);
            match parse_batch(&body, ndjson, SMALL_BOUND) {
                Err(e @ BatchError::Item { .. }) => {
                    prop_assert!(e.is_too_large(), "{}", e);
                    let BatchError::Item { item, reason } = e else { unreachable!() };
                    prop_assert_eq!(item, position + 1);
                    prop_assert!(
                        matches!(reason, EventError::TooLarge { bytes, limit } if limit == SMALL_BOUND && bytes > SMALL_BOUND),
                        "{}", reason
                    );
                }
                other => prop_assert!(false, "expected item {} refused, got {:?}", position + 1, other),
            }
            // Under the default bound the same batch is fine.
            prop_assert_eq!(parse_batch(&body, ndjson, BOUND).map(|b| b.len()), Ok(items.len()));
        }
    }

    #[test]
    fn the_frame_bound_decides_by_size(len in 0..2 * SMALL_BOUND) {
        let item = text_message(len);
        let parsed = Event::parse_str(&item, SMALL_BOUND);
        if frame_len(MAX_ID_BYTES, item.len()) > SMALL_BOUND {
            prop_assert!(parsed.is_err_and(|e| e.is_too_large()), "{} bytes accepted", item.len());
        } else if item.len() + 3000 < SMALL_BOUND {
            // The room a snapshot frame of its message may need besides it.
            prop_assert!(parsed.is_ok(), "{} bytes refused", item.len());
        }
        checks::check_parse(item.as_bytes());
    }

    #[test]
    fn one_bad_item_refuses_the_batch_and_names_it(
        good in 1..6usize,
        bad_at in any::<prop::sample::Index>(),
        bad in prop_oneof![
            Just(json!(3)),
            Just(json!({"x": 1})),
            Just(json!({"notificationType": "NewMessages", "messageType": "MessageLogUpdated"})),
            Just(json!({"notificationType": "Nope", "messageType": "x", "facebooksessionPath": "/facebooksessions/s"})),
        ],
    ) {
        let mut items = vec![sample("consult-new-messages.json"); good];
        let position = bad_at.index(good + 1);
        items.insert(position, bad);
        for (body, ndjson) in [(Value::Array(items.clone()).to_string().into_bytes(), false), (ndjson(&items), true)] {
            match parse_batch(&Bytes::from(body), ndjson, BOUND) {
                Err(BatchError::Item { item, reason }) => {
                    prop_assert_eq!(item, position + 1);
                    prop_assert!(!reason.to_string().is_empty());
                }
                other => prop_assert!(false, "expected item {} refused, got {:?}", position + 1, other),
            }
        }
    }
}

#[test]
fn the_seed_samples_pass_every_check() {
    let stream = samples();
    checks::check_parse(&ndjson(&stream));
    checks::check_projection(&ndjson(&stream));
    for s in &stream {
        checks::check_parse(s.to_string().as_bytes());
    }
}

#[test]
fn a_key_twice_in_any_object_of_any_sample_is_refused_in_either_order() {
    for s in samples() {
        for pointer in checks::object_pointers(&s) {
            for (first, second) in [(r#""Agents""#, r#""All""#), (r#""All""#, r#""Agents""#)] {
                let text = checks::with_duplicate(&s, &pointer, "visibility", first, second);
                assert_eq!(
                    Event::parse_str(&text, BOUND).err(),
                    Some(EventError::DuplicateKey("visibility".into())),
                    "{pointer}: {text}"
                );
                checks::check_parse(text.as_bytes());
            }
        }
    }
}

#[test]
fn every_visibility_but_the_exact_string_all_is_agent_only() {
    for dialect in checks::visibility_dialects() {
        let all = dialect == Some(json!("All"));
        let mut stream = samples();
        for v in &mut stream {
            for p in v
                .pointer_mut("/facebooksession/participants")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                checks::set_visibility(p, dialect.clone());
            }
            for m in v
                .get_mut("messages")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                checks::set_visibility(m, dialect.clone());
                if let Some(from) = m.get_mut("from") {
                    checks::set_visibility(from, dialect.clone());
                }
            }
        }
        checks::check_parse(&ndjson(&stream));
        checks::check_projection(&ndjson(&stream));
        let items: Vec<String> = stream.iter().map(Value::to_string).collect();
        let frames = customer_frames(&items);
        let shown = |f: &String| {
            let v: Value = serde_json::from_str(f).unwrap();
            let participants = v["data"]["facebooksession"]["participants"]
                .as_array()
                .map_or(0, Vec::len);
            let messages = v["data"]["messages"].as_array().map_or(0, Vec::len);
            participants + messages
        };
        let total: usize = frames.iter().map(shown).sum();
        if all {
            assert!(total > 0, "All is visible");
        } else {
            assert_eq!(total, 0, "{dialect:?} shown to a customer: {frames:?}");
        }
    }
}

/// The first customer view of the consult sample, as frame data.
fn first_view() -> (Event, Value) {
    let event = Event::parse_str(&sample_text("consult-participants-updated.json"), BOUND).unwrap();
    let path = view::session_path_json(event.session_id());
    let listing: Listing = event
        .participants()
        .iter()
        .map(|p| (p.key.clone(), p.visibility))
        .collect();
    let update = view::customer_view(
        &event,
        &mut CustomerCursor::default(),
        &listing,
        Target {
            path_json: &path,
            last_id: &mut 0,
            max_frame: BOUND,
        },
    );
    let frame: Value = serde_json::from_str(update.frames[0].1.bytes().as_str()).unwrap();
    (event, frame["data"].clone())
}

/// Breaks a customer view (the consultant at hand).
type Leak = fn(&mut Value, &Value);

#[test]
fn the_checks_catch_a_leak() {
    // The checker itself must fail on a view that breaks a rule; otherwise
    // every property above would pass vacuously.
    let (event, view) = first_view();
    checks::check_first_view(&event, &view);
    let consultant =
        json!({"participantId": "007356263E410147", "nickname": "Agent2", "type": "Agent"});
    let leaks: [(&str, Leak); 4] = [
        ("userData", |v, _| {
            v["facebooksession"]["userData"] = json!({})
        }),
        ("an agent-only participant", |v, c| {
            v["facebooksession"]["participants"]
                .as_array_mut()
                .unwrap()
                .push(c.clone())
        }),
        ("a participant's uri", |v, _| {
            v["facebooksession"]["participants"][0]["uri"] = json!("http://upstream/users/x")
        }),
        ("a participant missing", |v, _| {
            v["facebooksession"]["participants"]
                .as_array_mut()
                .unwrap()
                .pop();
        }),
    ];
    for (what, leak) in leaks {
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut view = view.clone();
            leak(&mut view, &consultant);
            checks::check_first_view(&event, &view);
        }));
        assert!(caught.is_err(), "a view with {what} must fail the checks");
    }
}
