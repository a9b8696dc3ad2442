//! The OpenAPI 3.1 description of every HTTP endpoint, served at
//! `GET /openapi.json` and checked in as `docs/openapi.json`.
//!
//! Owns the document ([`document`]), its security schemes (one bearer JWT
//! scheme per role), the schemas of the bodies the handlers read and
//! write, and the description of the endpoints whose handlers live in
//! modules of their own making (`/ws`, the demo pages). The other
//! endpoints are described by `#[utoipa::path]` on their handlers
//! (`http`, `ingest`, `engine::routes`, `engine::customer`), so a route and
//! its description change together. Limits come from the constants that
//! enforce them.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::engine::params::{MAX_KEY_CHARS, MAX_NICKNAME_CHARS, MAX_TEXT_CHARS, MAX_URL_CHARS};

/// The document, built once.
pub fn document() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .expect("the OpenAPI document serializes")
            + "\n"
    })
}

/// `GET /openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "ops",
    summary = "This document",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)),
)]
pub async fn serve() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document()).into_response()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "chatgate",
        description = "WebSocket notification gateway for contact-center chat, with a session engine \
speaking the REST operations of the Genesys Web Services facebooksession API. Customers never see \
agent-only data. Engine refusals answer `{\"statusCode\":N,\"statusMessage\":\"...\"}` with the GWS \
statusCode values: 1 a mandatory parameter is missing, 2 not valid in the current state, 3 too many \
requests, 4 internal (a backend failed; nothing changed), 5 no permission, 6 no such resource, \
10 invalid value, 20 not authenticated. Gateway refusals (ingest, /ws, dev tokens) answer \
`{\"error\":\"...\"}`.",
        license(name = "Apache-2.0"),
    ),
    paths(
        crate::ingest::post_events,
        crate::engine::routes::operate,
        crate::engine::routes::operate_singular,
        crate::engine::routes::my_sessions,
        crate::engine::routes::one_session,
        crate::engine::routes::users,
        crate::engine::routes::queues,
        crate::engine::customer::create,
        crate::engine::customer::operate,
        ws,
        bayeux_long_poll,
        bayeux_long_poll_kind,
        bayeux_websocket,
        crate::http::healthz,
        crate::http::readyz,
        crate::http::metrics,
        crate::http::dev_token,
        serve,
        desktop,
        widget,
        web_asset,
    ),
    components(schemas(
        Operation,
        OperationAccepted,
        GwsError,
        GatewayError,
        CustomerSessionRequest,
        CustomerSessionCreated,
        CustomerOperation,
        CustomerOperationAccepted,
        IngestAccepted,
        DevToken,
        SessionList,
        OneSession,
        UserList,
        QueueList,
        BayeuxMessage,
        BayeuxExt,
        BayeuxAdvice,
        BayeuxReply,
    )),
    modifiers(&BearerSchemes),
    tags(
        (name = "engine", description = "Agent operations on sessions (GWS facebooksession), the directory"),
        (name = "customer", description = "The chat widget's API"),
        (name = "gateway", description = "Ingest and the WebSocket of notifications"),
        (name = "bayeux", description = "The notifications over Bayeux (CometD): long-polling and WebSocket, channel /v2/me/facebooksession"),
        (name = "ops", description = "Health, readiness, metrics, dev tokens, this document"),
        (name = "pages", description = "The demo agent desktop and customer widget"),
    ),
)]
struct ApiDoc;

/// One bearer JWT scheme per role: claims `sub`, `role`, `exp` (and `sid`
/// for a customer), HS256 or RS256/ES256 with a configured public key.
struct BearerSchemes;

impl Modify for BearerSchemes {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        for (name, what) in [
            ("agent", "An agent's JWT: `role` `agent`, `sub` the agent's user id, `exp`."),
            ("customer", "A customer's JWT, as `POST /api/v2/customer/sessions` returns it: `role` `customer`, `sub` the participant id, `sid` the session id, `exp`."),
            ("supervisor", "A supervisor's JWT: `role` `supervisor`, `sub`, `exp`; reads the directory and subscribes to /ws."),
            ("service", "The upstream chat server's JWT: `role` `service`, `sub`, `exp`; for `POST /upstream/events`."),
        ] {
            let scheme = HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(what))
                .build();
            components.add_security_scheme(name, SecurityScheme::Http(scheme));
        }
    }
}

/// A GWS refusal: nothing changed.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GwsError {
    /// The GWS statusCode: 1 missing parameter, 2 not valid in the current
    /// state, 3 too many requests, 4 a backend failed, 5 no permission,
    /// 6 no such resource, 10 invalid value, 20 not authenticated.
    #[schema(minimum = 1)]
    pub status_code: u32,
    pub status_message: String,
    /// The referenceId of the `Error` notification that told the
    /// session's agents of this refusal (a participant's request only).
    #[schema(required = false)]
    pub reference_id: Option<u64>,
}

/// A refusal of the gateway (ingest, /ws, dev tokens, a token of the
/// wrong kind at ingest).
#[derive(Serialize, ToSchema)]
pub struct GatewayError {
    pub error: String,
}

/// An accepted agent operation; its notifications carry the same
/// referenceId.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationAccepted {
    /// Always 0.
    #[schema(minimum = 0, maximum = 0)]
    pub status_code: u32,
    /// Increases with every request.
    pub reference_id: u64,
}

/// A user or a queue: `targetUri` (`<base>/api/v2/users/{id}`,
/// `<base>/api/v2/queues/{id}`) or `targetPath` (`/users/{id}`,
/// `/queues/{id}`); one of the two is mandatory.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    #[schema(min_length = 1)]
    pub target_uri: Option<String>,
    #[schema(min_length = 1)]
    pub target_path: Option<String>,
}

/// A message text: not blank, at most 8,192 characters.
#[derive(Deserialize, ToSchema)]
pub struct Text {
    #[schema(min_length = 1, max_length = 8192)]
    pub text: String,
}

/// One agent operation (SPEC 5): `operationName` and its parameters.
/// Unknown parameters are ignored. An operation not in the agent's
/// capabilities now is refused with statusCode 2.
#[derive(Deserialize, ToSchema)]
#[serde(tag = "operationName")]
pub enum Operation {
    /// Accept an invitation, optionally with the nickname the customer sees.
    Accept {
        #[schema(min_length = 1, max_length = 64)]
        nickname: Option<String>,
    },
    /// Decline an invitation: the session is offered to the next agent.
    Reject,
    /// A comment for agents only.
    AddComment {
        #[schema(min_length = 1, max_length = 8192)]
        comment: String,
    },
    /// Another agent joins, seen by agents only.
    Consult(Target),
    /// The target takes the chat; the transferring agent leaves.
    Transfer(Target),
    /// Conference: the target joins, seen by all.
    Invite(Target),
    Leave,
    /// Ends the chat, optionally placing the interaction in a queue.
    Complete {
        #[serde(rename = "queueName")]
        #[schema(min_length = 1, max_length = 256)]
        queue_name: Option<String>,
    },
    SendMessage(Text),
    /// A message to agents only.
    SendToAgents(Text),
    SendUrl {
        /// An http:// or https:// URL without whitespace.
        #[schema(min_length = 9, max_length = 2048, pattern = r"^https?://\S+$")]
        url: String,
    },
    SendStartTypingNotification,
    SendStopTypingNotification,
    SendStartTypingToAgentsNotification,
    SendStopTypingToAgentsNotification,
    SetInFocus,
    /// The same as SetInFocus, as GWS names it in capabilities.
    InFocus,
    SetDisposition {
        #[schema(min_length = 1, max_length = 256)]
        disposition: String,
        /// The userData key to set; `Disposition` when absent.
        #[serde(rename = "dispositionKey")]
        #[schema(min_length = 1, max_length = 256)]
        disposition_key: Option<String>,
    },
    AttachUserData(UserData),
    UpdateUserData(UserData),
    DeleteUserData {
        /// The userData keys to delete.
        #[schema(min_items = 1)]
        keys: Vec<String>,
    },
    /// Removes a consulting agent, by `participantId` or by user.
    RemoveParticipantFromConference {
        #[serde(rename = "participantId")]
        #[schema(min_length = 1)]
        participant_id: Option<String>,
        #[serde(rename = "targetUri")]
        #[schema(min_length = 1)]
        target_uri: Option<String>,
        #[serde(rename = "targetPath")]
        #[schema(min_length = 1)]
        target_path: Option<String>,
    },
}

/// userData: 1 to 256 keys of 1 to 256 characters, each value a string,
/// number, boolean or null.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserData {
    #[schema(value_type = Object)]
    pub user_data: Map<String, Value>,
}

/// `POST /api/v2/customer/sessions`.
#[derive(Deserialize, ToSchema)]
pub struct CustomerSessionRequest {
    /// Not blank, at most 64 characters.
    #[schema(min_length = 1, max_length = 64)]
    pub nickname: String,
    /// The first message: not blank, at most 8,192 characters.
    #[schema(min_length = 1, max_length = 8192)]
    pub message: String,
    /// A queue's id, name, path or URI; any agent when absent.
    pub queue: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerSessionCreated {
    pub session_id: String,
    pub participant_id: String,
    /// A customer JWT for `/ws` and the session's operations (8 hours).
    pub token: String,
}

/// One operation of the customer on their own session.
#[derive(Deserialize, ToSchema)]
#[serde(tag = "operationName")]
pub enum CustomerOperation {
    SendMessage(Text),
    SendStartTypingNotification,
    SendStopTypingNotification,
    Leave,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerOperationAccepted {
    #[schema(minimum = 0, maximum = 0)]
    pub status_code: u32,
}

#[derive(Serialize, ToSchema)]
pub struct IngestAccepted {
    /// Notifications published.
    #[schema(minimum = 1)]
    pub accepted: u64,
}

#[derive(Serialize, ToSchema)]
pub struct DevToken {
    pub token: String,
}

/// The agent's current sessions, as in ParticipantsUpdated.
#[derive(Serialize, ToSchema)]
pub struct SessionList {
    #[serde(rename = "statusCode")]
    #[schema(minimum = 0, maximum = 0)]
    pub status_code: u32,
    #[schema(value_type = Vec<Object>)]
    pub facebooksessions: Vec<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct OneSession {
    #[serde(rename = "statusCode")]
    #[schema(minimum = 0, maximum = 0)]
    pub status_code: u32,
    /// The session object, as in ParticipantsUpdated.
    #[schema(value_type = Object)]
    pub facebooksession: Value,
    /// Its recent messages, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub messages: Vec<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct User {
    pub id: String,
    pub nickname: String,
    pub uri: String,
    pub path: String,
}

#[derive(Serialize, ToSchema)]
pub struct UserList {
    #[serde(rename = "statusCode")]
    #[schema(minimum = 0, maximum = 0)]
    pub status_code: u32,
    pub users: Vec<User>,
}

#[derive(Serialize, ToSchema)]
pub struct Queue {
    pub id: String,
    pub name: String,
    pub uri: String,
    pub path: String,
    /// The user ids of its agents, in directory order.
    pub agents: Vec<String>,
    /// Interactions placed here: completed with `queueName`, or waiting
    /// after every agent rejected them.
    #[schema(value_type = Vec<Object>)]
    pub interactions: Vec<Value>,
}

#[derive(Serialize, ToSchema)]
pub struct QueueList {
    #[serde(rename = "statusCode")]
    #[schema(minimum = 0, maximum = 0)]
    pub status_code: u32,
    pub queues: Vec<Queue>,
}

/// The WebSocket of notifications (SPEC 3): frames `welcome`,
/// `notification`, `heartbeat` and `error`, JSON text.
#[utoipa::path(
    get,
    path = "/ws",
    tag = "gateway",
    summary = "WebSocket of notifications",
    description = "A WebSocket upgrade (RFC 6455). The token is the `Authorization: Bearer` header or \
the `access_token` query parameter (browsers). Server frames: `welcome` first, then `notification` \
(`{\"type\":\"notification\",\"id\",\"channel\":\"/v2/me/facebooksession\",\"data\"}`), `heartbeat` \
every 30 s, `error` before a close the server decides. Client text frames over 4 KiB close with 1009. \
At most CHATGATE_MAX_CONNECTIONS_PER_ADDRESS (default 1,000) connections per client address.",
    params(
        ("access_token" = Option<String>, Query, description = "The JWT, for clients that cannot set a header"),
        ("since" = Option<String>, Query, description = "The last notification id seen, to resume"),
        ("epoch" = Option<String>, Query, description = "The epoch of the welcome the stream began with; resumes only with `since`"),
    ),
    responses(
        (status = 101, description = "Switching protocols: the WebSocket is open"),
        (status = 400, description = "Not a WebSocket upgrade, or a bad query", content_type = "text/plain", body = String),
        (status = 401, description = "Missing, bad or expired token", body = GatewayError),
        (status = 403, description = "A token of a role that does not subscribe (service), an Origin not allowed, or a customer token of another party", body = GatewayError),
        (status = 426, description = "Not an upgradable WebSocket request (version)", content_type = "text/plain", body = String),
        (status = 429, description = "Too many connections from this address", body = GatewayError),
        (status = 503, description = "The gateway is shutting down or its connection limit is reached", body = GatewayError),
    ),
    security(("agent" = []), ("customer" = []), ("supervisor" = [])),
)]
#[allow(dead_code)]
async fn ws() {}

/// The demo agent desktop.
#[utoipa::path(get, path = "/", tag = "pages", summary = "Demo agent desktop",
    responses((status = 200, description = "HTML page", content_type = "text/html", body = String)))]
#[allow(dead_code)]
async fn desktop() {}

/// The demo customer widget.
#[utoipa::path(get, path = "/widget", tag = "pages", summary = "Demo customer widget",
    responses((status = 200, description = "HTML page", content_type = "text/html", body = String)))]
#[allow(dead_code)]
async fn widget() {}

/// A script or style sheet of the pages.
#[utoipa::path(get, path = "/web/{name}", tag = "pages", summary = "A file of the pages",
    params(("name" = String, Path, description = "File name")),
    responses(
        (status = 200, description = "The file", content_type = "text/javascript", body = String),
        (status = 404, description = "No such file", content_type = "text/plain", body = String),
    ))]
#[allow(dead_code)]
async fn web_asset() {}

/// One Bayeux message from a client; a request is one message or an array
/// of at most 16 (`MAX_BATCH`), 64 KiB in all (`MAX_REQUEST`).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BayeuxMessage {
    /// `/meta/handshake`, `/meta/connect`, `/meta/subscribe`,
    /// `/meta/unsubscribe` or `/meta/disconnect`; any other is refused in
    /// the reply (no publishing).
    #[schema(min_length = 1)]
    pub channel: String,
    /// Echoed in the reply.
    #[schema(schema_with = bayeux_id)]
    pub id: Option<Value>,
    /// What the handshake gave (every message but the handshake).
    pub client_id: Option<String>,
    /// `/v2/me/facebooksession` (subscribe, unsubscribe).
    pub subscription: Option<String>,
    pub ext: Option<BayeuxExt>,
    pub advice: Option<BayeuxAdvice>,
}

/// A Bayeux message id: a string or a number (echoed as it came; anything
/// else is not an id and is left out of the reply).
fn bayeux_id() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{SchemaType, Type};
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([
            Type::String,
            Type::Number,
            Type::Null,
        ]))
        .build()
}

/// The `ext` of a client's message.
#[derive(Deserialize, ToSchema)]
pub struct BayeuxExt {
    /// The JWT (handshake), unless `Authorization: Bearer` carries it.
    pub access_token: Option<String>,
    /// The ack extension: the last batch of notifications taken in
    /// (connect); `true` on the handshake to turn it on.
    #[schema(value_type = Option<i64>)]
    pub ack: Option<Value>,
    /// Resume (handshake): the last notification id seen, as on `/ws`.
    pub since: Option<String>,
    /// Resume (handshake): the epoch of the stream `since` counts in.
    pub epoch: Option<String>,
}

/// The `advice` of a connect.
#[derive(Deserialize, ToSchema)]
pub struct BayeuxAdvice {
    /// How long the server may hold this connect, in milliseconds (capped
    /// by the server's own).
    #[schema(minimum = 0)]
    pub timeout: Option<u64>,
}

/// One Bayeux message to a client: a reply (`channel` `/meta/...`,
/// `successful`, an `error` of the form `code:args:message`, `advice`) or a
/// notification (`channel` `/v2/me/facebooksession`, `data`, `ext.id`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BayeuxReply {
    pub channel: Option<String>,
    pub successful: Option<bool>,
    pub client_id: Option<String>,
    /// The request message's, as it came (a string or a number).
    #[schema(schema_with = bayeux_id)]
    pub id: Option<Value>,
    /// `401::...` for a missing or bad token, `403::...` for one of a role
    /// that does not subscribe, `402::...` for an unknown clientId.
    pub error: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub advice: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub ext: Option<Value>,
    /// A notification, as `/ws` delivers it.
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
}

/// The API description of Bayeux long-polling, the same on both of its
/// paths (`extra` adds the path's own parameters).
macro_rules! bayeux_long_poll_doc {
    ($path:literal, $summary:literal, $description:expr, [$($extra:tt)*], $handler:item) => {
        #[utoipa::path(
            post,
            path = $path,
            tag = "bayeux",
            summary = $summary,
            description = $description,
            $($extra)*
            request_body(content = Vec<BayeuxMessage>, content_type = "application/json"),
            responses(
                (status = 200, description = "The replies, and the notifications of a connect", body = Vec<BayeuxReply>),
                (status = 400, description = "Not JSON, not a message or an array of them, or over 16 messages", body = Vec<BayeuxReply>),
                (status = 403, description = "An Origin not allowed", body = Vec<BayeuxReply>),
                (status = 413, description = "A request over 64 KiB", body = Vec<BayeuxReply>),
            ),
            security((), ("agent" = []), ("customer" = []), ("supervisor" = [])),
        )]
        #[allow(dead_code)]
        $handler
    };
}

bayeux_long_poll_doc!(
    "/api/v2/notifications",
    "Bayeux long-polling",
    "A Bayeux 1.0 request: one message or an array of them. Handshake (the token in \
`ext.access_token` or the `Authorization: Bearer` header; `ext.since` and `ext.epoch` to resume), \
subscribe to `/v2/me/facebooksession`, then connect: a connect is held until notifications come or its \
timeout ends, and its reply carries them, each with `ext.id` as on `/ws`. Refusals are replies with \
`successful: false` (HTTP 200), as Bayeux has it; the HTTP status is not 200 only for a request that is \
not Bayeux at all.",
    [],
    /// `POST /api/v2/notifications`: Bayeux long-polling.
    async fn bayeux_long_poll() {}
);

bayeux_long_poll_doc!(
    "/api/v2/notifications/{kind}",
    "Bayeux long-polling (message type in the path)",
    "As `POST /api/v2/notifications`; the path's last part (`handshake`, `connect`, ...) \
is not read.",
    [params((
        "kind" = String,
        Path,
        description = "The message type, as CometD clients append it"
    )),],
    /// `POST /api/v2/notifications/{kind}`: the same, where the client
    /// names the message in the path (CometD's `appendMessageTypeToURL`).
    async fn bayeux_long_poll_kind() {}
);

/// `GET /api/v2/notifications`: Bayeux over WebSocket.
#[utoipa::path(
    get,
    path = "/api/v2/notifications",
    tag = "bayeux",
    summary = "Bayeux over WebSocket",
    description = "A WebSocket upgrade (RFC 6455) whose text messages are Bayeux requests and replies, \
as in long-polling (the token in `ext.access_token` of the handshake, or the upgrade's `Authorization: \
Bearer` header). Client messages over 64 KiB close the socket with 1009.",
    responses(
        (status = 101, description = "Switching protocols: the WebSocket is open"),
        (status = 400, description = "Not a WebSocket upgrade", content_type = "text/plain", body = String),
        (status = 403, description = "An Origin not allowed", body = GatewayError),
        (status = 426, description = "Not an upgradable WebSocket request (version)", content_type = "text/plain", body = String),
        (status = 429, description = "Too many connections from this address", body = GatewayError),
    ),
    security((), ("agent" = []), ("customer" = []), ("supervisor" = [])),
)]
#[allow(dead_code)]
async fn bayeux_websocket() {}

/// Limits the descriptions quote, kept with the constants that enforce them.
const _: () = {
    assert!(MAX_TEXT_CHARS == 8192);
    assert!(MAX_NICKNAME_CHARS == 64);
    assert!(MAX_KEY_CHARS == 256);
    assert!(MAX_URL_CHARS == 2048);
    assert!(crate::bayeux::message::MAX_BATCH == 16);
    assert!(crate::bayeux::message::MAX_REQUEST == 64 << 10);
};
