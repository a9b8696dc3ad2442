//! The session engine: chatgate's reference upstream.
//!
//! Implements the facebooksession operations (SPEC section 5) and
//! publishes their notifications on the bus through a
//! [`Publisher`](crate::publisher::Publisher), exactly like any other
//! upstream: the gateway learns about sessions only from the bus.
//!
//! # Layout
//!
//! - [`directory`]: agents and queues (TOML file or demo), URIs, targets.
//! - [`record`]: a session record and its notification shapes;
//!   [`capabilities`]: what each agent may do in it.
//! - [`Op`] (here): the agent operations, dispatched from `operationName`;
//!   their parameters in [`params`], their effects in [`participants`],
//!   [`messages`] and [`user_data`], built as a [`draft::Draft`].
//! - [`store`]: where records live; applies one operation atomically per
//!   session and publishes its notifications in order; [`nats_store`]:
//!   the store shared by every engine on a NATS bus.
//! - [`routes`]: the agent REST API; [`customer`]: the widget's API;
//!   [`state`]: what their handlers reach ([`EngineState`]).
//! - [`limiter`]: rate limits of anonymous session creation and of each
//!   agent's operations.
//! - [`error`]: refusals as `{"statusCode","statusMessage"}`.

pub mod capabilities;
pub mod customer;
pub mod directory;
pub mod draft;
pub mod error;
pub mod limiter;
pub mod messages;
pub mod nats_store;
pub mod params;
pub mod participants;
pub mod record;
pub mod routes;
pub mod state;
pub mod store;
pub mod user_data;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::model::Visibility;
use draft::Draft;
use record::{Member, SessionRecord};

pub use directory::{Directory, DirectoryError};
pub use error::OpError;
pub use params::ParticipantRef;
pub use participants::Resolved;
pub use routes::router;
pub use state::EngineState;
pub use store::{Change, Publish, Store};

/// How often completed sessions and idle rate-limit buckets are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// A parsed agent operation with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Accept the invitation, optionally with the nickname the customer
    /// sees.
    Accept(Option<String>),
    Reject,
    AddComment(String),
    Consult(String),
    Transfer(String),
    Invite(String),
    Leave,
    /// With the queue (`queueName`) to place the finished interaction in.
    Complete(Option<String>),
    SendMessage(String),
    SendUrl(String),
    SendToAgents(String),
    Typing {
        started: bool,
        to_agents: bool,
    },
    SetInFocus,
    SetDisposition {
        disposition: String,
        key: String,
    },
    AttachUserData(Map<String, Value>),
    UpdateUserData(Map<String, Value>),
    DeleteUserData(Vec<String>),
    RemoveParticipantFromConference(ParticipantRef),
}

/// What an operation function needs besides the record.
pub struct Ctx<'a> {
    pub dir: &'a Directory,
    pub now_ms: u64,
    pub reference_id: Option<u64>,
    /// The participant id a joining agent gets.
    pub new_participant_id: String,
}

impl Op {
    /// The `operationName` of a body, checked to be a known operation.
    pub fn name_of(body: &Map<String, Value>) -> Result<&'static str, OpError> {
        let name = match body.get("operationName") {
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(OpError::bad("operationName must be a string")),
            None => return Err(OpError::missing("missing operationName")),
        };
        capabilities::OPERATIONS
            .iter()
            .copied()
            .find(|n| *n == name)
            .ok_or_else(|| OpError::bad(format!("unknown operationName {name:?}")))
    }

    /// Parses the parameters of operation `name` (unknown ones ignored).
    pub fn parse(name: &str, body: &Map<String, Value>) -> Result<Op, OpError> {
        let op = match name {
            "Accept" => Op::Accept(params::optional_text(
                body,
                "nickname",
                params::MAX_NICKNAME_CHARS,
            )?),
            "Reject" => Op::Reject,
            "AddComment" => Op::AddComment(params::text(body, "comment", params::MAX_TEXT_CHARS)?),
            "Consult" => Op::Consult(params::target(body)?),
            "Transfer" => Op::Transfer(params::target(body)?),
            "Invite" => Op::Invite(params::target(body)?),
            "Leave" => Op::Leave,
            "Complete" => Op::Complete(params::optional_text(
                body,
                "queueName",
                params::MAX_KEY_CHARS,
            )?),
            "SendMessage" => Op::SendMessage(params::text(body, "text", params::MAX_TEXT_CHARS)?),
            "SendToAgents" => Op::SendToAgents(params::text(body, "text", params::MAX_TEXT_CHARS)?),
            "SendUrl" => Op::SendUrl(params::url(body)?),
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
            "SetInFocus" | "InFocus" => Op::SetInFocus,
            "SetDisposition" => Op::SetDisposition {
                disposition: params::text(body, "disposition", 256)?,
                key: match body.get("dispositionKey") {
                    None | Some(Value::Null) => params::DEFAULT_DISPOSITION_KEY.into(),
                    Some(_) => params::text(body, "dispositionKey", params::MAX_KEY_CHARS)?,
                },
            },
            "AttachUserData" => Op::AttachUserData(params::user_data(body)?),
            "UpdateUserData" => Op::UpdateUserData(params::user_data(body)?),
            "DeleteUserData" => Op::DeleteUserData(params::keys(body)?),
            "RemoveParticipantFromConference" => {
                Op::RemoveParticipantFromConference(params::participant_ref(body)?)
            }
            other => return Err(OpError::bad(format!("unknown operationName {other:?}"))),
        };
        Ok(op)
    }

    /// Whether this operation places an agent (a target, or the next one
    /// to offer a rejected session to): it runs under the routing lock.
    pub fn routes(&self) -> bool {
        self.target().is_some() || *self == Op::Reject
    }

    /// The target of Consult, Transfer or Invite, if any.
    pub fn target(&self) -> Option<&str> {
        match self {
            Op::Consult(t) | Op::Transfer(t) | Op::Invite(t) => Some(t),
            _ => None,
        }
    }

    /// Applies this operation by agent participant `me` (participation
    /// and capabilities already checked) to `record`.
    pub fn apply(
        &self,
        record: &SessionRecord,
        me: &Member,
        target: &Resolved,
        ctx: &Ctx<'_>,
    ) -> Result<Change<()>, OpError> {
        let mut d = Draft::new(record, ctx);
        match self {
            Op::Consult(_) => {
                participants::join(&mut d, me, target, Visibility::Agents, "consult")?
            }
            Op::Invite(_) => participants::join(&mut d, me, target, Visibility::All, "invite")?,
            Op::Transfer(_) => participants::transfer(&mut d, me, target)?,
            Op::Accept(nickname) => participants::accept(&mut d, me, nickname.as_deref()),
            Op::Reject => participants::reject(&mut d, me, target),
            Op::Leave => participants::leave(&mut d, me),
            Op::Complete(queue) => participants::complete(&mut d, queue.as_deref())?,
            Op::AddComment(text) => user_data::comment(&mut d, text),
            Op::RemoveParticipantFromConference(who) => {
                participants::remove_participant(&mut d, me, who)?
            }
            Op::SendMessage(text) => messages::text(&mut d, me, text, false),
            Op::SendToAgents(text) => messages::text(&mut d, me, text, true),
            Op::SendUrl(url) => messages::push_url(&mut d, me, url),
            Op::Typing { started, to_agents } => messages::typing(&mut d, me, *started, *to_agents),
            // Focus is the desktop's own view: acknowledged, nothing shared
            // changes, so nothing is announced.
            Op::SetInFocus => {}
            Op::SetDisposition { disposition, key } => {
                user_data::set(&mut d, [(key.clone(), Value::String(disposition.clone()))])?;
            }
            Op::AttachUserData(data) | Op::UpdateUserData(data) => {
                user_data::set(&mut d, data.clone())?;
            }
            Op::DeleteUserData(keys) => user_data::delete(&mut d, keys),
        }
        Ok(d.done())
    }
}

/// The engine of this process: directory, store, counters.
pub struct Engine {
    pub directory: Directory,
    pub store: Store,
    /// The last `referenceId` handed out (process-wide).
    reference: AtomicU64,
    /// How long a completed session is kept, in ms.
    completed_ttl_ms: u64,
    pub limiter: limiter::RateLimiter,
    /// Operations per agent (user id).
    pub operation_limiter: limiter::RateLimiter<String>,
    /// Serializes "read the load, then place an agent", so that two
    /// concurrent routings do not both pick the same least-busy agent.
    routing: tokio::sync::Mutex<()>,
    /// Whether a routed session joins its agent at once
    /// (`CHATGATE_AUTO_ACCEPT`), or is offered to them first.
    pub auto_accept: bool,
}

impl Engine {
    /// Builds the engine: the directory from `config.directory` (or the
    /// demo one), URIs under `base`.
    pub fn build(config: &Config, base: &str) -> Result<Self, DirectoryError> {
        let directory = Directory::load(config.directory.as_deref(), base)?;
        Ok(Self::new(directory, config))
    }

    pub fn new(directory: Directory, config: &Config) -> Self {
        Self {
            directory,
            store: Store::memory(config.log_limit),
            reference: AtomicU64::new(0),
            completed_ttl_ms: config.retention_secs.saturating_mul(1000),
            limiter: limiter::RateLimiter::new(config.customer_session_rate),
            operation_limiter: limiter::RateLimiter::new(config.agent_operation_rate),
            routing: tokio::sync::Mutex::new(()),
            auto_accept: config.auto_accept,
        }
    }

    /// The next `referenceId`: increasing per request (across engines,
    /// with a shared store).
    pub async fn next_reference(&self) -> Result<u64, OpError> {
        match self.store.next_reference().await? {
            Some(shared) => Ok(shared),
            None => Ok(self.reference.fetch_add(1, Ordering::Relaxed) + 1),
        }
    }

    /// The same engine over another store (e.g. a replicated one).
    pub fn with_store(mut self, store: Store) -> Self {
        self.store = store;
        self
    }

    /// Active sessions per agent, under the routing lock held by the caller.
    async fn load(&self) -> HashMap<String, usize> {
        self.store.load().await
    }

    /// Sweeps completed sessions and idle buckets until shutdown.
    pub async fn sweep_until(self: Arc<Self>, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => {
                    let cutoff = now_ms().saturating_sub(self.completed_ttl_ms);
                    let forgotten = self.store.sweep(cutoff).await;
                    self.limiter.prune(Instant::now());
                    self.operation_limiter.prune(Instant::now());
                    if forgotten > 0 {
                        tracing::debug!(forgotten, "completed sessions swept");
                    }
                }
            }
        }
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// A new session or participant id: 16 upper-case hex digits, like the
/// seed's (`0002EaAY01MT007C`), random so engines sharing a bus never
/// collide in practice.
pub fn new_id() -> String {
    format!("{:016X}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::customer::CustomerOp;
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
            OpError::missing("targetUri or targetPath is mandatory")
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
                key: params::DEFAULT_DISPOSITION_KEY.into()
            }
        );
        assert!(Op::parse("RemoveParticipantFromConference", &body(json!({}))).is_err());
        assert!(CustomerOp::parse(&body(json!({"operationName": "Transfer"}))).is_err());
    }
}
