//! A session as the engine keeps it, and the notifications built from it.
//!
//! Owns [`SessionRecord`] (participants, state, userData, the next message
//! index; the message log is kept by the store), the capabilities each
//! state allows, and
//! the Genesys Web Services shapes of the seed: the `facebooksession`
//! object of a state-change notification and the messages of a NewMessages
//! notification. Pure: no I/O, no clock (the caller passes the time).

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::model::{
    Message, Notification, NotificationType, Participant, ParticipantType, Session, Visibility,
    MESSAGE_LOG_UPDATED, STATE_CHANGE_MESSAGE,
};

use super::directory::Directory;

/// The session's state, as `facebooksession.state` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionStatus {
    /// A customer and at least one agent, or agents wrapping up after the
    /// customer left.
    Chatting,
    /// Ended: no participant is left and no operation applies.
    Completed,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Chatting => "Chatting",
            SessionStatus::Completed => "Completed",
        }
    }
}

/// One participant of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub participant_id: String,
    pub kind: ParticipantType,
    /// The agent's userId (`/users/{id}`); `None` for the customer.
    pub user: Option<String>,
    pub nickname: String,
    pub visibility: Visibility,
}

impl Member {
    pub fn is_agent(&self) -> bool {
        self.kind == ParticipantType::Agent
    }

    /// The participant object of the seed: agents with `uri` and `path`.
    pub fn to_participant(&self, dir: &Directory) -> Participant {
        Participant {
            participant_id: Some(self.participant_id.clone()),
            id: Some(self.participant_id.clone()),
            kind: self.kind,
            nickname: Some(self.nickname.clone()),
            visibility: self.visibility,
            uri: self.user.as_deref().map(|u| dir.user_uri(u)),
            path: self.user.as_deref().map(|u| format!("/users/{u}")),
            extra: Map::new(),
        }
    }
}

/// Every operation name an agent may be offered, in the seed's order.
pub const ALL_CAPABILITIES: [&str; 18] = [
    "Transfer",
    "Leave",
    "Invite",
    "Consult",
    "SetInFocus",
    "SetDisposition",
    "AttachUserData",
    "DeleteUserData",
    "UpdateUserData",
    "SendToAgents",
    "SendStartTypingToAgentsNotification",
    "SendStopTypingToAgentsNotification",
    "Complete",
    "SendMessage",
    "SendUrl",
    "SendStartTypingNotification",
    "SendStopTypingNotification",
    "RemoveParticipantFromConference",
];

/// Operations that address the customer or bring an agent to them: they
/// need a customer in the session.
const NEEDS_CUSTOMER: [&str; 7] = [
    "Transfer",
    "Invite",
    "Consult",
    "SendMessage",
    "SendUrl",
    "SendStartTypingNotification",
    "SendStopTypingNotification",
];

/// Operations a consulting agent (visibility `Agents`) may not perform:
/// only the agents the customer sees steer the session.
const VISIBLE_AGENTS_ONLY: [&str; 5] = [
    "Transfer",
    "Invite",
    "Consult",
    "Complete",
    "RemoveParticipantFromConference",
];

/// A session's state and data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRecord {
    pub id: String,
    /// Bumped by the store on every applied change (compare-and-set).
    pub revision: u64,
    pub status: SessionStatus,
    /// When the customer started it, ms since the epoch.
    pub received_ms: u64,
    /// When it last changed, ms since the epoch.
    pub updated_ms: u64,
    /// The queue it came through, if any.
    pub queue: Option<String>,
    /// In the order they joined.
    pub participants: Vec<Member>,
    pub user_data: Map<String, Value>,
    /// The index the next message gets: 1, 2, 3, ... per session.
    pub next_index: u64,
}

impl SessionRecord {
    pub fn new(id: String, now_ms: u64, queue: Option<String>) -> Self {
        Self {
            id,
            revision: 0,
            status: SessionStatus::Chatting,
            received_ms: now_ms,
            updated_ms: now_ms,
            queue,
            participants: Vec::new(),
            user_data: Map::new(),
            next_index: 1,
        }
    }

    pub fn customer(&self) -> Option<&Member> {
        self.participants
            .iter()
            .find(|m| m.kind == ParticipantType::Customer)
    }

    /// The participant of agent `user`, if they are in the session.
    pub fn agent(&self, user: &str) -> Option<&Member> {
        self.participants
            .iter()
            .find(|m| m.is_agent() && m.user.as_deref() == Some(user))
    }

    pub fn member(&self, participant_id: &str) -> Option<&Member> {
        self.participants
            .iter()
            .find(|m| m.participant_id == participant_id)
    }

    /// Agents' user ids, either visibility.
    pub fn agent_users(&self) -> impl Iterator<Item = &str> {
        self.participants
            .iter()
            .filter(|m| m.is_agent())
            .filter_map(|m| m.user.as_deref())
    }

    pub fn visible_agents(&self) -> usize {
        self.participants
            .iter()
            .filter(|m| m.is_agent() && m.visibility == Visibility::All)
            .count()
    }

    pub fn is_active(&self) -> bool {
        self.status != SessionStatus::Completed
    }

    /// What the session's state allows (the `capabilities` of its
    /// notifications): everything while chatting with a customer, the
    /// agent-side operations once the customer has left, nothing once
    /// completed.
    pub fn capabilities(&self) -> Vec<&'static str> {
        match self.status {
            SessionStatus::Completed => Vec::new(),
            SessionStatus::Chatting => {
                let customer = self.customer().is_some();
                ALL_CAPABILITIES
                    .iter()
                    .copied()
                    .filter(|op| customer || !NEEDS_CUSTOMER.contains(op))
                    .collect()
            }
        }
    }

    /// Whether `member` may perform `operation` now: allowed by the state,
    /// and not reserved to visible agents when `member` is a consultant.
    pub fn allows(&self, member: &Member, operation: &str) -> bool {
        let consultant = member.visibility == Visibility::Agents;
        self.capabilities().contains(&operation)
            && !(consultant && VISIBLE_AGENTS_ONLY.contains(&operation))
    }

    /// Numbers and stamps a new message, for a notification.
    pub fn push_message(&mut self, draft: MessageDraft, now_ms: u64) -> Message {
        let index = self.next_index;
        self.next_index += 1;
        let mut extra = Map::new();
        if let Some((key, value)) = draft.field {
            extra.insert(key.into(), Value::String(value));
        }
        extra.insert("timestamp".into(), Value::String(timestamp(now_ms)));
        extra.insert("timestampSeconds".into(), Value::from(now_ms));
        Message {
            index,
            kind: draft.kind.into(),
            from: Some(draft.from),
            visibility: draft.visibility,
            text: draft.text,
            extra,
        }
    }

    /// The `facebooksession` object of a state-change notification, with
    /// the seed's fields.
    pub fn session_object(&self, dir: &Directory) -> Session {
        let mut extra = Map::new();
        extra.insert("userData".into(), Value::Object(self.user_data.clone()));
        extra.insert(
            "receivedDate".into(),
            Value::String(timestamp(self.received_ms)),
        );
        extra.insert("facebooksessionType".into(), json!("Inbound"));
        let queues: Vec<String> = self.queue.iter().map(|q| dir.queue_uri(q)).collect();
        extra.insert("suggestedQueueUris".into(), json!(queues));
        extra.insert("capabilities".into(), json!(self.capabilities()));
        extra.insert("uri".into(), Value::String(dir.session_uri(&self.id)));
        // The seed's own spelling of this field.
        extra.insert("revelantResponseTemplateGroups".into(), json!([]));
        Session {
            id: self.id.clone(),
            state: Some(self.status.as_str().into()),
            participants: self
                .participants
                .iter()
                .map(|m| m.to_participant(dir))
                .collect(),
            extra,
        }
    }

    /// A FacebooksessionStateChangeMessage of this record.
    pub fn state_change(
        &self,
        kind: NotificationType,
        reference_id: Option<u64>,
        dir: &Directory,
    ) -> Notification {
        Notification {
            notification_type: kind,
            message_type: STATE_CHANGE_MESSAGE.into(),
            reference_id: reference_id.map(Value::from),
            facebooksession: Some(self.session_object(dir)),
            facebooksession_uri: None,
            facebooksession_path: None,
            messages: None,
            extra: Map::new(),
        }
    }

    /// A MessageLogUpdated (NewMessages) notification of this session.
    pub fn new_messages(
        &self,
        messages: Vec<Message>,
        reference_id: Option<u64>,
        dir: &Directory,
    ) -> Notification {
        Notification {
            notification_type: NotificationType::NewMessages,
            message_type: MESSAGE_LOG_UPDATED.into(),
            reference_id: reference_id.map(Value::from),
            facebooksession: None,
            facebooksession_uri: Some(dir.session_uri(&self.id)),
            facebooksession_path: Some(format!("/facebooksessions/{}", self.id)),
            messages: Some(messages),
            extra: Map::new(),
        }
    }
}

/// A message before it is numbered and stamped.
pub struct MessageDraft {
    pub kind: &'static str,
    pub from: Participant,
    pub visibility: Visibility,
    pub text: Option<String>,
    /// One more field, e.g. `url` of a PushUrl.
    pub field: Option<(&'static str, String)>,
}

/// `2015-10-20 16:14:41.000+0000`: the seed's timestamp format, in UTC.
pub fn timestamp(ms: u64) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]+0000"
    );
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(user: &str, visibility: Visibility) -> Member {
        Member {
            participant_id: format!("p-{user}"),
            kind: ParticipantType::Agent,
            user: Some(user.into()),
            nickname: user.to_uppercase(),
            visibility,
        }
    }

    fn customer() -> Member {
        Member {
            participant_id: "c".into(),
            kind: ParticipantType::Customer,
            user: None,
            nickname: "Vitaliy".into(),
            visibility: Visibility::All,
        }
    }

    #[test]
    fn timestamps_have_the_seed_format() {
        assert_eq!(timestamp(1445346881000), "2015-10-20 13:14:41.000+0000");
        assert_eq!(timestamp(1445346881042), "2015-10-20 13:14:41.042+0000");
    }

    #[test]
    fn capabilities_follow_state_and_role() {
        let mut r = SessionRecord::new("s".into(), 0, None);
        r.participants = vec![
            customer(),
            agent("a", Visibility::All),
            agent("b", Visibility::Agents),
        ];
        assert_eq!(r.capabilities(), ALL_CAPABILITIES.to_vec());
        let (a, b) = (r.participants[1].clone(), r.participants[2].clone());
        assert!(r.allows(&a, "Transfer"));
        assert!(!r.allows(&b, "Transfer"));
        assert!(
            r.allows(&b, "SendMessage"),
            "a consultant's message is Agents-only"
        );
        assert!(r.allows(&b, "Leave"));

        r.participants.remove(0);
        assert!(!r.allows(&a, "SendMessage"), "no customer to write to");
        assert!(r.allows(&a, "SendToAgents"));
        assert!(r.allows(&a, "Complete"));

        r.status = SessionStatus::Completed;
        assert!(r.capabilities().is_empty());
    }

    #[test]
    fn messages_are_numbered_per_session() {
        let dir = Directory::demo("http://h");
        let mut r = SessionRecord::new("s".into(), 0, None);
        let from = customer().to_participant(&dir);
        for i in 0..5 {
            let m = r.push_message(
                MessageDraft {
                    kind: "Text",
                    from: from.clone(),
                    visibility: Visibility::All,
                    text: Some(format!("m{i}")),
                    field: None,
                },
                1000,
            );
            assert_eq!(m.index, i + 1);
            assert_eq!(m.extra["timestampSeconds"], 1000);
        }
        assert_eq!(r.next_index, 6);
        assert!(from.uri.is_none(), "a customer has no user uri");
    }
}
