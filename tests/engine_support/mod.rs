//! Fixtures of the engine tests: the demo directory's people, the engine's
//! REST calls over real HTTP, and the shape comparison of notifications.
#![allow(dead_code)]

use std::time::Duration;

use chatgate::auth::Role;
use serde_json::{json, Value};

use crate::support::{token, Client, TestServer, WAIT};

pub const TESTNAME: &str = "5e101708f14442c7ab79814bb4f799b2";
pub const AGENT2: &str = "e2c90c960d3d40c79684818983ceb314";
pub const AGENT3: &str = "3f9c1b7e2a6d4c58b0e14d2a9c7f6e31";
pub const QUEUE: &str = "41cc5016-2d18-4a91-93ec-b43748948608";
pub const QUIET: Duration = Duration::from_millis(300);

pub fn agent(user: &str) -> String {
    token(Role::Agent, user, None)
}

pub async fn send(
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = tokio::time::timeout(WAIT, req.send())
        .await
        .expect("no HTTP answer in time")
        .expect("HTTP request failed");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub async fn get(server: &TestServer, path: &str, token: &str) -> (u16, Value) {
    send(reqwest::Method::GET, &server.url(path), Some(token), None).await
}

/// POSTs an agent operation on session `sid` with `user`'s token.
pub async fn op(server: &TestServer, user: &str, sid: &str, body: Value) -> (u16, Value) {
    let url = server.url(&format!("/api/v2/me/facebooksessions/{sid}"));
    send(reqwest::Method::POST, &url, Some(&agent(user)), Some(&body)).await
}

/// An agent operation that must succeed; returns its referenceId.
pub async fn op_ok(server: &TestServer, user: &str, sid: &str, body: Value) -> u64 {
    let (status, reply) = op(server, user, sid, body.clone()).await;
    assert_eq!(status, 200, "{body} refused: {reply}");
    assert_eq!(reply["statusCode"], 0);
    reply["referenceId"].as_u64().expect("referenceId")
}

/// A customer's session: ids and token.
pub struct Chat {
    pub sid: String,
    pub participant: String,
    pub token: String,
}

pub async fn open_chat(
    server: &TestServer,
    nickname: &str,
    message: &str,
    queue: Option<&str>,
) -> Chat {
    let mut body = json!({"nickname": nickname, "message": message});
    if let Some(q) = queue {
        body["queue"] = json!(q);
    }
    let (status, reply) = send(
        reqwest::Method::POST,
        &server.url("/api/v2/customer/sessions"),
        None,
        Some(&body),
    )
    .await;
    assert_eq!(status, 201, "session not created: {reply}");
    Chat {
        sid: reply["sessionId"].as_str().unwrap().to_owned(),
        participant: reply["participantId"].as_str().unwrap().to_owned(),
        token: reply["token"].as_str().unwrap().to_owned(),
    }
}

/// POSTs a customer operation.
pub async fn customer_op(server: &TestServer, chat: &Chat, body: Value) -> (u16, Value) {
    let url = server.url(&format!("/api/v2/customer/sessions/{}", chat.sid));
    send(reqwest::Method::POST, &url, Some(&chat.token), Some(&body)).await
}

pub async fn customer_op_ok(server: &TestServer, chat: &Chat, body: Value) {
    let (status, reply) = customer_op(server, chat, body.clone()).await;
    assert_eq!(status, 200, "{body} refused: {reply}");
    assert_eq!(reply, json!({"statusCode": 0}));
}

/// Connects the chat's customer once the hub has dispatched `seq`
/// notifications, so that its first frames are a deterministic snapshot.
pub async fn connect_customer(server: &TestServer, chat: &Chat, seq: u64) -> Client {
    server.wait_dispatched(seq).await;
    Client::connect(server.addr, &chat.token, None)
        .await
        .unwrap()
}

/// The `data` of the next `n` notification frames.
pub async fn datas(client: &mut Client, n: usize) -> Vec<Value> {
    client
        .notifications(n)
        .await
        .into_iter()
        .map(|f| f["data"].clone())
        .collect()
}

/// The message types of a NewMessages notification.
pub fn message_types(n: &Value) -> Vec<String> {
    n["messages"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| m["type"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A short description of a notification: its type, and its messages'
/// types with their visibility, e.g. `NewMessages[Text/Agents]`.
pub fn describe(n: &Value) -> String {
    let kind = n["notificationType"].as_str().unwrap_or("?");
    match n["messages"].as_array() {
        Some(ms) => {
            let parts: Vec<String> = ms
                .iter()
                .map(|m| {
                    format!(
                        "{}/{}",
                        m["type"].as_str().unwrap_or("?"),
                        m["visibility"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            format!("{kind}[{}]", parts.join(","))
        }
        None => format!(
            "{kind}({})",
            n["facebooksession"]["state"].as_str().unwrap_or("?")
        ),
    }
}

/// Field names and nesting of `actual` equal `sample`'s; values are not
/// compared, only their JSON kind. Every element of an array must have
/// the shape of some element of the sample's array (participants and
/// messages come in several kinds). `userData` is free-form: any object.
/// The top-level `referenceId` is not part of the shape: SPEC section 5
/// adds it to the seed's notifications of agents' requests.
pub fn shape_diff(actual: &Value, sample: &Value) -> Option<String> {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("referenceId");
        }
        v
    };
    diff_at("", &strip(actual), &strip(sample))
}

fn diff_at(path: &str, a: &Value, s: &Value) -> Option<String> {
    match (a, s) {
        (Value::Object(ao), Value::Object(so)) => {
            if path.ends_with("userData") {
                return None;
            }
            let ak: std::collections::BTreeSet<_> = ao.keys().collect();
            let sk: std::collections::BTreeSet<_> = so.keys().collect();
            if ak != sk {
                return Some(format!("{path}: fields {ak:?} != sample's {sk:?}"));
            }
            ao.iter()
                .find_map(|(k, v)| diff_at(&format!("{path}.{k}"), v, &so[k]))
        }
        (Value::Array(aa), Value::Array(sa)) => {
            if sa.is_empty() {
                return (!aa.is_empty()).then(|| format!("{path}: sample array is empty"));
            }
            aa.iter().enumerate().find_map(|(i, item)| {
                let diffs: Vec<String> = sa
                    .iter()
                    .filter_map(|s| diff_at(&format!("{path}[{i}]"), item, s))
                    .collect();
                (diffs.len() == sa.len()).then(|| diffs.join(" / "))
            })
        }
        _ if kind(a) == kind(s) => None,
        _ => Some(format!(
            "{path}: {} where the sample has {}",
            kind(a),
            kind(s)
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
