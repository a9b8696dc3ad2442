//! The engine's REST API for agents, and the router of all engine routes.
//!
//! - `POST /api/v2/me/facebooksessions/{id}` (and the seed's singular
//!   `/api/v2/me/facebooksession/{id}`): one operation, agent token.
//! - `GET /api/v2/me/facebooksessions`: the agent's current sessions.
//! - `GET /api/v2/me/facebooksessions/{id}`: one session and its recent
//!   messages, for a participant.
//! - `GET /api/v2/users`, `GET /api/v2/queues`: the directory.
//!
//! An operation runs in its own task: once accepted, it is applied and
//! published to the end even if the client goes away, so a change and its
//! notifications are never separated.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::error::OpError;
use super::params;
use super::participants::{self, Resolved};
use super::record::{Member, SessionRecord};
use super::{customer, new_id, now_ms, Ctx, Engine, EngineState, Op};
use crate::auth::{roles, AuthError, Authenticated};
use crate::metrics::refusal;
use crate::model::{Message, Visibility};
use crate::publisher::Publisher;

/// Largest request body of an engine route.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Every engine route (mounted, with its state, for roles `all` and
/// `engine`).
pub fn router() -> Router<EngineState> {
    Router::new()
        .route("/api/v2/me/facebooksessions", get(my_sessions))
        .route(
            "/api/v2/me/facebooksessions/{id}",
            post(operate).get(one_session),
        )
        .route("/api/v2/me/facebooksession/{id}", post(operate))
        .route("/api/v2/users", get(users))
        .route("/api/v2/queues", get(queues))
        .route("/api/v2/customer/sessions", post(customer::create))
        .route("/api/v2/customer/sessions/{id}", post(customer::operate))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

async fn operate(
    State(state): State<EngineState>,
    Path(id): Path<String>,
    caller: Result<Authenticated<roles::Agent>, AuthError>,
    body: Bytes,
) -> Result<Json<Value>, OpError> {
    let agent = caller?.principal;
    let engine = &state.engine;
    if let Err(wait) = engine
        .operation_limiter
        .check(agent.sub.clone(), Instant::now())
    {
        state.metrics.refusals.inc(refusal::OPERATION_RATE);
        let secs = wait.as_secs().max(1);
        return Err(OpError::TooManyRequests(
            format!("too many operations from this agent; retry in {secs} s"),
            secs,
        ));
    }
    let body = params::json_object(&body)?;
    let name = Op::name_of(&body)?;
    let parsed = Op::parse(name, &body);
    let reference_id = engine.next_reference().await?;
    let request = Request {
        session: id,
        user: agent.sub,
        name,
        parsed,
        reference_id,
    };
    tokio::spawn(run(state.publisher.clone(), engine.clone(), request))
        .await
        .map_err(|_| OpError::Unavailable("the operation was aborted".into()))??;
    Ok(Json(
        json!({ "statusCode": 0, "referenceId": reference_id }),
    ))
}

/// One agent request, owned so that it can run in its own task.
struct Request {
    session: String,
    user: String,
    name: &'static str,
    /// Parameter errors are reported after participation and
    /// capabilities are checked.
    parsed: Result<Op, OpError>,
    reference_id: u64,
}

async fn run(publisher: Publisher, engine: Arc<Engine>, req: Request) -> Result<(), OpError> {
    let routes = req.parsed.as_ref().is_ok_and(|op| op.target().is_some());
    let _routing = if routes {
        Some(engine.routing.lock().await)
    } else {
        None
    };
    let resolved = match &req.parsed {
        Ok(op) if routes => participants::resolve(op, &engine.directory, &engine.load().await),
        _ => Ok(Resolved::None),
    };
    let ctx = Ctx {
        dir: &engine.directory,
        now_ms: now_ms(),
        reference_id: Some(req.reference_id),
        new_participant_id: new_id(),
    };
    let operation = |record: &SessionRecord| {
        let me = record
            .agent(&req.user)
            .ok_or_else(|| not_a_participant(record))?;
        if !record.allows(me, req.name) {
            return Err(not_capable(record, me, req.name));
        }
        let op = req.parsed.clone()?;
        let target = resolved.clone()?;
        op.apply(record, me, &target, &ctx)
    };
    engine
        .store
        .apply(&req.session, operation, &publisher)
        .await
}

fn not_a_participant(record: &SessionRecord) -> OpError {
    let ended = if record.is_active() {
        ""
    } else {
        " (it is completed)"
    };
    OpError::Forbidden(format!(
        "you are not a participant of session {}{ended}",
        record.id
    ))
}

fn not_capable(record: &SessionRecord, me: &Member, name: &str) -> OpError {
    if record.capabilities().contains(&name) && me.visibility == Visibility::Agents {
        return OpError::NotCapable(format!(
            "{name} is not available to a consulting agent: only agents the customer sees may do it"
        ));
    }
    let why = if record.customer().is_none() {
        "the customer has left"
    } else {
        "the session's state does not allow it"
    };
    OpError::NotCapable(format!(
        "{name} is not in your capabilities now: {why} (capabilities: {})",
        record.capabilities().join(", ")
    ))
}

async fn my_sessions(
    State(state): State<EngineState>,
    caller: Result<Authenticated<roles::Agent>, AuthError>,
) -> Result<Json<Value>, OpError> {
    let agent = caller?.principal;
    let engine = &state.engine;
    let sessions: Vec<_> = engine
        .store
        .sessions_of(&agent.sub)
        .await
        .iter()
        .map(|r| r.session_object(&engine.directory))
        .collect();
    Ok(Json(
        json!({ "statusCode": 0, "facebooksessions": sessions }),
    ))
}

async fn one_session(
    State(state): State<EngineState>,
    Path(id): Path<String>,
    caller: Result<Authenticated<roles::Agent>, AuthError>,
) -> Result<Json<Value>, OpError> {
    let agent = caller?.principal;
    let engine = &state.engine;
    let record = engine
        .store
        .get(&id)
        .await
        .ok_or_else(|| OpError::NotFound(format!("no session {id}")))?;
    if record.agent(&agent.sub).is_none() {
        return Err(not_a_participant(&record));
    }
    let log = engine.store.messages(&id).await;
    let messages: Vec<&Message> = log.iter().map(|m| m.as_ref()).collect();
    Ok(Json(json!({
        "statusCode": 0,
        "facebooksession": record.session_object(&engine.directory),
        "messages": messages,
    })))
}

async fn users(
    State(state): State<EngineState>,
    caller: Result<Authenticated<roles::AgentOrSupervisor>, AuthError>,
) -> Result<Json<Value>, OpError> {
    caller?;
    let engine = &state.engine;
    let dir = &engine.directory;
    let users: Vec<Value> = dir
        .agents()
        .iter()
        .map(|a| {
            json!({
                "id": a.id,
                "nickname": a.nickname,
                "uri": dir.user_uri(&a.id),
                "path": format!("/users/{}", a.id),
            })
        })
        .collect();
    Ok(Json(json!({ "statusCode": 0, "users": users })))
}

async fn queues(
    State(state): State<EngineState>,
    caller: Result<Authenticated<roles::AgentOrSupervisor>, AuthError>,
) -> Result<Json<Value>, OpError> {
    caller?;
    let engine = &state.engine;
    let dir = &engine.directory;
    let queues: Vec<Value> = dir
        .queues()
        .iter()
        .map(|q| {
            json!({
                "id": q.id,
                "name": q.name,
                "uri": dir.queue_uri(&q.id),
                "path": format!("/queues/{}", q.id),
                "agents": q.agents,
            })
        })
        .collect();
    Ok(Json(json!({ "statusCode": 0, "queues": queues })))
}
