//! schemathesis against a real chatgate: the binary in dev mode on
//! 127.0.0.1:0, its own `/openapi.json` as the schema, every endpoint
//! with each kind of token (agent, customer, supervisor, service), bounded
//! in examples and time. Checks: no 5xx, every response's status, content
//! type and body as the document says. Meanwhile a customer and an agent
//! stay connected; afterwards nothing a refused request carried may be in
//! any frame they got, the customer (whose session no request can reach)
//! got no notification at all, every notification the agent got is of a
//! session that an accepted request opened, and their session is as it was.
//!
//! schemathesis comes from PyPI: `scripts/test` installs it into
//! `target/schemathesis-venv`; `CHATGATE_SCHEMATHESIS` names another
//! executable. Run alone: `cargo test --test ops_schemathesis -- --nocapture`.

mod support;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use support::Client;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

const TESTNAME: &str = "5e101708f14442c7ab79814bb4f799b2";
/// Test cases per operation and phase, and seconds per token's run: four
/// runs stay within about two minutes on two shared cores.
const MAX_EXAMPLES: &str = "10";
const MAX_SECS_PER_RUN: &str = "25";
/// A run that outlives this is killed and fails the test.
const RUN_TIMEOUT: Duration = Duration::from_secs(90);
/// Shorter strings (`"0"`, `"ab"`) would match frames by chance.
const MIN_NEEDLE_CHARS: usize = 6;

/// chatgate in dev mode (no secret, loopback): `/dev/token` mints tokens.
struct Chatgate {
    child: Child,
    addr: SocketAddr,
}

impl Chatgate {
    fn start() -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chatgate"));
        for (key, _) in std::env::vars() {
            if key.starts_with("CHATGATE_") {
                cmd.env_remove(key);
            }
        }
        let mut child = cmd
            .env("CHATGATE_LISTEN", "127.0.0.1:0")
            .env("CHATGATE_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            // Operations unlimited, so that they reach the engine's logic
            // (the rate itself is tested in ops_limits).
            .env("CHATGATE_AGENT_OPERATION_RATE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chatgate");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let mut addr = None;
        while addr.is_none() && stdout.read_line(&mut line).unwrap_or(0) > 0 {
            if let Ok(entry) = serde_json::from_str::<Value>(&line) {
                if entry["fields"]["message"] == "chatgate listening" {
                    addr = entry["fields"]["addr"].as_str().map(|a| a.parse().unwrap());
                }
            }
            line.clear();
        }
        std::thread::spawn(move || {
            let mut sink = String::new();
            while stdout.read_line(&mut sink).unwrap_or(0) > 0 {
                sink.clear();
            }
        });
        let addr = addr.expect("chatgate logs the address it listens on");
        Self { child, addr }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    async fn token(&self, query: &str) -> String {
        let body: Value = reqwest::get(self.url(&format!("/dev/token?{query}")))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["token"].as_str().expect("a dev token").to_owned()
    }
}

impl Drop for Chatgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The schemathesis executable: `CHATGATE_SCHEMATHESIS`, or the one
/// `scripts/test` installs.
fn schemathesis() -> PathBuf {
    if let Some(path) = std::env::var_os("CHATGATE_SCHEMATHESIS") {
        return path.into();
    }
    let venv =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("target/schemathesis-venv/bin/schemathesis");
    assert!(
        venv.exists(),
        "schemathesis is not installed: run scripts/test (it installs it), or set CHATGATE_SCHEMATHESIS"
    );
    venv
}

/// Every text frame a socket gets until told to stop; whether it was still
/// open then.
fn collect(mut client: Client) -> (oneshot::Sender<()>, JoinHandle<(Vec<String>, bool)>) {
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut frames = Vec::new();
        loop {
            tokio::select! {
                _ = &mut stopped => return (frames, true),
                msg = client.ws.next() => match msg {
                    Some(Ok(Message::Text(t))) => frames.push(t.to_string()),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return (frames, false),
                    Some(Ok(_)) => {}
                },
            }
        }
    });
    (stop, task)
}

/// Reads the snapshot frames a new connection gets, until a quiet moment.
async fn drain(client: &mut Client) {
    while let Ok(Some(_)) = client.next_json_within(Duration::from_millis(500)).await {}
}

/// One schemathesis run with `token`; the HAR of its requests.
fn run_schemathesis(chatgate: &Chatgate, role: &str, token: &str, dir: &Path) -> Vec<Value> {
    let har = dir.join(format!("{role}.har"));
    let mut child = Command::new("nice")
        .arg("-n19")
        .arg(schemathesis())
        .arg("run")
        .arg(chatgate.url("/openapi.json"))
        .args(["--url", &chatgate.url("")])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", MAX_EXAMPLES, "--max-time", MAX_SECS_PER_RUN])
        .args(["--request-timeout", "10", "--workers", "1", "--no-color"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--report", "har", "--report-har-path"])
        .arg(&har)
        // Its example database and reports stay out of the work tree.
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run schemathesis");
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("schemathesis with the {role} token ran over {RUN_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let output = child.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        status.success(),
        "schemathesis with the {role} token failed:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let har: Value = serde_json::from_slice(&std::fs::read(&har).unwrap()).unwrap();
    har["log"]["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The string values a request carried: its JSON body's leaves (or the
/// body itself), its query values and its path's segments.
fn strings_sent(entry: &Value) -> Vec<String> {
    let request = &entry["request"];
    let mut out = Vec::new();
    if let Some(text) = request["postData"]["text"].as_str() {
        match serde_json::from_str::<Value>(text) {
            Ok(body) => leaves(&body, &mut out),
            Err(_) => out.push(text.to_owned()),
        }
    }
    for q in request["queryString"].as_array().into_iter().flatten() {
        if let Some(v) = q["value"].as_str() {
            out.push(v.to_owned());
        }
    }
    if let Some(url) = request["url"].as_str() {
        let path = url.split('?').next().unwrap_or_default();
        out.extend(path.split('/').skip(3).map(percent_decoded));
    }
    out
}

fn leaves(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| leaves(v, out)),
        Value::Object(map) => map.iter().for_each(|(k, v)| {
            out.push(k.clone());
            leaves(v, out);
        }),
        _ => {}
    }
}

fn percent_decoded(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%')
            .then(|| segment.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The session a notification frame is about.
fn session_of(frame: &Value) -> Option<String> {
    let data = &frame["data"];
    if let Some(id) = data["facebooksession"]["id"].as_str() {
        return Some(id.to_owned());
    }
    data["facebooksessionPath"]
        .as_str()
        .and_then(|p| p.rsplit('/').next())
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_defect_and_no_refused_request_reaches_a_client() {
    let started = Instant::now();
    let st = schemathesis();
    let chatgate = Chatgate::start();
    let http = reqwest::Client::new();

    // A chat, routed to TestName (the first agent, all idle).
    let opened: Value = http
        .post(chatgate.url("/api/v2/customer/sessions"))
        .json(&json!({"nickname": "Ann", "message": "hello, is anyone there"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sid = opened["sessionId"].as_str().unwrap().to_owned();
    let customer_token = opened["token"].as_str().unwrap().to_owned();
    let agent_token = chatgate.token(&format!("role=agent&sub={TESTNAME}")).await;
    let supervisor_token = chatgate.token("role=supervisor&sub=boss").await;
    let service_token = chatgate.token("role=service&sub=upstream").await;
    let session_before = one_session(&chatgate, &agent_token, &sid).await;
    assert!(
        session_before
            .to_string()
            .contains("hello, is anyone there"),
        "{session_before}"
    );

    let mut customer = Client::connect(chatgate.addr, &customer_token, None)
        .await
        .unwrap();
    let mut agent = Client::connect(chatgate.addr, &agent_token, None)
        .await
        .unwrap();
    drain(&mut customer).await;
    drain(&mut agent).await;
    let (stop_customer, customer_frames) = collect(customer);
    let (stop_agent, agent_frames) = collect(agent);

    let dir = tempdir();
    let mut entries = Vec::new();
    for (role, token) in [
        ("agent", &agent_token),
        ("customer", &customer_token),
        ("supervisor", &supervisor_token),
        ("service", &service_token),
    ] {
        let run = tokio::task::block_in_place(|| run_schemathesis(&chatgate, role, token, &dir));
        println!("schemathesis with the {role} token: {} requests", run.len());
        entries.extend(run);
    }
    let _ = stop_customer.send(());
    let _ = stop_agent.send(());
    let (customer_frames, customer_open) = customer_frames.await.unwrap();
    let (agent_frames, agent_open) = agent_frames.await.unwrap();
    // Straight to stderr, past the harness's capture: the figures show in
    // a plain `cargo test` run too.
    let _ = writeln!(
        std::io::stderr(),
        "schemathesis ({}): {} requests in {:.0?}",
        st.display(),
        entries.len(),
        started.elapsed()
    );
    assert!(
        entries.len() >= 200,
        "too few requests to judge: {}",
        entries.len()
    );
    assert!(
        customer_open && agent_open,
        "a client was disconnected during the run"
    );

    let statuses: Vec<u64> = entries
        .iter()
        .filter_map(|e| e["response"]["status"].as_u64())
        .collect();
    assert!(statuses.iter().all(|s| *s < 500), "a 5xx answer");
    assert!(
        statuses.iter().any(|s| (200..300).contains(s)),
        "no request accepted"
    );
    assert!(statuses.iter().any(|s| *s >= 400), "no request refused");

    // What refused requests carried, less what accepted ones carried or
    // were answered, and what the document itself names (operation names,
    // paths).
    let document = chatgate::openapi::document();
    let accepted: Vec<&Value> = entries
        .iter()
        .filter(|e| e["response"]["status"].as_u64().is_some_and(|s| s < 400))
        .collect();
    // Ids the server itself issued (a session id in a 201) may come back
    // in refused requests: they are the server's words, not the request's.
    let accepted_strings: HashSet<String> = accepted
        .iter()
        .flat_map(|e| {
            let mut strings = strings_sent(e);
            if let Some(body) = e["response"]["content"]["text"]
                .as_str()
                .and_then(|t| serde_json::from_str::<Value>(t).ok())
            {
                leaves(&body, &mut strings);
            }
            strings
        })
        .collect();
    let needles: HashSet<String> = entries
        .iter()
        .filter(|e| e["response"]["status"].as_u64().is_some_and(|s| s >= 400))
        .flat_map(strings_sent)
        .filter(|s| s.trim().chars().count() >= MIN_NEEDLE_CHARS)
        .filter(|s| !accepted_strings.contains(s) && !document.contains(s.as_str()))
        .collect();
    assert!(
        !needles.is_empty(),
        "refused requests carried nothing to look for"
    );
    for frame in customer_frames.iter().chain(&agent_frames) {
        for needle in &needles {
            let escaped = serde_json::to_string(needle).unwrap();
            let escaped = &escaped[1..escaped.len() - 1];
            assert!(
                !frame.contains(needle.as_str()) && !frame.contains(escaped),
                "a refused request's {needle:?} reached a client: {frame}"
            );
        }
    }

    // The customer's session was out of every request's reach.
    for frame in &customer_frames {
        let frame: Value = serde_json::from_str(frame).unwrap();
        assert_eq!(frame["type"], "heartbeat", "the customer got {frame}");
    }
    // The agent heard only of sessions that accepted requests opened.
    let opened_by_run: HashSet<String> = accepted
        .iter()
        .filter_map(|e| e["response"]["content"]["text"].as_str())
        .filter_map(|t| serde_json::from_str::<Value>(t).ok())
        .filter_map(|b| b["sessionId"].as_str().map(str::to_owned))
        .collect();
    for frame in &agent_frames {
        let frame: Value = serde_json::from_str(frame).unwrap();
        if frame["type"] == "heartbeat" {
            continue;
        }
        let session = session_of(&frame);
        assert!(
            session.as_ref().is_some_and(|s| opened_by_run.contains(s)),
            "the agent got a frame of no accepted request: {frame}"
        );
    }
    let session_after = one_session(&chatgate, &agent_token, &sid).await;
    assert_eq!(session_before, session_after, "the chat changed");
    drop(chatgate);
    let _ = std::fs::remove_dir_all(&dir);
}

async fn one_session(chatgate: &Chatgate, token: &str, sid: &str) -> Value {
    reqwest::Client::new()
        .get(chatgate.url(&format!("/api/v2/me/facebooksessions/{sid}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A directory of this test's own under cargo's temporary directory.
fn tempdir() -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("schemathesis-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
