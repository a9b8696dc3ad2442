//! The notification model: the Genesys Web Services facebooksession shapes
//! as serde types.
//!
//! Owns parsing and validation of one upstream notification. Every field
//! that routing needs is typed (session id, participants, visibility,
//! messages); everything else is kept verbatim in `extra` maps, so a
//! notification round-trips without losing a field. It does not decide who
//! sees what (that is `view` and `session`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// CometD channel of every notification frame.
pub const CHANNEL: &str = "/v2/me/facebooksession";
/// `messageType` of state-change notifications.
pub const STATE_CHANGE_MESSAGE: &str = "FacebooksessionStateChangeMessage";
/// `messageType` of NewMessages notifications.
pub const MESSAGE_LOG_UPDATED: &str = "MessageLogUpdated";

/// Why an upstream notification was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("invalid notification: {0}")]
    Shape(String),
    #[error("notification names no session (facebooksession.id, facebooksessionPath or facebooksessionUri)")]
    NoSession,
    #[error("{0} carries no {1}")]
    Missing(&'static str, &'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NotificationType {
    StatusChange,
    ParticipantsUpdated,
    PropertiesUpdated,
    Error,
    NewMessages,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Visibility {
    All,
    Agents,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ParticipantType {
    Customer,
    Agent,
}

/// One upstream notification (SPEC section 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub notification_type: NotificationType,
    pub message_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_id: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facebooksession: Option<Session>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facebooksession_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facebooksession_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<Message>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The `facebooksession` object of a state-change notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default)]
    pub participants: Vec<Participant>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A session participant, as in the seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub kind: ParticipantType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nickname: Option<String>,
    pub visibility: Visibility,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One entry of a session's message log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub index: u64,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Participant>,
    pub visibility: Visibility,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Notification {
    /// Parses and validates one notification from JSON text.
    pub fn parse(text: &str) -> Result<Self, ModelError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| ModelError::Json(e.to_string()))?;
        Self::from_value(value)
    }

    /// Validates one notification given as a JSON value.
    pub fn from_value(value: Value) -> Result<Self, ModelError> {
        if !value.is_object() {
            return Err(ModelError::Shape("expected a JSON object".into()));
        }
        let n: Notification =
            serde_json::from_value(value).map_err(|e| ModelError::Shape(e.to_string()))?;
        n.validate()?;
        Ok(n)
    }

    /// Parses and validates one notification straight from JSON bytes,
    /// without building a `Value` first (about half the work). `None` when
    /// that fails: [`Notification::from_value`] then says precisely why.
    pub fn from_slice_fast(bytes: &[u8]) -> Option<Self> {
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace())?;
        if *first != b'{' {
            return None;
        }
        let n: Notification = serde_json::from_slice(bytes).ok()?;
        n.validate().ok()?;
        Some(n)
    }

    /// Checks what the types cannot: required parts per notification type,
    /// a session id, participants with a key.
    pub fn validate(&self) -> Result<(), ModelError> {
        match self.notification_type {
            NotificationType::NewMessages if self.messages.is_none() => {
                return Err(ModelError::Missing("NewMessages", "messages"));
            }
            NotificationType::ParticipantsUpdated | NotificationType::StatusChange
                if self.facebooksession.is_none() =>
            {
                return Err(ModelError::Missing("a state change", "facebooksession"));
            }
            _ => {}
        }
        let session_id = self.session_id().ok_or(ModelError::NoSession)?;
        if session_id.is_empty() || session_id.len() > 256 {
            return Err(ModelError::Shape(
                "session id must be 1 to 256 characters".into(),
            ));
        }
        if let Some(session) = &self.facebooksession {
            for p in &session.participants {
                if p.participant_key().is_none() {
                    return Err(ModelError::Shape(
                        "a participant has neither participantId nor id".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The session this notification belongs to: `facebooksession.id`, else
    /// the last segment of `facebooksessionPath` or `facebooksessionUri`.
    pub fn session_id(&self) -> Option<&str> {
        if let Some(s) = &self.facebooksession {
            return Some(s.id.as_str());
        }
        self.facebooksession_path
            .as_deref()
            .or(self.facebooksession_uri.as_deref())
            .and_then(last_segment)
    }

    /// The participants carried by a state-change notification.
    pub fn participants(&self) -> Option<&[Participant]> {
        self.facebooksession
            .as_ref()
            .map(|s| s.participants.as_slice())
    }

    /// Serializes to JSON bytes. Infallible for these types: every map key
    /// is a string and every value came from JSON.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl Participant {
    /// The key that identifies this participant within its session.
    pub fn participant_key(&self) -> Option<&str> {
        self.participant_id.as_deref().or(self.id.as_deref())
    }

    /// The user an agent participant stands for: the userId of its
    /// `/users/{userId}` path, else the last segment of its `uri`, else its
    /// `id`. Tokens carry this as `sub`.
    pub fn user_id(&self) -> Option<&str> {
        self.path
            .as_deref()
            .and_then(|p| p.trim_end_matches('/').strip_prefix("/users/"))
            .filter(|s| !s.is_empty() && !s.contains('/'))
            .or_else(|| self.uri.as_deref().and_then(last_segment))
            .or(self.id.as_deref())
            .or(self.participant_id.as_deref())
    }

    pub fn is_agent(&self) -> bool {
        self.kind == ParticipantType::Agent
    }
}

fn last_segment(s: &str) -> Option<&str> {
    s.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|seg| !seg.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/proto-samples/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn seed_samples_round_trip_without_losing_a_field() {
        for name in [
            "consult-participants-updated.json",
            "consult-new-messages.json",
        ] {
            let text = sample(name);
            let original: Value = serde_json::from_str(&text).unwrap();
            let parsed = Notification::parse(&text).unwrap();
            let again: Value = serde_json::from_slice(&parsed.to_json_bytes()).unwrap();
            assert_eq!(original, again, "{name} lost or changed a field");
        }
    }

    #[test]
    fn typed_access_to_routing_fields() {
        let n = Notification::parse(&sample("consult-participants-updated.json")).unwrap();
        assert_eq!(n.session_id(), Some("0002EaAY01MT007C"));
        let parts = n.participants().unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[1].user_id(), Some("e2c90c960d3d40c79684818983ceb314"));
        assert_eq!(parts[1].visibility, Visibility::Agents);
        assert_eq!(parts[0].user_id(), Some("007356263E140144"));

        let m = Notification::parse(&sample("consult-new-messages.json")).unwrap();
        assert_eq!(m.session_id(), Some("0002EaAY01MT007C"));
        assert_eq!(
            m.messages.as_ref().unwrap()[0].visibility,
            Visibility::Agents
        );
    }

    #[test]
    fn bad_notifications_are_refused_with_a_reason() {
        assert!(matches!(Notification::parse("{"), Err(ModelError::Json(_))));
        assert!(matches!(
            Notification::parse(r#"{"notificationType":"Nope","messageType":"x"}"#),
            Err(ModelError::Shape(_))
        ));
        assert_eq!(
            Notification::parse(
                r#"{"notificationType":"NewMessages","messageType":"MessageLogUpdated","messages":[]}"#
            ),
            Err(ModelError::NoSession)
        );
        assert!(Notification::parse(
            r#"{"notificationType":"NewMessages","messageType":"MessageLogUpdated","facebooksessionPath":"/facebooksessions/s1","messages":[{"index":1,"type":"Text","visibility":"Secret"}]}"#
        )
        .is_err());
    }
}
