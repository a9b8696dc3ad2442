//! The customer view: the privacy boundary of chatgate.
//!
//! Pure functions, no I/O. Everything a customer ever receives is built
//! here from an allow-list (SPEC section 2): visible (`All`) participants
//! reduced to `participantId`, `nickname`, `type`; visible messages with
//! indices renumbered 1, 2, 3, ... without gaps; the session reduced to
//! `id`, `state`, `participants`. Nothing is copied by default, so a field
//! the upstream adds tomorrow cannot leak. Deciding *whether* a view is sent
//! (empty, unchanged) is done here too; numbering state lives in
//! [`CustomerCursor`], owned by `session`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::model::{Message, Notification, NotificationType, Participant, Session, Visibility};

/// What the customer side of a session has been shown so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CustomerCursor {
    /// The last session object (`id`, `state`, `participants`) sent.
    pub last_session: Option<Value>,
    /// How many messages the customer has been shown: the last index.
    pub messages_shown: u64,
}

/// Fields of a message a customer may see: `index`, `type`, `visibility`
/// and `text` (typed fields of [`Message`]), `from` (reduced apart), and
/// these, taken from the message's other fields. `url` is the content of a
/// `PushUrl` line (SendUrl).
const MESSAGE_EXTRA_FIELDS: [&str; 3] = ["url", "timestamp", "timestampSeconds"];

/// The customer view of `n`, or `None` when it is empty or unchanged.
/// Advances `cursor` only when a view is produced.
pub fn customer_view(n: &Notification, cursor: &mut CustomerCursor) -> Option<Value> {
    match n.notification_type {
        NotificationType::NewMessages => {
            let path = format!("/facebooksessions/{}", n.session_id()?);
            let messages = n.messages.as_deref().unwrap_or_default();
            let shown = project_messages(messages, cursor.messages_shown + 1);
            if shown.is_empty() {
                return None;
            }
            cursor.messages_shown += shown.len() as u64;
            Some(object([
                ("notificationType", Value::from("NewMessages")),
                ("messageType", Value::String(n.message_type.clone())),
                ("facebooksessionPath", Value::String(path)),
                ("messages", Value::Array(shown)),
            ]))
        }
        NotificationType::StatusChange
        | NotificationType::ParticipantsUpdated
        | NotificationType::PropertiesUpdated => {
            let session = customer_session(n.facebooksession.as_ref()?);
            if cursor.last_session.as_ref() == Some(&session) {
                return None;
            }
            cursor.last_session = Some(session.clone());
            Some(object([
                ("notificationType", json!(n.notification_type)),
                ("messageType", Value::String(n.message_type.clone())),
                ("facebooksession", session),
            ]))
        }
        // An Error answers an agent's request; a customer has none to see.
        NotificationType::Error => None,
    }
}

/// A JSON object of `fields`, in order, the values moved in (`json!` would
/// serialize each value again: a deep copy of the projected messages).
fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// The session object reduced to what a customer may see.
pub fn customer_session(session: &Session) -> Value {
    let mut out = Map::new();
    out.insert("id".into(), Value::String(session.id.clone()));
    if let Some(state) = &session.state {
        out.insert("state".into(), Value::String(state.clone()));
    }
    out.insert(
        "participants".into(),
        Value::Array(visible_participants(&session.participants)),
    );
    Value::Object(out)
}

/// Visible participants, each reduced to `participantId`, `nickname`, `type`.
pub fn visible_participants(participants: &[Participant]) -> Vec<Value> {
    participants
        .iter()
        .filter(|p| p.visibility == Visibility::All)
        .map(reduce_participant)
        .collect()
}

fn reduce_participant(p: &Participant) -> Value {
    let mut out = Map::new();
    if let Some(id) = p.participant_key() {
        out.insert("participantId".into(), Value::String(id.to_owned()));
    }
    if let Some(nick) = &p.nickname {
        out.insert("nickname".into(), Value::String(nick.clone()));
    }
    out.insert("type".into(), json!(p.kind));
    Value::Object(out)
}

/// Whether a customer may see `m`: visible itself, and not sent by a hidden
/// participant (a consultant's message is hidden even if mislabelled).
pub fn is_visible(m: &Message) -> bool {
    m.visibility == Visibility::All
        && m.from
            .as_ref()
            .is_none_or(|f| f.visibility == Visibility::All)
}

/// The visible messages of `messages`, renumbered from `first_index`.
pub fn project_messages(messages: &[Message], first_index: u64) -> Vec<Value> {
    messages
        .iter()
        .filter(|m| is_visible(m))
        .zip(first_index..)
        .map(|(m, index)| project_message(m, index))
        .collect()
}

/// Built field by field from the allow-list, without serializing the whole
/// message first (that was most of the projection's cost).
fn project_message(m: &Message, index: u64) -> Value {
    let mut out = Map::new();
    out.insert("index".into(), Value::from(index));
    out.insert("type".into(), Value::String(m.kind.clone()));
    let visibility = match m.visibility {
        Visibility::All => "All",
        Visibility::Agents => "Agents",
    };
    out.insert("visibility".into(), Value::from(visibility));
    if let Some(text) = &m.text {
        out.insert("text".into(), Value::String(text.clone()));
    }
    for key in MESSAGE_EXTRA_FIELDS {
        if let Some(v) = m.extra.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    if let Some(from) = &m.from {
        out.insert("from".into(), reduce_participant(from));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> Notification {
        let path = format!("{}/proto-samples/{name}", env!("CARGO_MANIFEST_DIR"));
        Notification::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn seed_consult_participants_view_hides_the_consultant() {
        let n = sample("consult-participants-updated.json");
        let mut cursor = CustomerCursor::default();
        let view = customer_view(&n, &mut cursor).unwrap();
        let text = view.to_string();
        assert!(!text.contains("Agent2"));
        assert!(!text.contains("007356263E410147"));
        assert!(!text.contains("userData"));
        assert!(!text.contains("capabilities"));
        assert!(!text.contains("uri"));
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
        assert_eq!(customer_view(&n, &mut cursor), None);
    }

    #[test]
    fn seed_consult_join_message_is_not_sent_to_the_customer() {
        let n = sample("consult-new-messages.json");
        let mut cursor = CustomerCursor::default();
        assert_eq!(customer_view(&n, &mut cursor), None);
        assert_eq!(cursor.messages_shown, 0);
    }

    #[test]
    fn visible_messages_are_renumbered_without_gaps() {
        let n = Notification::parse(
            r#"{"notificationType":"NewMessages","messageType":"MessageLogUpdated",
                "facebooksessionPath":"/facebooksessions/s1","referenceId":9,
                "messages":[
                 {"index":5,"type":"Text","visibility":"All","text":"hi","secret":1},
                 {"index":6,"type":"Text","visibility":"Agents","text":"internal"},
                 {"index":7,"type":"Text","visibility":"All","text":"bye"},
                 {"index":8,"type":"PushUrl","visibility":"All","url":"https://example.com/o/1"}]}"#,
        )
        .unwrap();
        let mut cursor = CustomerCursor {
            last_session: None,
            messages_shown: 2,
        };
        let view = customer_view(&n, &mut cursor).unwrap();
        let msgs = view["messages"].as_array().unwrap();
        assert_eq!(msgs[0]["index"], 3);
        assert_eq!(msgs[1]["index"], 4);
        assert_eq!(msgs[1]["text"], "bye");
        assert_eq!(
            msgs[2]["url"], "https://example.com/o/1",
            "a pushed URL is its content"
        );
        assert!(!view.to_string().contains("internal"));
        assert!(!view.to_string().contains("secret"));
        assert!(view.get("referenceId").is_none());
        assert_eq!(cursor.messages_shown, 5);
    }

    #[test]
    fn a_projected_message_keeps_exactly_the_allow_list_in_order() {
        let n = Notification::parse(
            r#"{"notificationType":"NewMessages","messageType":"MessageLogUpdated",
                "facebooksessionPath":"/facebooksessions/s1",
                "messages":[{"secret":1,"timestampSeconds":2,"from":{"participantId":"p","id":"p",
                  "type":"Customer","nickname":"n","visibility":"All","uri":"u"},
                  "text":"hi","url":"https://x","visibility":"All","type":"Text","index":9,"timestamp":"t"}]}"#,
        )
        .unwrap();
        let view = customer_view(&n, &mut CustomerCursor::default()).unwrap();
        assert_eq!(
            view["messages"][0].to_string(),
            r#"{"index":1,"type":"Text","visibility":"All","text":"hi","url":"https://x","timestamp":"t","timestampSeconds":2,"from":{"participantId":"p","nickname":"n","type":"Customer"}}"#
        );
    }
}
