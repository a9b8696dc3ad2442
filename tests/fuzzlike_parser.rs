//! The fuzz targets' invariants (`fuzz/checks.rs`) driven by proptest in
//! the normal test suite: arbitrary bytes, arbitrary JSON, mutated seed
//! samples and generated notification streams never panic the upstream
//! parser or the customer projection, bad input is always a clear error,
//! and a batch with one bad item is refused as a whole, naming that item.

#[path = "../fuzz/checks.rs"]
mod checks;

use chatgate::ingest::{parse_batch, BatchError};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn sample(name: &str) -> Value {
    let path = format!("{}/proto-samples/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
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
        "All",
        "Agents",
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

/// A participant: a customer or agent, visible or not, identified by one
/// of a few ids (so that they collide across notifications).
fn participant() -> impl Strategy<Value = Value> {
    (0..4u8, any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(id, agent, hidden, path)| {
        let mut p = json!({
            "participantId": format!("P{id}"),
            "id": format!("P{id}"),
            "type": if agent { "Agent" } else { "Customer" },
            "nickname": format!("nick-{id}"),
            "visibility": if hidden { "Agents" } else { "All" },
        });
        if agent && path {
            p["path"] = json!(format!("/users/U{id}"));
            p["uri"] = json!(format!("http://upstream/api/v2/users/U{id}"));
        }
        p
    })
}

/// A stream of well-formed notifications of one or two sessions: state
/// changes with random participants, messages of random visibility and
/// senders, errors, with extra fields a customer must never see.
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
        any::<bool>(),
        prop::option::of(participant()),
        prop::sample::select(vec![
            "Text",
            "TypingStarted",
            "ParticipantJoined",
            "PushUrl",
        ]),
        prop::string::string_regex(".{0,8}").unwrap(),
    )
        .prop_map(|(hidden, from, kind, text)| {
            let mut m = json!({
                "index": 1,
                "type": kind,
                "visibility": if hidden { "Agents" } else { "All" },
                "text": text,
                "internalNote": "never for customers",
            });
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

fn ndjson(items: &[Value]) -> Vec<u8> {
    items
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
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
            match parse_batch(&body, ndjson) {
                Err(BatchError::Item { item, reason }) => {
                    prop_assert_eq!(item, position + 1);
                    prop_assert!(!reason.is_empty());
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
}

#[test]
fn the_checks_catch_a_leak() {
    // The checker itself must fail on a view that breaks a rule; otherwise
    // every property above would pass vacuously.
    let n = chatgate::model::Notification::parse(
        &sample("consult-participants-updated.json").to_string(),
    )
    .unwrap();
    let view = chatgate::view::customer_view(&n, &mut Default::default()).unwrap();
    checks::check_first_view(&n, &view);
    let leaky = std::panic::catch_unwind(|| {
        let mut view = view.clone();
        view["facebooksession"]["userData"] = json!({});
        checks::check_first_view(&n, &view);
    });
    assert!(
        leaky.is_err(),
        "a view carrying userData must fail the checks"
    );
}
