//! `GET /ws`: one connection's life.
//!
//! Owns the handshake (token, Origin, `since` and `epoch`), the welcome
//! frame, sending the backlog (a replay, or a snapshot built here a frame
//! at a time) then the live queue, heartbeats and pings, the liveness and
//! token-expiry deadlines, client frames (pong and close; over-long text
//! closes with 1009) and every close. Each close the server decides sends
//! an error frame and a close code first (shutdown: what is queued, then
//! the error frame and 1001); only a peer that closed or vanished ends
//! without one. Routing and the slow-consumer rule are the hub's; this
//! module only moves bytes, in one task per connection, generic over the
//! audience's frame type.
//!
//! Bounds: client text over [`MAX_CLIENT_TEXT`] closes with 1009, and
//! tungstenite refuses any message or frame over 16 KiB from its header;
//! the socket's buffers are `upgrade`'s (frames larger than a fragment go
//! out as fragments, so a frame of any size up to the frame bound never
//! fails a write); a write that does not complete within the write timeout
//! closes the connection as slow. The handshake's own bounds (request head
//! time and size) are the listener's (`listen`).

pub mod upgrade;

use std::future::Future;
use std::pin::{pin, Pin};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tracing::Instrument;

use crate::auth::{roles, Authenticated, Principal, Role};
use crate::client_addr::ClientAddr;
use crate::error::AppError;
use crate::frame::Frame;
use crate::hub::{AttachError, Attached, Attachment, Backlog, Party, Registration, Resume};
use crate::limits::AddressPermit;
use crate::metrics::refusal;
use crate::outbox::{EndSignal, Ended, Inbox, Queued};
use crate::state::SharedState;
use upgrade::{send_text, Socket, WsUpgrade};
pub use upgrade::{READ_BUFFER, WRITE_BUFFER};

/// Largest client text frame accepted; longer ones close with 1009.
pub const MAX_CLIENT_TEXT: usize = 4096;
/// tungstenite's own message and frame limits, low since the server
/// receives almost nothing. Up to this size a frame is read whole, so the
/// 1009 close reaches the client cleanly; a longer one is refused from its
/// header, before its payload is buffered (1009 as well, though the unread
/// payload may reset the TCP connection before the client reads it).
const MAX_CLIENT_MESSAGE: usize = 16 << 10;
/// How long a connection closed at shutdown waits for its client's own
/// close before letting go of the socket.
const SHUTDOWN_LINGER: Duration = Duration::from_secs(1);
/// Frames sent per flush when several are queued.
const SEND_BATCH: usize = 64;

/// Close codes the server uses.
pub mod close {
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
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
    epoch: Option<String>,
}

pub async fn ws_handler(
    State(state): State<SharedState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    Query(q): Query<WsQuery>,
    ws: WsUpgrade,
    // Last, so that a request that is no upgrade is refused as before.
    Authenticated { principal, .. }: Authenticated<roles::Subscriber>,
) -> Response {
    if !origin_allowed(&state.config.allowed_origins, &headers) {
        state.metrics.auth_rejects.inc("origin");
        tracing::debug!("origin refused");
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
    wait_for_history(&state, &party, q.since.as_deref()).await;
    let resume = q.since.as_deref().map(|since| Resume {
        since,
        epoch: q.epoch.as_deref(),
    });
    let attached = match state.hub.attach(&party, resume) {
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
    let upgrade_tracker = state.tracker.clone();
    let tracker = state.tracker.clone();
    ws.on_upgrade(
        MAX_CLIENT_MESSAGE,
        move |task| {
            upgrade_tracker.spawn(task);
        },
        // The connection is its own task, its future only what it needs
        // (see `Connection::run`): the memory of every idle connection.
        move |socket| match attached {
            Attached::Agent(a) => {
                let conn = Connection::new(socket, a, principal, state);
                tracker.spawn(conn.run(permit).instrument(span));
            }
            Attached::Customer(a) => {
                let conn = Connection::new(socket, a, principal, state);
                tracker.spawn(conn.run(permit).instrument(span));
            }
        },
    )
}

/// Before attaching: on a NATS bus, a resume id may come from another
/// gateway a little ahead of this one. (A customer connecting before this
/// gateway knows its session is not waited for: its welcome's epoch then
/// names the incarnation that begins after that moment.)
async fn wait_for_history(state: &SharedState, party: &Party, since: Option<&str>) {
    if let (Some(since), Some(_)) = (since, &state.config.bus) {
        let wait = Duration::from_millis(state.config.nats.resume_wait_ms);
        state.hub.wait_for(party, since, wait).await;
    }
}

pub(crate) fn origin_allowed(allowed: &[String], headers: &HeaderMap) -> bool {
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

pub(crate) fn party_of(p: &Principal) -> Party {
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
    /// The server shuts down: flush what is queued, then 1001.
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
            Ended::Shutdown => End::Shutdown,
        }
    }

    /// A write that failed or did not complete in time.
    fn write_failed(timed_out: bool) -> End {
        if timed_out {
            End::Close(
                close::TRY_AGAIN_LATER,
                "the connection did not take frames in time: resume with since",
            )
        } else {
            End::Close(close::INTERNAL, "a write failed: resume with since")
        }
    }
}

struct Connection<F: Frame> {
    socket: Socket,
    inbox: Inbox<F>,
    /// Frames owed before the live queue: a replay or a snapshot (let go
    /// once sent).
    backlog: Option<Backlog<F>>,
    resumed: bool,
    epoch: String,
    /// Dropped (the hub lets go) as soon as the connection ends, before
    /// the closing handshake.
    registration: Option<Registration>,
    /// Learns when the hub ends the queue while a write is blocked.
    end_signal: EndSignal<F>,
    principal: Principal,
    state: SharedState,
    write_timeout: Duration,
}

impl<F: Frame> Connection<F> {
    fn new(
        socket: Socket,
        attachment: Attachment<F>,
        principal: Principal,
        state: SharedState,
    ) -> Self {
        let write_timeout = Duration::from_secs(state.config.write_timeout_secs.max(1));
        Self {
            socket,
            end_signal: attachment.inbox.end_signal(),
            inbox: attachment.inbox,
            backlog: Some(attachment.backlog),
            resumed: attachment.resumed,
            epoch: attachment.epoch,
            registration: Some(attachment.registration),
            principal,
            state,
            write_timeout,
        }
    }

    /// Serves the connection to its end; `permit` (its address's slot)
    /// is released only then. Not an `async fn`: that would copy `self`
    /// into its future twice (argument and local), and this future is
    /// what every connection holds for its life.
    #[allow(clippy::manual_async_fn)]
    fn run(mut self, permit: AddressPermit) -> impl Future<Output = ()> + Send {
        async move {
            let end = self.serve().await;
            self.registration = None;
            let (code, told, linger) = self.close(end).await;
            tracing::debug!(code, "connection closed");
            self.state.metrics.connections_closed.inc(&code);
            if told {
                self.linger(linger).await;
            }
            drop(permit);
        }
    }

    /// Tells the client why the connection ends (if anyone is there to
    /// tell): the close code, whether it went out, and how long to wait
    /// for the client's own close. Boxed: a path taken once, kept out of
    /// the connection's future.
    fn close(&mut self, end: End) -> BoxFuture<'_, (String, bool, Duration)> {
        Box::pin(async move {
            match end {
                End::Peer => ("peer".to_string(), false, Duration::ZERO),
                End::Shutdown => {
                    let told = timeout(self.write_timeout, self.flush_and_go_away()).await;
                    // The process is about to go: a short wait only.
                    let linger = self.write_timeout.min(SHUTDOWN_LINGER);
                    (close::GOING_AWAY.to_string(), told.unwrap_or(false), linger)
                }
                End::Close(code, reason) => {
                    // Frames still queued are not sent: the client resumes
                    // from the last one it got.
                    self.inbox.discard();
                    let told =
                        timeout(self.write_timeout, self.close_with_error(code, reason)).await;
                    (code.to_string(), told.unwrap_or(false), self.write_timeout)
                }
            }
        })
    }

    /// Waits up to `linger` for the client's close, but not past the
    /// server's shutdown, which waits for this task. Boxed, as `close`.
    fn linger(&mut self, linger: Duration) -> BoxFuture<'_, ()> {
        let shutdown = self.state.shutdown.clone();
        Box::pin(async move {
            let _ = timeout(linger, async {
                tokio::select! {
                    () = self.await_close() => {}
                    () = shutdown.cancelled() => {}
                }
            })
            .await;
        })
    }

    async fn serve(&mut self) -> End {
        tracing::debug!(resumed = self.resumed, "connection opened");
        if let Err(end) = self.send_texts(&[self.welcome()]).await {
            return end;
        }
        self.live().await
    }

    /// The welcome frame. Its JSON tree is gone once serialized: built in
    /// `serve`, it would stay in the connection's future for its life.
    fn welcome(&self) -> Utf8Bytes {
        let welcome = json!({
            "type": "welcome",
            "role": self.principal.role,
            "sub": self.principal.sub,
            "resumed": self.resumed,
            "epoch": self.epoch,
        });
        Utf8Bytes::from(welcome.to_string())
    }

    /// Sends the backlog, then the live queue, with heartbeats and pings,
    /// until something ends the connection. The timer and client frames
    /// come before outgoing frames, so a busy stream never starves pongs.
    /// Shutdown needs no branch of its own: the hub ends every queue then.
    async fn live(&mut self) -> End {
        let cfg = &self.state.config;
        let mut due = Deadlines {
            heartbeat_every: Duration::from_secs(cfg.heartbeat_secs.max(1)),
            pong_timeout: Duration::from_secs(cfg.pong_timeout_secs.max(1)),
            expiry: token_deadline(
                self.principal
                    .exp
                    .saturating_add(self.state.auth.leeway_secs()),
            ),
            heartbeat: Instant::now() + Duration::from_secs(cfg.heartbeat_secs.max(1)),
            pong: None,
        };
        // One timer for the heartbeat, the pong and the token's expiry,
        // made once and reset: a turn of the loop registers nothing new.
        let timer = sleep_until(due.next());
        tokio::pin!(timer);
        loop {
            tokio::select! {
                biased;
                () = &mut timer => {
                    if let Err(end) = self.on_timer(&mut due).await {
                        return end;
                    }
                    timer.as_mut().reset(due.next());
                }
                msg = self.socket.next() => match client_frame(msg) {
                    ClientFrame::Pong => due.pong = None,
                    ClientFrame::Ignored => {}
                    ClientFrame::End(end) => return end,
                },
                out = next_out(&mut self.backlog, &mut self.inbox) => {
                    let sent = match out {
                        Out::Backlog(frames) => self.send_frames(&frames).await,
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

    /// What is due when the timer fires: the token's end, a pong missed,
    /// a heartbeat.
    async fn on_timer(&mut self, due: &mut Deadlines) -> Result<(), End> {
        let now = Instant::now();
        if now >= due.expiry {
            return Err(End::Close(close::TOKEN_EXPIRED, "token expired"));
        }
        if due.pong.is_some_and(|p| now >= p) {
            return Err(End::Close(
                close::INTERNAL,
                "no pong in time: the connection is considered lost",
            ));
        }
        if now >= due.heartbeat {
            self.beat().await?;
            due.heartbeat = now + due.heartbeat_every;
            due.pong.get_or_insert(now + due.pong_timeout);
        }
        Ok(())
    }

    /// A heartbeat frame and a ping.
    async fn beat(&mut self) -> Result<(), End> {
        let socket = &mut self.socket;
        let write = async move {
            let beat = Utf8Bytes::from_static(r#"{"type":"heartbeat"}"#);
            socket.feed(Message::Text(beat)).await?;
            socket.feed(Message::Ping(Default::default())).await?;
            socket.flush().await
        };
        guarded(pin!(write), self.write_timeout, &self.end_signal).await
    }

    /// Writes `first` and the frames queued behind it (up to a batch) with
    /// one flush, taking them off the queue as they go: no buffer per batch.
    async fn send_queued(&mut self, first: Queued<F>) -> Result<(), End> {
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
                send_text(socket, queued.frame.bytes()).await?;
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
        guarded(pin!(write), *write_timeout, end_signal).await
    }

    async fn send_frames(&mut self, frames: &[F]) -> Result<(), End> {
        let socket = &mut self.socket;
        let write = async move {
            for f in frames {
                send_text(socket, f.bytes()).await?;
            }
            socket.flush().await
        };
        guarded(pin!(write), self.write_timeout, &self.end_signal).await
    }

    async fn send_texts(&mut self, texts: &[Utf8Bytes]) -> Result<(), End> {
        let socket = &mut self.socket;
        let write = async move {
            for t in texts {
                send_text(socket, t).await?;
            }
            socket.flush().await
        };
        guarded(pin!(write), self.write_timeout, &self.end_signal).await
    }

    /// Shutdown: sends what is already queued (nothing more), then the
    /// error frame and 1001; whether the close went out.
    async fn flush_and_go_away(&mut self) -> bool {
        while let Some(queued) = self.inbox.try_recv() {
            if send_text(&mut self.socket, queued.frame.bytes())
                .await
                .is_err()
            {
                return false;
            }
        }
        self.close_with_error(close::GOING_AWAY, "server shutting down")
            .await
    }

    /// The error frame, then the close frame; whether both went out.
    async fn close_with_error(&mut self, code: u16, reason: &'static str) -> bool {
        let err = json!({"type": "error", "code": code, "message": reason});
        if self
            .socket
            .feed(Message::Text(Utf8Bytes::from(err.to_string())))
            .await
            .is_err()
        {
            return false;
        }
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: Utf8Bytes::from_static(reason),
        };
        self.socket.send(Message::Close(Some(frame))).await.is_ok()
    }

    /// Reads until the client's own close (the closing handshake), so that
    /// the socket is not torn down under a client still writing (its pongs,
    /// say): the reset that would follow drops what the client has not
    /// read yet, the error frame and the close included. Bounded by the
    /// caller's timeout; the hub has let go of the connection already.
    async fn await_close(&mut self) {
        while let Some(Ok(_)) = self.socket.next().await {}
    }
}

/// Runs a write to the socket. Gives up on it when the peer does not take
/// it within `limit`, and, only while the write is blocked, when the hub
/// ends the queue (the client fell behind: its close is due now, not after
/// the write times out; or the server shuts down).
///
/// The write comes pinned by the caller: moved in, it would take its
/// room in this future a second time.
async fn guarded<F>(
    mut write: Pin<&mut impl Future<Output = Result<(), tungstenite::Error>>>,
    limit: Duration,
    end_signal: &EndSignal<F>,
) -> Result<(), End> {
    // Most writes complete at once (the socket takes them): then there is
    // no timer to set nor signal to wait on, the cost of every frame.
    if let Some(done) = futures::FutureExt::now_or_never(write.as_mut()) {
        return written(done);
    }
    tokio::select! {
        biased;
        done = timeout(limit, write) => match done {
            Ok(done) => written(done),
            Err(_) => Err(End::write_failed(true)),
        },
        why = end_signal.ended() => Err(End::of(why)),
    }
}

/// What a completed write means for the connection.
fn written(done: Result<(), tungstenite::Error>) -> Result<(), End> {
    match done {
        Ok(()) => Ok(()),
        Err(e) if is_gone(&e) => Err(End::Peer),
        Err(_) => Err(End::write_failed(false)),
    }
}

/// Whether a write failed because the peer is gone (nothing can reach it).
fn is_gone(e: &tungstenite::Error) -> bool {
    match e {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => true,
        tungstenite::Error::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::UnexpectedEof
        ),
        _ => false,
    }
}

/// What to send next.
enum Out<F> {
    Backlog(Vec<F>),
    Live(Queued<F>),
    /// The hub ended the queue.
    Ended,
}

/// The backlog first (up to `SEND_BATCH` frames at a time, built as they
/// are taken), then the live queue.
async fn next_out<F: Frame>(backlog: &mut Option<Backlog<F>>, inbox: &mut Inbox<F>) -> Out<F> {
    if let Some(owed) = backlog {
        let frames: Vec<F> = owed.by_ref().take(SEND_BATCH).collect();
        if !frames.is_empty() {
            return Out::Backlog(frames);
        }
        *backlog = None;
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

fn client_frame(msg: Option<Result<Message, tungstenite::Error>>) -> ClientFrame {
    match msg {
        Some(Ok(Message::Pong(_))) => ClientFrame::Pong,
        Some(Ok(Message::Text(t))) if t.len() > MAX_CLIENT_TEXT => ClientFrame::End(too_big()),
        // Pings are answered by the library; other frames are ignored.
        Some(Ok(Message::Text(_) | Message::Binary(_) | Message::Ping(_) | Message::Frame(_))) => {
            ClientFrame::Ignored
        }
        Some(Err(tungstenite::Error::Capacity(_))) => ClientFrame::End(too_big()),
        // The peer went away without a close: nobody to tell.
        Some(Err(tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        ))) => ClientFrame::End(End::Peer),
        Some(Err(tungstenite::Error::Protocol(_) | tungstenite::Error::Utf8(_))) => {
            ClientFrame::End(End::Close(
                close::PROTOCOL,
                "a client frame broke the protocol",
            ))
        }
        Some(Err(_)) | None | Some(Ok(Message::Close(_))) => ClientFrame::End(End::Peer),
    }
}

fn too_big() -> End {
    End::Close(close::TOO_BIG, "client frames are limited to 4 KiB")
}

/// When each of a connection's timed duties is due.
struct Deadlines {
    heartbeat_every: Duration,
    pong_timeout: Duration,
    /// The token's end.
    expiry: Instant,
    /// The next heartbeat and ping.
    heartbeat: Instant,
    /// The pong a ping asked for, while none came.
    pong: Option<Instant>,
}

impl Deadlines {
    fn next(&self) -> Instant {
        let mut at = self.expiry.min(self.heartbeat);
        if let Some(p) = self.pong {
            at = at.min(p);
        }
        at
    }
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
