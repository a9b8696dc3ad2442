//! A session as the engine keeps it, and the notifications built from it.
//!
//! Owns [`SessionRecord`] (participants and the part each plays, state,
//! userData, comment, the queue it was placed in, the next message index;
//! the message log is kept by the store) and the Genesys Web Services
//! shapes of the seed: the `facebooksession` object of a state-change
//! notification and the messages of a NewMessages notification. What each
//! agent may do is [`capabilities`](super::capabilities). Pure: no I/O,
//! no clock (the caller passes the time).

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::model::{
    Message, Notification, NotificationType, Participant, ParticipantType, Session, Visibility,
    MESSAGE_LOG_UPDATED, STATE_CHANGE_MESSAGE,
};

use super::capabilities::{self, Part};
use super::directory::Directory;

/// The session's state, as `facebooksession.state` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionStatus {
    /// Offered to an agent who has not accepted it yet (auto-accept off):
    /// the customer waits, the invited agent may Accept or Reject.
    Invited,
    /// A customer and at least one agent, or agents wrapping up after the
    /// customer (or the chat) ended.
    Chatting,
    /// Every agent it could be offered to rejected it: it waits in its
    /// queue, with the customer alone.
    Queued,
    /// Ended: no participant is left and no operation applies.
    Completed,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Invited => "Invited",
            SessionStatus::Chatting => "Chatting",
            SessionStatus::Queued => "Queued",
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
    /// The participant id of the agent offered the session, until they
    /// Accept or Reject it (listed with visibility `Agents`, so the
    /// customer does not see them before they join).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invited: Option<String>,
    /// Participant ids of agents who left the chat but still hold the
    /// interaction until Complete (listed with visibility `Agents`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wrapping_up: Vec<String>,
    /// Agents (user ids) who rejected the session: it is not offered to
    /// them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected_by: Vec<String>,
    /// AddComment's text: agents see it, a customer never does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The queue (id) the interaction was placed in: by Complete with
    /// `queueName`, or by routing when no agent is left to offer it to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placed_in: Option<String>,
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
            invited: None,
            wrapping_up: Vec::new(),
            rejected_by: Vec::new(),
            comment: None,
            placed_in: None,
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

    /// Agents in the chat whom the customer sees.
    pub fn visible_agents(&self) -> usize {
        self.participants
            .iter()
            .filter(|m| capabilities::part(self, m) == Part::Visible && m.is_agent())
            .count()
    }

    /// Agents consulting (visibility `Agents`, in the chat).
    pub fn consultants(&self) -> Vec<Member> {
        self.participants
            .iter()
            .filter(|m| m.is_agent() && capabilities::part(self, m) == Part::Consultant)
            .cloned()
            .collect()
    }

    pub fn is_active(&self) -> bool {
        self.status != SessionStatus::Completed
    }

    /// The `capabilities` of this record's notifications (its lead
    /// agent's; see [`capabilities`]).
    pub fn capabilities(&self) -> Vec<&'static str> {
        capabilities::shared(self)
    }

    /// Whether `member` may perform `operation` now.
    pub fn allows(&self, member: &Member, operation: &str) -> bool {
        capabilities::of(self, member).contains(&operation)
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
    /// the seed's fields (and `comment` once AddComment set one).
    pub fn session_object(&self, dir: &Directory) -> Session {
        self.session_object_with(dir, self.capabilities())
    }

    /// The `facebooksession` object as agent `member` is answered it: with
    /// their own capabilities.
    pub fn session_object_for(&self, dir: &Directory, member: &Member) -> Session {
        self.session_object_with(dir, capabilities::of(self, member))
    }

    fn session_object_with(&self, dir: &Directory, capabilities: Vec<&'static str>) -> Session {
        let mut extra = Map::new();
        extra.insert("userData".into(), Value::Object(self.user_data.clone()));
        extra.insert(
            "receivedDate".into(),
            Value::String(timestamp(self.received_ms)),
        );
        extra.insert("facebooksessionType".into(), json!("Inbound"));
        let queues: Vec<String> = self.queue.iter().map(|q| dir.queue_uri(q)).collect();
        extra.insert("suggestedQueueUris".into(), json!(queues));
        extra.insert("capabilities".into(), json!(capabilities));
        if let Some(comment) = &self.comment {
            extra.insert("comment".into(), json!(comment));
        }
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
    fn capabilities_follow_state_and_each_agents_part() {
        let mut r = SessionRecord::new("s".into(), 0, None);
        r.participants = vec![
            customer(),
            agent("a", Visibility::All),
            agent("b", Visibility::Agents),
        ];
        let (a, b) = (r.participants[1].clone(), r.participants[2].clone());
        let owner = capabilities::of(&r, &a);
        assert_eq!(r.capabilities(), owner, "notifications carry the lead's");
        assert!(owner.contains(&"Transfer") && owner.contains(&"InFocus"));
        assert!(owner.contains(&"RemoveParticipantFromConference"));
        let consultant = capabilities::of(&r, &b);
        for op in [
            "Transfer",
            "Invite",
            "Consult",
            "Complete",
            "RemoveParticipantFromConference",
        ] {
            assert!(!consultant.contains(&op), "a consultant's list has no {op}");
        }
        assert!(
            r.allows(&b, "SendMessage"),
            "a consultant's line is Agents-only"
        );
        assert!(r.allows(&b, "Leave") && r.allows(&b, "AddComment"));

        r.participants.truncate(2);
        assert!(
            !r.allows(&a, "RemoveParticipantFromConference"),
            "no consultant to remove"
        );
        r.participants.remove(0);
        assert!(!r.allows(&a, "SendMessage"), "no customer to write to");
        assert!(r.allows(&a, "SendToAgents") && r.allows(&a, "Complete"));

        r.wrapping_up.push(a.participant_id.clone());
        assert_eq!(
            capabilities::of(&r, &a),
            [
                "SetInFocus",
                "InFocus",
                "SetDisposition",
                "AttachUserData",
                "DeleteUserData",
                "UpdateUserData",
                "AddComment",
                "Complete"
            ]
        );
        r.wrapping_up.clear();

        r.status = SessionStatus::Invited;
        r.invited = Some(a.participant_id.clone());
        assert_eq!(capabilities::of(&r, &a), ["Accept", "Reject"]);
        assert_eq!(r.capabilities(), ["Accept", "Reject"]);

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
