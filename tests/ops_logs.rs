//! Logs of the real binary, in JSON at debug level, over a full scenario:
//! every line is JSON, connection events carry their span (role, sub,
//! session), and neither a token (header or query parameter) nor a message
//! text appears anywhere in them.

mod support;

use std::process::Stdio;
use std::time::Duration;

use chatgate::auth::{now_secs, Role};
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SID: &str = "0002EaAY01MT007C";
const CUSTOMER: &str = "007356263E140144";
const TESTNAME: &str = "5e101708f14442c7ab79814bb4f799b2";
const AGENT2: &str = "e2c90c960d3d40c79684818983ceb314";
/// Message texts of the scenario: none may reach the logs.
const TEXTS: [&str; 7] = [
    "my card number is 4111 1111 1111 1111",
    "internal: this customer is a known fraudster",
    "an unparseable secret text",
    "widget: my address is 1 Secret Street",
    "widget: and my phone is 555-0100",
    "agent: thanks, noted your details",
    "agent to agents: check the refund policy",
];

/// The binary, with its output lines forwarded to a channel.
struct Running {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
}

fn forward(stream: impl AsyncRead + Unpin + Send + 'static, tx: mpsc::UnboundedSender<String>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(line);
        }
    });
}

fn spawn_chatgate() -> Running {
    spawn_chatgate_logging("json")
}

/// The binary with its logs in `format`, both outputs to pipes.
fn spawn_chatgate_logging(format: &str) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chatgate"));
    for (key, _) in std::env::vars() {
        if key.starts_with("CHATGATE_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("CHATGATE_LISTEN", "127.0.0.1:0")
        .env("CHATGATE_JWT_SECRET", SECRET)
        .env("CHATGATE_LOG_FORMAT", format)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("start chatgate");
    let (tx, lines) = mpsc::unbounded_channel();
    forward(child.stdout.take().unwrap(), tx.clone());
    forward(child.stderr.take().unwrap(), tx);
    Running { child, lines }
}

impl Running {
    /// Reads lines until one satisfies `pick`; every line is kept in `log`.
    async fn wait_for<T>(
        &mut self,
        log: &mut Vec<String>,
        pick: impl Fn(&Value) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .expect("no such log line in time")
                .expect("chatgate exited");
            log.push(line.clone());
            if let Some(found) = serde_json::from_str(&line).ok().as_ref().and_then(&pick) {
                return found;
            }
        }
    }

    /// Reads lines until one contains `needle`; every line is kept in `log`.
    async fn wait_for_text(&mut self, log: &mut Vec<String>, needle: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !log.last().is_some_and(|l| l.contains(needle)) {
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .expect("no such log line in time")
                .expect("chatgate exited");
            log.push(line);
        }
    }

    /// SIGTERM, then every remaining line until the process exits.
    async fn stop(mut self, log: &mut Vec<String>) {
        let pid = self.child.id().expect("running") as libc::pid_t;
        // SAFETY: kill(2) on the PID of the child this test started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("chatgate did not stop on SIGTERM")
            .unwrap();
        assert!(status.success(), "{status}");
        while let Ok(Some(line)) =
            tokio::time::timeout(Duration::from_secs(2), self.lines.recv()).await
        {
            log.push(line);
        }
    }
}

fn message(index: u64, from: &Value, visibility: &str, text: &str) -> Value {
    json!({
        "notificationType": "NewMessages",
        "messageType": "MessageLogUpdated",
        "facebooksessionPath": format!("/facebooksessions/{SID}"),
        "messages": [{"index": index, "type": "Text", "from": from, "visibility": visibility,
                      "text": text, "timestamp": "2015-10-20T16:14:41.000+0300",
                      "timestampSeconds": 1445346881000u64}]
    })
}

/// POSTs JSON without a token (the widget's session creation).
async fn post_anonymous(url: &str, body: &Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

/// Connects with the token in the query string (as browsers must).
async fn connect_by_query(addr: std::net::SocketAddr, token: &str) -> Result<Client, u16> {
    let req = format!("ws://{addr}/ws?access_token={token}")
        .into_client_request()
        .unwrap();
    Client::connect_request(req).await
}

#[tokio::test]
async fn logs_of_a_full_scenario_hold_no_token_and_no_message_text() {
    let mut log = Vec::new();
    let mut chatgate = spawn_chatgate();
    let addr: std::net::SocketAddr = chatgate
        .wait_for(&mut log, |v| {
            (v["fields"]["message"] == "chatgate listening")
                .then(|| v["fields"]["addr"].as_str()?.parse().ok())
                .flatten()
        })
        .await;

    let service = token(Role::Service, "upstream", None);
    let agent = token(Role::Agent, TESTNAME, None);
    let consultant = token(Role::Agent, AGENT2, None);
    let customer = token(Role::Customer, CUSTOMER, Some(SID));
    let foreign = encode(
        &Header::default(),
        &json!({"sub": TESTNAME, "role": "agent", "exp": now_secs() + 600}),
        &EncodingKey::from_secret(b"another-secret"),
    )
    .unwrap();
    let short = encode(
        &Header::default(),
        &json!({"sub": "short-lived", "role": "agent", "exp": now_secs() + 2}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();

    let pu = sample("consult-participants-updated.json");
    let parts = pu["facebooksession"]["participants"]
        .as_array()
        .unwrap()
        .clone();
    let ingest = format!("http://{addr}/upstream/events");
    let batch = json!([
        pu,
        message(1, &parts[0], "All", TEXTS[0]),
        message(2, &parts[1], "Agents", TEXTS[1]),
    ]);
    let (status, _) = post(&ingest, &service, &batch.to_string(), "application/json").await;
    assert_eq!(status, 202);
    // A rejected batch whose error quotes the text back to the caller.
    let bad = json!([{"notificationType": TEXTS[2], "messageType": "MessageLogUpdated"}]);
    let (status, reply) = post(&ingest, &service, &bad.to_string(), "application/json").await;
    assert_eq!(status, 400, "{reply}");
    assert!(reply.to_string().contains(TEXTS[2]), "{reply}");

    let mut agent_ws = Client::connect(addr, &agent, None).await.unwrap();
    let mut consultant_ws = connect_by_query(addr, &consultant).await.unwrap();
    let mut customer_ws = connect_by_query(addr, &customer).await.unwrap();
    agent_ws.notifications(2).await;
    consultant_ws.notifications(2).await;
    let seen = customer_ws.notifications(2).await;
    assert_eq!(seen[1]["data"]["messages"][0]["text"], TEXTS[0]);
    assert_eq!(Client::connect(addr, &foreign, None).await.err(), Some(401));
    assert_eq!(connect_by_query(addr, &foreign).await.err(), Some(401));
    let mut short_ws = Client::connect(addr, &short, None).await.unwrap();
    assert_eq!(short_ws.until_close().await.0, Closed::Code(4001));
    drop(customer_ws);

    // The engine: a customer opens a session from the widget and writes;
    // the agent answers, to everyone and to agents only.
    let (status, created) = post_anonymous(
        &format!("http://{addr}/api/v2/customer/sessions"),
        &json!({"nickname": "Ann", "message": TEXTS[3]}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let widget_token = created["token"].as_str().unwrap().to_owned();
    let session = created["sessionId"].as_str().unwrap().to_owned();
    let mut widget_ws = connect_by_query(addr, &widget_token).await.unwrap();
    let widget_op = format!("http://{addr}/api/v2/customer/sessions/{session}");
    let op = json!({"operationName": "SendMessage", "text": TEXTS[4]});
    let (status, reply) = post(
        &widget_op,
        &widget_token,
        &op.to_string(),
        "application/json",
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let agent_op = format!("http://{addr}/api/v2/me/facebooksessions/{session}");
    for (name, text) in [("SendMessage", TEXTS[5]), ("SendToAgents", TEXTS[6])] {
        let op = json!({"operationName": name, "text": text});
        let (status, reply) = post(&agent_op, &agent, &op.to_string(), "application/json").await;
        assert_eq!(status, 200, "{reply}");
    }
    let mut widget_texts = Vec::new();
    while widget_texts.len() < 3 {
        let frame = widget_ws.next_notification().await;
        for m in frame["data"]["messages"].as_array().into_iter().flatten() {
            if m["type"] == "Text" {
                widget_texts.push(m["text"].as_str().unwrap().to_owned());
            }
        }
    }
    assert_eq!(widget_texts, [TEXTS[3], TEXTS[4], TEXTS[5]]);
    drop(widget_ws);

    chatgate.stop(&mut log).await;

    let tokens = [
        &service,
        &agent,
        &consultant,
        &customer,
        &foreign,
        &short,
        &widget_token,
    ];
    let all = log.join("\n");
    for line in &log {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
    }
    for t in tokens {
        let signature = t.rsplit('.').next().unwrap();
        assert!(!all.contains(t), "a token is in the logs");
        assert!(
            !all.contains(signature),
            "a token's signature is in the logs"
        );
    }
    for text in TEXTS {
        assert!(!all.contains(text), "a message text is in the logs: {text}");
    }

    // The logs are not empty of what matters: debug events of each
    // connection, inside a span naming its role, subject and session.
    let events: Vec<Value> = log
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let in_span = |msg: &str, role: &str, sub: &str| {
        events.iter().any(|e| {
            e["fields"]["message"] == msg && e["span"]["role"] == role && e["span"]["sub"] == sub
        })
    };
    assert!(in_span("connection opened", "agent", TESTNAME), "{all}");
    assert!(in_span("connection opened", "customer", CUSTOMER), "{all}");
    assert!(
        events
            .iter()
            .any(|e| e["fields"]["message"] == "connection closed"
                && e["fields"]["code"] == "4001"
                && e["span"]["sub"] == "short-lived"),
        "{all}"
    );
    assert!(
        events
            .iter()
            .any(|e| e["span"]["role"] == "customer" && e["span"]["session"] == SID),
        "{all}"
    );
    assert!(all.contains("authentication refused"), "{all}");
    assert!(all.contains("ingest batch rejected"), "{all}");
    assert!(all.contains("shutting down"), "{all}");
}

/// A log collector (a pipe, a file, `podman logs`) gets the human format
/// without colour: no ANSI escape sequence in any line, from start-up to
/// shutdown, requests between.
#[tokio::test]
async fn human_logs_to_a_pipe_carry_no_colour_codes() {
    let mut chatgate = spawn_chatgate_logging("human");
    let mut log = Vec::new();
    chatgate.wait_for_text(&mut log, "chatgate listening").await;
    let addr = log
        .last()
        .and_then(|l| l.split("addr=").nth(1))
        .and_then(|a| a.split_whitespace().next())
        .expect("the listening line names the address")
        .to_owned();
    // A refused handshake and a refused ingest log at debug level.
    let client = reqwest::Client::new();
    let ws = client
        .get(format!("http://{addr}/ws"))
        .send()
        .await
        .unwrap();
    assert!(ws.status().is_client_error(), "{}", ws.status());
    let ingest = client
        .post(format!("http://{addr}/upstream/events"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(ingest.status(), 401);
    chatgate.stop(&mut log).await;
    assert!(log.len() >= 3, "too few lines to judge: {log:?}");
    assert!(
        log.iter().any(|l| l.contains("INFO")),
        "human format expected: {log:?}"
    );
    for line in &log {
        assert!(!line.contains("\x1b["), "an escape sequence in {line:?}");
    }
}
