//! The HTTP/1.1 listener: binds the socket ([`bind`], with the configured
//! backlog), accepts TCP connections and serves the router on each with
//! hyper.
//!
//! Owns what `axum::serve` does (WebSocket upgrades, the peer address as
//! `ConnectInfo<SocketAddr>`, graceful shutdown) plus the handshake
//! timeout: a client must send a complete request head (the WebSocket
//! upgrade request included) within it after the TCP accept, or the socket
//! is closed, so that idle or slow-loris sockets cannot pile up. The
//! timeout is hyper's `header_read_timeout`, which `axum::serve` offers no
//! way to set; it also closes keep-alive connections idle for as long.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::metrics::{refusal, Metrics};

/// Binds `addr` and listens with room for `backlog` connections not yet
/// accepted (`CHATGATE_LISTEN_BACKLOG`; the kernel caps it at
/// net.core.somaxconn). A failover moves every client of a gateway to the
/// others at once; with a short queue (`TcpListener::bind` of std and
/// tokio asks for 128) the kernel drops connections past it, and they come
/// back only after a SYN retransmission, a second or more later.
/// Must be called within a tokio runtime.
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As std and tokio do: a restarted server binds its port at once
    // while connections of the previous one are in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then stops
/// accepting and waits for in-flight HTTP requests to finish (upgraded
/// WebSockets are not waited for here: they close on the same token).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    handshake_timeout: Duration,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                on_accept_error(e).await;
                continue;
            }
        };
        // Frames are small and latency matters more than packet count.
        let _ = tcp.set_nodelay(true);
        connections.spawn(serve_connection(
            tcp,
            peer,
            app.clone(),
            handshake_timeout,
            metrics.clone(),
            shutdown.clone(),
        ));
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    handshake_timeout: Duration,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let got_request = Arc::new(AtomicBool::new(false));
    let seen = got_request.clone();
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        seen.store(true, Ordering::Relaxed);
        req.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(req)
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(handshake_timeout);
    let conn = builder
        .serve_connection(TokioIo::new(tcp), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    match result {
        Err(e) if e.is_timeout() && !got_request.load(Ordering::Relaxed) => {
            metrics.refusals.inc(refusal::HANDSHAKE_TIMEOUT);
            // The TCP peer, not `ClientAddr`: no header was read, so no
            // proxy could have named a client.
            tracing::debug!(%peer, "no complete request head in time: closed");
        }
        Err(e) => tracing::trace!(%peer, error = %e, "connection ended with an error"),
        Ok(()) => {}
    }
}

/// Connection-level accept errors (the peer gave up) are skipped; others
/// (out of file descriptors) are logged and retried after a pause, as
/// hyper and axum do, instead of spinning.
async fn on_accept_error(e: io::Error) {
    use io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
