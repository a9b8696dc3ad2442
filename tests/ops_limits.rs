//! Abuse limits, each against a real chatgate over real sockets: the
//! refusal it gives (HTTP status or closed socket) and its count in
//! `chatgate_refusals_total`.

mod support;

use std::time::Duration;

use chatgate::auth::Role;
use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn refusals(server: &TestServer, reason: &str) -> u64 {
    server.state.metrics.refusals.get(reason)
}

/// Waits until `cond` holds (the server side of a close is asynchronous).
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn connections_per_address_are_capped_with_429_and_slots_come_back() {
    let server = start(|c| c.max_connections_per_address = 2).await;
    let token = token(Role::Agent, "a1", None);
    let first = Client::connect(server.addr, &token, None).await.unwrap();
    let _second = Client::connect(server.addr, &token, None).await.unwrap();

    let refused = Client::connect(server.addr, &token, None).await;
    assert_eq!(
        refused.err(),
        Some(429),
        "a third connection from one address"
    );
    assert_eq!(refusals(&server, "per_address"), 1);
    assert_eq!(
        server.state.hub.connection_count(),
        2,
        "the refusal attached nothing"
    );

    drop(first);
    let ip = server.addr.ip();
    eventually("the closed connection's slot is released", || {
        server.state.address_limiter.open_from(ip) == 1
    })
    .await;
    let _third = Client::connect(server.addr, &token, None)
        .await
        .expect("a slot was given back");
    server.stop().await;
}

#[tokio::test]
async fn total_connections_are_capped_with_503() {
    let server = start(|c| c.max_connections = 2).await;
    let _a = server.connect(Role::Agent, "a1", None).await;
    let _b = server.connect(Role::Supervisor, "boss", None).await;
    let refused = Client::connect(server.addr, &token(Role::Agent, "a2", None), None).await;
    assert_eq!(refused.err(), Some(503));
    assert_eq!(refusals(&server, "max_connections"), 1);
    server.stop().await;
}

/// Reads until the server closes the socket; `Err` if it stays open `d`.
async fn closed_within(tcp: &mut TcpStream, d: Duration) -> Result<(), ()> {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + d;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, tcp.read(&mut buf)).await {
            Err(_) => return Err(()),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(()),
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn a_silent_socket_is_closed_after_the_handshake_timeout() {
    let server = start(|c| c.handshake_timeout_secs = 1).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let started = std::time::Instant::now();
    closed_within(&mut silent, WAIT)
        .await
        .expect("the server closes a socket that never sends a request");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed before the timeout: {:?}",
        started.elapsed()
    );
    eventually("the timeout is counted", || {
        refusals(&server, "handshake_timeout") == 1
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn a_slow_loris_upgrade_is_closed_at_the_handshake_timeout() {
    let server = start(|c| c.handshake_timeout_secs = 1).await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    // One header byte every 200 ms keeps the socket busy but never
    // completes the head: the timeout runs from the accept, not from the
    // last byte.
    let trickle = async {
        for b in b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            .iter()
            .cycle()
            .take(100)
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if slow.write_all(&[*b]).await.is_err() {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(8), trickle)
        .await
        .expect("the server should have closed the trickling socket");
    closed_within(&mut slow, WAIT).await.expect("socket closed");
    eventually("the timeout is counted", || {
        refusals(&server, "handshake_timeout") == 1
    })
    .await;

    // A prompt client is not affected.
    let _ok = server.connect(Role::Agent, "a1", None).await;
    server.stop().await;
}

#[tokio::test]
async fn an_ingest_body_over_the_limit_is_refused_with_413_and_changes_nothing() {
    let server = start(|c| c.ingest_max_bytes = 2048).await;
    let item = json!({
        "notificationType": "NewMessages",
        "messageType": "MessageLogUpdated",
        "facebooksessionPath": "/facebooksessions/s1",
        "messages": [{"index": 1, "type": "Text", "visibility": "All", "text": "x".repeat(4000)}],
    });
    let (status, reply) = server.ingest(&item.to_string(), "application/json").await;
    assert_eq!(status, 413, "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("2048"),
        "the refusal names the limit: {reply}"
    );
    assert_eq!(refusals(&server, "ingest_too_large"), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.state.hub.last_seq(), 0, "nothing was published");

    // A body under the limit passes.
    let small = json!({
        "notificationType": "NewMessages",
        "messageType": "MessageLogUpdated",
        "facebooksessionPath": "/facebooksessions/s1",
        "messages": [{"index": 1, "type": "Text", "visibility": "All", "text": "hi"}],
    });
    server.ingest_ok(&[small]).await;
    server.stop().await;
}

/// A body over the engine routes' 64 KiB was refused by axum itself, in
/// plain text, unlike every other engine answer. Every engine route now
/// refuses it in GWS JSON (statusCode 10, the bound named), as the API
/// description says, and nothing is published.
#[tokio::test]
async fn an_engine_body_over_64_kib_is_refused_with_413_in_gws_json() {
    let server = start(|_| {}).await;
    let agent = token(Role::Agent, "5e101708f14442c7ab79814bb4f799b2", None);
    let customer = token(Role::Customer, "p1", Some("s1"));
    let text = "x".repeat(70 * 1024);
    let big = json!({"operationName": "SendMessage", "text": text}).to_string();
    let opening = json!({"nickname": "Ann", "message": text}).to_string();
    for (path, token, body) in [
        ("/api/v2/me/facebooksessions/s1", agent.as_str(), &big),
        ("/api/v2/me/facebooksession/s1", agent.as_str(), &big),
        ("/api/v2/customer/sessions/s1", customer.as_str(), &big),
        ("/api/v2/customer/sessions", "", &opening),
    ] {
        let (status, reply) = post(&server.url(path), token, body, "application/json").await;
        assert_eq!(status, 413, "{path}: {reply}");
        assert_eq!(reply["statusCode"], 10, "{path}: {reply}");
        assert!(
            reply["statusMessage"].as_str().unwrap().contains("65536"),
            "{path}: the refusal names the bound: {reply}"
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.state.hub.last_seq(), 0, "nothing was published");
    server.stop().await;
}

/// POSTs JSON with an optional bearer token: (status, Retry-After, body).
async fn post_json(url: &str, token: Option<&str>, body: &Value) -> (u16, Option<String>, Value) {
    let mut req = reqwest::Client::new().post(url).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn customer_session_creation_is_rate_limited_per_address_with_429() {
    let server = start(|c| c.customer_session_rate = 2).await;
    let url = server.url("/api/v2/customer/sessions");
    let body = json!({"nickname": "Ann", "message": "hello"});
    for _ in 0..2 {
        let (status, _, reply) = post_json(&url, None, &body).await;
        assert_eq!(status, 201, "{reply}");
    }
    let (status, retry, reply) = post_json(&url, None, &body).await;
    assert_eq!(status, 429, "{reply}");
    assert_eq!(reply["statusCode"], 3, "GWS: the operation is forbidden");
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=30).contains(&retry), "retry after {retry} s");
    assert_eq!(refusals(&server, "customer_session_rate"), 1);
    server.stop().await;
}

#[tokio::test]
async fn agent_operations_are_rate_limited_per_agent_with_429_changing_nothing() {
    let server = start(|c| c.agent_operation_rate = 3).await;
    let (status, _, created) = post_json(
        &server.url("/api/v2/customer/sessions"),
        None,
        &json!({"nickname": "Ann", "message": "hello"}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let sid = created["sessionId"].as_str().unwrap().to_owned();
    // The demo directory routes the first session to TestName.
    let testname = token(Role::Agent, "5e101708f14442c7ab79814bb4f799b2", None);
    let url = server.url(&format!("/api/v2/me/facebooksessions/{sid}"));
    let typing = json!({"operationName": "SendStartTypingNotification"});
    let mut references = Vec::new();
    for _ in 0..3 {
        let (status, _, reply) = post_json(&url, Some(&testname), &typing).await;
        assert_eq!(status, 200, "{reply}");
        references.push(reply["referenceId"].as_u64().unwrap());
    }
    let published = server.state.hub.last_seq();
    let (status, retry, reply) = post_json(&url, Some(&testname), &typing).await;
    assert_eq!(status, 429, "{reply}");
    assert_eq!(reply["statusCode"], 3, "GWS: the operation is forbidden");
    assert!(
        reply["statusMessage"].as_str().unwrap().contains("agent"),
        "{reply}"
    );
    assert!(retry.is_some(), "Retry-After");
    assert_eq!(refusals(&server, "operation_rate"), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        server.state.hub.last_seq(),
        published,
        "nothing was published"
    );

    // Another agent has a bucket of its own: refused for what it is (not
    // a participant), not for the first agent's rate.
    let agent2 = token(Role::Agent, "e2c90c960d3d40c79684818983ceb314", None);
    let (status, _, reply) = post_json(&url, Some(&agent2), &typing).await;
    assert_eq!(status, 403, "{reply}");
    assert_eq!(refusals(&server, "operation_rate"), 1);
    server.stop().await;
}
