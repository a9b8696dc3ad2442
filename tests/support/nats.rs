//! A real nats-server with JetStream for one test: a free port on
//! 127.0.0.1, a temporary store directory, stopped by PID (and the
//! directory removed) when dropped. It can be killed and restarted on the
//! same port and store, to test recovery.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chatgate::auth::Role;
use chatgate::config::RoleSetting;
use serde_json::{json, Value};

use super::{start, token, Client, TestServer, WAIT};

pub struct NatsServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts `nats-server -js` and waits until JetStream answers.
    pub async fn start() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let dir = std::env::temp_dir().join(format!(
            "chatgate-nats-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = NatsServer {
            port,
            dir,
            child: None,
        };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: no clean shutdown) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server with SIGTERM (its clean shutdown) and waits for
    /// it, killing it after 10 s.
    pub fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = libc::pid_t::try_from(child.id()).expect("a pid");
        // SAFETY: kill(2) on the PID of a child this struct spawned and has
        // not reaped yet, so the PID cannot have been reused.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the server again, same port and store.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.dir)
            .arg("-l")
            .arg(self.dir.join("nats.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server must be installed (scripts/test installs it)");
        self.child = Some(child);
        self.wait_ready().await;
    }

    async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(client) = async_nats::connect(self.url()).await {
                // JetStream answers its API once it is up.
                if client.request("$JS.API.INFO", "".into()).await.is_ok() {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nats-server on port {} did not start",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A chatgate gateway in a process of its own (the binary, configured by
/// environment as in production), killed with SIGKILL by PID when
/// dropped or by [`GatewayProcess::kill`].
pub struct GatewayProcess {
    pub addr: std::net::SocketAddr,
    child: Option<Child>,
}

impl GatewayProcess {
    pub async fn start(nats: &NatsServer) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        // The chatgate package's own tests have its binary; the tools'
        // tests share these fixtures, not this one (so not `env!`, which
        // would stop them compiling).
        #[allow(clippy::option_env_unwrap)]
        let binary = option_env!("CARGO_BIN_EXE_chatgate")
            .expect("a gateway process is for the chatgate package's tests");
        let child = Command::new(binary)
            .env("CHATGATE_LISTEN", addr.to_string())
            .env("CHATGATE_JWT_SECRET", super::SECRET)
            .env("CHATGATE_BUS", nats.url())
            .env("CHATGATE_ROLE", "gateway")
            .env("CHATGATE_NATS_MAX_BYTES", (64u64 << 20).to_string())
            .env("CHATGATE_CHECKPOINT_SECS", "1")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the chatgate binary");
        let process = GatewayProcess {
            addr,
            child: Some(child),
        };
        wait_status(format!("http://{addr}/readyz"), 200).await;
        process
    }

    /// SIGKILL: no goodbye to its clients.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A chatgate node of `role` on `nats`, checkpointing every second.
pub async fn node(
    nats: &NatsServer,
    role: RoleSetting,
    tune: impl FnOnce(&mut chatgate::config::Config),
) -> TestServer {
    let url = nats.url();
    start(move |c| {
        c.bus = Some(url);
        c.role = role;
        c.nats.checkpoint_secs = 1;
        c.nats.nats_timeout_secs = 2;
        // JetStream reserves a stream's max bytes from its storage.
        c.nats.nats_max_bytes = 64 << 20;
        tune(c);
    })
    .await
}

/// A gateway node on `nats`.
pub async fn gateway(nats: &NatsServer) -> TestServer {
    node(nats, RoleSetting::Gateway, |_| {}).await
}

/// A session's ParticipantsUpdated: its customer `c-<sid>` and `agent`,
/// both visible.
pub fn session_with(sid: &str, agent: &str) -> Value {
    json!({
        "notificationType": "ParticipantsUpdated",
        "messageType": "FacebooksessionStateChangeMessage",
        "facebooksession": {
            "id": sid,
            "state": "Connected",
            "participants": [customer_participant(sid), agent_participant(agent)],
        }
    })
}

pub fn customer_participant(sid: &str) -> Value {
    json!({"participantId": format!("c-{sid}"), "id": format!("c-{sid}"), "type": "Customer",
           "nickname": "Customer", "visibility": "All"})
}

pub fn agent_participant(agent: &str) -> Value {
    json!({"participantId": format!("p-{agent}"), "id": agent, "type": "Agent",
           "nickname": agent, "visibility": "All", "path": format!("/users/{agent}")})
}

/// A NewMessages of one text message `text` from the agent.
pub fn text_message(sid: &str, agent: &str, index: u64, visibility: &str, text: &str) -> Value {
    json!({
        "notificationType": "NewMessages",
        "messageType": "MessageLogUpdated",
        "facebooksessionPath": format!("/facebooksessions/{sid}"),
        "messages": [{"index": index, "type": "Text", "from": agent_participant(agent),
                      "visibility": visibility, "text": text,
                      "timestamp": "2015-10-20T16:14:41.000+0300", "timestampSeconds": 1445346881000u64}]
    })
}

/// Posts `items` to the ingest at `base` with an Idempotency-Key, retrying
/// (same key) while the answer is 503, up to `WAIT` x 3. Returns how many
/// attempts were refused with 503.
pub async fn ingest_retrying(
    http: &reqwest::Client,
    base: &str,
    items: &[Value],
    key: &str,
) -> u32 {
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    let token = token(Role::Service, "upstream", None);
    let mut refused = 0;
    loop {
        let resp = http
            .post(format!("{base}/upstream/events"))
            .bearer_auth(&token)
            .header("idempotency-key", key)
            .json(&items)
            .send()
            .await
            .unwrap();
        match resp.status().as_u16() {
            202 => return refused,
            503 => refused += 1,
            other => panic!("ingest answered {other}: {}", resp.text().await.unwrap()),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ingest kept refusing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A party following its stream across connections (and gateways),
/// resuming with the last id it saw.
pub struct Follower {
    token: String,
    pub last_id: Option<String>,
    /// The epoch of the welcome the stream began with.
    pub epoch: Option<String>,
    pub frames: Vec<Value>,
    pub resumes: u32,
    client: Option<Client>,
}

impl Follower {
    pub fn new(role: Role, sub: &str, sid: Option<&str>) -> Self {
        Follower {
            token: token(role, sub, sid),
            last_id: None,
            epoch: None,
            frames: Vec::new(),
            resumes: 0,
            client: None,
        }
    }

    /// Connects to `server`, with `since` after the first time, and
    /// asserts the resume was honoured.
    pub async fn attach(&mut self, server: &TestServer) {
        self.attach_to(server.addr).await;
    }

    /// [`Follower::attach`] to a server at `addr`.
    pub async fn attach_to(&mut self, addr: std::net::SocketAddr) {
        let resume = self.last_id.as_deref().zip(self.epoch.as_deref());
        let client = Client::connect(addr, &self.token, resume)
            .await
            .expect("connect");
        if self.epoch.is_none() {
            self.epoch = Some(client.epoch());
        }
        if self.last_id.is_some() {
            assert_eq!(
                client.welcome["resumed"], true,
                "resume after {:?} refused",
                self.last_id
            );
            self.resumes += 1;
        }
        self.client = Some(client);
    }

    /// Reads notifications until `total` have been seen overall.
    pub async fn read_until(&mut self, total: usize) {
        let client = self.client.as_mut().expect("attached");
        while self.frames.len() < total {
            let f = client.next_notification().await;
            self.last_id = f["id"].as_str().map(str::to_owned);
            self.frames.push(f);
        }
    }

    /// Reads what is left until the server closes the connection.
    pub async fn read_until_closed(&mut self) {
        let mut client = self.client.take().expect("attached");
        while let Some(f) = client.next_json().await {
            if f["type"] == "notification" {
                self.last_id = f["id"].as_str().map(str::to_owned);
                self.frames.push(f);
            }
        }
    }

    /// Closes the connection from the client side.
    pub async fn detach(&mut self) {
        if let Some(mut client) = self.client.take() {
            let _ = client.ws.close(None).await;
        }
    }

    /// Asserts that nothing arrives for `d`.
    pub async fn expect_silence(&mut self, d: Duration) {
        self.client
            .as_mut()
            .expect("attached")
            .expect_silence(d)
            .await;
    }

    /// The texts of the messages received, in order.
    pub fn texts(&self) -> Vec<String> {
        self.frames
            .iter()
            .filter_map(|f| f["data"]["messages"][0]["text"].as_str().map(str::to_owned))
            .collect()
    }
}

/// The HTTP status of a GET (0 when the server cannot be reached).
pub async fn status(url: String) -> u16 {
    reqwest::Client::new()
        .get(url)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Waits until a GET of `url` answers `want`.
pub async fn wait_status(url: String, want: u16) {
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    while status(url.clone()).await != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url} never answered {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
