//! What each agent may do: the `capabilities` of a session, per agent, by
//! the session's state and the agent's part in it.
//!
//! Owns the operation names an agent request may carry ([`OPERATIONS`])
//! and the rule from (session, agent) to the operations allowed
//! ([`of`]); the engine refuses whatever is not in the caller's list
//! (statusCode 2). It does not apply anything: that is the operations'
//! modules.
//!
//! The parts an agent plays ([`Part`]):
//! - **invited**: offered the session (auto-accept off), not in the chat
//!   yet: `Accept`, `Reject`;
//! - **visible** (visibility `All`): steers the session; everything while
//!   the customer is there, the agent-side operations once they left;
//! - **consultant** (visibility `Agents`): only what stays among agents;
//!   never `Transfer`, `Invite`, `Consult`, `Complete` or
//!   `RemoveParticipantFromConference`;
//! - **wrapping up**: left the chat, still holds the interaction until
//!   `Complete`: disposition, userData, comment, focus, `Complete`.
//!
//! One notification serves every agent of a session (the gateway fans it
//! out unchanged), so its `capabilities` are those of the session's lead
//! ([`lead`]): the first visible agent, else the one wrapping up, else the
//! invited one. Each agent's own list is in what the REST API answers
//! them (`GET /api/v2/me/facebooksessions`).

use super::record::{Member, SessionRecord, SessionStatus};
use crate::model::Visibility;

/// Every `operationName` an agent request may carry.
pub const OPERATIONS: [&str; 22] = [
    "Accept",
    "Reject",
    "Transfer",
    "Leave",
    "Invite",
    "Consult",
    "SetInFocus",
    "SetDisposition",
    "AttachUserData",
    "DeleteUserData",
    "UpdateUserData",
    "AddComment",
    "SendToAgents",
    "SendStartTypingToAgentsNotification",
    "SendStopTypingToAgentsNotification",
    "Complete",
    "SendMessage",
    "SendUrl",
    "SendStartTypingNotification",
    "SendStopTypingNotification",
    "RemoveParticipantFromConference",
    // Listed with SetInFocus: the GWS samples name the capability so.
    "InFocus",
];

/// A visible agent's operations while chatting, in the seed's order;
/// `InFocus` (the name in the GWS samples) beside `SetInFocus` (the
/// seed's), and `AddComment`.
const CHATTING: [&str; 20] = [
    "Transfer",
    "Leave",
    "Invite",
    "Consult",
    "SetInFocus",
    "InFocus",
    "SetDisposition",
    "AttachUserData",
    "DeleteUserData",
    "UpdateUserData",
    "AddComment",
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

/// Operations only the agents the customer sees may perform: they steer
/// the session.
const VISIBLE_AGENTS_ONLY: [&str; 5] = [
    "Transfer",
    "Invite",
    "Consult",
    "Complete",
    "RemoveParticipantFromConference",
];

/// What an agent who left the chat may still do until Complete.
const WRAPPING_UP: [&str; 8] = [
    "SetInFocus",
    "InFocus",
    "SetDisposition",
    "AttachUserData",
    "DeleteUserData",
    "UpdateUserData",
    "AddComment",
    "Complete",
];

/// What an agent offered the session may do.
const INVITED: [&str; 2] = ["Accept", "Reject"];

/// The part an agent plays in a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Invited,
    Visible,
    Consultant,
    WrappingUp,
}

/// The part `member` (an agent of `record`) plays.
pub fn part(record: &SessionRecord, member: &Member) -> Part {
    if record.invited.as_deref() == Some(member.participant_id.as_str()) {
        Part::Invited
    } else if record.wrapping_up.contains(&member.participant_id) {
        Part::WrappingUp
    } else if member.visibility == Visibility::All {
        Part::Visible
    } else {
        Part::Consultant
    }
}

/// What `member` may do in `record` now, in the seed's order.
pub fn of(record: &SessionRecord, member: &Member) -> Vec<&'static str> {
    if !member.is_agent() {
        return Vec::new();
    }
    match (record.status, part(record, member)) {
        (SessionStatus::Completed | SessionStatus::Queued, _) => Vec::new(),
        (_, Part::Invited) => INVITED.to_vec(),
        (SessionStatus::Invited, _) => Vec::new(),
        (SessionStatus::Chatting, Part::WrappingUp) => WRAPPING_UP.to_vec(),
        (SessionStatus::Chatting, part) => chatting(record, part == Part::Consultant),
    }
}

fn chatting(record: &SessionRecord, consultant: bool) -> Vec<&'static str> {
    let customer = record.customer().is_some();
    let has_consultant = record
        .participants
        .iter()
        .any(|m| part(record, m) == Part::Consultant && m.is_agent());
    CHATTING
        .iter()
        .copied()
        .filter(|op| customer || !NEEDS_CUSTOMER.contains(op))
        .filter(|op| !(consultant && VISIBLE_AGENTS_ONLY.contains(op)))
        // Only a consultant can be removed (GWS: "remove another agent
        // from a consultation"): offered while there is one.
        .filter(|op| has_consultant || *op != "RemoveParticipantFromConference")
        .collect()
}

/// The agent whose capabilities a session's notifications carry.
pub fn lead(record: &SessionRecord) -> Option<&Member> {
    let agents = || record.participants.iter().filter(|m| m.is_agent());
    [Part::Visible, Part::WrappingUp, Part::Invited]
        .into_iter()
        .find_map(|wanted| agents().find(|m| part(record, m) == wanted))
}

/// The `capabilities` of a notification of `record` (its lead's).
pub fn shared(record: &SessionRecord) -> Vec<&'static str> {
    lead(record).map(|m| of(record, m)).unwrap_or_default()
}
