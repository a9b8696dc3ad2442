//! The engine's REST API for agents, and the router of all engine routes.
//!
//! - `POST /api/v2/me/facebooksessions/{id}` (and the seed's singular
//!   `/api/v2/me/facebooksession/{id}`): one operation, agent token.
//! - `GET /api/v2/me/facebooksessions`: the agent's current sessions.
//! - `GET /api/v2/me/facebooksessions/{id}`: one session and its recent
//!   messages, for a participant.
//! - `GET /api/v2/users`, `GET /api/v2/queues`: the directory; each queue
//!   with the interactions placed in it.
//!
//! An operation runs in its own task: once accepted, it is applied and
//! published to the end even if the client goes away, so a change and its
//! notifications are never separated.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::capabilities::{self, Part};
use super::error::{OpError, Refused};
use super::params;
use super::participants::{self, Resolved};
use super::record::{Member, SessionRecord};
use super::store::Change;
use super::{customer, new_id, now_ms, Ctx, Engine, EngineState, Op};
use crate::auth::{roles, AuthError, Authenticated};
use crate::metrics::refusal;
use crate::model::{Message, NotificationType};
use crate::publisher::Publisher;

/// Largest request body of an engine route.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// A request body as read, or the engine's refusal in its own JSON (axum's
/// own would be plain text, unlike every other engine answer).
pub(super) fn body_of(body: Result<Bytes, BytesRejection>) -> Result<Bytes, OpError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            OpError::TooLarge(format!("the body exceeds {MAX_BODY_BYTES} bytes"))
        } else {
            OpError::bad(rejection.body_text())
        }
    })
}

/// Every engine route (mounted, with its state, for roles `all` and
/// `engine`).
pub fn router() -> Router<EngineState> {
    Router::new()
        .route("/api/v2/me/facebooksessions", get(my_sessions))
        .route(
            "/api/v2/me/facebooksessions/{id}",
            post(operate).get(one_session),
        )
        .route("/api/v2/me/facebooksession/{id}", post(operate_singular))
        .route("/api/v2/users", get(users))
        .route("/api/v2/queues", get(queues))
        .route("/api/v2/customer/sessions", post(customer::create))
        .route("/api/v2/customer/sessions/{id}", post(customer::operate))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// The API description of an agent operation, the same on both of its
/// paths (the plural one and the seed's singular one).
macro_rules! agent_operation_doc {
    ($path:literal, $summary:literal, $handler:item) => {
        #[utoipa::path(
            post,
            path = $path,
            tag = "engine",
            summary = $summary,
            request_body(content = crate::openapi::Operation, description = "`operationName` and its parameters; at most 64 KiB (larger: 413)"),
            params(("id" = String, Path, description = "The session id")),
            responses(
                (status = 200, description = "Accepted: statusCode 0; the change's notifications carry the same referenceId", body = crate::openapi::OperationAccepted),
                (status = 400, description = "Refused, nothing changed: statusCode 1 (a mandatory parameter is missing), 2 (not in the agent's capabilities now, or the target is already in the session), 6 (a target or participant naming nobody), 10 (not JSON, a key twice, unknown operationName, a parameter of the wrong type, empty or too long)", body = crate::openapi::GwsError),
                (status = 401, description = "statusCode 20: missing, bad or expired token", body = crate::openapi::GwsError),
                (status = 403, description = "statusCode 5: not a participant of the session, or not an agent's token", body = crate::openapi::GwsError),
                (status = 404, description = "statusCode 6: no such session", body = crate::openapi::GwsError),
                (status = 409, description = "statusCode 4: a concurrent change could not be reconciled; nothing changed", body = crate::openapi::GwsError),
                (status = 413, description = "statusCode 10: the body is over 64 KiB", body = crate::openapi::GwsError),
                (status = 429, description = "statusCode 3: more than CHATGATE_AGENT_OPERATION_RATE operations (default 300) of this agent in a minute; `Retry-After` says when to retry", body = crate::openapi::GwsError, headers(("Retry-After" = u64, description = "Seconds"))),
                (status = 503, description = "statusCode 4: the bus or the session store did not answer; nothing changed", body = crate::openapi::GwsError),
            ),
            security(("agent" = [])),
        )]
        $handler
    };
}

agent_operation_doc!(
    "/api/v2/me/facebooksessions/{id}",
    "An agent operation on a session",
    /// One agent operation on a session (SPEC 5).
    pub async fn operate(
        State(state): State<EngineState>,
        Path(id): Path<String>,
        caller: Result<Authenticated<roles::Agent>, AuthError>,
        body: Result<Bytes, BytesRejection>,
    ) -> Result<Json<Value>, Refused> {
        let agent = caller.map_err(OpError::from)?.principal;
        let body = body_of(body)?;
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
            )
            .into());
        }
        // A bad body or name is answered like any refusal of a participant
        // (with an Error notification), once participation is checked.
        let (name, parsed) = match params::json_object(&body) {
            Ok(body) => match Op::name_of(&body) {
                Ok(name) => (Ok(name), Op::parse(name, &body)),
                Err(e) => (Err(e.clone()), Err(e)),
            },
            Err(e) => (Err(e.clone()), Err(e)),
        };
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
            .map_err(|_| OpError::Unavailable("the operation was aborted".into()))?
            .map_err(|error| Refused {
                announced: error.announced.then_some(reference_id),
                error: error.error,
            })?;
        Ok(Json(
            json!({ "statusCode": 0, "referenceId": reference_id }),
        ))
    }
);

agent_operation_doc!(
    "/api/v2/me/facebooksession/{id}",
    "An agent operation on a session (the seed's singular path)",
    /// The seed's singular path: the same operation.
    pub async fn operate_singular(
        state: State<EngineState>,
        id: Path<String>,
        caller: Result<Authenticated<roles::Agent>, AuthError>,
        body: Result<Bytes, BytesRejection>,
    ) -> Result<Json<Value>, Refused> {
        operate(state, id, caller, body).await
    }
);

/// Why `run` failed, and whether the session's agents were told.
struct RunError {
    error: OpError,
    announced: bool,
}

impl From<OpError> for RunError {
    fn from(error: OpError) -> Self {
        RunError {
            error,
            announced: false,
        }
    }
}

/// One agent request, owned so that it can run in its own task.
struct Request {
    session: String,
    user: String,
    /// Body, name and parameter errors are reported after participation
    /// (and, for parameters, capabilities) are checked.
    name: Result<&'static str, OpError>,
    parsed: Result<Op, OpError>,
    reference_id: u64,
}

async fn run(publisher: Publisher, engine: Arc<Engine>, req: Request) -> Result<(), RunError> {
    let routes = req.parsed.as_ref().is_ok_and(Op::routes);
    let _routing = if routes {
        Some(engine.routing.lock().await)
    } else {
        None
    };
    let resolved = match &req.parsed {
        Ok(Op::Reject) => Ok(reject_candidates(&engine, &req.session).await),
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
        // Someone who is not a participant learns nothing of the session:
        // the HTTP answer only.
        let me = record
            .agent(&req.user)
            .ok_or_else(|| not_a_participant(record))?;
        let attempt = || {
            let name = req.name.clone()?;
            if !record.allows(me, name) {
                return Err(not_capable(record, me, name));
            }
            let op = req.parsed.clone()?;
            let target = resolved.clone()?;
            op.apply(record, me, &target, &ctx)
        };
        Ok(match attempt() {
            Ok(change) => Change {
                record: change.record,
                notifications: change.notifications,
                output: Ok(()),
            },
            Err(refusal) => refused(record, refusal, &ctx),
        })
    };
    let outcome = engine
        .store
        .apply(&req.session, operation, &publisher)
        .await?;
    outcome.map_err(|error| RunError {
        error,
        announced: true,
    })
}

/// A refusal of a participant's request: nothing changes, and the session's
/// agents get an `Error` notification (as GWS sends "when an operation on
/// the facebooksession resource fails") with the request's referenceId,
/// its statusCode and statusMessage. Published in the session's order, so
/// the session object it carries is the current one.
fn refused(record: &SessionRecord, refusal: OpError, ctx: &Ctx<'_>) -> Change<Result<(), OpError>> {
    let mut error = record.state_change(NotificationType::Error, ctx.reference_id, ctx.dir);
    error
        .extra
        .insert("errorCode".into(), json!(refusal.status_code()));
    error
        .extra
        .insert("errorMessage".into(), json!(refusal.to_string()));
    Change {
        record: record.clone(),
        notifications: vec![error],
        output: Err(refusal),
    }
}

/// The agents a rejected session may be offered to next: its queue's, or
/// every agent when it came through none, in load order.
async fn reject_candidates(engine: &Engine, session: &str) -> Resolved {
    let dir = &engine.directory;
    let load = engine.load().await;
    let queue = engine
        .store
        .get(session)
        .await
        .and_then(|r| r.queue)
        .and_then(|q| dir.queue(&q).cloned());
    let (name, agents) = match &queue {
        Some(q) => (
            q.name.clone(),
            participants::by_load(q.agents.iter().map(String::as_str), dir, &load),
        ),
        None => (
            String::new(),
            participants::by_load(dir.agents().iter().map(|a| a.id.as_str()), dir, &load),
        ),
    };
    Resolved::Queue { name, agents }
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
    let mine = capabilities::of(record, me);
    let why = match capabilities::part(record, me) {
        Part::Consultant if record.capabilities().contains(&name) => {
            return OpError::NotCapable(format!(
                "{name} is not available to a consulting agent: only agents the customer sees may do it (capabilities: {})",
                mine.join(", ")
            ))
        }
        Part::Invited => "you have not accepted this session yet",
        Part::WrappingUp => "you left the chat; you may wrap up and Complete",
        _ if !record.is_active() => "the session is completed",
        _ if record.customer().is_none() => "the customer has left",
        _ => "the session's state does not allow it",
    };
    OpError::NotCapable(format!(
        "{name} is not in your capabilities now: {why} (capabilities: {})",
        mine.join(", ")
    ))
}

/// The agent's current sessions.
#[utoipa::path(
    get,
    path = "/api/v2/me/facebooksessions",
    tag = "engine",
    summary = "The agent's current sessions",
    responses(
        (status = 200, description = "The session objects, as in ParticipantsUpdated", body = crate::openapi::SessionList),
        (status = 401, description = "statusCode 20: missing, bad or expired token", body = crate::openapi::GwsError),
        (status = 403, description = "statusCode 5: a token of another role", body = crate::openapi::GwsError),
        (status = 503, description = "statusCode 4: the session store did not answer", body = crate::openapi::GwsError),
    ),
    security(("agent" = [])),
)]
pub async fn my_sessions(
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
        .filter_map(|r| {
            let me = r.agent(&agent.sub)?;
            Some(r.session_object_for(&engine.directory, me))
        })
        .collect();
    Ok(Json(
        json!({ "statusCode": 0, "facebooksessions": sessions }),
    ))
}

/// One session and its recent messages, for a participant.
#[utoipa::path(
    get,
    path = "/api/v2/me/facebooksessions/{id}",
    tag = "engine",
    summary = "One session and its recent messages",
    params(("id" = String, Path, description = "The session id")),
    responses(
        (status = 200, description = "The session object and its messages", body = crate::openapi::OneSession),
        (status = 401, description = "statusCode 20: missing, bad or expired token", body = crate::openapi::GwsError),
        (status = 403, description = "statusCode 5: not a participant, or a token of another role", body = crate::openapi::GwsError),
        (status = 404, description = "statusCode 6: no such session", body = crate::openapi::GwsError),
        (status = 503, description = "statusCode 4: the session store did not answer", body = crate::openapi::GwsError),
    ),
    security(("agent" = [])),
)]
pub async fn one_session(
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
    let Some(me) = record.agent(&agent.sub) else {
        return Err(not_a_participant(&record));
    };
    let log = engine.store.messages(&id).await;
    let messages: Vec<&Message> = log.iter().map(|m| m.as_ref()).collect();
    Ok(Json(json!({
        "statusCode": 0,
        "facebooksession": record.session_object_for(&engine.directory, me),
        "messages": messages,
    })))
}

/// The directory's agents.
#[utoipa::path(
    get,
    path = "/api/v2/users",
    tag = "engine",
    summary = "The directory's agents",
    responses(
        (status = 200, description = "Every agent, with the URI and path that name it as a target", body = crate::openapi::UserList),
        (status = 401, description = "statusCode 20: missing, bad or expired token", body = crate::openapi::GwsError),
        (status = 403, description = "statusCode 5: a token of another role", body = crate::openapi::GwsError),
    ),
    security(("agent" = []), ("supervisor" = [])),
)]
pub async fn users(
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

/// The directory's queues, each with the interactions placed in it.
#[utoipa::path(
    get,
    path = "/api/v2/queues",
    tag = "engine",
    summary = "The directory's queues",
    responses(
        (status = 200, description = "Every queue, its agents and the interactions placed in it", body = crate::openapi::QueueList),
        (status = 401, description = "statusCode 20: missing, bad or expired token", body = crate::openapi::GwsError),
        (status = 403, description = "statusCode 5: a token of another role", body = crate::openapi::GwsError),
        (status = 503, description = "statusCode 4: the session store did not answer", body = crate::openapi::GwsError),
    ),
    security(("agent" = []), ("supervisor" = [])),
)]
pub async fn queues(
    State(state): State<EngineState>,
    caller: Result<Authenticated<roles::AgentOrSupervisor>, AuthError>,
) -> Result<Json<Value>, OpError> {
    caller?;
    let engine = &state.engine;
    let dir = &engine.directory;
    let placed = engine.store.placed().await;
    let queues: Vec<Value> = dir
        .queues()
        .iter()
        .map(|q| {
            // What was placed here: finished interactions (Complete with
            // queueName) and sessions waiting after every agent rejected
            // them.
            let interactions: Vec<Value> = placed
                .get(&q.id)
                .into_iter()
                .flatten()
                .map(|(id, status)| {
                    json!({"id": id, "state": status.as_str(), "uri": dir.session_uri(id)})
                })
                .collect();
            json!({
                "id": q.id,
                "name": q.name,
                "uri": dir.queue_uri(&q.id),
                "path": format!("/queues/{}", q.id),
                "agents": q.agents,
                "interactions": interactions,
            })
        })
        .collect();
    Ok(Json(json!({ "statusCode": 0, "queues": queues })))
}
