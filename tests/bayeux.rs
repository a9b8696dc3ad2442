//! `/api/v2/notifications` (Bayeux): long-polling and WebSocket against a
//! real chatgate, through the ingest, with real sockets.

mod support;

use std::time::Duration;

use chatgate::auth::Role;
use serde_json::{json, Value};
use support::bayeux::*;
use support::*;

const SID: &str = "0002EaAY01MT007C";
const CUSTOMER: &str = "007356263E140144";
const TESTNAME: &str = "5e101708f14442c7ab79814bb4f799b2";
const AGENT2: &str = "e2c90c960d3d40c79684818983ceb314";

fn ext(role: Role, sub: &str, sid: Option<&str>) -> Value {
    json!({"access_token": token(role, sub, sid)})
}

fn participants() -> (Value, Value, Value) {
    let pu = sample("consult-participants-updated.json");
    let p = pu["facebooksession"]["participants"].as_array().unwrap();
    (p[0].clone(), p[1].clone(), p[2].clone())
}

/// The seed's consult, after the session began; the customer sees only
/// the last line, visible to all.
fn consult() -> Vec<Value> {
    let (_, agent2, testname) = participants();
    vec![
        sample("consult-participants-updated.json"),
        sample("consult-new-messages.json"),
        seed_message(5, &agent2, "Agents", "internal: refund is fine"),
        seed_message(6, &testname, "All", "let me check"),
    ]
}

#[tokio::test]
async fn long_polling_carries_the_seed_consult_to_each_party_as_allowed() {
    let server = start(|_| {}).await;
    let base = server.url("");
    let (customer_p, _, _) = participants();
    server
        .ingest_ok(&[
            seed_before_consult(),
            seed_message(1, &customer_p, "All", "hello"),
        ])
        .await;
    server.wait_dispatched(2).await;

    let mut agent = LongPoll::start(&base, ext(Role::Agent, TESTNAME, None)).await;
    let mut consultant = LongPoll::start(&base, ext(Role::Agent, AGENT2, None)).await;
    let mut supervisor = LongPoll::start(&base, ext(Role::Supervisor, "boss", None)).await;
    let mut customer = LongPoll::start(&base, ext(Role::Customer, CUSTOMER, Some(SID))).await;
    assert_eq!(
        agent.handshake["supportedConnectionTypes"],
        json!(["websocket", "long-polling"])
    );
    assert_eq!(agent.handshake["ext"]["resumed"], false);

    // Snapshots: the session and its log; the customer's own view.
    let snap = agent.collect(2).await;
    assert!(snap[0]["data"]["facebooksession"]["userData"].is_object());
    assert_eq!(snap[1]["id"], "2");
    supervisor.collect(2).await;
    let snap = customer.collect(2).await;
    assert!(snap[0]["data"]["facebooksession"]["userData"].is_null());
    assert_eq!(snap[1]["id"], "2");
    // Agent2 is not in the session yet.
    assert!(consultant.connect(Some(0)).await.is_empty());

    // A connect held across the consult is answered by it.
    let held = tokio::spawn(async move {
        let got = agent.collect(4).await;
        (agent, got)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let items = consult();
    server.ingest_ok(&items).await;
    server.wait_dispatched(6).await;

    let (_, got) = held.await.unwrap();
    for (n, sent) in got.iter().zip(&items) {
        assert_eq!(&n["data"], sent, "agents get notifications unchanged");
        assert_eq!(n["channel"], CHANNEL);
        assert!(n.get("type").is_none(), "a Bayeux message: {n}");
    }
    let ids: Vec<&str> = got.iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["3", "4", "5", "6"]);
    let got = consultant.collect(4).await;
    assert_eq!(
        got[2]["data"]["messages"][0]["text"],
        "internal: refund is fine"
    );
    let got = supervisor.collect(4).await;
    assert_eq!(got[0]["data"], items[0]);

    // The customer: only the line visible to all, renumbered, nothing of
    // the consult.
    let got = customer.collect(1).await;
    let text = got[0].to_string();
    assert_eq!(got[0]["data"]["messages"][0]["text"], "let me check");
    assert_eq!(got[0]["data"]["messages"][0]["index"], 2);
    assert_eq!(got[0]["id"], "3");
    for hidden in ["Agent2", "internal", "userData", "referenceId"] {
        assert!(
            !text.contains(hidden),
            "{hidden} reached the customer: {text}"
        );
    }
    assert!(customer.connect(Some(300)).await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn a_bad_or_missing_token_is_refused_and_nothing_is_kept() {
    let server = start(|_| {}).await;
    let base = server.url("");
    let expired = {
        use jsonwebtoken::{encode, EncodingKey, Header};
        let claims = json!({"sub": "a", "role": "agent", "exp": 1_000_000});
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    for ext in [
        json!({}),
        json!({"access_token": "garbage"}),
        json!({"access_token": expired}),
    ] {
        let (status, replies) = bayeux_post(
            &base,
            json!([{"channel": "/meta/handshake", "id": "7", "version": "1.0",
                    "supportedConnectionTypes": ["long-polling"], "ext": ext}]),
            None,
        )
        .await;
        assert_eq!(status, 200);
        let hs = reply(&replies, "/meta/handshake");
        assert_eq!(hs["successful"], false, "{hs}");
        assert_eq!(hs["id"], "7");
        assert!(hs["error"].as_str().unwrap().starts_with("401::"), "{hs}");
        assert!(hs.get("clientId").is_none());
        assert_eq!(hs["advice"]["reconnect"], "none");
    }
    // The header works as well as ext; a role that may not subscribe is 403.
    let (_, replies) = bayeux_post(
        &base,
        json!([{"channel": "/meta/handshake", "supportedConnectionTypes": ["long-polling"]}]),
        Some(&token(Role::Agent, TESTNAME, None)),
    )
    .await;
    assert_eq!(reply(&replies, "/meta/handshake")["successful"], true);
    let (_, replies) = bayeux_post(
        &base,
        json!([{"channel": "/meta/handshake", "ext": ext(Role::Service, "up", None)}]),
        None,
    )
    .await;
    assert!(reply(&replies, "/meta/handshake")["error"]
        .as_str()
        .unwrap()
        .starts_with("403::"));
    assert_eq!(server.state.hub.connection_count(), 1, "only the good one");

    // An unknown clientId: handshake again.
    let (_, replies) = bayeux_post(
        &base,
        json!([{"channel": "/meta/connect", "clientId": "nope", "connectionType": "long-polling"}]),
        None,
    )
    .await;
    let c = reply(&replies, "/meta/connect");
    assert_eq!(
        (c["successful"].as_bool(), c["advice"]["reconnect"].as_str()),
        (Some(false), Some("handshake"))
    );
    assert!(c["error"].as_str().unwrap().starts_with("402::"));
    server.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_bayeux_error_and_changes_nothing() {
    let server = start(|_| {}).await;
    let base = server.url("");
    let mut agent = LongPoll::start(&base, ext(Role::Agent, TESTNAME, None)).await;
    let client = agent.client_id.clone();
    for (batch, code) in [
        (
            json!([{"channel": "/meta/subscribe", "clientId": client, "subscription": "/other", "id": "s"}]),
            "403:/other:",
        ),
        (
            json!([{"channel": "/v2/me/facebooksession", "clientId": client, "data": {}}]),
            "403::",
        ),
        (
            json!([{"channel": "/meta/nothing", "clientId": client}]),
            "400::",
        ),
        (json!([{"clientId": client}]), "400::"),
        (json!([7]), "400::"),
    ] {
        let (status, replies) = bayeux_post(&base, batch.clone(), None).await;
        assert_eq!(status, 200);
        let r = &replies[0];
        assert_eq!(r["successful"], false, "{batch} -> {r}");
        assert!(
            r["error"].as_str().unwrap().starts_with(code),
            "{batch} -> {r}"
        );
    }
    let (status, replies) = bayeux_post(&base, json!("not a batch"), None).await;
    assert_eq!(
        (status, replies[0]["successful"].as_bool()),
        (400, Some(false))
    );
    let (status, _) = bayeux_post(
        &base,
        json!(vec![json!({"channel": "/meta/connect"}); 17]),
        None,
    )
    .await;
    assert_eq!(status, 400);
    // The client is untouched: it still subscribes and receives.
    server.ingest_ok(&[seed_before_consult()]).await;
    assert_eq!(agent.collect(1).await[0]["data"], seed_before_consult());
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_polling_expires_and_its_queue_is_freed() {
    let server = start(|c| c.bayeux_max_interval_ms = 300).await;
    let base = server.url("");
    let mut agent = LongPoll::start(&base, ext(Role::Agent, TESTNAME, None)).await;
    assert_eq!(agent.handshake["advice"]["maxInterval"], 300);
    agent.connect(Some(0)).await;
    server.ingest_ok(&[seed_before_consult()]).await;
    server.wait_dispatched(1).await;
    assert_eq!(server.state.hub.connection_count(), 1);
    assert!(
        server.state.hub.stats().queued_bytes > 0,
        "a frame waits for it"
    );
    // A held connect keeps it alive past maxInterval.
    assert_eq!(agent.connect(Some(500)).await.len(), 1);
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.state.hub.connection_count() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.state.hub.stats().queued_bytes, 0);
    let replies = agent.connect_raw(Some(0), None).await;
    assert!(reply(&replies, "/meta/connect")["error"]
        .as_str()
        .unwrap()
        .starts_with("402::"));
    server.stop().await;
}

#[tokio::test]
async fn disconnect_frees_the_client_at_once() {
    let server = start(|_| {}).await;
    let base = server.url("");
    let agent = LongPoll::start(&base, ext(Role::Agent, TESTNAME, None)).await;
    assert_eq!(server.state.hub.connection_count(), 1);
    let (_, replies) = bayeux_post(
        &base,
        json!([{"channel": "/meta/disconnect", "clientId": agent.client_id, "id": "d"}]),
        None,
    )
    .await;
    assert_eq!(reply(&replies, "/meta/disconnect")["successful"], true);
    assert_eq!(server.state.hub.connection_count(), 0);
    server.stop().await;
}

#[tokio::test]
async fn a_lost_response_is_delivered_again_exactly_once_with_the_ack_extension() {
    let server = start(|_| {}).await;
    let base = server.url("");
    let mut ack_ext = ext(Role::Agent, TESTNAME, None);
    ack_ext["ack"] = json!(true);
    let mut agent = LongPoll::start(&base, ack_ext).await;
    assert_eq!(agent.handshake["ext"]["ack"], true);
    assert!(agent.connect(Some(0)).await.is_empty());
    let acked = agent.ack;

    let (customer_p, _, _) = participants();
    server.ingest_ok(&[seed_before_consult()]).await;
    // This response is "lost": the next connect acknowledges the old batch.
    let lost = agent.connect_raw(Some(2000), acked).await;
    let lost_n = notifications(&lost);
    assert_eq!(lost_n.len(), 1);
    server
        .ingest_ok(&[seed_message(1, &customer_p, "All", "hello")])
        .await;
    server.wait_dispatched(2).await;
    let again = notifications(&agent.connect_raw(Some(2000), acked).await);
    assert_eq!(again.len(), 2, "{again:?}");
    assert_eq!(again[0], lost_n[0], "the lost one again");
    assert_eq!(again[1]["id"], "2");
    // Acknowledged now: nothing twice.
    let replies = agent.connect_raw(Some(0), acked).await;
    assert_eq!(notifications(&replies).len(), 2, "still unacknowledged");
    let latest = reply(&replies, "/meta/connect")["ext"]["ack"]
        .as_i64()
        .unwrap();
    let after = notifications(&agent.connect_raw(Some(300), Some(latest)).await);
    assert!(after.is_empty(), "{after:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_handshake_with_since_and_epoch_resumes_and_a_slow_client_is_told_to() {
    let server = start(|c| c.queue_frames = 4).await;
    let base = server.url("");
    let (customer_p, _, _) = participants();
    server.ingest_ok(&[seed_before_consult()]).await;
    let mut agent = LongPoll::start(&base, ext(Role::Agent, TESTNAME, None)).await;
    let epoch = agent.handshake["ext"]["epoch"].as_str().unwrap().to_owned();
    let first = agent.collect(1).await;
    let last = first[0]["id"].as_str().unwrap().to_owned();

    // Ten notifications overflow its queue of four: told to handshake.
    let lines: Vec<Value> = (1..=10)
        .map(|i| seed_message(i, &customer_p, "All", &format!("line {i}")))
        .collect();
    server.ingest_ok(&lines).await;
    server.wait_dispatched(11).await;
    let replies = agent.connect_raw(Some(0), None).await;
    let c = reply(&replies, "/meta/connect");
    assert_eq!(c["successful"], false, "{replies}");
    assert_eq!(c["advice"]["reconnect"], "handshake");
    assert_eq!(server.state.hub.connection_count(), 0, "its queue is freed");

    // It resumes from the last id it had: every line, in order, once.
    let mut resume = ext(Role::Agent, TESTNAME, None);
    resume["since"] = json!(last);
    resume["epoch"] = json!(epoch);
    let mut agent = LongPoll::start(&base, resume).await;
    assert_eq!(agent.handshake["ext"]["resumed"], true);
    let got = agent.collect(10).await;
    let texts: Vec<&str> = got
        .iter()
        .map(|n| n["data"]["messages"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        (1..=10).map(|i| format!("line {i}")).collect::<Vec<_>>()
    );

    // A wrong epoch is never resumed: the snapshot instead.
    let mut stale = ext(Role::Agent, TESTNAME, None);
    stale["since"] = json!(last);
    stale["epoch"] = json!("another");
    let mut agent = LongPoll::start(&base, stale).await;
    assert_eq!(agent.handshake["ext"]["resumed"], false);
    let snap = agent.collect(2).await;
    assert_eq!(snap[0]["data"]["notificationType"], "ParticipantsUpdated");
    server.stop().await;
}

#[tokio::test]
async fn websocket_after_an_http_handshake_and_all_over_one_socket() {
    let server = start(|_| {}).await;
    let base = server.url("");
    // The handshake over HTTP, the connects over the socket.
    let agent = LongPoll::start(&base, ext(Role::Agent, TESTNAME, None)).await;
    let mut ws = ws_open(server.addr).await;
    ws_send(
        &mut ws,
        json!([{"channel": "/meta/connect", "clientId": agent.client_id,
                "connectionType": "websocket", "id": "1", "advice": {"timeout": 0}}]),
    )
    .await;
    let r = ws_recv(&mut ws).await;
    assert_eq!(reply(&r, "/meta/connect")["successful"], true);
    assert_eq!(reply(&r, "/meta/connect")["id"], "1");
    ws_send(
        &mut ws,
        json!([{"channel": "/meta/connect", "clientId": agent.client_id,
                "connectionType": "websocket", "id": "2"}]),
    )
    .await;
    server.ingest_ok(&[seed_before_consult()]).await;
    let r = ws_recv(&mut ws).await;
    assert_eq!(notifications(&r)[0]["data"], seed_before_consult());
    assert_eq!(reply(&r, "/meta/connect")["id"], "2");

    // Everything on one socket, the token in the handshake.
    let mut ws = ws_open(server.addr).await;
    ws_send(
        &mut ws,
        json!([{"channel": "/meta/handshake", "id": "h", "version": "1.0",
                "supportedConnectionTypes": ["websocket"],
                "ext": ext(Role::Customer, CUSTOMER, Some(SID))}]),
    )
    .await;
    let r = ws_recv(&mut ws).await;
    let hs = reply(&r, "/meta/handshake");
    assert_eq!(hs["successful"], true, "{hs}");
    let id = hs["clientId"].as_str().unwrap().to_owned();
    // A connect held while the subscription comes on the same socket.
    ws_send(
        &mut ws,
        json!([{"channel": "/meta/connect", "clientId": id, "connectionType": "websocket", "id": "c1"}]),
    )
    .await;
    let r = ws_recv(&mut ws).await;
    assert_eq!(
        reply(&r, "/meta/connect")["id"],
        "c1",
        "the first is answered at once"
    );
    ws_send(
        &mut ws,
        json!([{"channel": "/meta/connect", "clientId": id, "connectionType": "websocket", "id": "c2"}]),
    )
    .await;
    ws_send(
        &mut ws,
        json!([{"channel": "/meta/subscribe", "clientId": id, "subscription": CHANNEL, "id": "s"}]),
    )
    .await;
    let mut got = Vec::new();
    while got.is_empty() {
        let r = ws_recv(&mut ws).await;
        if let Some(s) = r
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["channel"] == "/meta/subscribe")
        {
            assert_eq!(s["successful"], true);
        }
        got.extend(notifications(&r));
    }
    // The customer's snapshot of the session: its own view.
    assert_eq!(got[0]["data"]["notificationType"], "ParticipantsUpdated");
    assert!(got[0]["data"]["facebooksession"]["userData"].is_null());
    // A bad token over the socket: refused, nothing kept.
    let before = server.state.hub.connection_count();
    ws_send(
        &mut ws,
        json!([{"channel": "/meta/handshake", "id": "bad", "ext": {"access_token": "x"}}]),
    )
    .await;
    let r = ws_recv(&mut ws).await;
    let hs = reply(&r, "/meta/handshake");
    assert!(hs["error"].as_str().unwrap().starts_with("401::"));
    assert!(hs.get("clientId").is_none());
    assert_eq!(server.state.hub.connection_count(), before);
    server.stop().await;
}

#[tokio::test]
async fn an_expired_token_ends_the_client_with_no_reconnect() {
    let server = start(|_| {}).await;
    let base = server.url("");
    let short = chatgate::auth::Authenticator::new(SECRET.as_bytes(), None)
        .unwrap()
        .mint(Role::Agent, TESTNAME, None, 2);
    let agent = LongPoll::start(&base, json!({"access_token": short})).await;
    agent.connect_raw(Some(0), None).await;
    // Held past the token's end: answered then, and the client is gone.
    let started = std::time::Instant::now();
    let replies = agent.connect_raw(Some(10_000), None).await;
    let c = reply(&replies, "/meta/connect");
    assert_eq!(c["error"], "401::token expired", "{replies}");
    assert_eq!(c["advice"]["reconnect"], "none");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(server.state.hub.connection_count(), 0);
    server.stop().await;
}
