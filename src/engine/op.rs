//! The agent operations: parsing a request body into an [`Op`] (the
//! `operationName` dispatch) and the pure functions that apply each one
//! to a session record, producing the next record and its notifications.
//!
//! Visibility rules kept here: whatever a consulting agent (a participant
//! of visibility `Agents`) does is visible to agents only; SendToAgents and
//! the to-agents typing are `Agents`; joins and leaves carry the
//! visibility of the participant. Notification order: a participant who
//! joins is in the ParticipantsUpdated before its ParticipantJoined; one
//! who leaves gets its ParticipantLeft before the ParticipantsUpdated that
//! removes it, so every agent sees both ends of their own participation.

use serde_json::{Map, Value};

use super::directory::{Directory, Target};
use super::error::OpError;
use super::record::{Member, MessageDraft, SessionRecord, SessionStatus};
use super::store::Change;
use crate::model::{Message, Notification, NotificationType, ParticipantType, Visibility};

/// Longest text of a message, in characters.
pub const MAX_TEXT_CHARS: usize = 8192;
/// Longest URL of SendUrl.
const MAX_URL_CHARS: usize = 2048;
/// userData keys a session may hold.
pub const MAX_USER_DATA_KEYS: usize = 256;
/// Longest userData key.
const MAX_KEY_CHARS: usize = 256;
/// The userData key of SetDisposition when no `dispositionKey` is given.
pub const DEFAULT_DISPOSITION_KEY: &str = "Disposition";

/// A parsed agent operation with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Consult(String),
    Transfer(String),
    Invite(String),
    Leave,
    Complete,
    SendMessage(String),
    SendUrl(String),
    SendToAgents(String),
    Typing { started: bool, to_agents: bool },
    SetInFocus,
    SetDisposition { disposition: String, key: String },
    AttachUserData(Map<String, Value>),
    UpdateUserData(Map<String, Value>),
    DeleteUserData(Vec<String>),
    RemoveParticipantFromConference(ParticipantRef),
}

/// How RemoveParticipantFromConference names the agent to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParticipantRef {
    Id(String),
    /// A `targetUri` / `targetPath` of a user.
    User(String),
}

/// Where Consult, Transfer and Invite bring someone from, resolved before
/// the operation runs: a user, or a queue's agents in routing order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    None,
    User(Candidate),
    Queue {
        name: String,
        agents: Vec<Candidate>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub user: String,
    pub nickname: String,
}

/// What an operation function needs besides the record.
pub struct Ctx<'a> {
    pub dir: &'a Directory,
    pub now_ms: u64,
    pub reference_id: Option<u64>,
    pub log_limit: usize,
    /// The participant id a joining agent gets.
    pub new_participant_id: String,
}

impl Op {
    /// The `operationName` of a body, checked to be a known operation.
    pub fn name_of(body: &Map<String, Value>) -> Result<&'static str, OpError> {
        let name = match body.get("operationName") {
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(OpError::bad("operationName must be a string")),
            None => return Err(OpError::bad("missing operationName")),
        };
        super::record::ALL_CAPABILITIES
            .iter()
            .copied()
            .find(|n| *n == name)
            .ok_or_else(|| OpError::bad(format!("unknown operationName {name:?}")))
    }

    /// Parses the parameters of operation `name` (unknown ones ignored).
    pub fn parse(name: &str, body: &Map<String, Value>) -> Result<Op, OpError> {
        let op = match name {
            "Consult" => Op::Consult(target(body)?),
            "Transfer" => Op::Transfer(target(body)?),
            "Invite" => Op::Invite(target(body)?),
            "Leave" => Op::Leave,
            "Complete" => Op::Complete,
            "SendMessage" => Op::SendMessage(text(body, "text", MAX_TEXT_CHARS)?),
            "SendToAgents" => Op::SendToAgents(text(body, "text", MAX_TEXT_CHARS)?),
            "SendUrl" => Op::SendUrl(url(body)?),
            "SendStartTypingNotification" => Op::Typing {
                started: true,
                to_agents: false,
            },
            "SendStopTypingNotification" => Op::Typing {
                started: false,
                to_agents: false,
            },
            "SendStartTypingToAgentsNotification" => Op::Typing {
                started: true,
                to_agents: true,
            },
            "SendStopTypingToAgentsNotification" => Op::Typing {
                started: false,
                to_agents: true,
            },
            "SetInFocus" => Op::SetInFocus,
            "SetDisposition" => Op::SetDisposition {
                disposition: text(body, "disposition", 256)?,
                key: match body.get("dispositionKey") {
                    None | Some(Value::Null) => DEFAULT_DISPOSITION_KEY.into(),
                    Some(_) => text(body, "dispositionKey", MAX_KEY_CHARS)?,
                },
            },
            "AttachUserData" => Op::AttachUserData(user_data(body)?),
            "UpdateUserData" => Op::UpdateUserData(user_data(body)?),
            "DeleteUserData" => Op::DeleteUserData(keys(body)?),
            "RemoveParticipantFromConference" => {
                Op::RemoveParticipantFromConference(participant_ref(body)?)
            }
            other => return Err(OpError::bad(format!("unknown operationName {other:?}"))),
        };
        Ok(op)
    }

    /// The target of Consult, Transfer or Invite, if any.
    pub fn target(&self) -> Option<&str> {
        match self {
            Op::Consult(t) | Op::Transfer(t) | Op::Invite(t) => Some(t),
            _ => None,
        }
    }
}

fn target(body: &Map<String, Value>) -> Result<String, OpError> {
    for key in ["targetUri", "targetPath"] {
        match body.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => return Ok(s.trim().to_owned()),
            None | Some(Value::Null) => {}
            Some(_) => return Err(OpError::bad(format!("{key} must be a non-empty string"))),
        }
    }
    Err(OpError::bad("targetUri or targetPath is mandatory"))
}

/// A mandatory, non-blank string parameter of at most `max` characters.
pub fn text(body: &Map<String, Value>, key: &str, max: usize) -> Result<String, OpError> {
    match body.get(key) {
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(OpError::bad(format!("{key} must not be empty")))
        }
        Some(Value::String(s)) if s.chars().count() > max => Err(OpError::bad(format!(
            "{key} is longer than {max} characters"
        ))),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(OpError::bad(format!("{key} must be a string"))),
        None => Err(OpError::bad(format!("missing {key}"))),
    }
}

fn url(body: &Map<String, Value>) -> Result<String, OpError> {
    let url = text(body, "url", MAX_URL_CHARS)?;
    let well_formed = (url.starts_with("http://") || url.starts_with("https://"))
        && url.len() > "https://".len()
        && !url.chars().any(char::is_whitespace);
    if well_formed {
        Ok(url)
    } else {
        Err(OpError::bad("url must be an http:// or https:// URL"))
    }
}

fn user_data(body: &Map<String, Value>) -> Result<Map<String, Value>, OpError> {
    match body.get("userData") {
        Some(Value::Object(m)) if m.is_empty() => Err(OpError::bad("userData is empty")),
        Some(Value::Object(m)) => {
            if let Some(k) = m
                .keys()
                .find(|k| k.is_empty() || k.chars().count() > MAX_KEY_CHARS)
            {
                return Err(OpError::bad(format!(
                    "userData key {k:?} must be 1 to {MAX_KEY_CHARS} characters"
                )));
            }
            if let Some((k, _)) = m.iter().find(|(_, v)| v.is_object() || v.is_array()) {
                return Err(OpError::bad(format!(
                    "userData value of {k:?} must be a string, number, boolean or null"
                )));
            }
            Ok(m.clone())
        }
        Some(_) => Err(OpError::bad("userData must be an object")),
        None => Err(OpError::bad("missing userData")),
    }
}

fn keys(body: &Map<String, Value>) -> Result<Vec<String>, OpError> {
    let Some(value) = body.get("keys") else {
        return Err(OpError::bad("missing keys"));
    };
    let keys: Option<Vec<String>> = value.as_array().and_then(|a| {
        a.iter()
            .map(|k| k.as_str().filter(|s| !s.is_empty()).map(str::to_owned))
            .collect()
    });
    match keys {
        Some(k) if !k.is_empty() => Ok(k),
        _ => Err(OpError::bad("keys must be a non-empty array of strings")),
    }
}

fn participant_ref(body: &Map<String, Value>) -> Result<ParticipantRef, OpError> {
    match body.get("participantId") {
        Some(Value::String(s)) if !s.is_empty() => return Ok(ParticipantRef::Id(s.clone())),
        None | Some(Value::Null) => {}
        Some(_) => return Err(OpError::bad("participantId must be a non-empty string")),
    }
    target(body)
        .map(ParticipantRef::User)
        .map_err(|_| OpError::bad("participantId (or targetUri / targetPath) is mandatory"))
}

/// Resolves the target of Consult, Transfer or Invite against the
/// directory; a queue's agents come ordered by `load` (fewest active
/// sessions first, ties in directory order).
pub fn resolve(
    op: &Op,
    dir: &Directory,
    load: &std::collections::HashMap<String, usize>,
) -> Result<Resolved, OpError> {
    let Some(t) = op.target() else {
        return Ok(Resolved::None);
    };
    match dir.resolve(t).map_err(OpError::BadRequest)? {
        Target::User(a) => Ok(Resolved::User(Candidate {
            user: a.id.clone(),
            nickname: a.nickname.clone(),
        })),
        Target::Queue(q) => Ok(Resolved::Queue {
            name: q.name.clone(),
            agents: by_load(q.agents.iter().map(String::as_str), dir, load),
        }),
    }
}

/// `agents` ordered by active sessions, ties in directory order.
pub fn by_load<'a>(
    agents: impl Iterator<Item = &'a str>,
    dir: &Directory,
    load: &std::collections::HashMap<String, usize>,
) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = agents
        .filter_map(|id| dir.agent(id))
        .map(|a| Candidate {
            user: a.id.clone(),
            nickname: a.nickname.clone(),
        })
        .collect();
    out.sort_by_key(|c| (load.get(&c.user).copied().unwrap_or(0), dir.rank(&c.user)));
    out
}

/// A change being built: the next record and its notifications.
struct Draft<'a> {
    next: SessionRecord,
    ctx: &'a Ctx<'a>,
    notifications: Vec<Notification>,
}

impl<'a> Draft<'a> {
    fn new(record: &SessionRecord, ctx: &'a Ctx<'a>) -> Self {
        let mut next = record.clone();
        next.updated_ms = ctx.now_ms;
        Self {
            next,
            ctx,
            notifications: Vec::new(),
        }
    }

    fn message(
        &mut self,
        kind: &'static str,
        from: &Member,
        visibility: Visibility,
        text: Option<String>,
        field: Option<(&'static str, String)>,
    ) -> Message {
        let draft = MessageDraft {
            kind,
            from: from.to_participant(self.ctx.dir),
            visibility,
            text,
            field,
        };
        self.next
            .push_message(draft, self.ctx.now_ms, self.ctx.log_limit)
    }

    fn emit_messages(&mut self, messages: Vec<Message>) {
        let n = self
            .next
            .new_messages(messages, self.ctx.reference_id, self.ctx.dir);
        self.notifications.push(n);
    }

    fn emit_state(&mut self, kind: NotificationType) {
        let n = self
            .next
            .state_change(kind, self.ctx.reference_id, self.ctx.dir);
        self.notifications.push(n);
    }

    fn remove(&mut self, participant_id: &str) {
        self.next
            .participants
            .retain(|m| m.participant_id != participant_id);
    }

    /// Ends the session: nobody is left in it.
    fn complete(&mut self) {
        self.next.status = SessionStatus::Completed;
        self.next.participants.clear();
        self.emit_state(NotificationType::StatusChange);
    }

    fn done(self) -> Change<()> {
        Change {
            record: self.next,
            notifications: self.notifications,
            output: (),
        }
    }
}

/// Applies `op` by agent participant `me` (capabilities already checked).
pub fn apply(
    record: &SessionRecord,
    me: &Member,
    op: &Op,
    target: &Resolved,
    ctx: &Ctx<'_>,
) -> Result<Change<()>, OpError> {
    let mut d = Draft::new(record, ctx);
    match op {
        Op::Consult(_) => join(&mut d, me, target, Visibility::Agents, "consult")?,
        Op::Invite(_) => join(&mut d, me, target, Visibility::All, "invite")?,
        Op::Transfer(_) => transfer(&mut d, me, target)?,
        Op::Leave => leave(&mut d, me),
        Op::Complete => d.complete(),
        Op::RemoveParticipantFromConference(who) => remove_participant(&mut d, me, who)?,
        Op::SendMessage(text) => {
            let m = d.message("Text", me, me.visibility, Some(text.clone()), None);
            d.emit_messages(vec![m]);
        }
        Op::SendToAgents(text) => {
            let m = d.message("Text", me, Visibility::Agents, Some(text.clone()), None);
            d.emit_messages(vec![m]);
        }
        Op::SendUrl(url) => {
            let m = d.message(
                "PushUrl",
                me,
                me.visibility,
                None,
                Some(("url", url.clone())),
            );
            d.emit_messages(vec![m]);
        }
        Op::Typing { started, to_agents } => {
            let kind = if *started {
                "TypingStarted"
            } else {
                "TypingStopped"
            };
            let visibility = if *to_agents {
                Visibility::Agents
            } else {
                me.visibility
            };
            let m = d.message(kind, me, visibility, None, None);
            d.emit_messages(vec![m]);
        }
        // Focus is the desktop's own view: acknowledged, nothing shared
        // changes, so nothing is announced.
        Op::SetInFocus => {}
        Op::SetDisposition { disposition, key } => {
            set_user_data(&mut d, [(key.clone(), Value::String(disposition.clone()))])?;
        }
        Op::AttachUserData(data) | Op::UpdateUserData(data) => {
            set_user_data(&mut d, data.clone())?;
        }
        Op::DeleteUserData(keys) => {
            for k in keys {
                d.next.user_data.remove(k);
            }
            d.emit_state(NotificationType::PropertiesUpdated);
        }
    }
    Ok(d.done())
}

/// Consult (visibility `Agents`) or Invite (`All`): the target joins.
/// Inviting a consultant brings them into the conference (visible).
fn join(
    d: &mut Draft<'_>,
    me: &Member,
    target: &Resolved,
    visibility: Visibility,
    what: &str,
) -> Result<(), OpError> {
    let joining = match pick(&d.next, target, what)? {
        Pick::New(c) => add_agent(d, c, visibility),
        Pick::Present(m) if m.participant_id == me.participant_id => {
            return Err(OpError::bad(format!("cannot {what} yourself")))
        }
        Pick::Present(m) if visibility == Visibility::All && m.visibility == Visibility::Agents => {
            promote(d, &m.participant_id)
        }
        Pick::Present(m) => {
            return Err(OpError::bad(format!(
                "{} is already a participant of this session",
                m.nickname
            )))
        }
    };
    d.emit_state(NotificationType::ParticipantsUpdated);
    let m = d.message("ParticipantJoined", &joining, visibility, None, None);
    d.emit_messages(vec![m]);
    Ok(())
}

/// Transfer: the target becomes visible, then `me` leaves.
fn transfer(d: &mut Draft<'_>, me: &Member, target: &Resolved) -> Result<(), OpError> {
    let (joining, announce) = match pick(&d.next, target, "transfer")? {
        Pick::Present(m) if m.participant_id == me.participant_id => {
            return Err(OpError::bad("cannot transfer to yourself"))
        }
        Pick::Present(m) if m.visibility == Visibility::Agents => {
            (promote(d, &m.participant_id), true)
        }
        Pick::Present(m) => (m, false),
        Pick::New(c) => (add_agent(d, c, Visibility::All), true),
    };
    d.emit_state(NotificationType::ParticipantsUpdated);
    let mut messages = Vec::new();
    if announce {
        messages.push(d.message("ParticipantJoined", &joining, Visibility::All, None, None));
    }
    messages.push(d.message("ParticipantLeft", me, me.visibility, None, None));
    d.emit_messages(messages);
    d.remove(&me.participant_id);
    d.emit_state(NotificationType::ParticipantsUpdated);
    Ok(())
}

/// Leave: a consultant or one of several visible agents just goes; the
/// last visible agent leaving ends the session.
fn leave(d: &mut Draft<'_>, me: &Member) {
    let m = d.message("ParticipantLeft", me, me.visibility, None, None);
    d.emit_messages(vec![m]);
    let last_visible = me.visibility == Visibility::All && d.next.visible_agents() == 1;
    if last_visible {
        d.complete();
    } else {
        d.remove(&me.participant_id);
        d.emit_state(NotificationType::ParticipantsUpdated);
    }
}

fn remove_participant(d: &mut Draft<'_>, me: &Member, who: &ParticipantRef) -> Result<(), OpError> {
    let found = match who {
        ParticipantRef::Id(id) => d.next.member(id).cloned(),
        ParticipantRef::User(t) => match d.ctx.dir.resolve(t).map_err(OpError::BadRequest)? {
            Target::User(a) => d.next.agent(&a.id).cloned(),
            Target::Queue(_) => return Err(OpError::bad("a queue is not a participant")),
        },
    };
    let target = found.ok_or_else(|| OpError::bad("no such participant in this session"))?;
    if target.kind != ParticipantType::Agent {
        return Err(OpError::bad(
            "only an agent can be removed from a conference",
        ));
    }
    if target.participant_id == me.participant_id {
        return Err(OpError::bad("use Leave to leave the session yourself"));
    }
    let m = d.message("ParticipantLeft", &target, target.visibility, None, None);
    d.emit_messages(vec![m]);
    d.remove(&target.participant_id);
    d.emit_state(NotificationType::ParticipantsUpdated);
    Ok(())
}

fn set_user_data(
    d: &mut Draft<'_>,
    data: impl IntoIterator<Item = (String, Value)>,
) -> Result<(), OpError> {
    for (k, v) in data {
        d.next.user_data.insert(k, v);
    }
    if d.next.user_data.len() > MAX_USER_DATA_KEYS {
        return Err(OpError::bad(format!(
            "userData would exceed {MAX_USER_DATA_KEYS} keys"
        )));
    }
    d.emit_state(NotificationType::PropertiesUpdated);
    Ok(())
}

enum Pick<'a> {
    New(&'a Candidate),
    Present(Member),
}

/// The agent a target names: a user (in the session or not), or the
/// first agent of a queue (in load order) not already in the session.
fn pick<'a>(record: &SessionRecord, target: &'a Resolved, what: &str) -> Result<Pick<'a>, OpError> {
    match target {
        Resolved::User(c) => Ok(match record.agent(&c.user) {
            Some(m) => Pick::Present(m.clone()),
            None => Pick::New(c),
        }),
        Resolved::Queue { name, agents } => agents
            .iter()
            .find(|c| record.agent(&c.user).is_none())
            .map(Pick::New)
            .ok_or_else(|| {
                OpError::bad(format!(
                    "every agent of queue {name} is already in this session: none to {what}"
                ))
            }),
        Resolved::None => Err(OpError::bad("targetUri or targetPath is mandatory")),
    }
}

fn add_agent(d: &mut Draft<'_>, c: &Candidate, visibility: Visibility) -> Member {
    let m = Member {
        participant_id: d.ctx.new_participant_id.clone(),
        kind: ParticipantType::Agent,
        user: Some(c.user.clone()),
        nickname: c.nickname.clone(),
        visibility,
    };
    d.next.participants.push(m.clone());
    m
}

/// Makes a consultant visible to the customer from now on.
fn promote(d: &mut Draft<'_>, participant_id: &str) -> Member {
    let mut promoted = None;
    for m in &mut d.next.participants {
        if m.participant_id == participant_id {
            m.visibility = Visibility::All;
            promoted = Some(m.clone());
        }
    }
    // The caller found this participant in the same record.
    promoted.unwrap_or_else(|| Member {
        participant_id: participant_id.to_owned(),
        kind: ParticipantType::Agent,
        user: None,
        nickname: String::new(),
        visibility: Visibility::All,
    })
}

/// A customer operation.
#[derive(Debug, Clone, PartialEq)]
pub enum CustomerOp {
    SendMessage(String),
    Typing(bool),
    Leave,
}

impl CustomerOp {
    pub fn parse(body: &Map<String, Value>) -> Result<Self, OpError> {
        let name = match body.get("operationName") {
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(OpError::bad("operationName must be a string")),
            None => return Err(OpError::bad("missing operationName")),
        };
        Ok(match name {
            "SendMessage" => CustomerOp::SendMessage(text(body, "text", MAX_TEXT_CHARS)?),
            "SendStartTypingNotification" => CustomerOp::Typing(true),
            "SendStopTypingNotification" => CustomerOp::Typing(false),
            "Leave" => CustomerOp::Leave,
            other => {
                return Err(OpError::bad(format!(
                    "unknown operationName {other:?}: a customer may SendMessage, \
                     SendStartTypingNotification, SendStopTypingNotification or Leave"
                )))
            }
        })
    }
}

/// Applies a customer operation by the customer participant `me`.
pub fn apply_customer(
    record: &SessionRecord,
    me: &Member,
    op: &CustomerOp,
    ctx: &Ctx<'_>,
) -> Change<()> {
    let mut d = Draft::new(record, ctx);
    match op {
        CustomerOp::SendMessage(text) => {
            let m = d.message("Text", me, Visibility::All, Some(text.clone()), None);
            d.emit_messages(vec![m]);
        }
        CustomerOp::Typing(started) => {
            let kind = if *started {
                "TypingStarted"
            } else {
                "TypingStopped"
            };
            let m = d.message(kind, me, Visibility::All, None, None);
            d.emit_messages(vec![m]);
        }
        CustomerOp::Leave => {
            let m = d.message("ParticipantLeft", me, Visibility::All, None, None);
            d.emit_messages(vec![m]);
            d.remove(&me.participant_id);
            if d.next.agent_users().next().is_none() {
                d.complete();
            } else {
                d.emit_state(NotificationType::ParticipantsUpdated);
            }
        }
    }
    d.done()
}

/// A new session: the customer and the routed agent, both visible, with
/// the customer's first message. Returns the record and its notifications.
pub fn open_session(
    mut record: SessionRecord,
    customer: Member,
    agent: Member,
    first_message: &str,
    ctx: &Ctx<'_>,
) -> (SessionRecord, Vec<Notification>) {
    record.participants = vec![customer.clone(), agent.clone()];
    let mut d = Draft::new(&record, ctx);
    d.emit_state(NotificationType::ParticipantsUpdated);
    let messages = vec![
        d.message("ParticipantJoined", &customer, Visibility::All, None, None),
        d.message(
            "Text",
            &customer,
            Visibility::All,
            Some(first_message.to_owned()),
            None,
        ),
        d.message("ParticipantJoined", &agent, Visibility::All, None, None),
    ];
    d.emit_messages(messages);
    let change = d.done();
    (change.record, change.notifications)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn operation_names_and_parameters_are_checked() {
        assert!(Op::name_of(&body(json!({}))).is_err());
        assert!(Op::name_of(&body(json!({"operationName": 3}))).is_err());
        let err = Op::name_of(&body(json!({"operationName": "Dance"}))).unwrap_err();
        assert!(err.to_string().contains("Dance"));
        assert_eq!(
            Op::parse("Consult", &body(json!({}))).unwrap_err(),
            OpError::bad("targetUri or targetPath is mandatory")
        );
        assert_eq!(
            Op::parse(
                "Consult",
                &body(json!({"targetPath": "/users/x", "extra": 1}))
            )
            .unwrap(),
            Op::Consult("/users/x".into())
        );
        assert!(Op::parse("SendMessage", &body(json!({"text": "  "}))).is_err());
        assert!(Op::parse("SendMessage", &body(json!({"text": 5}))).is_err());
        assert!(Op::parse("SendUrl", &body(json!({"url": "javascript:alert(1)"}))).is_err());
        assert!(Op::parse("SendUrl", &body(json!({"url": "https://example.com/a"}))).is_ok());
        assert!(Op::parse(
            "AttachUserData",
            &body(json!({"userData": {"a": {"b": 1}}}))
        )
        .is_err());
        assert!(Op::parse("AttachUserData", &body(json!({"userData": []}))).is_err());
        assert!(Op::parse("DeleteUserData", &body(json!({"keys": []}))).is_err());
        assert!(Op::parse("DeleteUserData", &body(json!({"keys": ["a", 1]}))).is_err());
        assert_eq!(
            Op::parse("SetDisposition", &body(json!({"disposition": "resolved"}))).unwrap(),
            Op::SetDisposition {
                disposition: "resolved".into(),
                key: DEFAULT_DISPOSITION_KEY.into()
            }
        );
        assert!(Op::parse("RemoveParticipantFromConference", &body(json!({}))).is_err());
        assert!(CustomerOp::parse(&body(json!({"operationName": "Transfer"}))).is_err());
    }

    #[test]
    fn queue_agents_are_ordered_by_load_then_directory_order() {
        let dir = Directory::demo("http://h");
        let mut load = std::collections::HashMap::new();
        let all: Vec<&str> = dir.agents().iter().map(|a| a.id.as_str()).collect();
        let names = |v: Vec<Candidate>| v.into_iter().map(|c| c.nickname).collect::<Vec<_>>();
        assert_eq!(
            names(by_load(all.iter().copied(), &dir, &load)),
            ["TestName", "Agent2", "Agent3", "Agent4"]
        );
        load.insert(all[0].to_string(), 2);
        load.insert(all[1].to_string(), 1);
        load.insert(all[3].to_string(), 1);
        assert_eq!(
            names(by_load(all.iter().copied(), &dir, &load)),
            ["Agent3", "Agent2", "Agent4", "TestName"]
        );
    }
}
