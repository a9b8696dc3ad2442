//! Bayeux over WebSocket: `GET /api/v2/notifications` with an upgrade.
//!
//! Owns the socket's loop: each text message is a batch of Bayeux messages
//! (a JSON array, or one message), answered on the same socket as one
//! array. A `/meta/connect` is held as on long-polling, while the socket
//! keeps reading (a subscribe may come meanwhile), so both transports
//! deliver, acknowledge and expire the same way; a `clientId` from a
//! handshake over HTTP is as good here. The upgrade needs no token: the
//! handshake message carries it (an `Authorization: Bearer` on the upgrade
//! counts as well). The socket takes one of its address's connection
//! slots; its messages are bounded by [`message::MAX_REQUEST`], its idle
//! time (no connect held, no message) by the advised timeout plus
//! `maxInterval`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{SinkExt, StreamExt};
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::client::Delivery;
use super::message;
use super::{Answer, Bayeux, Caller, Endpoint};
use crate::auth::bearer_token;
use crate::client_addr::ClientAddr;
use crate::error::AppError;
use crate::limits::AddressPermit;
use crate::metrics::refusal;
use crate::ws::upgrade::{send_text, Socket, WsUpgrade};

pub(super) async fn upgrade(
    State(Endpoint(bayeux)): State<Endpoint>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    ws: WsUpgrade,
) -> Response {
    let state = &bayeux.state;
    if !crate::ws::origin_allowed(&state.config.allowed_origins, &headers) {
        state.metrics.auth_rejects.inc("origin");
        return AppError::Forbidden("origin not allowed".into()).into_response();
    }
    let Some(permit) = state.address_limiter.try_acquire(addr) else {
        state.metrics.refusals.inc(refusal::PER_ADDRESS);
        return AppError::TooManyRequests("too many connections from this address".into())
            .into_response();
    };
    let header_token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| bearer_token(Some(a), None))
        .map(str::to_owned);
    let upgrade_tracker = state.tracker.clone();
    let tracker = state.tracker.clone();
    ws.on_upgrade(
        message::MAX_REQUEST,
        move |task| {
            upgrade_tracker.spawn(task);
        },
        move |socket| {
            let conn = Conn {
                socket,
                bayeux,
                addr,
                header_token,
                _permit: permit,
            };
            tracker.spawn(conn.serve());
        },
    )
}

struct Conn {
    socket: Socket,
    bayeux: Arc<Bayeux>,
    addr: IpAddr,
    header_token: Option<String>,
    _permit: AddressPermit,
}

impl Conn {
    async fn serve(mut self) {
        // The connects held; a newer one of the same client answers the
        // older at once, so each gets its reply.
        let mut held: FuturesUnordered<BoxFuture<'static, Delivery>> = FuturesUnordered::new();
        let shutdown = self.bayeux.state.shutdown.clone();
        let cfg = &self.bayeux.state.config;
        // A socket with no connect held and no message for as long as a
        // client may go between connects is closed: its slot is bounded
        // in time, too.
        let idle = Duration::from_millis(cfg.bayeux_timeout_ms + cfg.bayeux_max_interval_ms);
        let mut idle_until = Instant::now() + idle;
        loop {
            let answer = tokio::select! {
                () = sleep_until(idle_until), if held.is_empty() => break,
                msg = self.socket.next() => match msg {
                    Some(Ok(Message::Text(text))) => {
                        idle_until = Instant::now() + idle;
                        let caller = Caller { header_token: self.header_token.as_deref(), addr: self.addr };
                        batch(&self.bayeux, &caller, &text, &mut held).await
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    Some(Ok(Message::Binary(_))) => {
                        let reply = message::failure("", None, 400, "", "messages are JSON text");
                        Some(Answer { messages: Vec::new(), replies: vec![reply] })
                    }
                    // Closed, gone, or a message over the bound.
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                },
                Some(delivery) = held.next(), if !held.is_empty() => {
                    idle_until = Instant::now() + idle;
                    let mut answer = Answer::default();
                    answer.add(delivery);
                    Some(answer)
                }
                // Held connects answer shutdown themselves; one with none
                // closes here.
                () = shutdown.cancelled(), if held.is_empty() => break,
            };
            if let Some(answer) = answer {
                if !self.write(answer.body()).await {
                    break;
                }
            }
        }
        let _ = self.socket.close(None).await;
    }
}

/// Handles one client message: its replies now, its connects held.
/// (Not a method: the socket, which is not `Sync`, must not be borrowed
/// across these awaits.)
async fn batch(
    bayeux: &Arc<Bayeux>,
    caller: &Caller<'_>,
    text: &str,
    held: &mut FuturesUnordered<BoxFuture<'static, Delivery>>,
) -> Option<Answer> {
    let requests = match message::parse_batch(text.as_bytes()) {
        Ok(r) => r,
        Err(e) => {
            return Some(Answer {
                messages: Vec::new(),
                replies: vec![e.reply()],
            })
        }
    };
    let mut answer = Answer::default();
    for req in requests {
        match req {
            Ok(req) if req.channel == message::CONNECT => {
                let bayeux = bayeux.clone();
                held.push(Box::pin(async move { bayeux.connect(&req).await }));
            }
            Ok(req) => answer.replies.push(bayeux.handle(&req, caller).await),
            Err(reply) => answer.replies.push(reply),
        }
    }
    (!answer.replies.is_empty()).then_some(answer)
}

impl Conn {
    /// Writes one response; whether it went out in time.
    async fn write(&mut self, body: String) -> bool {
        let limit = Duration::from_secs(self.bayeux.state.config.write_timeout_secs.max(1));
        let text = Utf8Bytes::from(body);
        let socket = &mut self.socket;
        let write = async move {
            send_text(socket, &text).await?;
            socket.flush().await
        };
        matches!(tokio::time::timeout(limit, write).await, Ok(Ok(())))
    }
}
