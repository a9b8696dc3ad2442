//! A gateway that starts while sessions are live: it starts from the
//! other gateways' checkpoints, not from the whole stream, and serves the
//! sessions exactly as a gateway that saw everything (same state, customer
//! ids and indices, snapshots; resume from one to the other).

mod support;

use std::time::Duration;

use async_nats::jetstream::kv;
use chatgate::auth::Role;
use chatgate::config::RoleSetting;
use serde_json::Value;
use support::nats::*;
use support::*;

const SESSIONS: usize = 5;
const BEFORE: u64 = 100;
const DURING: u64 = 40;

fn sid(s: usize) -> String {
    format!("late-{s}")
}

/// Session 0 has an agent of its own (followed below); the others share two.
fn agent(s: usize) -> String {
    if s == 0 {
        "agent-solo".into()
    } else {
        format!("agent-{}", s % 2)
    }
}

/// Message `i` of session `s`: two of three visible to the customer.
fn event(s: usize, i: u64) -> Value {
    let vis = if i.is_multiple_of(3) { "Agents" } else { "All" };
    text_message(&sid(s), &agent(s), i, vis, &format!("{s}/{i}"))
}

async fn checkpoints(nats: &NatsServer) -> kv::Store {
    let client = async_nats::connect(nats.url()).await.unwrap();
    async_nats::jetstream::new(client)
        .get_key_value("CHATGATE_CHECKPOINTS")
        .await
        .unwrap()
}

async fn watermark(store: &kv::Store) -> u64 {
    match store.get("watermark").await.unwrap() {
        Some(v) => serde_json::from_slice::<Value>(&v).unwrap()["seq"]
            .as_u64()
            .unwrap(),
        None => 0,
    }
}

async fn wait_watermark(store: &kv::Store, seq: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while watermark(store).await < seq {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no checkpoint reached {seq}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn snapshot(
    server: &TestServer,
    role: Role,
    sub: &str,
    sid: Option<&str>,
    n: usize,
) -> Vec<Value> {
    let mut c = server.connect(role, sub, sid).await;
    let frames = c.notifications(n).await;
    c.expect_silence(Duration::from_millis(100)).await;
    frames
}

#[tokio::test]
async fn a_late_gateway_starts_from_checkpoints_and_matches_the_others() {
    let nats = NatsServer::start().await;
    let engine = node(&nats, RoleSetting::Engine, |_| {}).await;
    let a = gateway(&nats).await;
    for s in 0..SESSIONS {
        engine.ingest_ok(&[session_with(&sid(s), &agent(s))]).await;
    }
    for i in 1..=BEFORE {
        let batch: Vec<Value> = (0..SESSIONS).map(|s| event(s, i)).collect();
        engine.ingest_ok(&batch).await;
    }
    let history = SESSIONS as u64 * (1 + BEFORE);
    a.wait_dispatched(history).await;
    let store = checkpoints(&nats).await;
    wait_watermark(&store, history).await;

    // An agent on A, to resume on the late gateway later.
    let mut follower = Follower::new(Role::Agent, &agent(0), None);
    follower.attach(&a).await;
    follower.read_until(2).await; // its snapshot: ParticipantsUpdated + log

    // Events keep coming while the late gateway starts.
    let base = engine.url("");
    let publisher = tokio::spawn(async move {
        let http = reqwest::Client::new();
        for i in BEFORE + 1..=BEFORE + DURING {
            let batch: Vec<Value> = (0..SESSIONS).map(|s| event(s, i)).collect();
            ingest_retrying(&http, base.trim_end_matches('/'), &batch, &format!("d{i}")).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(60)).await;
    let c = gateway(&nats).await;
    let restored_at = c.state.hub.last_seq();
    assert!(
        restored_at >= history,
        "C started from the checkpoints ({restored_at})"
    );
    publisher.await.unwrap();

    let total = history + SESSIONS as u64 * DURING;
    a.wait_dispatched(total).await;
    c.wait_dispatched(total).await;
    let replayed = c.state.metrics.notifications_dispatched.get();
    assert!(
        replayed <= SESSIONS as u64 * DURING,
        "C dispatched {replayed}: it replayed history"
    );
    for s in 0..SESSIONS {
        let (on_a, on_c) = (
            a.state.hub.session_state(&sid(s)),
            c.state.hub.session_state(&sid(s)),
        );
        assert!(on_a.is_some());
        assert_eq!(on_a, on_c, "session {s} differs on the late gateway");
    }

    // Customers and agents see the same snapshots, under the same ids.
    let customer = format!("c-{}", sid(3));
    assert_eq!(
        snapshot(&a, Role::Customer, &customer, Some(&sid(3)), 2).await,
        snapshot(&c, Role::Customer, &customer, Some(&sid(3)), 2).await
    );
    let last = snapshot(&c, Role::Customer, &customer, Some(&sid(3)), 2).await;
    let visible = (1..=BEFORE + DURING)
        .filter(|i| !i.is_multiple_of(3))
        .count();
    assert_eq!(last[1]["id"], (1 + visible).to_string());
    assert_eq!(
        last[1]["data"]["messages"].as_array().unwrap().len(),
        visible
    );

    // The agent moves from A to the late gateway: nothing missing.
    follower.read_until(2 + DURING as usize).await;
    follower.detach().await;
    engine.ingest_ok(&[event(0, BEFORE + DURING + 1)]).await;
    follower.attach(&c).await;
    follower.read_until(3 + DURING as usize).await;
    let expected: Vec<String> = (BEFORE + 1..=BEFORE + DURING + 1)
        .map(|i| format!("0/{i}"))
        .collect();
    assert_eq!(follower.texts()[1..], expected[..]);

    engine.stop().await;
    a.stop().await;
    c.stop().await;
}

#[tokio::test]
async fn a_forgotten_session_loses_its_checkpoint() {
    let nats = NatsServer::start().await;
    let a = node(&nats, RoleSetting::Gateway, |c| c.retention_secs = 0).await;
    // A session whose agents have all left: ended.
    let mut ended = session_with("gone", "agent-x");
    ended["facebooksession"]["participants"]
        .as_array_mut()
        .unwrap()
        .truncate(1);
    a.ingest_ok(&[ended]).await;
    a.wait_dispatched(1).await;
    let store = checkpoints(&nats).await;
    wait_watermark(&store, 1).await;
    assert!(store.get("session.gone").await.unwrap().is_some());

    a.state.hub.sweep();
    assert!(!a.state.hub.has_session("gone"));
    let deadline = tokio::time::Instant::now() + WAIT;
    while store.get("session.gone").await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the checkpoint stayed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.stop().await;
}
