//! Faults of the bus: nats-server killed and restarted mid-stream (zero
//! loss, zero duplicates at the clients; `/readyz` 503 while it is away,
//! `/healthz` 200; a publish meanwhile is a 503 to the caller, in fixed
//! words that carry no NATS error text), and a malformed event on the
//! stream (logged and skipped).

mod support;

use std::time::Duration;

use chatgate::auth::Role;
use chatgate::config::RoleSetting;
use serde_json::{json, Value};
use support::nats::*;
use support::{post, token};

const SID: &str = "fault-session";
const AGENT: &str = "agent-f";
const MESSAGES: u64 = 300;

#[tokio::test]
async fn nats_restart_mid_stream_loses_and_repeats_nothing() {
    let mut nats = NatsServer::start().await;
    let engine = node(&nats, RoleSetting::Engine, |_| {}).await;
    let a = gateway(&nats).await;
    let b = gateway(&nats).await;
    engine.ingest_ok(&[session_with(SID, AGENT)]).await;
    a.wait_dispatched(1).await;
    b.wait_dispatched(1).await;

    let mut agent = Follower::new(Role::Agent, AGENT, None);
    let mut customer = Follower::new(Role::Customer, &format!("c-{SID}"), Some(SID));
    agent.attach(&a).await;
    customer.attach(&b).await;

    let base = engine.url("");
    let publisher = tokio::spawn(async move {
        let http = reqwest::Client::new();
        let mut refused = 0;
        for i in 1..=MESSAGES {
            let vis = if i.is_multiple_of(2) { "All" } else { "Agents" };
            let item = text_message(SID, AGENT, i, vis, &format!("m{i}"));
            refused +=
                ingest_retrying(&http, base.trim_end_matches('/'), &[item], &format!("m{i}")).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        refused
    });

    agent.read_until(60).await;
    nats.kill();
    wait_status(a.url("/readyz"), 503).await;
    assert_eq!(status(a.url("/healthz")).await, 200);
    assert_eq!(status(engine.url("/healthz")).await, 200);

    // A publish NATS cannot acknowledge is an error to the caller.
    let errors_before = a.state.metrics.bus_publish_errors.get();
    let (code, body) = a
        .ingest(
            &text_message(SID, AGENT, 999, "All", "lost?").to_string(),
            "application/json",
        )
        .await;
    assert_eq!(code, 503, "{body}");
    assert!(a.state.metrics.bus_publish_errors.get() > errors_before);

    tokio::time::sleep(Duration::from_millis(500)).await;
    nats.restart().await;
    for server in [&engine, &a, &b] {
        wait_status(server.url("/readyz"), 200).await;
    }

    agent.read_until(1 + MESSAGES as usize).await;
    customer.read_until(1 + (MESSAGES / 2) as usize).await;
    let refused = publisher.await.unwrap();
    assert!(refused > 0, "the outage happened while publishing");

    let expected: Vec<String> = (1..=MESSAGES).map(|i| format!("m{i}")).collect();
    assert_eq!(agent.texts(), expected);
    let expected: Vec<String> = (1..=MESSAGES)
        .filter(|i| i.is_multiple_of(2))
        .map(|i| format!("m{i}"))
        .collect();
    assert_eq!(customer.texts(), expected);
    let ids: Vec<String> = customer
        .frames
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = (1..=customer.frames.len()).map(|i| i.to_string()).collect();
    assert_eq!(ids, want);
    // Nothing more is coming: no late duplicate either.
    agent.expect_silence(Duration::from_millis(500)).await;
    customer.expect_silence(Duration::from_millis(200)).await;
    assert_eq!(agent.resumes, 0, "the WebSocket clients never noticed");
    for server in [&engine, &a, &b] {
        assert_eq!(server.state.metrics.bus_reconnects.get(), 1);
    }

    engine.stop().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_malformed_event_is_skipped() {
    let nats = NatsServer::start().await;
    let a = gateway(&nats).await;
    a.ingest_ok(&[session_with("s-bad", "agent-b")]).await;
    a.wait_dispatched(1).await;

    // Someone else publishes junk on the stream's subjects.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    for junk in ["{not json", "{\"notificationType\":\"Nope\"}"] {
        js.publish("chatgate.sessions.s-bad", junk.as_bytes().to_vec().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    a.ingest_ok(&[text_message("s-bad", "agent-b", 1, "All", "after")])
        .await;
    a.wait_dispatched(4).await;
    assert_eq!(a.state.metrics.bus_events_skipped.get(), 2);
    assert!(a.state.hub.session_state("s-bad").is_some());
    assert_eq!(
        a.state.hub.session_log("s-bad").len(),
        1,
        "the good event after the junk was applied"
    );
    a.stop().await;
}

/// What a client may be told when NATS is gone: which part failed, never
/// the failure's own text (servers, ports, subjects, buckets).
const ENGINE_REFUSALS: [&str; 2] = [
    "the bus is unavailable; nothing changed",
    "the session store is unavailable; nothing changed",
];

/// An engine refusal while NATS is stopped: 503, statusCode 4 (GWS: an
/// internal error occurred), fixed words.
fn assert_fixed_engine_refusal(what: &str, (status, body): (u16, Value)) {
    assert_eq!(status, 503, "{what}: {body}");
    assert_eq!(body["statusCode"], 4, "{what}: {body}");
    let message = body["statusMessage"].as_str().unwrap_or_default();
    assert!(
        ENGINE_REFUSALS.contains(&message),
        "{what}: the client was told {body}"
    );
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(2),
        "{what}: nothing but statusCode and statusMessage: {body}"
    );
}

#[tokio::test]
async fn with_nats_stopped_refusals_carry_no_nats_error_text() {
    let mut nats = NatsServer::start().await;
    let server = node(&nats, RoleSetting::All, |_| {}).await;
    let (status, opened) = post(
        &server.url("/api/v2/customer/sessions"),
        "",
        &json!({"nickname": "Ann", "message": "hello"}).to_string(),
        "application/json",
    )
    .await;
    assert_eq!(status, 201, "{opened}");
    let sid = opened["sessionId"].as_str().unwrap().to_owned();
    let customer = opened["token"].as_str().unwrap().to_owned();
    // The demo directory's first agent is routed the first session.
    let agent = token(Role::Agent, "5e101708f14442c7ab79814bb4f799b2", None);

    nats.kill();
    wait_status(server.url("/readyz"), 503).await;

    let send = json!({"operationName": "SendMessage", "text": "anyone?"}).to_string();
    let path = format!("/api/v2/me/facebooksessions/{sid}");
    let reply = post(&server.url(&path), &agent, &send, "application/json").await;
    assert_fixed_engine_refusal("an agent's operation", reply);
    let path = format!("/api/v2/customer/sessions/{sid}");
    let reply = post(&server.url(&path), &customer, &send, "application/json").await;
    assert_fixed_engine_refusal("a customer's operation", reply);
    let new = json!({"nickname": "Bob", "message": "hi"}).to_string();
    let reply = post(
        &server.url("/api/v2/customer/sessions"),
        "",
        &new,
        "application/json",
    )
    .await;
    assert_fixed_engine_refusal("a new customer session", reply);

    let item = text_message(&sid, "agent-x", 1, "All", "via ingest");
    let (status, body) = server.ingest(&item.to_string(), "application/json").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body, json!({"error": "the bus is unavailable"}));
    server.stop().await;
}
