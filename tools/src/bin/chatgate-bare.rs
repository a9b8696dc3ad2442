//! chatgate-bare: the floor chatgate is measured against.
//!
//! The smallest broadcast server on chatgate's stack (tokio, axum's
//! WebSocket on tungstenite, the same socket buffer sizes): rooms, no
//! authentication, no views, no retention, no resume. `GET /ws?room=R`
//! joins room R (a `{"type":"welcome"}` frame first); `POST /publish` takes
//! NDJSON-like lines `ROOM FRAME` and sends each FRAME verbatim, as bytes
//! shared by the room, to every member. A member whose bounded queue is
//! full is dropped. Driven by `chatgate-load ... --target bare`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use clap::Parser;
use futures::SinkExt;
use serde::Deserialize;
use tokio::sync::mpsc;

/// Frames a member may have queued (tokio allocates the queue lazily).
const QUEUE_FRAMES: usize = 1024;
/// Frames written per flush.
const SEND_BATCH: usize = 64;

#[derive(Parser)]
#[command(
    name = "chatgate-bare",
    about = "Bare WebSocket broadcast server (benchmark floor)"
)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
}

type Members = HashMap<u64, mpsc::Sender<Utf8Bytes>>;

#[derive(Default)]
struct Rooms {
    rooms: Mutex<HashMap<String, Members>>,
    next_id: AtomicU64,
}

impl Rooms {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Members>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn join(&self, room: &str) -> (u64, mpsc::Receiver<Utf8Bytes>) {
        let (tx, rx) = mpsc::channel(QUEUE_FRAMES);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock()
            .entry(room.to_owned())
            .or_default()
            .insert(id, tx);
        (id, rx)
    }

    fn leave(&self, room: &str, id: u64) {
        let mut rooms = self.lock();
        if let Some(members) = rooms.get_mut(room) {
            members.remove(&id);
            if members.is_empty() {
                rooms.remove(room);
            }
        }
    }

    /// Offers `frame` to every member of `room`; drops those that are full.
    fn broadcast(&self, room: &str, frame: Utf8Bytes) {
        if let Some(members) = self.lock().get_mut(room) {
            members.retain(|_, tx| tx.try_send(frame.clone()).is_ok());
        }
    }
}

#[derive(Deserialize)]
struct Join {
    room: String,
}

async fn ws(
    State(rooms): State<Arc<Rooms>>,
    Query(join): Query<Join>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .read_buffer_size(chatgate::ws::READ_BUFFER)
        .write_buffer_size(chatgate::ws::WRITE_BUFFER)
        .max_write_buffer_size(1 << 20)
        .max_message_size(64 << 10)
        .on_upgrade(move |socket| serve(socket, rooms, join.room))
}

async fn serve(mut socket: WebSocket, rooms: Arc<Rooms>, room: String) {
    let (id, mut rx) = rooms.join(&room);
    if socket
        .send(Message::Text(Utf8Bytes::from_static(
            r#"{"type":"welcome"}"#,
        )))
        .await
        .is_ok()
    {
        relay(&mut socket, &mut rx).await;
    }
    rooms.leave(&room, id);
}

/// Writes queued frames (several per flush) until either side ends.
async fn relay(socket: &mut WebSocket, rx: &mut mpsc::Receiver<Utf8Bytes>) {
    loop {
        tokio::select! {
            frame = rx.recv() => {
                let Some(frame) = frame else { return };
                if socket.feed(Message::Text(frame)).await.is_err() {
                    return;
                }
                for _ in 1..SEND_BATCH {
                    let Ok(more) = rx.try_recv() else { break };
                    if socket.feed(Message::Text(more)).await.is_err() {
                        return;
                    }
                }
                if socket.flush().await.is_err() {
                    return;
                }
            }
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn publish(State(rooms): State<Arc<Rooms>>, body: Bytes) -> Response {
    let Ok(text) = std::str::from_utf8(&body) else {
        return (StatusCode::BAD_REQUEST, "body is not UTF-8").into_response();
    };
    let mut count = 0usize;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Some((room, frame)) = line.split_once(' ') else {
            return (
                StatusCode::BAD_REQUEST,
                format!("line {}: expected ROOM FRAME", count + 1),
            )
                .into_response();
        };
        rooms.broadcast(room, Utf8Bytes::from(frame.to_owned()));
        count += 1;
    }
    (StatusCode::OK, count.to_string()).into_response()
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let app = Router::new()
        .route("/ws", get(ws))
        .route(
            "/publish",
            post(publish).layer(axum::extract::DefaultBodyLimit::max(16 << 20)),
        )
        .with_state(Arc::new(Rooms::default()));
    let listener = match tokio::net::TcpListener::bind(cli.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("chatgate-bare: cannot listen on {}: {e}", cli.listen);
            return std::process::ExitCode::FAILURE;
        }
    };
    eprintln!("chatgate-bare listening on {}", cli.listen);
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chatgate-bare: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
