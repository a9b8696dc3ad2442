//! Lines of the transcript: SendMessage, SendUrl (a `PushUrl` message),
//! SendToAgents and the four typing operations, for agents and customers.
//!
//! Visibility: a line takes its sender's visibility, so whatever a
//! consulting agent writes or types is `Agents`; SendToAgents and the
//! to-agents typing are `Agents` whoever sends them.

use super::draft::Draft;
use super::record::Member;
use crate::model::Visibility;

/// A `Text` line: to everyone the sender is visible to, or to agents only.
pub fn text(d: &mut Draft<'_>, me: &Member, text: &str, to_agents: bool) {
    let visibility = line_visibility(me, to_agents);
    let m = d.message("Text", me, visibility, Some(text.to_owned()), None);
    d.emit_messages(vec![m]);
}

/// A `PushUrl` line carrying `url`.
pub fn push_url(d: &mut Draft<'_>, me: &Member, url: &str) {
    let m = d.message(
        "PushUrl",
        me,
        me.visibility,
        None,
        Some(("url", url.to_owned())),
    );
    d.emit_messages(vec![m]);
}

/// `TypingStarted` or `TypingStopped`.
pub fn typing(d: &mut Draft<'_>, me: &Member, started: bool, to_agents: bool) {
    let kind = if started {
        "TypingStarted"
    } else {
        "TypingStopped"
    };
    let m = d.message(kind, me, line_visibility(me, to_agents), None, None);
    d.emit_messages(vec![m]);
}

fn line_visibility(me: &Member, to_agents: bool) -> Visibility {
    if to_agents {
        Visibility::Agents
    } else {
        me.visibility
    }
}
