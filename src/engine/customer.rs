//! The customer side (the widget's API).
//!
//! - `POST /api/v2/customer/sessions` `{"nickname","message","queue"?}`:
//!   anonymous, rate-limited per client address (`client_addr`: behind a
//!   trusted proxy, the client it forwarded); creates a session routed
//!   to the queue's (or any) agent with the fewest active sessions, ties in
//!   directory order (with `CHATGATE_AUTO_ACCEPT` off, offered to that
//!   agent as an invitation they Accept or Reject); answers 201 `{"sessionId","participantId","token"}`
//!   with a customer JWT for `/ws`.
//! - `POST /api/v2/customer/sessions/{id}` with that token:
//!   SendMessage, SendStartTypingNotification, SendStopTypingNotification,
//!   Leave. Answers `{"statusCode":0}`.
//!
//! Notifications caused by a customer carry no `referenceId`: that links
//! a notification to an agent's request.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Map, Value};

use super::directory::{Queue, Target};
use super::draft::Draft;
use super::error::OpError;
use super::params::{self, json_object, MAX_TEXT_CHARS};
use super::record::{Member, SessionRecord, SessionStatus};
use super::store::Change;
use super::{messages, participants, Ctx};
use super::{new_id, now_ms, Engine, EngineState};
use crate::auth::{roles, AuthError, Authenticated, Role};
use crate::client_addr::ClientAddr;
use crate::metrics::refusal;
use crate::model::{Message, Notification, NotificationType, ParticipantType, Visibility};
use crate::publisher::Publisher;

/// How long a customer token is valid, in seconds.
pub const CUSTOMER_TOKEN_TTL_SECS: u64 = 8 * 3600;
/// Longest customer nickname.
const MAX_NICKNAME_CHARS: usize = 64;
/// Longest `Subject` kept in userData (the first message, shortened).
const SUBJECT_CHARS: usize = 100;

/// A customer opens a chat (anonymous).
#[utoipa::path(
    post,
    path = "/api/v2/customer/sessions",
    tag = "customer",
    summary = "Open a chat",
    request_body(content = crate::openapi::CustomerSessionRequest, description = "At most 64 KiB (larger: 413)"),
    responses(
        (status = 201, description = "The session, routed to the queue's (or any) agent with the fewest active sessions, and the customer's token", body = crate::openapi::CustomerSessionCreated),
        (status = 400, description = "Refused, nothing created: statusCode 1 (nickname or message missing), 6 (no such queue), 10 (not JSON, a key twice, a value empty, too long or of the wrong type)", body = crate::openapi::GwsError),
        (status = 413, description = "statusCode 10: the body is over 64 KiB", body = crate::openapi::GwsError),
        (status = 429, description = "statusCode 3: more than CHATGATE_CUSTOMER_SESSION_RATE new sessions (default 30) from this client address in a minute; `Retry-After` says when to retry", body = crate::openapi::GwsError, headers(("Retry-After" = u64, description = "Seconds"))),
        (status = 503, description = "statusCode 4: no agent to route to, or the bus or the session store did not answer; nothing created", body = crate::openapi::GwsError),
    ),
    security(()),
)]
pub async fn create(
    State(state): State<EngineState>,
    ClientAddr(client): ClientAddr,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), OpError> {
    let body = super::routes::body_of(body)?;
    let engine = state.engine.clone();
    if let Err(wait) = engine.limiter.check(client, Instant::now()) {
        state.metrics.refusals.inc(refusal::CUSTOMER_SESSION_RATE);
        tracing::debug!(%client, "too many new sessions from this address");
        let secs = wait.as_secs().max(1);
        return Err(OpError::TooManyRequests(
            format!("too many new sessions from this address; retry in {secs} s"),
            secs,
        ));
    }
    let body = json_object(&body)?;
    let nickname = params::text(&body, "nickname", MAX_NICKNAME_CHARS)?
        .trim()
        .to_owned();
    let message = params::text(&body, "message", MAX_TEXT_CHARS)?;
    let queue = queue_of(&engine, &body)?.map(|q| q.id.clone());
    let opened = tokio::spawn(open(state.publisher, engine, nickname, message, queue))
        .await
        .map_err(|_| OpError::Unavailable("the request was aborted".into()))??;
    let token = state.auth.mint(
        Role::Customer,
        &opened.participant_id,
        Some(&opened.session_id),
        CUSTOMER_TOKEN_TTL_SECS,
    );
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "sessionId": opened.session_id,
            "participantId": opened.participant_id,
            "token": token,
        })),
    ))
}

/// The `queue` of a new session: an id, a name, a path or a URI.
fn queue_of<'a>(
    engine: &'a Engine,
    body: &Map<String, Value>,
) -> Result<Option<&'a Queue>, OpError> {
    let dir = &engine.directory;
    match body.get("queue") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(q)) => dir
            .queue(q)
            .or_else(|| match dir.resolve(q) {
                Ok(Target::Queue(found)) => Some(found),
                _ => None,
            })
            .map(Some)
            .ok_or_else(|| OpError::UnknownResource(format!("unknown queue {q:?}"))),
        Some(_) => Err(OpError::bad("queue must be a string")),
    }
}

struct Opened {
    session_id: String,
    participant_id: String,
}

async fn open(
    publisher: Publisher,
    engine: Arc<Engine>,
    nickname: String,
    message: String,
    queue: Option<String>,
) -> Result<Opened, OpError> {
    let dir = &engine.directory;
    let _routing = engine.routing.lock().await;
    let load = engine.load().await;
    let queue = queue.as_deref().and_then(|q| dir.queue(q));
    let candidates = match queue {
        Some(q) => participants::by_load(q.agents.iter().map(String::as_str), dir, &load),
        None => participants::by_load(dir.agents().iter().map(|a| a.id.as_str()), dir, &load),
    };
    let agent = candidates
        .first()
        .ok_or_else(|| OpError::Unavailable("no agent to route to".into()))?;

    let now = now_ms();
    let mut record = SessionRecord::new(new_id(), now, queue.map(|q| q.id.clone()));
    record.user_data = user_data(&nickname, &message, queue);
    let customer = Member {
        participant_id: new_id(),
        kind: ParticipantType::Customer,
        user: None,
        nickname,
        visibility: Visibility::All,
    };
    let agent = Member {
        participant_id: new_id(),
        kind: ParticipantType::Agent,
        user: Some(agent.user.clone()),
        nickname: agent.nickname.clone(),
        visibility: Visibility::All,
    };
    let ctx = Ctx {
        dir,
        now_ms: now,
        reference_id: None,
        new_participant_id: String::new(),
    };
    let opened = Opened {
        session_id: record.id.clone(),
        participant_id: customer.participant_id.clone(),
    };
    let (record, notifications) = if engine.auto_accept {
        open_session(record, customer, agent, &message, &ctx)
    } else {
        offer_session(record, customer, agent, &message, &ctx)
    };
    engine
        .store
        .create(record, notifications, &publisher)
        .await?;
    Ok(opened)
}

/// The userData a new session starts with, named as in the seed.
fn user_data(nickname: &str, message: &str, queue: Option<&Queue>) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("FromAddress".into(), json!(nickname));
    let subject: String = message.chars().take(SUBJECT_CHARS).collect();
    data.insert("Subject".into(), json!(subject));
    if let Some(q) = queue {
        data.insert("RTargetRequested".into(), json!(q.name));
    }
    data
}

/// The customer's operation on their own session.
#[utoipa::path(
    post,
    path = "/api/v2/customer/sessions/{id}",
    tag = "customer",
    summary = "A customer operation",
    request_body(content = crate::openapi::CustomerOperation, description = "At most 64 KiB (larger: 413)"),
    params(("id" = String, Path, description = "The session id, as in the token's `sid`")),
    responses(
        (status = 200, description = "Accepted", body = crate::openapi::CustomerOperationAccepted),
        (status = 400, description = "Refused, nothing changed: statusCode 1 (text missing), 2 (not valid in the session's state), 10 (not JSON, a key twice, unknown operationName, text empty, too long or not a string)", body = crate::openapi::GwsError),
        (status = 401, description = "statusCode 20: missing, bad or expired token", body = crate::openapi::GwsError),
        (status = 403, description = "statusCode 5: a token of another session or role, or a customer who left", body = crate::openapi::GwsError),
        (status = 404, description = "statusCode 6: no such session", body = crate::openapi::GwsError),
        (status = 409, description = "statusCode 4: a concurrent change could not be reconciled; nothing changed", body = crate::openapi::GwsError),
        (status = 413, description = "statusCode 10: the body is over 64 KiB", body = crate::openapi::GwsError),
        (status = 503, description = "statusCode 4: the bus or the session store did not answer; nothing changed", body = crate::openapi::GwsError),
    ),
    security(("customer" = [])),
)]
pub async fn operate(
    State(state): State<EngineState>,
    Path(id): Path<String>,
    caller: Result<Authenticated<roles::Customer>, AuthError>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, OpError> {
    let customer = caller?.principal;
    let body = super::routes::body_of(body)?;
    if customer.session.as_deref() != Some(id.as_str()) {
        return Err(OpError::Forbidden(
            "this token belongs to another session".into(),
        ));
    }
    let (engine, publisher) = (state.engine, state.publisher);
    let op = CustomerOp::parse(&json_object(&body)?)?;
    let task = async move {
        let ctx = Ctx {
            dir: &engine.directory,
            now_ms: now_ms(),
            reference_id: None,
            new_participant_id: String::new(),
        };
        let operation = |record: &SessionRecord| {
            let me = record
                .member(&customer.sub)
                .filter(|m| m.kind == ParticipantType::Customer)
                .ok_or_else(|| {
                    OpError::Forbidden(format!(
                        "you are no longer a participant of session {}",
                        record.id
                    ))
                })?;
            Ok(apply_customer(record, me, &op, &ctx))
        };
        engine.store.apply(&id, operation, &publisher).await
    };
    tokio::spawn(task)
        .await
        .map_err(|_| OpError::Unavailable("the operation was aborted".into()))??;
    Ok(Json(json!({ "statusCode": 0 })))
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
            None => return Err(OpError::missing("missing operationName")),
        };
        Ok(match name {
            "SendMessage" => CustomerOp::SendMessage(params::text(body, "text", MAX_TEXT_CHARS)?),
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
        CustomerOp::SendMessage(text) => messages::text(&mut d, me, text, false),
        CustomerOp::Typing(started) => messages::typing(&mut d, me, *started, false),
        CustomerOp::Leave => {
            let m = d.message("ParticipantLeft", me, Visibility::All, None, None);
            d.emit_messages(vec![m]);
            d.remove(&me.participant_id);
            // Offered or waiting, nobody has taken the chat: it ends
            // with the customer.
            let untaken = matches!(
                d.next.status,
                SessionStatus::Invited | SessionStatus::Queued
            );
            if untaken || d.next.agent_users().next().is_none() {
                d.complete();
            } else {
                d.emit_state(NotificationType::ParticipantsUpdated);
            }
        }
    }
    d.done()
}

/// How every new session begins, offered or opened: the customer joins
/// and writes their first message.
fn customer_opening(d: &mut Draft<'_>, customer: &Member, first_message: &str) -> Vec<Message> {
    vec![
        d.message("ParticipantJoined", customer, Visibility::All, None, None),
        d.message(
            "Text",
            customer,
            Visibility::All,
            Some(first_message.to_owned()),
            None,
        ),
    ]
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
    let mut messages = customer_opening(&mut d, &customer, first_message);
    messages.push(d.message("ParticipantJoined", &agent, Visibility::All, None, None));
    d.emit_messages(messages);
    let change = d.done();
    (change.record, change.notifications)
}

/// A new session offered to `agent` (auto-accept off): state `Invited`,
/// the agent listed with visibility `Agents` (the customer does not see
/// them before they Accept), the customer's first message.
pub fn offer_session(
    mut record: SessionRecord,
    customer: Member,
    mut agent: Member,
    first_message: &str,
    ctx: &Ctx<'_>,
) -> (SessionRecord, Vec<Notification>) {
    agent.visibility = Visibility::Agents;
    record.status = SessionStatus::Invited;
    record.invited = Some(agent.participant_id.clone());
    record.participants = vec![customer.clone(), agent];
    let mut d = Draft::new(&record, ctx);
    d.emit_state(NotificationType::ParticipantsUpdated);
    let messages = customer_opening(&mut d, &customer, first_message);
    d.emit_messages(messages);
    let change = d.done();
    (change.record, change.notifications)
}
