//! Per-session state as the gateway sees it, kept from the notifications.
//!
//! Owns, for one session: its current participants (who is an agent of it,
//! who is its customer), the latest session object and a bounded message
//! log (for snapshots), and the customer numbering (stream ids and message
//! indices). [`SessionState::apply`] is deterministic: every gateway that
//! applies the same notifications in the same order computes the same
//! audiences, customer views and customer ids.
//!
//! Before a session's participants are known (a NewMessages for a session
//! never seen before), agents are not in its audience: only supervisors and
//! the session's customer (its visible messages) receive it; it is kept in
//! the message log, so agents see it in their snapshot once they join.

use std::collections::{BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::model::{
    Message, Notification, NotificationType, ParticipantType, Session, MESSAGE_LOG_UPDATED,
    STATE_CHANGE_MESSAGE,
};
use crate::view::{self, CustomerCursor};

/// What applying one notification decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// Agents (user ids) who receive it: those in the session before or
    /// after it, so an agent sees the notification that adds them and the
    /// one in which they leave.
    pub audience: Vec<String>,
    /// The customer stream id and view, when the customer sees anything.
    pub customer: Option<(u64, Value)>,
}

/// A logged message with the index the customer was shown, if any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedMessage {
    pub message: Message,
    pub customer_index: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionState {
    pub id: String,
    /// The latest session object (with participants), for agents' snapshots.
    pub session: Option<Session>,
    /// Agent user ids currently in the session, either visibility.
    pub agents: BTreeSet<String>,
    /// The participant id of the session's customer.
    pub customer: Option<String>,
    /// The upstream `facebooksessionUri`, for agents' snapshots.
    pub uri: Option<String>,
    pub cursor: CustomerCursor,
    /// The last customer stream id handed out: ids run 1, 2, 3, ...
    pub customer_seq: u64,
    /// Bounded message log, oldest first.
    pub log: VecDeque<LoggedMessage>,
}

impl SessionState {
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            ..Self::default()
        }
    }

    /// Applies `n` (which belongs to this session) and says who receives it.
    pub fn apply(&mut self, n: &Notification, log_limit: usize) -> Applied {
        let mut audience: BTreeSet<String> = self.agents.clone();
        if let Some(session) = &n.facebooksession {
            self.take_session(session);
            audience.extend(self.agents.iter().cloned());
        }
        if self.uri.is_none() {
            self.uri = n.facebooksession_uri.clone();
        }
        let first_customer_index = self.cursor.messages_shown + 1;
        let customer = view::customer_view(n, &mut self.cursor).map(|v| {
            self.customer_seq += 1;
            (self.customer_seq, v)
        });
        if n.notification_type == NotificationType::NewMessages {
            self.log_messages(
                n.messages.as_deref().unwrap_or_default(),
                first_customer_index,
            );
            self.trim_log(log_limit);
        }
        Applied {
            audience: audience.into_iter().collect(),
            customer,
        }
    }

    fn take_session(&mut self, session: &Session) {
        self.agents = session
            .participants
            .iter()
            .filter(|p| p.is_agent())
            .filter_map(|p| p.user_id().map(str::to_owned))
            .collect();
        if let Some(c) = session
            .participants
            .iter()
            .find(|p| p.kind == ParticipantType::Customer)
        {
            self.customer = c.participant_key().map(str::to_owned);
        }
        self.session = Some(session.clone());
    }

    fn log_messages(&mut self, messages: &[Message], first_customer_index: u64) {
        let mut next = first_customer_index;
        for m in messages {
            let customer_index = view::is_visible(m).then(|| {
                next += 1;
                next - 1
            });
            self.log.push_back(LoggedMessage {
                message: m.clone(),
                customer_index,
            });
        }
    }

    fn trim_log(&mut self, limit: usize) {
        while self.log.len() > limit {
            self.log.pop_front();
        }
    }

    /// The agent's (and supervisor's) snapshot: a ParticipantsUpdated with
    /// the current state and, when there are messages, a NewMessages with
    /// the log.
    pub fn agent_snapshot(&self) -> Vec<Value> {
        let mut out = Vec::new();
        if let Some(session) = &self.session {
            out.push(json!({
                "notificationType": "ParticipantsUpdated",
                "messageType": STATE_CHANGE_MESSAGE,
                "facebooksession": session,
            }));
        }
        if !self.log.is_empty() {
            let messages: Vec<&Message> = self.log.iter().map(|l| &l.message).collect();
            let mut n = json!({
                "notificationType": "NewMessages",
                "messageType": MESSAGE_LOG_UPDATED,
                "facebooksessionPath": format!("/facebooksessions/{}", self.id),
                "messages": messages,
            });
            if let Some(uri) = &self.uri {
                n["facebooksessionUri"] = Value::String(uri.clone());
            }
            out.push(n);
        }
        out
    }

    /// The customer's snapshot: the customer views of the same two, exactly
    /// as the customer was shown them (the last session view sent, the
    /// messages with the indices they had the first time).
    pub fn customer_snapshot(&self) -> Vec<Value> {
        let mut out = Vec::new();
        if let Some(session) = &self.cursor.last_session {
            out.push(json!({
                "notificationType": "ParticipantsUpdated",
                "messageType": STATE_CHANGE_MESSAGE,
                "facebooksession": session,
            }));
        }
        let messages: Vec<Value> = self
            .log
            .iter()
            .filter_map(|l| {
                l.customer_index
                    .map(|i| view::project_messages(std::slice::from_ref(&l.message), i))
            })
            .flatten()
            .collect();
        if !messages.is_empty() {
            out.push(json!({
                "notificationType": "NewMessages",
                "messageType": MESSAGE_LOG_UPDATED,
                "facebooksessionPath": format!("/facebooksessions/{}", self.id),
                "messages": messages,
            }));
        }
        out
    }

    /// Whether `agent` (a user id) is a participant now.
    pub fn has_agent(&self, agent: &str) -> bool {
        self.agents.contains(agent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> Notification {
        let path = format!("{}/proto-samples/{name}", env!("CARGO_MANIFEST_DIR"));
        Notification::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn consult_reaches_both_agents_and_not_the_customer_twice() {
        let mut s = SessionState::new("0002EaAY01MT007C");
        let first = s.apply(&sample("consult-participants-updated.json"), 100);
        assert_eq!(
            first.audience,
            vec![
                "5e101708f14442c7ab79814bb4f799b2".to_string(),
                "e2c90c960d3d40c79684818983ceb314".to_string()
            ]
        );
        assert_eq!(first.customer.as_ref().map(|c| c.0), Some(1));
        let second = s.apply(&sample("consult-new-messages.json"), 100);
        assert_eq!(second.audience.len(), 2);
        assert_eq!(second.customer, None);
        assert_eq!(s.customer.as_deref(), Some("007356263E140144"));
        assert_eq!(s.customer_snapshot().len(), 1, "no visible messages yet");
        assert_eq!(s.agent_snapshot().len(), 2);
    }
}
