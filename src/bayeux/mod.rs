//! `/api/v2/notifications`: the hub's notifications over Bayeux 1.0, as
//! CometD clients speak it, long-polling (`POST`) and WebSocket (`GET`
//! with an upgrade, the same messages as JSON arrays on one socket).
//!
//! Owns the Bayeux side of a party: the `clientId`s and their expiry
//! after `maxInterval` without a connect, the meta channels (handshake
//! with the token in `ext.access_token` or `Authorization: Bearer`,
//! connect, subscribe and unsubscribe of `/v2/me/facebooksession` only,
//! disconnect), and the two transports. A Bayeux client is one more kind
//! of hub connection: it attaches at its handshake (with `since` and
//! `epoch` from the handshake's `ext`, as `/ws` takes them from its
//! query), gets the same views, the same bounded queue and the same
//! frames serialized once per audience; see [`client`] for deliveries and
//! the ack extension, [`message`] for the wire shapes, [`websocket`] for
//! the socket's loop.

pub mod client;
pub mod message;
mod websocket;

use std::net::IpAddr;
use std::sync::{Arc, Once};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRef, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use dashmap::DashMap;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::auth::{bearer_token, roles, AuthError, Gate, RoleSet};
use crate::client_addr::TrustedProxies;
use crate::frame::CHANNEL;
use crate::hub::{AttachError, Resume};
use crate::metrics::refusal;
use crate::state::SharedState;
use client::{Client, ConnectLimits, Delivery};
use message::Request;

/// The endpoint's path; CometD's long-polling transport appends a slash
/// and the message type (`/handshake`, `/connect`, or nothing), ignored.
pub const PATH: &str = "/api/v2/notifications";

/// The Bayeux clients of this process.
pub struct Bayeux {
    state: SharedState,
    clients: DashMap<Box<str>, Arc<Client>>,
    sweeper: Once,
}

/// The routes' state.
#[derive(Clone)]
pub struct Endpoint(Arc<Bayeux>);

impl FromRef<Endpoint> for TrustedProxies {
    fn from_ref(e: &Endpoint) -> Self {
        e.0.state.trusted_proxies.clone()
    }
}

/// The endpoint's routes, for a router of any state.
pub fn router<S: Clone + Send + Sync + 'static>(state: SharedState) -> Router<S> {
    let endpoint = Endpoint(Arc::new(Bayeux {
        state,
        clients: DashMap::new(),
        sweeper: Once::new(),
    }));
    Router::new()
        .route(PATH, post(long_poll).get(websocket::upgrade))
        .route(&format!("{PATH}/"), post(long_poll))
        .route(&format!("{PATH}/{{*kind}}"), post(long_poll))
        .with_state(endpoint)
}

/// Who a request comes from, besides its messages.
pub(crate) struct Caller<'a> {
    /// `Authorization: Bearer` of the HTTP request (or the upgrade).
    pub header_token: Option<&'a str>,
    pub addr: IpAddr,
}

/// What a batch comes to: notifications, then replies.
#[derive(Default)]
pub(crate) struct Answer {
    pub messages: Vec<Bytes>,
    pub replies: Vec<Value>,
}

impl Answer {
    fn add(&mut self, d: Delivery) {
        self.messages.extend(d.messages);
        self.replies.push(d.reply);
    }

    pub fn body(&self) -> String {
        message::response(&self.messages, &self.replies)
    }
}

/// `POST /api/v2/notifications`: one long-polling request.
async fn long_poll(
    State(Endpoint(bayeux)): State<Endpoint>,
    crate::client_addr::ClientAddr(addr): crate::client_addr::ClientAddr,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !crate::ws::origin_allowed(&bayeux.state.config.allowed_origins, &headers) {
        bayeux.state.metrics.auth_rejects.inc("origin");
        return refusal_response(StatusCode::FORBIDDEN, "403::origin not allowed");
    }
    let Ok(body) = axum::body::to_bytes(body, message::MAX_REQUEST).await else {
        return refusal_response(StatusCode::PAYLOAD_TOO_LARGE, "413::request too large");
    };
    let requests = match message::parse_batch(&body) {
        Ok(r) => r,
        Err(e) => return json_response(StatusCode::BAD_REQUEST, format!("[{}]", e.reply())),
    };
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let caller = Caller {
        header_token: bearer_token(authorization, None),
        addr,
    };
    let mut answer = Answer::default();
    for req in requests {
        match req {
            Ok(req) if req.channel == message::CONNECT => {
                answer.add(bayeux.connect(&req).await);
            }
            Ok(req) => answer.replies.push(bayeux.handle(&req, &caller).await),
            Err(reply) => answer.replies.push(reply),
        }
    }
    json_response(StatusCode::OK, answer.body())
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn refusal_response(status: StatusCode, error: &str) -> Response {
    let body = json!([{"successful": false, "error": error}]).to_string();
    json_response(status, body)
}

impl Bayeux {
    fn limits(&self) -> ConnectLimits {
        let cfg = &self.state.config;
        ConnectLimits {
            timeout: Duration::from_millis(cfg.bayeux_timeout_ms),
            max_bytes: cfg.max_frame_bytes,
            queue: self.state.hub.config().queue,
        }
    }

    fn client(&self, req: &Request) -> Option<Arc<Client>> {
        let client = self.clients.get(req.client_id.as_deref()?)?.clone();
        client.touch();
        Some(client)
    }

    fn remove(&self, id: &str) {
        if let Some((_, client)) = self.clients.remove(id) {
            client.end();
        }
    }

    /// Answers a `/meta/connect` (held, see [`Client::connect`]).
    pub(crate) async fn connect(&self, req: &Request) -> Delivery {
        let Some(client) = self.client(req) else {
            return unknown_client(req);
        };
        let delivery = client
            .connect(req, self.limits(), &self.state.shutdown)
            .await;
        if let Some(ending) = delivery.ending {
            tracing::debug!(?ending, "bayeux client ended");
            self.remove(&client.id);
        }
        delivery
    }

    /// Answers any message but a connect.
    pub(crate) async fn handle(self: &Arc<Self>, req: &Request, caller: &Caller<'_>) -> Value {
        match req.channel.as_str() {
            message::HANDSHAKE => self.handshake(req, caller).await,
            message::SUBSCRIBE | message::UNSUBSCRIBE => self.subscription(req),
            message::DISCONNECT => {
                if let Some(id) = req.client_id.as_deref() {
                    self.remove(id);
                }
                Value::Object(message::success(req))
            }
            c if c.starts_with("/meta/") => message::refuse(req, 400, "unknown meta channel", None),
            _ => message::refuse(req, 403, "publishing is not allowed", None),
        }
    }

    fn subscription(&self, req: &Request) -> Value {
        let Some(client) = self.client(req) else {
            return unknown_client(req).reply;
        };
        let subscription = req.subscription.as_ref().and_then(Value::as_str);
        if subscription != Some(CHANNEL) {
            let mut reply = message::failure(
                &req.channel,
                req.id.as_ref(),
                403,
                subscription.unwrap_or(""),
                "only /v2/me/facebooksession can be subscribed to",
            );
            reply["subscription"] = req.subscription.clone().unwrap_or(Value::Null);
            return reply;
        }
        if req.channel == message::SUBSCRIBE {
            client.subscribe();
        } else {
            client.unsubscribe();
        }
        let mut reply = message::success(req);
        reply.insert("subscription".into(), Value::String(CHANNEL.into()));
        Value::Object(reply)
    }

    /// A handshake: the token, a slot, the hub attachment, a `clientId`.
    /// Any refusal leaves nothing behind.
    async fn handshake(self: &Arc<Self>, req: &Request, caller: &Caller<'_>) -> Value {
        let state = &self.state;
        let gate = Gate {
            authenticator: state.auth.clone(),
            metrics: state.metrics.clone(),
        };
        let token = req.ext_str("access_token").or(caller.header_token);
        let principal = match gate.admit(token, roles::Subscriber::ROLES) {
            Ok(p) => p,
            Err(e) => {
                let code = if e == AuthError::WrongRole { 403 } else { 401 };
                return message::refuse(req, code, &e.to_string(), Some(message::no_reconnect()));
            }
        };
        let Some(permit) = state.address_limiter.try_acquire(caller.addr) else {
            state.metrics.refusals.inc(refusal::PER_ADDRESS);
            return message::refuse(
                req,
                429,
                "too many connections from this address",
                Some(json!({"reconnect": "handshake", "interval": 5000})),
            );
        };
        let party = crate::ws::party_of(&principal);
        let since = req.ext.get("since").and_then(id_text);
        let epoch = req.ext_str("epoch");
        if let (Some(since), Some(_)) = (since.as_deref(), &state.config.bus) {
            let wait = Duration::from_millis(state.config.nats.resume_wait_ms);
            state.hub.wait_for(&party, since, wait).await;
        }
        let resume = since.as_deref().map(|since| Resume { since, epoch });
        let attached = match state.hub.attach(&party, resume) {
            Ok(a) => a,
            Err(e @ AttachError::NotTheCustomer) => {
                state.metrics.auth_rejects.inc("not_the_customer");
                return message::refuse(req, 403, &e.to_string(), Some(message::no_reconnect()));
            }
            Err(e @ AttachError::Full) => {
                state.metrics.refusals.inc(refusal::MAX_CONNECTIONS);
                return message::refuse(
                    req,
                    503,
                    &e.to_string(),
                    Some(json!({"reconnect": "handshake", "interval": 5000})),
                );
            }
        };
        let (resumed, stream_epoch) = match &attached {
            crate::hub::Attached::Agent(a) => (a.resumed, a.epoch.clone()),
            crate::hub::Attached::Customer(a) => (a.resumed, a.epoch.clone()),
        };
        let ack = req.ext.get("ack") == Some(&Value::Bool(true));
        let id = client_id();
        let expiry = token_deadline(principal.exp.saturating_add(state.auth.leeway_secs()));
        let client = Client::new(id.clone(), principal, attached, ack, expiry, permit);
        self.clients.insert(id.clone(), Arc::new(client));
        self.start_sweeper();
        let cfg = &state.config;
        let mut reply = message::success(req);
        reply.insert("version".into(), json!("1.0"));
        reply.insert(
            "supportedConnectionTypes".into(),
            json!(["websocket", "long-polling"]),
        );
        reply.insert("clientId".into(), Value::String(id.into()));
        reply.insert(
            "advice".into(),
            json!({"reconnect": "retry", "interval": 0, "timeout": cfg.bayeux_timeout_ms,
                   "maxInterval": cfg.bayeux_max_interval_ms}),
        );
        let mut ext = json!({"epoch": stream_epoch, "resumed": resumed});
        if ack {
            ext["ack"] = Value::Bool(true);
        }
        reply.insert("ext".into(), ext);
        Value::Object(reply)
    }

    /// Expires clients that went `maxInterval` without a connect, once a
    /// first client exists (a task of its own, until shutdown).
    fn start_sweeper(self: &Arc<Self>) {
        self.sweeper.call_once(|| {
            let max_interval = Duration::from_millis(self.state.config.bayeux_max_interval_ms);
            let every = (max_interval / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
            let shutdown = self.state.shutdown.clone();
            // Weak: the router owns the endpoint; the task must not keep it.
            let bayeux = Arc::downgrade(self);
            self.state.tracker.spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        () = shutdown.cancelled() => break,
                    }
                    let Some(bayeux) = bayeux.upgrade() else {
                        break;
                    };
                    let expired = bayeux.sweep(max_interval);
                    if expired > 0 {
                        tracing::debug!(expired, "bayeux clients expired");
                    }
                }
                // Shutdown: every client goes, and its hub queue with it.
                if let Some(bayeux) = bayeux.upgrade() {
                    bayeux.clients.clear();
                }
            });
        });
    }

    /// One sweep: the clients idle past `max_interval` are removed, and
    /// their hub queues freed with them.
    fn sweep(&self, max_interval: Duration) -> usize {
        let idle: Vec<Box<str>> = self
            .clients
            .iter()
            .filter(|c| c.idle_for(max_interval))
            .map(|c| c.key().clone())
            .collect();
        for id in &idle {
            self.remove(id);
        }
        idle.len()
    }

    /// Clients known now (for tests and operations).
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }
}

fn unknown_client(req: &Request) -> Delivery {
    Delivery {
        messages: Vec::new(),
        reply: message::refuse(req, 402, "unknown client", Some(message::handshake_again())),
        ending: None,
    }
}

/// A resume id as sent: a string, or a number for the plain sequences.
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// 128 random bits, as hex: a client's id is its only credential after
/// the handshake.
fn client_id() -> Box<str> {
    let bits: u128 = rand::random();
    format!("{bits:032x}").into()
}

/// When a token that expires at `exp` (epoch seconds) runs out.
fn token_deadline(exp: u64) -> Instant {
    let at = std::time::UNIX_EPOCH + Duration::from_secs(exp.min(u64::from(u32::MAX)));
    let left = at
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    Instant::now() + left.min(Duration::from_secs(86400 * 365))
}
