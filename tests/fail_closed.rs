//! The edges production meets, fail closed, over real sockets: long
//! transcripts never lock anyone out (snapshots in frames within the
//! bound), an item over the frame bound is refused and reaches nobody, a
//! `since` of another epoch (a restart, a session forgotten and seen again)
//! gets a snapshot instead of a wrong resume, duplicate keys are refused,
//! upstream visibility dialects reach agents and never the customer, and
//! memory stays within the one budget however much passes through.

mod engine_support;
mod support;

use std::time::Duration;

use chatgate::auth::Role;
use engine_support::*;
use serde_json::{json, Value};
use support::*;

const SID: &str = "0002EaAY01MT007C";
const BOUND: usize = 512 << 10;
const QUIET: Duration = Duration::from_millis(300);

/// The seed's customer participant and TestName.
fn seed_parties() -> (Value, Value) {
    let n = seed_before_consult();
    let parts = n["facebooksession"]["participants"].as_array().unwrap();
    (parts[0].clone(), parts[1].clone())
}

/// Reads a snapshot (frames until one whose id has no ':'), checking that
/// every frame fits the bound; returns the notifications' data.
async fn agent_snapshot(client: &mut Client) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let raw = client.next_text_within(WAIT).await.unwrap().expect("open");
        assert!(raw.len() <= BOUND, "a frame of {} bytes", raw.len());
        let f: Value = serde_json::from_str(&raw).unwrap();
        if f["type"] != "notification" {
            continue;
        }
        out.push(f["data"].clone());
        if !f["id"].as_str().unwrap().contains(':') {
            return out;
        }
    }
}

/// Texts of the Text lines in notifications' data.
fn texts(datas: &[Value]) -> Vec<String> {
    datas
        .iter()
        .flat_map(|d| d["messages"].as_array().cloned().unwrap_or_default())
        .filter(|m| m["type"] == "Text")
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customers_long_lines_lock_nobody_out_snapshots_come_in_frames_within_the_bound() {
    let server = start(|_| {}).await;
    let chat = open_chat(&server, "Long", "first line", None).await;
    let line = |i: usize| format!("{i:03}{}", "L".repeat(7997));
    for i in 0..200 {
        customer_op_ok(
            &server,
            &chat,
            json!({"operationName": "SendMessage", "text": line(i)}),
        )
        .await;
    }
    let (_, sessions) = get(&server, "/api/v2/me/facebooksessions", &agent(TESTNAME)).await;
    assert_eq!(
        sessions["facebooksessions"].as_array().unwrap().len(),
        1,
        "routed to TestName"
    );
    let expected: Vec<String> = std::iter::once("first line".to_owned())
        .chain((0..200).map(line))
        .collect();
    let published = server.state.hub.last_seq();
    server.wait_dispatched(published).await;

    // Each connects now and gets its whole snapshot, frame by frame.
    let mut agent_ws = server.connect(Role::Agent, TESTNAME, None).await;
    let mut boss = server.connect(Role::Supervisor, "boss", None).await;
    let mut customer = Client::connect(server.addr, &chat.token, None)
        .await
        .unwrap();
    for client in [&mut agent_ws, &mut boss] {
        let snap = agent_snapshot(client).await;
        assert!(snap.len() > 4, "1.6 MB of lines in several frames");
        assert_eq!(texts(&snap), expected);
    }
    let mut shown = Vec::new();
    while shown.len() < expected.len() {
        let raw = customer
            .next_text_within(WAIT)
            .await
            .unwrap()
            .expect("open");
        assert!(raw.len() <= BOUND, "a frame of {} bytes", raw.len());
        let f: Value = serde_json::from_str(&raw).unwrap();
        shown.extend(texts(&[f["data"].clone()]));
    }
    assert_eq!(shown, expected);

    // Then live, for all three.
    customer_op_ok(
        &server,
        &chat,
        json!({"operationName": "SendMessage", "text": "live"}),
    )
    .await;
    for client in [&mut agent_ws, &mut boss, &mut customer] {
        let f = client.next_notification().await;
        assert_eq!(texts(&[f["data"].clone()]), ["live"]);
    }
    server.stop().await;
}

/// The seed's session before the consult, its agent and its customer
/// connected and past their snapshots; the agent participant too.
async fn seeded_agent_and_customer(server: &TestServer) -> (Client, Client, Value) {
    server.ingest_ok(&[seed_before_consult()]).await;
    server.wait_dispatched(1).await;
    let (customer_p, agent_p) = seed_parties();
    let mut agent_ws = server.connect(Role::Agent, TESTNAME, None).await;
    let mut customer = server
        .connect(
            Role::Customer,
            customer_p["id"].as_str().unwrap(),
            Some(SID),
        )
        .await;
    agent_ws.notifications(1).await;
    customer.notifications(1).await;
    (agent_ws, customer, agent_p)
}

#[tokio::test]
async fn an_item_over_the_frame_bound_is_refused_with_413_and_reaches_nobody() {
    let server = start(|_| {}).await;
    let (mut agent_ws, mut customer, agent_p) = seeded_agent_and_customer(&server).await;

    let huge = seed_message(9, &agent_p, "All", &"h".repeat(3_900_000));
    let ok = seed_message(8, &agent_p, "All", "fine");
    for body in [huge.to_string(), Value::Array(vec![ok, huge]).to_string()] {
        let (status, reply) = server.ingest(&body, "application/json").await;
        assert_eq!(status, 413, "{reply}");
        let error = reply["error"].as_str().unwrap();
        assert!(error.starts_with("item "), "names the item: {error}");
        assert!(error.contains("frame bound"), "{error}");
    }
    assert_eq!(
        server.state.hub.last_seq(),
        1,
        "the batches changed nothing"
    );
    agent_ws.expect_silence(QUIET).await;
    customer.expect_silence(QUIET).await;
    assert_eq!(
        server.state.metrics.refusals.get("ingest_item_too_large"),
        2
    );
    server.stop().await;
}

#[tokio::test]
async fn the_engine_refuses_a_change_whose_notification_would_exceed_the_bound() {
    let server = start(|c| c.max_frame_bytes = 64 << 10).await;
    let chat = open_chat(&server, "Data", "hello", None).await;
    let big: serde_json::Map<String, Value> = (0..12)
        .map(|i| (format!("k{i}"), json!("v".repeat(4000))))
        .collect();
    let mut refused = None;
    for round in 0..4 {
        let data: serde_json::Map<String, Value> = big
            .iter()
            .map(|(k, v)| (format!("{k}-{round}"), v.clone()))
            .collect();
        let (status, reply) = op(
            &server,
            TESTNAME,
            &chat.sid,
            json!({"operationName": "AttachUserData", "userData": data}),
        )
        .await;
        if status != 200 {
            refused = Some((status, reply, round));
            break;
        }
    }
    let (status, reply, round) = refused.expect("the data outgrew the bound");
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["statusMessage"]
            .as_str()
            .unwrap()
            .contains("frame bound"),
        "{reply}"
    );
    let (_, session) = get(
        &server,
        &format!("/api/v2/me/facebooksessions/{}", chat.sid),
        &agent(TESTNAME),
    )
    .await;
    let data = session["facebooksession"]["userData"].as_object().unwrap();
    assert!(
        !data.keys().any(|k| k.ends_with(&format!("-{round}"))),
        "nothing of the refused change was made"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_since_from_before_a_restart_gets_the_snapshot_never_a_wrong_resume() {
    let (customer_p, agent_p) = seed_parties();
    let customer_id = customer_p["id"].as_str().unwrap().to_owned();
    let history: Vec<Value> = std::iter::once(seed_before_consult())
        .chain((1..=5).map(|i| seed_message(i, &agent_p, "All", &format!("line {i}"))))
        .collect();

    let first = start(|_| {}).await;
    first.ingest_ok(&history).await;
    first.wait_dispatched(6).await;
    let mut a = first.connect(Role::Agent, TESTNAME, None).await;
    let mut c = first.connect(Role::Customer, &customer_id, Some(SID)).await;
    let agent_at = (a.notifications(2).await[1]["id"].clone(), a.epoch());
    let customer_at = (c.notifications(2).await[1]["id"].clone(), c.epoch());
    first.stop().await;

    // The next process sees more (its ids pass the old ones).
    let second = start(|_| {}).await;
    second.ingest_ok(&history).await;
    let more: Vec<Value> = (6..=12)
        .map(|i| seed_message(i, &agent_p, "All", &format!("line {i}")))
        .collect();
    second.ingest_ok(&more).await;
    second.wait_dispatched(13).await;
    for (role, sub, sid, (since, epoch)) in [
        (Role::Agent, TESTNAME, None, &agent_at),
        (
            Role::Customer,
            customer_id.as_str(),
            Some(SID),
            &customer_at,
        ),
    ] {
        let since = since.as_str().unwrap();
        let t = token(role, sub, sid);
        let mut back = Client::connect(second.addr, &t, Some((since, epoch)))
            .await
            .unwrap();
        assert_eq!(back.welcome["resumed"], false, "{role:?}");
        assert_ne!(back.epoch(), *epoch, "{role:?}: a new process, a new epoch");
        let snap = back.notifications(2).await;
        assert_eq!(
            texts(&[snap[1]["data"].clone()]).len(),
            12,
            "{role:?}: the whole log"
        );
        // Without an epoch at all: never resumed either.
        let bare = format!("ws://{}/ws?since={since}&access_token={t}", second.addr);
        let req =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(bare)
                .unwrap();
        let bare = Client::connect_request(req).await.unwrap();
        assert_eq!(bare.welcome["resumed"], false, "{role:?} without epoch");
    }
    second.stop().await;
}

#[tokio::test]
async fn a_session_forgotten_and_seen_again_never_resumes_its_customer_into_the_new_numbering() {
    let server = start(|c| c.retention_secs = 0).await;
    let (customer_p, agent_p) = seed_parties();
    let customer_id = customer_p["id"].as_str().unwrap().to_owned();
    let mut ended = seed_before_consult();
    ended["facebooksession"]["state"] = json!("Completed");
    server
        .ingest_ok(&[
            seed_before_consult(),
            seed_message(1, &agent_p, "All", "old 1"),
            seed_message(2, &agent_p, "All", "old 2"),
        ])
        .await;
    server.wait_dispatched(3).await;
    let mut c = server
        .connect(Role::Customer, &customer_id, Some(SID))
        .await;
    let old = (c.notifications(2).await[1]["id"].clone(), c.epoch());
    assert_eq!(old.0, "3");
    drop(c);
    server.ingest_ok(&[ended]).await;
    server.wait_dispatched(4).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    server.state.hub.sweep();
    assert!(!server.state.hub.has_session(SID), "forgotten");

    // It comes back: its customer ids start at 1 again and pass 3.
    let again: Vec<Value> = std::iter::once(seed_before_consult())
        .chain((1..=5).map(|i| seed_message(i, &agent_p, "All", &format!("new {i}"))))
        .collect();
    server.ingest_ok(&again).await;
    server.wait_dispatched(10).await;
    let t = token(Role::Customer, &customer_id, Some(SID));
    let mut back = Client::connect(server.addr, &t, Some((old.0.as_str().unwrap(), &old.1)))
        .await
        .unwrap();
    assert_eq!(back.welcome["resumed"], false);
    assert_ne!(back.epoch(), old.1);
    let snap = back.notifications(2).await;
    assert_eq!(
        texts(&[snap[1]["data"].clone()]),
        ["new 1", "new 2", "new 3", "new 4", "new 5"]
    );
    server.stop().await;
}

#[tokio::test]
async fn duplicate_keys_are_refused_in_either_order_and_reach_nobody() {
    let server = start(|_| {}).await;
    let (mut agent_ws, mut customer, _) = seeded_agent_and_customer(&server).await;

    let message = |visibility: &str| {
        format!(
            r#"{{"notificationType":"NewMessages","messageType":"MessageLogUpdated","facebooksessionPath":"/facebooksessions/{SID}",
              "messages":[{{"index":1,"type":"Text","text":"ambiguous",{visibility},"from":{{"participantId":"x","type":"Agent","visibility":"All"}}}}]}}"#
        )
    };
    let participant = |visibility: &str| {
        format!(
            r#"{{"notificationType":"ParticipantsUpdated","messageType":"m","facebooksession":{{"id":"{SID}","participants":[
              {{"participantId":"007356263E140144","type":"Customer","visibility":"All"}},
              {{"participantId":"consultant","nickname":"Hidden Consultant","type":"Agent",{visibility},"path":"/users/{AGENT2}"}}]}}}}"#
        )
    };
    for order in [
        r#""visibility":"Agents","visibility":"All""#,
        r#""visibility":"All","visibility":"Agents""#,
    ] {
        for item in [message(order), participant(order)] {
            let body = format!("[{},{item}]", seed_before_consult());
            let (status, reply) = server.ingest(&body, "application/json").await;
            assert_eq!(status, 400, "{reply}");
            let error = reply["error"].as_str().unwrap();
            assert!(error.starts_with("item 2:"), "{error}");
            assert!(error.contains("\"visibility\" appears twice"), "{error}");
        }
    }
    assert_eq!(server.state.hub.last_seq(), 1, "nothing was published");
    agent_ws.expect_silence(QUIET).await;
    customer.expect_silence(QUIET).await;
    server.stop().await;
}

#[tokio::test]
async fn visibility_dialects_reach_agents_unchanged_and_never_the_customer() {
    let server = start(|_| {}).await;
    let (mut agent_ws, mut customer, agent_p) = seeded_agent_and_customer(&server).await;

    let dialects = [
        json!("INT"),
        json!("VIP"),
        json!("ALL"),
        json!(""),
        Value::Null,
    ];
    let mut upstream = Vec::new();
    for (i, v) in dialects.iter().enumerate() {
        let mut m = seed_message(i as u64 + 1, &agent_p, "All", &format!("dialect {v}"));
        m["messages"][0]["visibility"] = v.clone();
        upstream.push(m);
    }
    let mut missing = seed_message(6, &agent_p, "All", "dialect missing");
    missing["messages"][0]
        .as_object_mut()
        .unwrap()
        .remove("visibility");
    upstream.push(missing);
    // A participant in a dialect: listed for agents, never for the customer.
    let mut vip = seed_before_consult();
    let mut supervisor = agent_p.clone();
    supervisor["participantId"] = json!("VIP-SUPERVISOR");
    supervisor["nickname"] = json!("Secret Supervisor");
    supervisor["visibility"] = json!("VIP");
    vip["facebooksession"]["participants"]
        .as_array_mut()
        .unwrap()
        .push(supervisor);
    upstream.push(vip);
    // A line the customer may see closes the sequence: index 1 for them.
    upstream.push(seed_message(7, &agent_p, "All", "visible"));
    let body: String = upstream.iter().map(|v| format!("{v}\n")).collect();
    let (status, reply) = server.ingest(&body, "application/x-ndjson").await;
    assert_eq!(status, 202, "{reply}");

    for sent in &upstream {
        let got = agent_ws.next_notification().await;
        assert_eq!(&got["data"], sent, "agents get it unchanged");
    }
    let got = customer.next_notification().await;
    assert_eq!(texts(&[got["data"].clone()]), ["visible"]);
    assert_eq!(
        got["data"]["messages"][0]["index"], 1,
        "no gap for the hidden ones"
    );
    let raw = got.to_string();
    assert!(
        !raw.contains("dialect") && !raw.contains("Secret Supervisor"),
        "{raw}"
    );
    customer.expect_silence(QUIET).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_hundred_sessions_of_four_hundred_lines_stay_within_the_memory_budget() {
    const SESSIONS: usize = 400;
    const LINES: usize = 400;
    let budget = (32 << 20).to_string();
    let binary = Binary::start_with(&[("CHATGATE_RETENTION_BYTES", budget.as_str())]);
    let service = token(Role::Service, "upstream", None);
    let url = binary.url("/upstream/events");
    let sid = |s: usize| format!("mem-{s}");
    let joins: String = (0..SESSIONS)
        .map(|s| {
            let parts = [
                participant(&format!("c{s}"), "Customer", "C", "All"),
                participant(&format!("a{s}"), "Agent", "A", "All"),
            ];
            format!("{}\n", participants_updated(&sid(s), &parts))
        })
        .collect();
    let (status, _) = post(&url, &service, &joins, "application/x-ndjson").await;
    assert_eq!(status, 202);
    let text = "m".repeat(1000);
    for round in 0..LINES / 4 {
        let body: String = (0..4)
            .flat_map(|k| (0..SESSIONS).map(move |s| (round * 4 + k, s)))
            .map(|(i, s)| {
                let from = participant(&format!("a{s}"), "Agent", "A", "All");
                format!(
                    "{}\n",
                    message_from(&sid(s), i as u64 + 1, &from, "All", &text)
                )
            })
            .collect();
        let (status, reply) = post(&url, &service, &body, "application/x-ndjson").await;
        assert_eq!(status, 202, "{reply}");
    }
    // Until everything is dispatched: the metrics say so.
    let expected = (SESSIONS + SESSIONS * LINES) as f64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let metrics = loop {
        let m = reqwest::get(binary.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metric(&m, "chatgate_notifications_dispatched_total") >= expected {
            break m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not dispatched in time"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let retained = metric(&metrics, "chatgate_retained_bytes");
    assert!(retained <= (32 << 20) as f64, "{retained}");
    assert_eq!(metric(&metrics, "chatgate_sessions"), SESSIONS as f64);
    let rss_mib = binary.rss_kib() / 1024;
    eprintln!("RSS after {SESSIONS} x {LINES} lines of 1 KB, 32 MiB budget: {rss_mib} MiB");
    assert!(rss_mib < 160, "RSS {rss_mib} MiB");
}

/// A sample's value in Prometheus text.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_rest_body_with_a_key_twice_is_refused_and_changes_nothing() {
    let server = start(|_| {}).await;
    let chat = open_chat(&server, "Twice", "hello", None).await;
    server.wait_dispatched(server.state.hub.last_seq()).await;
    let published = server.state.hub.last_seq();
    let agent_url = server.url(&format!("/api/v2/me/facebooksessions/{}", chat.sid));
    let customer_url = server.url(&format!("/api/v2/customer/sessions/{}", chat.sid));
    for (url, token, body) in [
        (
            &agent_url,
            agent(TESTNAME),
            r#"{"operationName":"SendMessage","text":"to the customer","text":"internal"}"#,
        ),
        (
            &agent_url,
            agent(TESTNAME),
            r#"{"operationName":"SendToAgents","operationName":"SendMessage","text":"x"}"#,
        ),
        (
            &customer_url,
            chat.token.clone(),
            r#"{"operationName":"SendMessage","text":"a","text":"b"}"#,
        ),
    ] {
        let (status, reply) = post(url, &token, body, "application/json").await;
        assert_eq!(status, 400, "{body}: {reply}");
        assert!(
            reply["statusMessage"]
                .as_str()
                .unwrap()
                .contains("appears twice"),
            "{reply}"
        );
    }
    tokio::time::sleep(QUIET).await;
    // Nothing changed; each refusal of the agent (a participant) was
    // announced to the session's agents as an Error, the customer's not.
    assert_eq!(
        server.state.hub.last_seq(),
        published + 2,
        "only the agent's two Error notifications were published"
    );
    server.stop().await;
}
