//! Invariant checks on arbitrary input, shared by the fuzz targets
//! (`fuzz/fuzz_targets/`) and the proptest cases of the normal test suite
//! (`tests/fuzzlike_parser.rs`). Each takes any bytes and panics only when
//! chatgate breaks one of its rules.
#![allow(dead_code)] // each includer uses a part

use std::collections::HashMap;

use chatgate::ingest::{parse_batch, BatchError};
use chatgate::model::{Message, Notification, Participant, Visibility};
use chatgate::session::SessionState;
use serde_json::Value;

/// The upstream parser (`POST /upstream/events` and the bus payload) on
/// arbitrary bytes: it never panics; a refusal names an item of the batch
/// and says why; whatever it accepts names a session and survives the
/// trip through the bus (serialized and parsed again, unchanged).
pub fn check_parse(data: &[u8]) {
    for ndjson in [false, true] {
        match parse_batch(data, ndjson) {
            Ok(batch) => {
                assert!(!batch.is_empty(), "an accepted batch is never empty");
                batch.iter().for_each(check_accepted);
            }
            Err(BatchError::Empty) => {}
            Err(BatchError::Item { item, reason }) => {
                assert!(item >= 1, "items are numbered from 1");
                assert!(!reason.is_empty(), "a refusal says why");
                if ndjson {
                    let lines = data
                        .split(|b| *b == b'\n')
                        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
                        .count();
                    assert!(item <= lines, "item {item} of {lines} lines");
                }
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(n) = Notification::parse(text) {
            check_accepted(&n);
        }
    }
}

fn check_accepted(n: &Notification) {
    let id = n
        .session_id()
        .expect("an accepted notification names its session");
    assert!(!id.is_empty() && id.len() <= 256, "session id {id:?}");
    let bytes = n.to_json_bytes();
    let text = std::str::from_utf8(&bytes).expect("serialized JSON is UTF-8");
    let again = Notification::parse(text).expect("what was accepted parses again");
    assert_eq!(&again, n, "the notification changed on a round trip");
}

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

/// The customer projection on arbitrary input: each line of `data` that
/// parses as a notification is applied, in order, to its session's state,
/// and every customer view produced (and each final customer snapshot)
/// must keep the rules: only allow-listed keys; only visible participants
/// and messages, in order; message indices and stream ids 1, 2, 3, ...
/// without gaps per session; nothing of an agent-only participant or
/// message.
pub fn check_projection(data: &[u8]) {
    let mut sessions: HashMap<String, (SessionState, u64)> = HashMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Ok(text) = std::str::from_utf8(line) else {
            continue;
        };
        let Ok(n) = Notification::parse(text) else {
            continue;
        };
        let Some(id) = n.session_id().map(str::to_owned) else {
            continue;
        };
        let (state, shown) = sessions
            .entry(id.clone())
            .or_insert_with(|| (SessionState::new(&id), 0));
        let before_seq = state.customer_seq;
        let applied = state.apply(&n, 1000);
        match applied.customer {
            None => assert_eq!(state.customer_seq, before_seq, "no view, no id"),
            Some((seq, view)) => {
                assert_eq!(seq, before_seq + 1, "customer ids run without gaps");
                check_view(&n, &view, shown);
            }
        }
    }
    for (state, _) in sessions.values() {
        let mut next = None;
        for snapshot in state.customer_snapshot() {
            check_keys(&snapshot, &NOTIFICATION_KEYS, "snapshot");
            for m in snapshot["messages"].as_array().into_iter().flatten() {
                check_keys(m, &MESSAGE_KEYS, "snapshot message");
                let index = m["index"].as_u64().expect("an index");
                if let Some(expected) = next {
                    assert_eq!(index, expected, "snapshot indices are contiguous");
                }
                next = Some(index + 1);
            }
        }
    }
}

/// Checks a customer view of `n` as the first its customer gets.
pub fn check_first_view(n: &Notification, view: &Value) {
    check_view(n, view, &mut 0);
}

/// Checks one customer view of `n`; `shown` is how many messages the
/// customer of its session has been shown before it (advanced here).
fn check_view(n: &Notification, view: &Value, shown: &mut u64) {
    check_keys(view, &NOTIFICATION_KEYS, "notification");
    if let Some(session) = view.get("facebooksession") {
        check_keys(session, &SESSION_KEYS, "session");
        let input = n.participants().unwrap_or_default();
        let visible: Vec<&Participant> = input
            .iter()
            .filter(|p| p.visibility == Visibility::All)
            .collect();
        let got = session["participants"].as_array().expect("participants");
        assert_eq!(got.len(), visible.len(), "exactly the visible participants");
        for (p, original) in got.iter().zip(&visible) {
            check_participant(p, original);
        }
        for hidden in input.iter().filter(|p| p.visibility == Visibility::Agents) {
            let key = hidden.participant_key();
            let also_visible = visible.iter().any(|v| v.participant_key() == key);
            let leaked = got.iter().any(|p| p["participantId"].as_str() == key);
            assert!(also_visible || !leaked, "an agent-only participant leaked");
        }
    }
    if let Some(messages) = view.get("messages") {
        let input = n.messages.as_deref().unwrap_or_default();
        let visible: Vec<&Message> = input.iter().filter(|m| visible_message(m)).collect();
        let got = messages.as_array().expect("messages");
        assert!(!got.is_empty(), "an empty view is not sent");
        assert_eq!(got.len(), visible.len(), "exactly the visible messages");
        for (m, original) in got.iter().zip(&visible) {
            check_keys(m, &MESSAGE_KEYS, "message");
            *shown += 1;
            assert_eq!(m["index"], *shown, "indices run 1, 2, 3, ... without gaps");
            assert_eq!(m["type"], original.kind.as_str());
            assert_eq!(
                m.get("text").and_then(Value::as_str),
                original.text.as_deref()
            );
            assert_eq!(m.get("url"), original.extra.get("url"), "url as sent");
            assert_eq!(m["visibility"], "All");
            if let (Some(from), Some(original)) = (m.get("from"), &original.from) {
                check_participant(from, original);
            }
        }
    }
}

/// A customer sees a message that is visible and not sent by a hidden
/// participant (restated here, independently of `view`).
fn visible_message(m: &Message) -> bool {
    m.visibility == Visibility::All
        && m.from
            .as_ref()
            .is_none_or(|f| f.visibility == Visibility::All)
}

fn check_participant(p: &Value, original: &Participant) {
    check_keys(p, &PARTICIPANT_KEYS, "participant");
    assert_eq!(p["participantId"].as_str(), original.participant_key());
    assert_eq!(
        p.get("nickname").and_then(Value::as_str),
        original.nickname.as_deref()
    );
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
