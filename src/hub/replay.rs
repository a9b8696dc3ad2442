//! Replay: the frames a resuming party missed after its `since`.
//!
//! Owns the rule that a replay is all or nothing: the frames the party
//! would have received after `since`, every one of them still retained, in
//! order; otherwise `None` (the party gets a snapshot, `resumed:false`),
//! never a replay with a gap. Runs under the hub's lock, so it is bounded:
//! beyond [`MAX_REPLAY`] frames a snapshot is cheaper to send anyway.

use super::{Entry, Inner};
use crate::frame::AgentFrame;
use crate::view::CustomerFrame;

/// The most frames a replay collects.
pub const MAX_REPLAY: usize = 100_000;

/// Ids this hub cannot vouch for: above what it dispatched, or below what
/// it has seen.
fn outside_stream(inner: &Inner, since: u64) -> bool {
    since > inner.last_seq || inner.start_floor.is_some_and(|f| since < f)
}

pub(super) fn agent(inner: &Inner, agent: &str, since: u64) -> Option<Vec<AgentFrame>> {
    if outside_stream(inner, since) || inner.agent_floors.get(agent).is_some_and(|&f| since < f) {
        return None;
    }
    let mut frames = Vec::new();
    for session in inner.agent_sessions.get(agent).into_iter().flatten() {
        let entry = inner.sessions.get(session)?;
        if entry.members.get(agent).is_none_or(|&last| last <= since) {
            continue; // nothing of this session for the agent after `since`
        }
        if entry.retention.seq_floor() > since {
            return None;
        }
        frames.extend(entry.retention.after(since).filter(|r| r.reached(agent)));
        if frames.len() > MAX_REPLAY {
            return None;
        }
    }
    frames.sort_unstable_by_key(|r| r.seq);
    Some(frames.into_iter().map(|r| r.agent.clone()).collect())
}

pub(super) fn supervisor(inner: &Inner, since: u64) -> Option<Vec<AgentFrame>> {
    if outside_stream(inner, since) || since < inner.purged_floor {
        return None;
    }
    let mut frames = Vec::new();
    for entry in inner.sessions.values() {
        if entry.retention.seq_floor() > since {
            return None;
        }
        frames.extend(entry.retention.after(since));
        if frames.len() > MAX_REPLAY {
            return None;
        }
    }
    frames.sort_unstable_by_key(|r| r.seq);
    Some(frames.into_iter().map(|r| r.agent.clone()).collect())
}

/// A customer's replay in the session `entry` (of the customer's epoch).
pub(super) fn customer(entry: Option<&Entry>, since: u64) -> Option<Vec<CustomerFrame>> {
    let Some(entry) = entry else {
        // Nothing was ever sent: only "nothing seen yet" is a valid resume.
        return (since == 0).then(Vec::new);
    };
    if since > entry.customer_seq || since < entry.retention.customer_floor() {
        return None;
    }
    Some(
        entry
            .retention
            .iter()
            .flat_map(|r| r.customer.iter())
            .filter(|(id, _)| *id > since)
            .map(|(_, f)| f.clone())
            .collect(),
    )
}
