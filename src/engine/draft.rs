//! A change being built by an operation: the next session record and the
//! notifications announcing it, with the referenceId of the request.

use super::record::{Member, MessageDraft, SessionRecord, SessionStatus};
use super::store::Change;
use super::Ctx;
use crate::model::{Message, Notification, NotificationType, Visibility};

/// A change being built: the next record and its notifications.
pub struct Draft<'a> {
    pub next: SessionRecord,
    pub ctx: &'a Ctx<'a>,
    notifications: Vec<Notification>,
}

impl<'a> Draft<'a> {
    pub fn new(record: &SessionRecord, ctx: &'a Ctx<'a>) -> Self {
        let mut next = record.clone();
        next.updated_ms = ctx.now_ms;
        Self {
            next,
            ctx,
            notifications: Vec::new(),
        }
    }

    pub fn message(
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
        self.next.push_message(draft, self.ctx.now_ms)
    }

    pub fn emit_messages(&mut self, messages: Vec<Message>) {
        let n = self
            .next
            .new_messages(messages, self.ctx.reference_id, self.ctx.dir);
        self.notifications.push(n);
    }

    pub fn emit_state(&mut self, kind: NotificationType) {
        let n = self
            .next
            .state_change(kind, self.ctx.reference_id, self.ctx.dir);
        self.notifications.push(n);
    }

    pub fn remove(&mut self, participant_id: &str) {
        let next = &mut self.next;
        next.participants
            .retain(|m| m.participant_id != participant_id);
        next.wrapping_up.retain(|p| p != participant_id);
        if next.invited.as_deref() == Some(participant_id) {
            next.invited = None;
        }
    }

    /// Takes the consultants out, each announced by its ParticipantLeft
    /// (visibility `Agents`) while still a participant, so that they see
    /// their own going.
    pub fn dismiss_consultants(&mut self) {
        let consultants = self.next.consultants();
        if consultants.is_empty() {
            return;
        }
        let messages = consultants
            .iter()
            .map(|c| self.message("ParticipantLeft", c, Visibility::Agents, None, None))
            .collect();
        self.emit_messages(messages);
        for c in &consultants {
            self.remove(&c.participant_id);
        }
    }

    /// Ends the session: the consultants left behind go (each with its
    /// ParticipantLeft), then nobody is left in it.
    pub fn complete(&mut self) {
        self.dismiss_consultants();
        self.next.status = SessionStatus::Completed;
        self.next.participants.clear();
        self.next.invited = None;
        self.next.wrapping_up.clear();
        self.emit_state(NotificationType::StatusChange);
    }

    pub fn done(self) -> Change<()> {
        Change {
            record: self.next,
            notifications: self.notifications,
            output: (),
        }
    }
}
