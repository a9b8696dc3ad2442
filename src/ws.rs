//! `GET /ws`: one connection's life.
//!
//! Owns the handshake (token, Origin, `since`), the welcome frame, sending
//! the backlog then the live queue, heartbeats and pings, the liveness and
//! token-expiry deadlines, client frames (pong and close; over-long text
//! closes with 1009) and every close the server decides, each with an
//! error frame first (but 1001 on shutdown, after flushing what is
//! queued). Routing and the slow-consumer rule are the hub's; this module
//! only moves bytes, in one task per connection.
//!
//! Bounds: client text over [`MAX_CLIENT_TEXT`] closes with 1009, and
//! tungstenite refuses any message or frame over 16 KiB from its header;
//! its read buffer is [`READ_BUFFER`] bytes, its write buffer
//! [`WRITE_BUFFER`], at most 1 MiB unsent per socket; a write that does not
//! complete within the write timeout drops the peer. The handshake's own
//! bounds (request head time and size) are the listener's (`listen`).

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::SinkExt;
use serde::Deserialize;
use serde_json::json;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::auth::{roles, Authenticated, Principal, Role};
use crate::client_addr::ClientAddr;
use crate::error::AppError;
use crate::hub::{AttachError, Attachment, Party, Registration};
use crate::limits::AddressPermit;
use crate::metrics::refusal;
use crate::outbox::{EndSignal, Ended, Inbox, Queued};
use crate::state::SharedState;

/// Largest client text frame accepted; longer ones close with 1009.
pub const MAX_CLIENT_TEXT: usize = 4096;
/// tungstenite's own message and frame limits, low since the server
/// receives almost nothing. Up to this size a frame is read whole, so the
/// 1009 close reaches the client cleanly; a longer one is refused from its
/// header, before its payload is buffered (1009 as well, though the unread
/// payload may reset the TCP connection before the client reads it).
const MAX_CLIENT_MESSAGE: usize = 16 << 10;
/// tungstenite's read buffer (default 128 KiB): it is zero-filled at the
/// first read, so all of it is resident for every connection. The server
/// reads almost nothing (pongs and closes fit in one read; a larger client
/// frame grows the buffer for itself).
pub const READ_BUFFER: usize = 512;
/// Bytes of frames gathered before a write to the socket.
pub const WRITE_BUFFER: usize = 4096;
/// Frames sent per flush when several are queued.
const SEND_BATCH: usize = 64;

/// Close codes the server uses.
pub mod close {
    pub const GOING_AWAY: u16 = 1001;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
    pub const TRY_AGAIN_LATER: u16 = 1013;
    pub const TOKEN_EXPIRED: u16 = 4001;
}

/// The token may come as `access_token` too (see `auth::roles::Subscriber`).
#[derive(Deserialize)]
pub struct WsQuery {
    since: Option<String>,
}

pub async fn ws_handler(
    State(state): State<SharedState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    Query(q): Query<WsQuery>,
    ws: WebSocketUpgrade,
    // Last, so that a request that is no upgrade is refused as before.
    Authenticated { principal, .. }: Authenticated<roles::Subscriber>,
) -> Response {
    if !origin_allowed(&state.config.allowed_origins, &headers) {
        state.metrics.auth_rejects.inc("origin");
        return AppError::Forbidden("origin not allowed".into()).into_response();
    }
    // Held for the connection's life; released when its task ends.
    let Some(permit) = state.address_limiter.try_acquire(client) else {
        state.metrics.refusals.inc(refusal::PER_ADDRESS);
        tracing::debug!(%client, "too many connections from this address");
        return AppError::TooManyRequests("too many connections from this address".into())
            .into_response();
    };
    let party = party_of(&principal);
    if let (Some(since), Some(_)) = (q.since.as_deref(), &state.config.bus) {
        // The id may come from another gateway a little ahead of this one.
        let wait = Duration::from_millis(state.config.nats.resume_wait_ms);
        state.hub.wait_for(&party, since, wait).await;
    }
    let attachment = match state.hub.attach(&party, q.since.as_deref()) {
        Ok(a) => a,
        Err(e @ AttachError::NotTheCustomer) => {
            state.metrics.auth_rejects.inc("not_the_customer");
            return AppError::Forbidden(e.to_string()).into_response();
        }
        Err(e @ AttachError::Full) => {
            state.metrics.refusals.inc(refusal::MAX_CONNECTIONS);
            return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response();
        }
    };
    state
        .metrics
        .connections_opened
        .inc(principal.role.as_str());
    // Debug level: nothing in this module logs above it, and an enabled
    // span keeps its formatted fields for the connection's whole life.
    let span = tracing::debug_span!("conn", role = principal.role.as_str(), sub = %principal.sub,
        session = principal.session.as_deref().unwrap_or(""));
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(1 << 20)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| {
            let tracker = state.tracker.clone();
            tracker.track_future(
                Connection::new(socket, attachment, principal, state)
                    .run(Some(permit))
                    .instrument(span),
            )
        })
}

fn origin_allowed(allowed: &[String], headers: &HeaderMap) -> bool {
    if allowed.is_empty() {
        return true;
    }
    match headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        // Browsers always send Origin; a client without one is not a
        // cross-site page.
        None => true,
        Some(origin) => allowed.iter().any(|a| a.trim_end_matches('/') == origin),
    }
}

fn party_of(p: &Principal) -> Party {
    match p.role {
        Role::Customer => Party::Customer {
            session: p.session.clone().unwrap_or_default(),
            participant: p.sub.clone(),
        },
        Role::Supervisor => Party::Supervisor,
        _ => Party::Agent(p.sub.clone()),
    }
}

/// Why the connection ends.
enum End {
    /// The peer closed or vanished: nothing to send.
    Peer,
    /// The server shuts down: flush what is queued, then close with 1001.
    Shutdown,
    /// The server closes, with an error frame first.
    Close(u16, &'static str),
}

impl End {
    fn of(why: Ended) -> End {
        match why {
            Ended::Slow => End::Close(close::TRY_AGAIN_LATER, "slow consumer: resume with since"),
            Ended::Revoked => End::Close(
                close::POLICY,
                "the token's subject is not the customer of this session",
            ),
        }
    }
}

struct Connection {
    socket: WebSocket,
    inbox: Inbox,
    /// Frames owed before the live queue: a replay or a snapshot.
    backlog: VecDeque<Utf8Bytes>,
    resumed: bool,
    /// Dropped (the hub lets go) as soon as the connection ends, before
    /// the closing handshake.
    registration: Option<Registration>,
    /// Learns when the hub ends the queue while a write is blocked.
    end_signal: EndSignal,
    principal: Principal,
    state: SharedState,
    write_timeout: Duration,
}

impl Connection {
    fn new(
        socket: WebSocket,
        attachment: Attachment,
        principal: Principal,
        state: SharedState,
    ) -> Self {
        let write_timeout = Duration::from_secs(state.config.write_timeout_secs.max(1));
        Self {
            socket,
            end_signal: attachment.inbox.end_signal(),
            inbox: attachment.inbox,
            backlog: attachment.backlog.into(),
            resumed: attachment.resumed,
            registration: Some(attachment.registration),
            principal,
            state,
            write_timeout,
        }
    }

    /// Serves the connection to its end; `_permit` (its address's slot)
    /// is released only then.
    async fn run(mut self, _permit: Option<AddressPermit>) {
        let end = self.serve().await;
        self.registration = None;
        let code = match end {
            End::Peer => "peer".to_string(),
            End::Shutdown => {
                let _ = timeout(self.write_timeout, self.flush_and_go_away()).await;
                close::GOING_AWAY.to_string()
            }
            End::Close(code, reason) => {
                // Frames still queued are not sent: the client resumes
                // from the last one it got.
                self.inbox.discard();
                let _ = timeout(self.write_timeout, self.close_with_error(code, reason)).await;
                code.to_string()
            }
        };
        tracing::debug!(code, "connection closed");
        self.state.metrics.connections_closed.inc(&code);
    }

    async fn serve(&mut self) -> End {
        tracing::debug!(
            resumed = self.resumed,
            backlog = self.backlog.len(),
            "connection opened"
        );
        let welcome = json!({
            "type": "welcome",
            "role": self.principal.role,
            "sub": self.principal.sub,
            "resumed": self.resumed,
        });
        let welcome = Message::Text(welcome.to_string().into());
        if let Err(end) = self.send_batch([welcome]).await {
            return end;
        }
        self.live().await
    }

    /// Sends the backlog, then the live queue, with heartbeats and pings,
    /// until something ends the connection. Client frames and the
    /// heartbeat come before outgoing frames, so a busy stream never
    /// starves pongs.
    async fn live(&mut self) -> End {
        let cfg = &self.state.config;
        let heartbeat_every = Duration::from_secs(cfg.heartbeat_secs.max(1));
        let pong_timeout = Duration::from_secs(cfg.pong_timeout_secs.max(1));
        let expires = token_deadline(
            self.principal
                .exp
                .saturating_add(self.state.auth.leeway_secs()),
        );
        let shutdown = self.state.shutdown.clone();
        // The deadlines are made once and pinned, not remade at every turn
        // of the loop: each turn then costs no timer or waiter registration.
        let cancelled = shutdown.cancelled();
        let expiry = sleep_until(expires);
        let pong_deadline = sleep_until(far_future());
        tokio::pin!(cancelled, expiry, pong_deadline);
        let mut awaiting_pong = false;
        let mut heartbeat =
            tokio::time::interval_at(Instant::now() + heartbeat_every, heartbeat_every);
        loop {
            tokio::select! {
                biased;
                () = &mut cancelled => return End::Shutdown,
                () = &mut expiry => return End::Close(close::TOKEN_EXPIRED, "token expired"),
                () = &mut pong_deadline, if awaiting_pong => {
                    tracing::debug!("no pong in time");
                    return End::Peer;
                }
                msg = self.socket.recv() => match client_frame(msg) {
                    ClientFrame::Pong => awaiting_pong = false,
                    ClientFrame::Ignored => {}
                    ClientFrame::End(end) => return end,
                },
                _ = heartbeat.tick() => {
                    let beat = Utf8Bytes::from_static(r#"{"type":"heartbeat"}"#);
                    let ping = Message::Ping(Default::default());
                    if let Err(end) = self.send_batch([Message::Text(beat), ping]).await {
                        return end;
                    }
                    if !awaiting_pong {
                        awaiting_pong = true;
                        pong_deadline.as_mut().reset(Instant::now() + pong_timeout);
                    }
                }
                out = next_out(&mut self.backlog, &mut self.inbox) => {
                    let sent = match out {
                        Out::Backlog(frames) => {
                            self.send_batch(frames.into_iter().map(Message::Text)).await
                        }
                        Out::Live(first) => self.send_queued(first).await,
                        Out::Ended => {
                            return self
                                .inbox
                                .end_reason()
                                .map_or(End::Close(close::INTERNAL, "stream ended"), End::of);
                        }
                    };
                    if let Err(end) = sent {
                        return end;
                    }
                }
            }
        }
    }

    /// Writes `first` and the frames queued behind it (up to a batch) with
    /// one flush, taking them off the queue as they go: no buffer per batch.
    async fn send_queued(&mut self, first: Queued) -> Result<(), End> {
        let Connection {
            socket,
            inbox,
            end_signal,
            state,
            write_timeout,
            ..
        } = self;
        let metrics = &state.metrics;
        let write = async move {
            let mut next = Some(first);
            let mut fed = 0;
            while let Some(queued) = next.take() {
                socket.feed(Message::Text(queued.frame)).await?;
                // Delivery latency: from the hub taking the notification
                // off the bus to its frame handed to the socket (the flush
                // of this batch follows at once).
                metrics.delivery_latency.observe(queued.at.elapsed());
                fed += 1;
                if fed < SEND_BATCH {
                    next = inbox.try_recv();
                }
            }
            socket.flush().await
        };
        guarded(write, *write_timeout, end_signal, &state.shutdown).await
    }

    /// Writes several messages with one flush.
    async fn send_batch(&mut self, msgs: impl IntoIterator<Item = Message>) -> Result<(), End> {
        let socket = &mut self.socket;
        let write = async move {
            for m in msgs {
                socket.feed(m).await?;
            }
            socket.flush().await
        };
        guarded(
            write,
            self.write_timeout,
            &self.end_signal,
            &self.state.shutdown,
        )
        .await
    }

    /// Shutdown: sends what is already queued (nothing more), then 1001.
    async fn flush_and_go_away(&mut self) {
        while let Some(queued) = self.inbox.try_recv() {
            if self.socket.feed(Message::Text(queued.frame)).await.is_err() {
                return;
            }
        }
        let frame = CloseFrame {
            code: close::GOING_AWAY,
            reason: Utf8Bytes::from_static("server shutting down"),
        };
        let _ = self.socket.send(Message::Close(Some(frame))).await;
    }

    async fn close_with_error(&mut self, code: u16, reason: &'static str) {
        let err = json!({"type": "error", "code": code, "message": reason});
        if self
            .socket
            .feed(Message::Text(err.to_string().into()))
            .await
            .is_ok()
        {
            let frame = CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            };
            let _ = self.socket.send(Message::Close(Some(frame))).await;
        }
    }
}

/// Runs a write to the socket. Gives up on it when the peer does not take
/// it within `limit`, and, only while the write is blocked, when the hub
/// ends the queue (the client fell behind: its close is due now, not after
/// the write times out) or the server shuts down.
async fn guarded(
    write: impl Future<Output = Result<(), axum::Error>>,
    limit: Duration,
    end_signal: &EndSignal,
    shutdown: &CancellationToken,
) -> Result<(), End> {
    tokio::select! {
        biased;
        done = timeout(limit, write) => match done {
            Ok(Ok(())) => Ok(()),
            _ => Err(End::Peer),
        },
        why = end_signal.ended() => Err(End::of(why)),
        () = shutdown.cancelled() => Err(End::Shutdown),
    }
}

/// What to send next.
enum Out {
    Backlog(Vec<Utf8Bytes>),
    Live(Queued),
    /// The hub ended the queue.
    Ended,
}

/// The backlog first (up to `SEND_BATCH` frames at a time), then the live
/// queue.
async fn next_out(backlog: &mut VecDeque<Utf8Bytes>, inbox: &mut Inbox) -> Out {
    if !backlog.is_empty() {
        let n = backlog.len().min(SEND_BATCH);
        return Out::Backlog(backlog.drain(..n).collect());
    }
    match inbox.recv().await {
        Some(first) => Out::Live(first),
        None => Out::Ended,
    }
}

/// What a client frame means for the connection.
enum ClientFrame {
    Pong,
    Ignored,
    End(End),
}

fn client_frame(msg: Option<Result<Message, axum::Error>>) -> ClientFrame {
    match msg {
        Some(Ok(Message::Pong(_))) => ClientFrame::Pong,
        Some(Ok(Message::Text(t))) if t.len() > MAX_CLIENT_TEXT => ClientFrame::End(too_big()),
        // Pings are answered by the library; other frames are ignored.
        Some(Ok(Message::Text(_) | Message::Binary(_) | Message::Ping(_))) => ClientFrame::Ignored,
        Some(Err(e)) if is_capacity_error(&e) => ClientFrame::End(too_big()),
        Some(Err(_)) | None | Some(Ok(Message::Close(_))) => ClientFrame::End(End::Peer),
    }
}

fn too_big() -> End {
    End::Close(close::TOO_BIG, "client frames are limited to 4 KiB")
}

/// Whether a read failed because the client's frame or message exceeded
/// the configured limits.
fn is_capacity_error(e: &axum::Error) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<tungstenite::Error>())
        .is_some_and(|e| matches!(e, tungstenite::Error::Capacity(_)))
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365)
}

/// When a token that expires at `exp` (epoch seconds) runs out: at that
/// wall-clock second exactly, not up to a second early as whole-second
/// arithmetic would have it.
fn token_deadline(exp: u64) -> Instant {
    let at = std::time::UNIX_EPOCH + Duration::from_secs(exp.min(u64::from(u32::MAX)));
    let left = at
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    Instant::now() + left.min(Duration::from_secs(86400 * 365))
}
