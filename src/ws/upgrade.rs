//! The WebSocket upgrade (RFC 6455 over HTTP/1.1), on tokio-tungstenite.
//!
//! Owns the handshake's checks and answer, and the socket's settings.
//! chatgate upgrades itself instead of through axum's `WebSocketUpgrade`
//! for one reason: sending a large frame as WebSocket fragments
//! ([`send_text`]), which axum's socket cannot. A whole frame written at
//! once passes through tungstenite's write buffer, whose capacity then
//! stays with the connection for its life: a 512 KiB snapshot frame would
//! cost every connection that ever got one 512 KiB. In fragments the
//! buffer never holds more than [`WRITE_BUFFER`] plus one [`FRAGMENT`],
//! whatever the frame bound; the client sees one message.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::SinkExt;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame as WsFrame;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

/// An upgraded connection.
pub type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// tungstenite's read buffer (default 128 KiB): it is zero-filled at the
/// first read, so all of it is resident for every connection. The server
/// reads almost nothing (pongs and closes fit in one read; a larger client
/// frame grows the buffer for itself).
pub const READ_BUFFER: usize = 512;
/// Bytes of frames gathered before a write to the socket.
pub const WRITE_BUFFER: usize = 4096;
/// Frames larger than this go out as fragments of this size.
pub const FRAGMENT: usize = 8192;
/// tungstenite's limit on its write buffer: what is gathered, plus one
/// fragment or control frame, plus room to spare. Never reached by what
/// [`send_text`] writes.
const MAX_WRITE_BUFFER: usize = WRITE_BUFFER + 4 * FRAGMENT;

/// The request half of a WebSocket handshake, checked.
pub struct WsUpgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

/// Why a request is not a WebSocket handshake.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("a WebSocket handshake is a GET")]
    NotGet,
    #[error("Connection: upgrade and Upgrade: websocket are required")]
    NotAnUpgrade,
    #[error("Sec-WebSocket-Version: 13 is required")]
    Version,
    #[error("Sec-WebSocket-Key is required")]
    NoKey,
    #[error("this connection cannot be upgraded")]
    NotUpgradable,
}

impl IntoResponse for UpgradeError {
    fn into_response(self) -> Response {
        let status = match self {
            UpgradeError::NotGet => StatusCode::METHOD_NOT_ALLOWED,
            UpgradeError::Version => StatusCode::UPGRADE_REQUIRED,
            UpgradeError::NotUpgradable => StatusCode::UPGRADE_REQUIRED,
            UpgradeError::NotAnUpgrade | UpgradeError::NoKey => StatusCode::BAD_REQUEST,
        };
        (status, self.to_string()).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WsUpgrade {
    type Rejection = UpgradeError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, UpgradeError> {
        if parts.method != Method::GET {
            return Err(UpgradeError::NotGet);
        }
        let h = &parts.headers;
        if !has_token(h, header::CONNECTION, "upgrade")
            || !has_token(h, header::UPGRADE, "websocket")
        {
            return Err(UpgradeError::NotAnUpgrade);
        }
        if !has_token(h, header::SEC_WEBSOCKET_VERSION, "13") {
            return Err(UpgradeError::Version);
        }
        let key = h
            .get(header::SEC_WEBSOCKET_KEY)
            .cloned()
            .ok_or(UpgradeError::NoKey)?;
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(UpgradeError::NotUpgradable)?;
        Ok(Self { key, on_upgrade })
    }
}

/// Whether a comma-separated header has `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

impl WsUpgrade {
    /// Answers 101 and, once the client has it, hands the socket to
    /// `serve` (from a task of its own; `spawn` decides how, e.g. tracked
    /// for shutdown). `serve` is expected to spawn the connection's task:
    /// the upgrade's task then ends, so that what it needed (the upgrade
    /// future, `serve`'s captures) is not kept inside every connection's
    /// future for its whole life. `max_client_message` bounds what the
    /// client may send.
    pub fn on_upgrade(
        self,
        max_client_message: usize,
        spawn: impl FnOnce(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>),
        serve: impl FnOnce(Socket) + Send + 'static,
    ) -> Response {
        let accept = derive_accept_key(self.key.as_bytes());
        let on_upgrade = self.on_upgrade;
        spawn(Box::pin(async move {
            let Ok(upgraded) = on_upgrade.await else {
                tracing::debug!("the client went away during the upgrade");
                return;
            };
            let socket = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(config(max_client_message)),
            )
            .await;
            serve(socket);
        }));
        let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        response
    }
}

fn config(max_client_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(Some(max_client_message))
        .max_frame_size(Some(max_client_message))
}

/// Queues one text message: whole when small, else as fragments of
/// [`FRAGMENT`] bytes (cut at character boundaries). Does not flush.
pub async fn send_text(socket: &mut Socket, text: &Utf8Bytes) -> Result<(), WsError> {
    if text.len() <= FRAGMENT {
        return socket.feed(Message::Text(text.clone())).await;
    }
    let bytes = Bytes::from(text.clone());
    let s = text.as_str();
    let mut start = 0;
    while start < s.len() {
        let mut end = (start + FRAGMENT).min(s.len());
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let opcode = if start == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        let last = end == s.len();
        let frame = WsFrame::message(bytes.slice(start..end), opcode, last);
        socket.feed(Message::Frame(frame)).await?;
        start = end;
    }
    Ok(())
}

pub use tokio_tungstenite::tungstenite::Error as WsError;
