//! The core gateway over real sockets: isolation of many sessions in
//! parallel, the agent's membership window, refused tokens, and the
//! all-or-nothing ingest.

mod support;

use std::sync::Arc;
use std::time::Duration;

use chatgate::auth::{Claims, Role};
use jsonwebtoken::{encode, EncodingKey, Header};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use support::*;

/// One session's traffic as the upstream sends it, and what its customer
/// must see of it.
struct Traffic {
    sid: String,
    notifications: Vec<Value>,
    visible_texts: Vec<String>,
}

/// A session with a customer, a visible agent and a consultant, then
/// `messages` random messages, most of them agent-only.
fn random_traffic(rng: &mut StdRng, n: usize, messages: u64) -> Traffic {
    let sid = format!("par-{n:02}");
    let customer = participant(&format!("{sid}-cust"), "Customer", "Customer", "All");
    let agent = participant(&format!("{sid}-agent"), "Agent", "Agent", "All");
    let consultant = participant(
        &format!("{sid}-consultant"),
        "Agent",
        "Consultant",
        "Agents",
    );
    let mut notifications = vec![participants_updated(
        &sid,
        &[customer.clone(), agent.clone(), consultant.clone()],
    )];
    let mut visible_texts = Vec::new();
    for i in 1..=messages {
        let n = match rng.random_range(0..10) {
            // The consultant, to agents.
            0..=3 => message_from(&sid, i, &consultant, "Agents", &format!("{sid}:{i}:hidden")),
            // The visible agent, to agents only (SendToAgents).
            4..=5 => message_from(&sid, i, &agent, "Agents", &format!("{sid}:{i}:hidden")),
            // Agent-only typing.
            6 => {
                let mut t = message_from(&sid, i, &agent, "Agents", "");
                t["messages"][0]["type"] = json!("TypingStarted");
                t["messages"][0].as_object_mut().unwrap().remove("text");
                t
            }
            7 => {
                let text = format!("{sid}:{i}:visible");
                visible_texts.push(text.clone());
                message_from(&sid, i, &customer, "All", &text)
            }
            _ => {
                let text = format!("{sid}:{i}:visible");
                visible_texts.push(text.clone());
                message_from(&sid, i, &agent, "All", &text)
            }
        };
        notifications.push(n);
    }
    Traffic {
        sid,
        notifications,
        visible_texts,
    }
}

/// Every session id a frame mentions (`par-NN`).
fn sessions_named(frame: &str) -> Vec<&str> {
    frame
        .match_indices("par-")
        .map(|(at, _)| &frame[at..at + 6])
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_sessions_in_parallel_never_reach_each_other() {
    let seed: u64 = rand::rng().random();
    eprintln!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let server = Arc::new(start(|_| {}).await);
    let traffic: Vec<Traffic> = (0..50).map(|n| random_traffic(&mut rng, n, 40)).collect();

    // Everyone connects before their session is known.
    let mut customers = Vec::new();
    let mut agents = Vec::new();
    for t in &traffic {
        customers.push(
            server
                .connect(Role::Customer, &format!("{}-cust", t.sid), Some(&t.sid))
                .await,
        );
        agents.push(
            server
                .connect(Role::Agent, &user_of(&format!("{}-agent", t.sid)), None)
                .await,
        );
    }

    // Fifty upstream writers at once, each its session in small batches.
    let mut writers = Vec::new();
    for t in &traffic {
        let server = server.clone();
        let items = t.notifications.clone();
        let mut rng = StdRng::seed_from_u64(rng.random());
        writers.push(tokio::spawn(async move {
            let mut rest = &items[..];
            while !rest.is_empty() {
                let n = rng.random_range(1..=5).min(rest.len());
                server.ingest_ok(&rest[..n]).await;
                rest = &rest[n..];
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let total = traffic.iter().map(|t| t.notifications.len() as u64).sum();
    server.wait_dispatched(total).await;

    for ((t, mut customer), mut agent) in traffic.iter().zip(customers).zip(agents) {
        let expected = 1 + t.visible_texts.len();
        let mut texts = Vec::new();
        let mut indices = Vec::new();
        for (n, frame) in customer.notifications(expected).await.iter().enumerate() {
            assert_eq!(
                frame["id"],
                (n + 1).to_string(),
                "{}: ids run 1, 2, 3",
                t.sid
            );
            let raw = frame.to_string();
            assert!(
                sessions_named(&raw).iter().all(|s| *s == t.sid),
                "{}'s customer got {raw}",
                t.sid
            );
            for secret in [
                "hidden",
                "consultant",
                "Consultant",
                "TypingStarted",
                "user-",
            ] {
                assert!(!raw.contains(secret), "{}: {secret} in {raw}", t.sid);
            }
            for m in frame["data"]["messages"].as_array().into_iter().flatten() {
                texts.push(m["text"].as_str().unwrap().to_owned());
                indices.push(m["index"].as_u64().unwrap());
            }
        }
        assert_eq!(
            texts, t.visible_texts,
            "{}: exactly its visible messages",
            t.sid
        );
        assert_eq!(indices, (1..=texts.len() as u64).collect::<Vec<_>>());
        customer.expect_silence(Duration::from_millis(50)).await;

        let frames = agent.notifications(t.notifications.len()).await;
        for (frame, sent) in frames.iter().zip(&t.notifications) {
            assert_eq!(&frame["data"], sent, "{}: agents get it unchanged", t.sid);
        }
        agent.expect_silence(Duration::from_millis(50)).await;
    }
}

/// A session `sid` where `members` (participant id, visibility) are the
/// agents, besides the customer `cust`.
fn session_with(sid: &str, members: &[(&str, &str)]) -> Value {
    let mut parts = vec![participant("cust", "Customer", "Customer", "All")];
    parts.extend(
        members
            .iter()
            .map(|(id, vis)| participant(id, "Agent", id, vis)),
    );
    participants_updated(sid, &parts)
}

#[tokio::test]
async fn an_agent_gets_a_session_from_the_notification_that_adds_them_to_the_one_they_leave_in() {
    let server = start(|_| {}).await;
    let a = participant("a", "Agent", "a", "All");
    let b = participant("b", "Agent", "b", "Agents");
    let mut consultant = server.connect(Role::Agent, &user_of("b"), None).await;
    let mut stranger = server.connect(Role::Agent, "stranger", None).await;
    let mut first = server.connect(Role::Agent, &user_of("a"), None).await;

    let upstream = [
        session_with("w", &[("a", "All")]),                  // 1
        message_from("w", 1, &a, "All", "before"),           // 2
        session_with("w", &[("a", "All"), ("b", "Agents")]), // 3: b joins
        message_from("w", 2, &b, "Agents", "joined"),        // 4
        message_from("w", 3, &a, "All", "during"),           // 5
        session_with("w", &[("a", "All")]),                  // 6: b leaves
        message_from("w", 4, &a, "All", "after"),            // 7
    ];
    server.ingest_ok(&upstream).await;
    server.wait_dispatched(7).await;

    let ids = |frames: Vec<Value>| -> Vec<String> {
        frames
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(consultant.notifications(4).await),
        ["3", "4", "5", "6"],
        "from the join to the leave, inclusive"
    );
    consultant.expect_silence(Duration::from_millis(200)).await;
    assert_eq!(
        ids(first.notifications(7).await),
        ["1", "2", "3", "4", "5", "6", "7"]
    );
    stranger.expect_silence(Duration::from_millis(200)).await;

    // Reconnecting: no snapshot of a session they left; resuming from the
    // leave gives nothing more; resuming from before it gives the rest.
    drop(consultant);
    let mut again = server.connect(Role::Agent, &user_of("b"), None).await;
    again.expect_silence(Duration::from_millis(200)).await;
    let mut resumed = server.resume(Role::Agent, &user_of("b"), None, "4").await;
    assert_eq!(resumed.welcome["resumed"], true);
    assert_eq!(ids(resumed.notifications(2).await), ["5", "6"]);
    resumed.expect_silence(Duration::from_millis(200)).await;

    // Back in the session: from the notification that adds them again.
    server
        .ingest_ok(&[session_with("w", &[("a", "All"), ("b", "All")])])
        .await;
    assert_eq!(again.next_notification().await["id"], "8");
    assert_eq!(resumed.next_notification().await["id"], "8");
    stranger.expect_silence(Duration::from_millis(200)).await;
    server.stop().await;
}

fn expired_token() -> String {
    let claims = Claims {
        sub: "agent".into(),
        role: Role::Agent,
        sid: None,
        exp: chatgate::auth::now_secs() - 5,
    };
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn token_signed_with(secret: &str) -> String {
    chatgate::auth::Authenticator::new(secret.as_bytes(), None)
        .unwrap()
        .mint(Role::Agent, "agent", None, 600)
}

/// A supervisor token that claims to need no signature (`alg: none`).
fn unsigned_token() -> String {
    let signed = token(Role::Supervisor, "boss", None);
    let claims = signed.split('.').nth(1).unwrap();
    // {"alg":"none","typ":"JWT"}, base64url-encoded.
    format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{claims}.")
}

#[tokio::test]
async fn bad_tokens_are_refused_before_the_upgrade() {
    let server = start(|_| {}).await;
    server
        .ingest_ok(&[
            session_with("sa", &[("a", "All")]),
            participants_updated("sb", &[participant("cust-b", "Customer", "B", "All")]),
        ])
        .await;
    server.wait_dispatched(2).await;

    let refused = |token: String, since: Option<(&'static str, &'static str)>| {
        let addr = server.addr;
        async move {
            match Client::connect(addr, &token, since).await {
                Ok(_) => panic!("accepted a bad token"),
                Err(status) => status,
            }
        }
    };
    // Missing: no header, no query parameter.
    let req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{}/ws", server.addr),
    )
    .unwrap();
    assert_eq!(Client::connect_request(req).await.err(), Some(401));
    assert_eq!(refused("not-a-jwt".into(), None).await, 401);
    assert_eq!(
        refused(token_signed_with("another-secret"), None).await,
        401
    );
    assert_eq!(refused(expired_token(), None).await, 401);
    assert_eq!(refused(unsigned_token(), None).await, 401);
    // A customer token without a session.
    assert_eq!(
        refused(token(Role::Customer, "cust", None), None).await,
        401
    );
    // The customer of sa, with a token naming sb: not sb's customer.
    assert_eq!(
        refused(token(Role::Customer, "cust", Some("sb")), None).await,
        403
    );
    assert_eq!(
        refused(token(Role::Customer, "cust", Some("sb")), Some(("0", "x"))).await,
        403
    );
    // The upstream's role has no stream.
    assert_eq!(
        refused(token(Role::Service, "upstream", None), None).await,
        403
    );

    // The same parties with good tokens, by header and by query parameter.
    let mut customer = server.connect(Role::Customer, "cust", Some("sa")).await;
    assert_eq!(
        customer.next_notification().await["data"]["facebooksession"]["id"],
        "sa"
    );
    let url = format!(
        "ws://{}/ws?access_token={}",
        server.addr,
        token(Role::Customer, "cust-b", Some("sb"))
    );
    let req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
        .unwrap();
    let mut b = Client::connect_request(req).await.unwrap();
    assert_eq!(b.welcome["role"], "customer");
    assert_eq!(
        b.next_notification().await["data"]["facebooksession"]["id"],
        "sb"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_customer_connected_before_the_session_is_known_gets_its_view_and_no_one_else_does() {
    let server = start(|_| {}).await;
    let mut right = server.connect(Role::Customer, "cust", Some("early")).await;
    let mut wrong = server
        .connect(Role::Customer, "someone-else", Some("early"))
        .await;
    let a = participant("a", "Agent", "a", "All");
    server
        .ingest_ok(&[
            session_with("early", &[("a", "All"), ("h", "Agents")]),
            message_from("early", 1, &a, "All", "hello"),
        ])
        .await;

    let frames = right.notifications(2).await;
    assert_eq!(frames[0]["id"], "1");
    assert_eq!(
        frames[0]["data"]["facebooksession"]["participants"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "the customer and the visible agent"
    );
    assert_eq!(frames[1]["data"]["messages"][0]["text"], "hello");
    // The other token learns it is not this session's customer.
    let (closed, error) = wrong.until_close().await;
    assert_eq!(closed, Closed::Code(1008));
    assert_eq!(error.unwrap()["code"], 1008);
    server.stop().await;
}

#[tokio::test]
async fn a_bad_ingest_batch_is_refused_whole_naming_the_item_and_changes_nothing() {
    let server = start(|_| {}).await;
    let mut supervisor = server.connect(Role::Supervisor, "boss", None).await;
    let a = participant("a", "Agent", "a", "All");
    let good = [
        session_with("ing", &[("a", "All")]),
        message_from("ing", 1, &a, "All", "one"),
        message_from("ing", 2, &a, "All", "two"),
    ];
    let ndjson = |items: &[Value]| -> String {
        items
            .iter()
            .map(|v| v.to_string() + "\n")
            .collect::<String>()
    };
    // NewMessages without messages, third of four.
    let no_messages = json!({"notificationType": "NewMessages",
        "messageType": "MessageLogUpdated", "facebooksessionPath": "/facebooksessions/ing"});
    let batch = [
        good[0].clone(),
        good[1].clone(),
        no_messages,
        good[2].clone(),
    ];
    let (status, reply) = server.ingest(&ndjson(&batch), "application/x-ndjson").await;
    assert_eq!(status, 400, "{reply}");
    let error = reply["error"].as_str().unwrap();
    assert!(
        error.starts_with("item 3:") && error.contains("messages"),
        "{error}"
    );

    // A JSON array with an unknown notification type second.
    let mut unknown_type = good[1].clone();
    unknown_type["notificationType"] = json!("Gossip");
    let body = json!([good[0], unknown_type, good[2]]).to_string();
    let (status, reply) = server.ingest(&body, "application/json").await;
    assert_eq!(status, 400);
    let error = reply["error"].as_str().unwrap();
    assert!(
        error.starts_with("item 2:") && error.contains("Gossip"),
        "{error}"
    );

    // A line that is not JSON, a message with a bad index, a batch naming
    // no session, an empty body. (A visibility other than `All` is no
    // error: agent-only, see tests/fail_closed.rs.)
    let mut body = ndjson(&good);
    body.insert_str(0, "{not json\n");
    let (status, reply) = server.ingest(&body, "application/x-ndjson").await;
    assert_eq!(
        (
            status,
            reply["error"].as_str().unwrap().starts_with("item 1:")
        ),
        (400, true)
    );
    let mut bad_index = good[2].clone();
    bad_index["messages"][0]["index"] = json!("first");
    let (status, reply) = server
        .ingest(
            &json!([good[0], good[1], bad_index]).to_string(),
            "application/json",
        )
        .await;
    assert_eq!(
        (
            status,
            reply["error"].as_str().unwrap().starts_with("item 3:")
        ),
        (400, true)
    );
    let mut no_session = good[1].clone();
    no_session
        .as_object_mut()
        .unwrap()
        .remove("facebooksessionPath");
    no_session
        .as_object_mut()
        .unwrap()
        .remove("facebooksessionUri");
    let (status, reply) = server
        .ingest(&no_session.to_string(), "application/json")
        .await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(server.ingest("", "application/x-ndjson").await.0, 400);

    // Not the upstream's token: refused as well.
    let (status, _) = post(
        &server.url("/upstream/events"),
        &token(Role::Agent, "a", None),
        &ndjson(&good),
        "application/x-ndjson",
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = post(
        &server.url("/upstream/events"),
        "",
        &ndjson(&good),
        "application/x-ndjson",
    )
    .await;
    assert_eq!(status, 401);

    // Nothing changed: no frame, no sequence, no session.
    supervisor.expect_silence(Duration::from_millis(300)).await;
    assert_eq!(server.state.hub.last_seq(), 0);
    assert!(server.state.hub.session_state("ing").is_none());

    // The good items alone go through, in order.
    let (status, reply) = server.ingest(&ndjson(&good), "application/x-ndjson").await;
    assert_eq!((status, reply), (202, json!({"accepted": 3})));
    let frames = supervisor.notifications(3).await;
    let data: Vec<&Value> = frames.iter().map(|f| &f["data"]).collect();
    assert_eq!(data, good.iter().collect::<Vec<_>>());
    server.stop().await;
}
