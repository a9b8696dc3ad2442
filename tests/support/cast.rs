//! The parties of a test session, shared by the delivery tests.

use serde_json::Value;

use super::{message_from, participant, participants_updated, user_of};

pub const CUSTOMER: &str = "cust-1";

/// The parties of a test session: a visible customer and agent, and a
/// consultant only agents see.
pub struct Cast {
    pub sid: String,
    pub customer: Value,
    pub agent: Value,
    pub consultant: Value,
}

impl Cast {
    pub fn new(sid: &str) -> Self {
        Self {
            sid: sid.to_owned(),
            customer: participant(CUSTOMER, "Customer", "Vitaliy", "All"),
            agent: participant(&format!("{sid}-agent"), "Agent", "Ann", "All"),
            consultant: participant(&format!("{sid}-consultant"), "Agent", "Hidden", "Agents"),
        }
    }

    pub fn agent_user(&self) -> String {
        user_of(&format!("{}-agent", self.sid))
    }

    pub fn joined(&self) -> Value {
        participants_updated(
            &self.sid,
            &[
                self.customer.clone(),
                self.agent.clone(),
                self.consultant.clone(),
            ],
        )
    }

    /// Message `i`: every third one is the consultant's, agents only.
    pub fn message(&self, i: u64) -> Value {
        self.message_sized(i, 0)
    }

    pub fn message_sized(&self, i: u64, padding: usize) -> Value {
        let text = format!("{}-m{i}{}", self.sid, "x".repeat(padding));
        if is_agent_only(i) {
            message_from(&self.sid, i, &self.consultant, "Agents", &text)
        } else {
            message_from(&self.sid, i, &self.agent, "All", &text)
        }
    }
}

pub fn is_agent_only(i: u64) -> bool {
    i.is_multiple_of(3)
}
