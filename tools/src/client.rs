//! The load generator's WebSocket clients: connect from a chosen loopback
//! source address, wait for the welcome, keep buffers small (thousands of
//! clients share the machine with the server under test).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures::StreamExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub type Ws = WebSocketStream<TcpStream>;

/// Connections opened from one source address before moving to the next
/// (the ephemeral port range holds about 28,000 per address).
pub const PER_SOURCE_ADDR: usize = 20_000;
/// How long a connect plus welcome may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The source address of the `index`-th connection: the system's choice
/// for the first [`PER_SOURCE_ADDR`], then 127.0.0.2, 127.0.0.3, ...
/// (only when the server listens on loopback).
pub fn source_ip(server: SocketAddr, index: usize) -> Option<IpAddr> {
    let block = index / PER_SOURCE_ADDR;
    if block == 0 || !server.ip().is_loopback() {
        return None;
    }
    let host = u8::try_from(block + 1).ok()?;
    Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)))
}

/// Small buffers: a client receives frames of a few hundred bytes.
fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(16 << 20))
}

/// Opens `ws://{server}{path}` (with a bearer token when given) and waits
/// for the server's first text frame, which must be a welcome.
pub async fn connect(
    server: SocketAddr,
    source: Option<IpAddr>,
    path: &str,
    token: Option<&str>,
) -> Result<Ws, String> {
    tokio::time::timeout(CONNECT_TIMEOUT, connect_inner(server, source, path, token))
        .await
        .map_err(|_| format!("no welcome within {CONNECT_TIMEOUT:?}"))?
}

async fn connect_inner(
    server: SocketAddr,
    source: Option<IpAddr>,
    path: &str,
    token: Option<&str>,
) -> Result<Ws, String> {
    let mut request = format!("ws://{server}{path}")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    if let Some(t) = token {
        let value = format!("Bearer {t}").parse().map_err(|_| "bad token")?;
        request.headers_mut().insert("authorization", value);
    }
    let socket = match server {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| format!("socket: {e}"))?;
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|e| format!("bind {ip}: {e}"))?;
    }
    let stream = socket
        .connect(server)
        .await
        .map_err(|e| format!("connect {server}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(config()))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.contains(r#""type":"welcome""#) => return Ok(ws),
            Some(Ok(Message::Text(t))) => return Err(format!("first frame is not a welcome: {t}")),
            Some(Ok(Message::Close(c))) => return Err(format!("closed before welcome: {c:?}")),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("before welcome: {e}")),
            None => return Err("closed before welcome".into()),
        }
    }
}

/// Raises this process's open-file limit as far as the hard limit allows;
/// returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(_) => rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft),
    }
}

/// Fails early, with advice, when `conns` sockets cannot be opened.
pub fn check_fd_budget(conns: usize) -> Result<u64, String> {
    let limit = raise_fd_limit();
    let needed = conns as u64 + 64;
    if needed > limit {
        return Err(format!(
            "{conns} connections need about {needed} open files, the limit is {limit}: \
             raise it (ulimit -n) or use fewer connections"
        ));
    }
    Ok(limit)
}
