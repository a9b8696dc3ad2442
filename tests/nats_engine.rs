//! Engines sharing their sessions through JetStream: two engine processes
//! take 200 concurrent operations each on one session; every one is
//! applied, one after the other (message indices 1..N without a gap or a
//! repeat), with unique referenceIds, and the gateway streams each
//! notification once, in the order of the changes.

mod engine_support;
mod support;

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream::kv;
use chatgate::auth::Role;
use chatgate::config::RoleSetting;
use engine_support::*;
use serde_json::{json, Value};
use support::nats::*;
use support::*;

const PER_ENGINE: usize = 200;

#[tokio::test]
async fn two_engines_apply_every_concurrent_operation_on_one_session() {
    let nats = NatsServer::start().await;
    // One agent sends them all: no per-agent rate limit here.
    let e1 = node(&nats, RoleSetting::Engine, |c| c.agent_operation_rate = 0).await;
    let e2 = node(&nats, RoleSetting::Engine, |c| c.agent_operation_rate = 0).await;
    let gw = gateway(&nats).await;

    let chat = open_chat(&e1, "Ann", "hello", None).await;
    // Routed to the first agent of the demo directory; both engines know it.
    let (status, session) = get(
        &e2,
        &format!("/api/v2/me/facebooksessions/{}", chat.sid),
        &agent(TESTNAME),
    )
    .await;
    assert_eq!(status, 200, "{session}");
    let before = session["messages"].as_array().unwrap().len();
    let mut watcher = gw.connect(Role::Agent, TESTNAME, None).await;
    let snapshot = watcher.notifications(2).await;
    assert!(snapshot[1].to_string().contains("hello"), "{}", snapshot[1]);

    let mut tasks = Vec::new();
    // All at once: they queue, so each may wait for all the others.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let t0 = std::time::Instant::now();
    for (name, engine) in [("a", &e1), ("b", &e2)] {
        for i in 0..PER_ENGINE {
            let url = engine.url(&format!("/api/v2/me/facebooksessions/{}", chat.sid));
            let text = format!("{name}{i}");
            let request = http
                .post(url)
                .bearer_auth(agent(TESTNAME))
                .json(&json!({"operationName": "SendMessage", "text": text}));
            tasks.push(tokio::spawn(async move {
                let resp = request.send().await.unwrap();
                let status = resp.status().as_u16();
                let reply: Value = resp.json().await.unwrap();
                assert_eq!(status, 200, "{text}: {reply}");
                reply["referenceId"].as_u64().unwrap()
            }));
        }
    }
    let mut references = HashSet::new();
    for t in tasks {
        assert!(
            references.insert(t.await.unwrap()),
            "a referenceId was handed out twice"
        );
    }
    assert_eq!(references.len(), 2 * PER_ENGINE);
    eprintln!(
        "{} operations applied in {:?}",
        2 * PER_ENGINE,
        t0.elapsed()
    );

    // Every operation is in the record, each with its own index.
    let (_, session) = get(
        &e1,
        &format!("/api/v2/me/facebooksessions/{}", chat.sid),
        &agent(TESTNAME),
    )
    .await;
    let messages = session["messages"].as_array().unwrap();
    let texts: HashSet<&str> = messages.iter().filter_map(|m| m["text"].as_str()).collect();
    for name in ["a", "b"] {
        for i in 0..PER_ENGINE {
            assert!(
                texts.contains(format!("{name}{i}").as_str()),
                "{name}{i} was lost"
            );
        }
    }
    let indices: Vec<u64> = messages
        .iter()
        .map(|m| m["index"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (1..=indices.len() as u64).collect();
    assert_eq!(indices, expected, "indices run without a gap or a repeat");

    // The gateway streamed each change once, in the order it was applied.
    let frames = watcher.notifications(2 * PER_ENGINE).await;
    let streamed: Vec<u64> = frames
        .iter()
        .map(|f| f["data"]["messages"][0]["index"].as_u64().unwrap())
        .collect();
    assert_eq!(
        streamed,
        expected[before..],
        "the stream follows the order of the changes"
    );
    let refs: HashSet<u64> = frames
        .iter()
        .map(|f| f["data"]["referenceId"].as_u64().unwrap())
        .collect();
    assert_eq!(
        refs, references,
        "each notification carries its request's referenceId"
    );
    watcher.expect_silence(Duration::from_millis(300)).await;

    // And the customer sees all of them, numbered 1, 2, 3, ...
    let mut customer = Client::connect(gw.addr, &chat.token, None).await.unwrap();
    // The state, then the log in as many frames as the frame bound needs:
    // all of it before anything else.
    let mut shown: Vec<Value> = Vec::new();
    while let Ok(Some(f)) = customer.next_json_within(Duration::from_millis(500)).await {
        if let Some(messages) = f["data"]["messages"].as_array() {
            shown.extend(messages.iter().cloned());
        }
    }
    let numbered: Vec<u64> = shown.iter().map(|m| m["index"].as_u64().unwrap()).collect();
    assert_eq!(numbered, (1..=shown.len() as u64).collect::<Vec<_>>());
    let ours = |m: &&Value| {
        m["text"]
            .as_str()
            .is_some_and(|t| t.starts_with(['a', 'b']))
    };
    assert_eq!(shown.iter().filter(ours).count(), 2 * PER_ENGINE);

    e1.stop().await;
    e2.stop().await;
    gw.stop().await;
}

#[tokio::test]
async fn an_operation_while_nats_is_down_changes_nothing() {
    let mut nats = NatsServer::start().await;
    let engine = node(&nats, RoleSetting::Engine, |_| {}).await;
    let chat = open_chat(&engine, "Bob", "hi", None).await;
    nats.kill();
    wait_status(engine.url("/readyz"), 503).await;
    let (status, reply) = op(
        &engine,
        TESTNAME,
        &chat.sid,
        json!({"operationName": "SendMessage", "text": "lost?"}),
    )
    .await;
    assert_eq!(status, 503, "{reply}");
    nats.restart().await;
    wait_status(engine.url("/readyz"), 200).await;
    let (_, session) = get(
        &engine,
        &format!("/api/v2/me/facebooksessions/{}", chat.sid),
        &agent(TESTNAME),
    )
    .await;
    let texts: Vec<&str> = session["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert_eq!(texts, ["hi"]);
    op_ok(
        &engine,
        TESTNAME,
        &chat.sid,
        json!({"operationName": "SendMessage", "text": "back"}),
    )
    .await;
    engine.stop().await;
}

/// The bucket holding the engines' sessions.
async fn sessions_bucket(nats: &NatsServer) -> (async_nats::jetstream::Context, kv::Store) {
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let kv = js.get_key_value("CHATGATE_SESSIONS").await.unwrap();
    (js, kv)
}

/// Leaves a claim on `sid` as an engine that stopped halfway would: the
/// next record (with `userData.mark`) and `texts` as its notifications.
async fn abandon_claim(kv: &kv::Store, sid: &str, mark: &str, texts: &[&str]) -> u64 {
    let key = format!("session.{sid}");
    let entry = kv.entry(&key).await.unwrap().unwrap();
    let stored: Value = serde_json::from_slice(&entry.value).unwrap();
    let record = stored["record"].clone();
    let mut next = record.clone();
    let revision = record["revision"].as_u64().unwrap() + 1;
    next["revision"] = json!(revision);
    next["userData"]["mark"] = json!(mark);
    let notifications: Vec<Value> = texts
        .iter()
        .map(|t| text_message(sid, TESTNAME, 900, "All", t))
        .collect();
    let claimed = json!({
        "record": record,
        "claim": {"next": next, "notifications": notifications, "since_ms": 0},
    });
    kv.update(
        &key,
        serde_json::to_vec(&claimed).unwrap().into(),
        entry.revision,
    )
    .await
    .unwrap();
    revision
}

fn texts_of(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .filter_map(|f| f["data"]["messages"][0]["text"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn an_abandoned_change_is_rolled_back_or_forward_by_what_reached_the_stream() {
    let nats = NatsServer::start().await;
    let engine = node(&nats, RoleSetting::Engine, |_| {}).await;
    let gw = gateway(&nats).await;
    let chat = open_chat(&engine, "Cy", "hello", None).await;
    let (js, kv) = sessions_bucket(&nats).await;
    let path = format!("/api/v2/me/facebooksessions/{}", chat.sid);
    let mut watcher = gw.connect(Role::Agent, TESTNAME, None).await;
    watcher.notifications(2).await;

    // Nothing of it was published: rolled back.
    abandon_claim(&kv, &chat.sid, "back", &["never"]).await;
    op_ok(
        &engine,
        TESTNAME,
        &chat.sid,
        json!({"operationName": "SendMessage", "text": "after back"}),
    )
    .await;
    let (_, session) = get(&engine, &path, &agent(TESTNAME)).await;
    assert!(
        session["facebooksession"]["userData"].get("mark").is_none(),
        "{session}"
    );
    assert_eq!(texts_of(&watcher.notifications(1).await), ["after back"]);

    // Its first notification reached the stream: rolled forward.
    let revision = abandon_claim(&kv, &chat.sid, "forward", &["first", "second"]).await;
    let first = text_message(&chat.sid, TESTNAME, 900, "All", "first");
    let publish = async_nats::jetstream::message::PublishMessage::build()
        .payload(serde_json::to_vec(&first).unwrap().into())
        .message_id(format!("{}:{revision}:0", chat.sid));
    js.send_publish(format!("chatgate.sessions.{}", chat.sid), publish)
        .await
        .unwrap()
        .await
        .unwrap();
    op_ok(
        &engine,
        TESTNAME,
        &chat.sid,
        json!({"operationName": "SendMessage", "text": "after forward"}),
    )
    .await;
    let (_, session) = get(&engine, &path, &agent(TESTNAME)).await;
    assert_eq!(
        session["facebooksession"]["userData"]["mark"], "forward",
        "{session}"
    );
    assert_eq!(
        texts_of(&watcher.notifications(3).await),
        ["first", "second", "after forward"]
    );
    watcher.expect_silence(Duration::from_millis(300)).await;
    engine.stop().await;
    gw.stop().await;
}
