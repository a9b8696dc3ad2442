//! The connected parties: agents by user id, customers by session,
//! supervisors; and the fan-out of one notification's frames to them.
//!
//! Owns each connection's [`Outbox`] while it is registered. An agent's
//! and a supervisor's queue takes [`AgentFrame`]s, a customer's
//! [`CustomerFrame`]s: the two audiences cannot be mixed up. Offering never
//! waits; a connection whose queue overflows is dropped from the registry
//! (its socket closes with 1013). A customer connection whose token names
//! another participant than the session's customer is revoked (1008).

use std::sync::Arc;
use std::time::Instant;

use smallvec::SmallVec;

use super::FastMap;
use crate::frame::{AgentFrame, Frame};
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::view::CustomerFrame;

/// Usually one connection per party; a few when several tabs are open.
type Conns<T> = SmallVec<[(u64, T); 1]>;

pub struct CustomerConn {
    participant: Box<str>,
    outbox: Outbox<CustomerFrame>,
}

#[derive(Default)]
pub struct Registry {
    agents: FastMap<Box<str>, Conns<Outbox<AgentFrame>>>,
    customers: FastMap<Arc<str>, Conns<CustomerConn>>,
    supervisors: Conns<Outbox<AgentFrame>>,
    count: usize,
}

impl Registry {
    pub fn count(&self) -> usize {
        self.count
    }

    pub fn add_agent(&mut self, agent: &str, conn: u64, outbox: Outbox<AgentFrame>) {
        self.agents
            .entry(agent.into())
            .or_default()
            .push((conn, outbox));
        self.count += 1;
    }

    pub fn add_supervisor(&mut self, conn: u64, outbox: Outbox<AgentFrame>) {
        self.supervisors.push((conn, outbox));
        self.count += 1;
    }

    pub fn add_customer(
        &mut self,
        session: &str,
        participant: &str,
        conn: u64,
        outbox: Outbox<CustomerFrame>,
    ) {
        let conn_entry = CustomerConn {
            participant: participant.into(),
            outbox,
        };
        match self.customers.get_mut(session) {
            Some(conns) => conns.push((conn, conn_entry)),
            None => {
                let mut conns = Conns::new();
                conns.push((conn, conn_entry));
                self.customers.insert(Arc::from(session), conns);
            }
        }
        self.count += 1;
    }

    pub fn remove_agent(&mut self, agent: &str, conn: u64) {
        if remove(self.agents.get_mut(agent), conn) {
            self.count -= 1;
        }
        if self.agents.get(agent).is_some_and(SmallVec::is_empty) {
            self.agents.remove(agent);
        }
    }

    pub fn remove_supervisor(&mut self, conn: u64) {
        if remove(Some(&mut self.supervisors), conn) {
            self.count -= 1;
        }
    }

    pub fn remove_customer(&mut self, session: &str, conn: u64) {
        if let Some(conns) = self.customers.get_mut(session) {
            let before = conns.len();
            conns.retain(|(c, _)| *c != conn);
            self.count -= before - conns.len();
            if conns.is_empty() {
                self.customers.remove(session);
            }
        }
    }

    /// Open connections by role.
    pub fn by_role(&self) -> [(&'static str, usize); 3] {
        [
            ("agent", self.agents.values().map(SmallVec::len).sum()),
            ("customer", self.customers.values().map(SmallVec::len).sum()),
            ("supervisor", self.supervisors.len()),
        ]
    }

    /// Bytes waiting in connections' queues (mostly shared with retention).
    pub fn queued_bytes(&self) -> usize {
        let agents = self
            .agents
            .values()
            .chain(std::iter::once(&self.supervisors))
            .flatten()
            .map(|(_, o)| o.queued_bytes());
        let customers = self
            .customers
            .values()
            .flatten()
            .map(|(_, c)| c.outbox.queued_bytes());
        agents.chain(customers).sum()
    }

    /// Ends every connection's stream once what is queued is sent (the
    /// server shuts down).
    pub fn shut_down_all(&self) {
        let agents = self
            .agents
            .values()
            .chain(std::iter::once(&self.supervisors))
            .flatten()
            .map(|(_, o)| o);
        agents.for_each(Outbox::shut_down);
        self.customers
            .values()
            .flatten()
            .for_each(|(_, c)| c.outbox.shut_down());
    }

    /// Revokes the customer connections of `session` whose token names
    /// another participant than `customer`.
    pub fn revoke_strangers(&mut self, session: &str, customer: &str) {
        let Some(conns) = self.customers.get_mut(session) else {
            return;
        };
        let before = conns.len();
        conns.retain(|(_, c)| {
            let stranger = &*c.participant != customer;
            if stranger {
                c.outbox.revoke();
            }
            !stranger
        });
        self.count -= before - conns.len();
    }

    /// Offers one notification's frames to its audience: the agent frame
    /// to `audience`'s agents and every supervisor, the customer frames to
    /// the session's customer. `at` is when it was taken off the bus.
    pub fn fan_out(
        &mut self,
        metrics: &Metrics,
        audience: &[Box<str>],
        agent: &AgentFrame,
        session: &str,
        customer: &[(u64, CustomerFrame)],
        at: Instant,
    ) {
        let mut dropped = 0;
        for a in audience {
            if let Some(conns) = self.agents.get_mut(&**a) {
                dropped += offer_all(conns, |o| o, agent, at, metrics, true);
            }
        }
        dropped += offer_all(&mut self.supervisors, |o| o, agent, at, metrics, true);
        if let Some(conns) = self.customers.get_mut(session) {
            for (_, frame) in customer {
                dropped += offer_all(conns, |c| &c.outbox, frame, at, metrics, false);
            }
        }
        self.count -= dropped;
    }
}

/// Offers `frame` to each of `conns`, dropping those that overflow;
/// returns how many were dropped.
fn offer_all<T, F: Frame>(
    conns: &mut Conns<T>,
    outbox: impl Fn(&T) -> &Outbox<F>,
    frame: &F,
    at: Instant,
    metrics: &Metrics,
    agents: bool,
) -> usize {
    let before = conns.len();
    conns.retain(|(_, c)| {
        let ok = outbox(c).offer(frame, at);
        if ok {
            metrics.frame_out(agents, frame.len());
        } else {
            metrics.queue_overflows.inc();
        }
        ok
    });
    before - conns.len()
}

fn remove<T>(conns: Option<&mut Conns<T>>, conn: u64) -> bool {
    let Some(conns) = conns else {
        return false;
    };
    let before = conns.len();
    conns.retain(|(c, _)| *c != conn);
    before != conns.len()
}
