//! Who is in a session: Accept, Reject, Consult, Invite, Transfer, Leave,
//! Complete and RemoveParticipantFromConference, and the routing of a
//! queue target to its least busy agent.
//!
//! Visibility: a consultant joins with `Agents` (the customer never learns
//! of them, and their ParticipantLeft is `Agents` too); Invite and Transfer
//! make the target `All` from that moment on. An invited agent (auto-accept
//! off) is listed with `Agents` until Accept makes them `All`, so the
//! customer sees an agent only once they joined; an agent who left the
//! chat but wraps up is listed with `Agents` again. Order: a participant
//! who joins is in the ParticipantsUpdated before its ParticipantJoined;
//! one who leaves gets its ParticipantLeft before the ParticipantsUpdated
//! that removes it, so every agent sees both ends of their own
//! participation. A consultation needs a visible agent: when the last one
//! leaves or completes, the consultants left behind go too, each with its
//! ParticipantLeft.

use std::collections::HashMap;

use super::directory::{Directory, Target};
use super::draft::Draft;
use super::error::OpError;
use super::params::ParticipantRef;
use super::record::SessionStatus;
use super::record::{Member, SessionRecord};
use super::Op;
use crate::model::{NotificationType, ParticipantType, Visibility};

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

/// Resolves the target of Consult, Transfer or Invite against the
/// directory; a queue's agents come ordered by `load` (fewest active
/// sessions first, ties in directory order).
pub fn resolve(
    op: &Op,
    dir: &Directory,
    load: &HashMap<String, usize>,
) -> Result<Resolved, OpError> {
    let Some(t) = op.target() else {
        return Ok(Resolved::None);
    };
    match dir.resolve(t)? {
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
    load: &HashMap<String, usize>,
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

/// Consult (visibility `Agents`) or Invite (`All`): the target joins.
/// Inviting a consultant brings them into the conference (visible).
pub fn join(
    d: &mut Draft<'_>,
    me: &Member,
    target: &Resolved,
    visibility: Visibility,
    what: &str,
) -> Result<(), OpError> {
    let joining = match pick(&d.next, target, what)? {
        Pick::New(c) => add_agent(d, c, visibility),
        Pick::Present(m) if m.participant_id == me.participant_id => {
            return Err(OpError::state(format!("cannot {what} yourself")))
        }
        Pick::Present(m) if visibility == Visibility::All && m.visibility == Visibility::Agents => {
            promote(d, &m.participant_id)
        }
        Pick::Present(m) => {
            return Err(OpError::state(format!(
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

/// Transfer: the target becomes visible, then `me` leaves. A target
/// already visible (a conference) only sees `me` go.
pub fn transfer(d: &mut Draft<'_>, me: &Member, target: &Resolved) -> Result<(), OpError> {
    let (joining, announce) = match pick(&d.next, target, "transfer")? {
        Pick::Present(m) if m.participant_id == me.participant_id => {
            return Err(OpError::state("cannot transfer to yourself"))
        }
        Pick::Present(m) if m.visibility == Visibility::Agents => {
            (promote(d, &m.participant_id), true)
        }
        Pick::Present(m) => (m, false),
        Pick::New(c) => (add_agent(d, c, Visibility::All), true),
    };
    let mut messages = Vec::new();
    if announce {
        d.emit_state(NotificationType::ParticipantsUpdated);
        messages.push(d.message("ParticipantJoined", &joining, Visibility::All, None, None));
    }
    messages.push(d.message("ParticipantLeft", me, me.visibility, None, None));
    d.emit_messages(messages);
    d.remove(&me.participant_id);
    d.emit_state(NotificationType::ParticipantsUpdated);
    Ok(())
}

/// Accept: the invited agent joins the chat, visible from now on, under
/// `nickname` when given.
pub fn accept(d: &mut Draft<'_>, me: &Member, nickname: Option<&str>) {
    d.next.invited = None;
    d.next.status = SessionStatus::Chatting;
    let mut joined = me.clone();
    for m in &mut d.next.participants {
        if m.participant_id == me.participant_id {
            m.visibility = Visibility::All;
            if let Some(n) = nickname {
                m.nickname = n.to_owned();
            }
            joined = m.clone();
        }
    }
    d.emit_state(NotificationType::StatusChange);
    d.emit_state(NotificationType::ParticipantsUpdated);
    let m = d.message("ParticipantJoined", &joined, Visibility::All, None, None);
    d.emit_messages(vec![m]);
}

/// Reject: back to routing. The first agent of `candidates` (the
/// session's queue, or every agent, in load order) who is not in the
/// session and has not rejected it is invited instead; with none left, the
/// session waits in its queue (`Queued`).
pub fn reject(d: &mut Draft<'_>, me: &Member, candidates: &Resolved) {
    if let Some(user) = &me.user {
        if !d.next.rejected_by.contains(user) {
            d.next.rejected_by.push(user.clone());
        }
    }
    d.remove(&me.participant_id);
    let next = match candidates {
        Resolved::Queue { agents, .. } => agents
            .iter()
            .find(|c| !d.next.rejected_by.contains(&c.user) && d.next.agent(&c.user).is_none()),
        _ => None,
    };
    match next {
        Some(c) => {
            let invited = add_agent(d, c, Visibility::Agents);
            d.next.invited = Some(invited.participant_id);
            d.emit_state(NotificationType::ParticipantsUpdated);
        }
        None => {
            d.next.status = SessionStatus::Queued;
            d.next.placed_in = d.next.queue.clone();
            d.emit_state(NotificationType::StatusChange);
        }
    }
}

/// Leave: a consultant or one of several visible agents just goes. The
/// last visible agent leaves the chat but not the interaction: they wrap
/// up (disposition, userData, comment) until Complete, and the
/// consultants left behind go.
pub fn leave(d: &mut Draft<'_>, me: &Member) {
    let m = d.message("ParticipantLeft", me, me.visibility, None, None);
    d.emit_messages(vec![m]);
    let last_visible = me.visibility == Visibility::All && d.next.visible_agents() == 1;
    if last_visible {
        d.dismiss_consultants();
        for m in &mut d.next.participants {
            if m.participant_id == me.participant_id {
                // Out of the chat: the customer no longer lists them.
                m.visibility = Visibility::Agents;
            }
        }
        d.next.wrapping_up.push(me.participant_id.clone());
    } else {
        d.remove(&me.participant_id);
    }
    d.emit_state(NotificationType::ParticipantsUpdated);
}

/// Complete: the session ends for everyone; with `queue` (a queue's name
/// or id), the finished interaction is placed in that queue.
pub fn complete(d: &mut Draft<'_>, queue: Option<&str>) -> Result<(), OpError> {
    if let Some(name) = queue {
        let q = d.ctx.dir.queue(name).ok_or_else(|| {
            OpError::UnknownResource(format!("queueName {name:?} names no queue"))
        })?;
        d.next.placed_in = Some(q.id.clone());
    }
    d.complete();
    Ok(())
}

/// RemoveParticipantFromConference, as GWS allows it: a visible agent
/// removes a consultant. Agents only see a `Notice` (GWS's text
/// `REMOVE_PARTICIPANT_FROM_CONFERENCE<userId>`) and the consultant's
/// ParticipantLeft, then the participants update.
pub fn remove_participant(
    d: &mut Draft<'_>,
    me: &Member,
    who: &ParticipantRef,
) -> Result<(), OpError> {
    let found = match who {
        ParticipantRef::Id(id) => d.next.member(id).cloned(),
        ParticipantRef::User(t) => match d.ctx.dir.resolve(t)? {
            Target::User(a) => d.next.agent(&a.id).cloned(),
            Target::Queue(_) => return Err(OpError::bad("a queue is not a participant")),
        },
    };
    let target = found
        .ok_or_else(|| OpError::UnknownResource("no such participant in this session".into()))?;
    if target.participant_id == me.participant_id {
        return Err(OpError::state("use Leave to leave the session yourself"));
    }
    let consultant = d
        .next
        .consultants()
        .iter()
        .any(|c| c.participant_id == target.participant_id);
    if !consultant {
        return Err(OpError::state(
            "only a consulting agent (visibility Agents) can be removed from a conference",
        ));
    }
    let user = target.user.clone().unwrap_or_default();
    let notice = d.message(
        "Notice",
        me,
        Visibility::Agents,
        Some(format!("REMOVE_PARTICIPANT_FROM_CONFERENCE{user}")),
        None,
    );
    let left = d.message("ParticipantLeft", &target, Visibility::Agents, None, None);
    d.emit_messages(vec![notice, left]);
    d.remove(&target.participant_id);
    d.emit_state(NotificationType::ParticipantsUpdated);
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
                OpError::state(format!(
                    "every agent of queue {name} is already in this session: none to {what}"
                ))
            }),
        Resolved::None => Err(OpError::missing("targetUri or targetPath is mandatory")),
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

#[cfg(test)]
mod tests {
    use super::*;

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
