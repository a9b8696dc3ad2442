//! Test fixtures: a real chatgate on 127.0.0.1:0, real WebSocket clients
//! (tokio-tungstenite), a real HTTP client. Every receive has a timeout,
//! so a failure fails instead of hanging.
#![allow(dead_code)]

pub mod bayeux;
pub mod cast;
pub mod nats;

use std::net::SocketAddr;
use std::time::Duration;

use chatgate::auth::{Authenticator, Role};
use chatgate::config::Config;
use chatgate::event::Event;
use chatgate::server::Server;
use chatgate::state::SharedState;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const SECRET: &str = "test-secret-not-for-production";
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub addr: SocketAddr,
    pub state: SharedState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// Starts a chatgate with a fixed secret; `tune` adjusts the settings.
pub async fn start(tune: impl FnOnce(&mut Config)) -> TestServer {
    let mut config = Config::for_tests();
    config.jwt_secret = Some(SECRET.into());
    tune(&mut config);
    // Bound as the binary binds, with the configured backlog.
    let listener =
        chatgate::listen::bind(([127, 0, 0, 1], 0).into(), config.listen_backlog).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::build(config, listener).await.unwrap();
    let state = server.state.clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    TestServer {
        addr,
        state,
        stop: Some(stop),
        task: Some(task),
    }
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(WAIT, task).await;
        }
    }

    /// Posts a body to the ingest with a service token.
    pub async fn ingest(&self, body: &str, content_type: &str) -> (u16, Value) {
        post(
            &self.url("/upstream/events"),
            &token(Role::Service, "upstream", None),
            body,
            content_type,
        )
        .await
    }

    /// Ingests notifications (as JSON values) and asserts they are accepted.
    pub async fn ingest_ok(&self, items: &[Value]) {
        let body = Value::Array(items.to_vec()).to_string();
        let (status, reply) = self.ingest(&body, "application/json").await;
        assert_eq!(status, 202, "ingest refused: {reply}");
        assert_eq!(reply["accepted"], items.len());
    }

    pub async fn connect(&self, role: Role, sub: &str, sid: Option<&str>) -> Client {
        Client::connect(self.addr, &token(role, sub, sid), None)
            .await
            .unwrap()
    }

    /// Connects with `since` in the stream's current epoch (what the
    /// party's earlier welcome on this server said), asserting the
    /// handshake succeeds.
    pub async fn resume(&self, role: Role, sub: &str, sid: Option<&str>, since: &str) -> Client {
        let epoch = self.epoch_of(role, sid);
        Client::connect(self.addr, &token(role, sub, sid), Some((since, &epoch)))
            .await
            .unwrap()
    }

    /// The epoch a party's stream counts in now: the hub's for agents and
    /// supervisors, `<epoch>.<incarnation>` of its session for a customer.
    pub fn epoch_of(&self, role: Role, sid: Option<&str>) -> String {
        let hub = &self.state.hub;
        match (role, sid) {
            (Role::Customer, Some(sid)) => {
                let incarnation = hub.session_state(sid).map_or(0, |s| s.incarnation);
                format!("{}.{incarnation}", hub.epoch())
            }
            _ => hub.epoch().to_owned(),
        }
    }

    /// Publishes notifications onto the server's bus, the path the engine
    /// takes (no HTTP), for volumes where the ingest would only slow a test.
    pub async fn publish(&self, items: &[Value]) {
        let bound = self.state.config.max_frame_bytes;
        let batch = items
            .iter()
            .map(|v| Event::parse_str(&v.to_string(), bound).unwrap())
            .collect();
        self.state.publish(batch, "test").await.unwrap();
    }

    /// Waits until the hub has dispatched `seq` notifications.
    pub async fn wait_dispatched(&self, seq: u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.state.hub.last_seq() < seq {
            assert!(
                tokio::time::Instant::now() < deadline,
                "hub did not reach {seq}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn token(role: Role, sub: &str, sid: Option<&str>) -> String {
    Authenticator::new(SECRET.as_bytes(), None)
        .unwrap()
        .mint(role, sub, sid, 3600)
}

pub async fn post(url: &str, token: &str, body: &str, content_type: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client of `/ws`.
pub struct Client {
    pub ws: Ws,
    pub welcome: Value,
}

/// What the server said when it closed.
#[derive(Debug, PartialEq)]
pub enum Closed {
    Code(u16),
    NoFrame,
}

impl Client {
    /// Connects with `token` in the Authorization header, resuming from
    /// `(since, epoch)` if given; `Err` carries the HTTP status of a
    /// refused handshake.
    pub async fn connect(
        addr: SocketAddr,
        token: &str,
        resume: Option<(&str, &str)>,
    ) -> Result<Client, u16> {
        let mut url = format!("ws://{addr}/ws");
        if let Some((since, epoch)) = resume {
            url.push_str(&format!("?since={since}&epoch={epoch}"));
        }
        let mut req = url.into_client_request().unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        Self::connect_request(req).await
    }

    pub async fn connect_request(
        req: tokio_tungstenite::tungstenite::handshake::client::Request,
    ) -> Result<Client, u16> {
        match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req)).await {
            Ok(Ok((ws, _))) => {
                let mut c = Client {
                    ws,
                    welcome: Value::Null,
                };
                let w = c.next_json().await.expect("welcome frame");
                assert_eq!(w["type"], "welcome", "first frame must be welcome: {w}");
                c.welcome = w;
                Ok(c)
            }
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp))) => {
                Err(resp.status().as_u16())
            }
            Ok(Err(e)) => panic!("connect failed: {e}"),
            Err(_) => panic!("connect timed out"),
        }
    }

    /// The epoch of the welcome this stream began with.
    pub fn epoch(&self) -> String {
        self.welcome["epoch"]
            .as_str()
            .expect("the welcome names its epoch")
            .to_owned()
    }

    /// The next text frame (heartbeats included), or `None` on close.
    pub async fn next_json(&mut self) -> Option<Value> {
        self.next_json_within(WAIT).await.expect("no frame in time")
    }

    /// `Err` on timeout, `Ok(None)` when the stream closed.
    pub async fn next_json_within(&mut self, d: Duration) -> Result<Option<Value>, ()> {
        loop {
            let msg = tokio::time::timeout(d, self.ws.next())
                .await
                .map_err(|_| ())?;
            match msg {
                Some(Ok(Message::Text(t))) => return Ok(Some(serde_json::from_str(&t).unwrap())),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok(None),
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next text frame as sent (no parsing): `Err` on timeout,
    /// `Ok(None)` when the stream closed.
    pub async fn next_text_within(&mut self, d: Duration) -> Result<Option<String>, ()> {
        loop {
            let msg = tokio::time::timeout(d, self.ws.next())
                .await
                .map_err(|_| ())?;
            match msg {
                Some(Ok(Message::Text(t))) => return Ok(Some(t.as_str().to_owned())),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok(None),
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next notification frame, skipping heartbeats.
    pub async fn next_notification(&mut self) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let f = self
                .next_json_within(left)
                .await
                .expect("no notification in time")
                .expect("stream closed while waiting for a notification");
            if f["type"] == "notification" {
                return f;
            }
            assert_eq!(f["type"], "heartbeat", "unexpected frame {f}");
        }
    }

    /// Collects `n` notification frames.
    pub async fn notifications(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.next_notification().await);
        }
        out
    }

    /// Asserts that no notification arrives within `d`.
    pub async fn expect_silence(&mut self, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            match self.next_json_within(left).await {
                Err(()) => return,
                Ok(Some(f)) if f["type"] == "heartbeat" => continue,
                Ok(other) => panic!("expected silence, got {other:?}"),
            }
        }
    }

    /// Reads until the close frame; returns its code, and the error frame
    /// seen before it, if any.
    pub async fn until_close(&mut self) -> (Closed, Option<Value>) {
        let mut error = None;
        loop {
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("no close in time")
            {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == "error" {
                        error = Some(v);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    return (
                        frame.map_or(Closed::NoFrame, |f| Closed::Code(u16::from(f.code))),
                        error,
                    )
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => return (Closed::NoFrame, error),
            }
        }
    }

    pub async fn send_text(&mut self, text: String) {
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }
}

/// Close codes as numbers, for assertions.
pub fn code(c: CloseCode) -> u16 {
    u16::from(c)
}

/// Loads a notification sample from `proto-samples/`.
pub fn sample(name: &str) -> Value {
    let path = format!("{}/proto-samples/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The `id` of a notification frame as sent, without parsing the rest
/// (frames start `{"type":"notification","id":"..."`).
pub fn frame_id(frame: &str) -> Option<&str> {
    let rest = frame.strip_prefix(r#"{"type":"notification","id":""#)?;
    rest.split('"').next()
}

/// A participant as the upstream describes it. Agents get a user path and
/// URI; the customer does not.
pub fn participant(id: &str, kind: &str, nickname: &str, visibility: &str) -> Value {
    let mut p = json!({
        "participantId": id, "id": id, "type": kind,
        "nickname": nickname, "visibility": visibility,
    });
    if kind == "Agent" {
        let user = user_of(id);
        p["uri"] = json!(format!("http://upstream.test/api/v2/users/{user}"));
        p["path"] = json!(format!("/users/{user}"));
    }
    p
}

/// The user id (token `sub`) of an agent participant made by [`participant`].
pub fn user_of(participant_id: &str) -> String {
    format!("user-{participant_id}")
}

/// A ParticipantsUpdated of session `sid` with `participants`.
pub fn participants_updated(sid: &str, participants: &[Value]) -> Value {
    json!({
        "notificationType": "ParticipantsUpdated",
        "messageType": "FacebooksessionStateChangeMessage",
        "referenceId": 7,
        "facebooksession": {
            "id": sid, "state": "Chatting",
            "participants": participants,
            "userData": {"Secret": "user-data-never-for-customers"},
            "capabilities": ["SendMessage", "Consult"],
            "uri": format!("http://upstream.test/api/v2/facebooksessions/{sid}"),
        }
    })
}

/// The seed's session before the consult: the customer and TestName, both
/// visible (the seed's ParticipantsUpdated without Agent2).
pub fn seed_before_consult() -> Value {
    let mut n = sample("consult-participants-updated.json");
    let parts = n["facebooksession"]["participants"].as_array_mut().unwrap();
    parts.retain(|p| p["nickname"] != "Agent2");
    n
}

/// A NewMessages of the seed's session with one Text message.
pub fn seed_message(index: u64, from: &Value, visibility: &str, text: &str) -> Value {
    json!({
        "notificationType": "NewMessages",
        "messageType": "MessageLogUpdated",
        "facebooksessionPath": "/facebooksessions/0002EaAY01MT007C",
        "messages": [{"index": index, "type": "Text", "from": from, "visibility": visibility,
                      "text": text, "timestamp": "2015-10-20T16:14:41.000+0300",
                      "timestampSeconds": 1445346881000u64}]
    })
}

/// A NewMessages of session `sid` with one Text message.
pub fn message_from(sid: &str, index: u64, from: &Value, visibility: &str, text: &str) -> Value {
    json!({
        "notificationType": "NewMessages",
        "messageType": "MessageLogUpdated",
        "facebooksessionUri": format!("http://upstream.test/api/v2/facebooksessions/{sid}"),
        "facebooksessionPath": format!("/facebooksessions/{sid}"),
        "messages": [{"index": index, "type": "Text", "from": from, "visibility": visibility,
                      "text": text, "timestamp": "2015-10-20T16:14:41.000+0300",
                      "timestampSeconds": 1445346881000u64}]
    })
}

/// Resident memory of this process (the in-process server included), KiB.
pub fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The real binary in a process of its own, its stdout read for the
/// address it bound (and drained after, so that its logs never block it).
pub struct Binary {
    child: std::process::Child,
    pub addr: SocketAddr,
}

impl Binary {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// With these settings (environment variables) besides the defaults.
    pub fn start_with(envs: &[(&str, &str)]) -> Self {
        use std::io::{BufRead, BufReader};
        // Not `env!`: the tools' tests share these fixtures, without this
        // package's binary.
        #[allow(clippy::option_env_unwrap)]
        let binary = option_env!("CARGO_BIN_EXE_chatgate")
            .expect("the binary is for the chatgate package's tests");
        let mut cmd = std::process::Command::new(binary);
        for (key, _) in std::env::vars() {
            if key.starts_with("CHATGATE_") {
                cmd.env_remove(key);
            }
        }
        let mut child = cmd
            .env("CHATGATE_JWT_SECRET", SECRET)
            .env("CHATGATE_LISTEN", "127.0.0.1:0")
            .env("CHATGATE_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .envs(envs.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut addr = None;
        let mut line = String::new();
        while stdout.read_line(&mut line).unwrap_or(0) > 0 {
            if let Ok(entry) = serde_json::from_str::<Value>(&line) {
                if entry["fields"]["message"] == "chatgate listening" {
                    addr = entry["fields"]["addr"].as_str().map(|a| a.parse().unwrap());
                    break;
                }
            }
            line.clear();
        }
        let addr = addr.expect("the binary logs the address it listens on");
        std::thread::spawn(move || {
            let mut sink = String::new();
            while stdout.read_line(&mut sink).unwrap_or(0) > 0 {
                sink.clear();
            }
        });
        Self { child, addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Resident memory of the process, KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Waits up to `limit` for the process to exit.
    pub async fn exit_within(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "still running {limit:?} after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
