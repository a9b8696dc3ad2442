//! Delivery guarantees over real sockets: resume without loss or
//! duplicates (across kills, during publishing, outside the retention
//! window), customer replays, slow clients closed with 1013 without
//! hurting anyone else, silent peers dropped, oversized client frames, and
//! SIGTERM on the real binary.

mod support;

use std::sync::Arc;
use std::time::Duration;

use chatgate::auth::Role;
use serde_json::{json, Value};
use support::cast::*;
use support::*;

/// A client that records every notification it gets and reconnects with
/// `since` whenever its stream ends (or the test kills it).
struct Follower {
    addr: std::net::SocketAddr,
    token: String,
    client: Option<Client>,
    last: Option<String>,
    /// The epoch of the welcome the stream began with.
    epoch: String,
    frames: Vec<Value>,
    /// The `resumed` flag of each welcome after the first.
    resumed: Vec<bool>,
    closes: usize,
}

impl Follower {
    async fn start(server: &TestServer, role: Role, sub: &str, sid: Option<&str>) -> Self {
        let token = token(role, sub, sid);
        let client = Client::connect(server.addr, &token, None).await.unwrap();
        assert_eq!(client.welcome["resumed"], false);
        Self {
            addr: server.addr,
            token,
            epoch: client.epoch(),
            client: Some(client),
            last: None,
            frames: Vec::new(),
            resumed: Vec::new(),
            closes: 0,
        }
    }

    /// Reads until a notification with id `target`, dropping the socket
    /// without a close (as a killed client does) after each count of
    /// `kill_at` frames, and resuming every time.
    async fn follow_until(&mut self, target: &str, kill_at: &[usize]) {
        loop {
            let client = match &mut self.client {
                Some(c) => c,
                None => {
                    let resume = self.last.as_deref().map(|l| (l, self.epoch.as_str()));
                    let c = Client::connect(self.addr, &self.token, resume)
                        .await
                        .unwrap();
                    self.resumed.push(c.welcome["resumed"] == true);
                    self.client.insert(c)
                }
            };
            match client.next_json_within(WAIT).await {
                Err(()) => panic!("no frame in time; last id {:?}", self.last),
                Ok(None) => {
                    self.closes += 1;
                    self.client = None;
                }
                Ok(Some(f)) if f["type"] == "notification" => {
                    let id = f["id"].as_str().unwrap().to_owned();
                    self.frames.push(f);
                    self.last = Some(id.clone());
                    if kill_at.contains(&self.frames.len()) {
                        self.client = None;
                    }
                    if id == target {
                        return;
                    }
                }
                Ok(Some(_)) => {} // heartbeat, or the error frame before a close
            }
        }
    }

    fn ids(&self) -> Vec<String> {
        self.frames
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_owned())
            .collect()
    }

    fn texts(&self) -> Vec<String> {
        self.frames
            .iter()
            .flat_map(|f| {
                f["data"]["messages"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|m| m["text"].as_str().map(str::to_owned))
            .collect()
    }

    fn customer_indices(&self) -> Vec<u64> {
        self.frames
            .iter()
            .flat_map(|f| {
                f["data"]["messages"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .map(|m| m["index"].as_u64().unwrap())
            .collect()
    }
}

fn ids(range: std::ops::RangeInclusive<u64>) -> Vec<String> {
    range.map(|i| i.to_string()).collect()
}

/// Posts `items` to the ingest in batches of `batch`, pausing `pause`
/// between batches.
async fn ingest_in_batches(server: &TestServer, items: &[Value], batch: usize, pause: Duration) {
    for chunk in items.chunks(batch) {
        server.ingest_ok(chunk).await;
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_mid_burst_resumes_with_exactly_the_upstream_sequence() {
    let server = Arc::new(start(|_| {}).await);
    let cast = Cast::new("burst");
    server.ingest_ok(&[cast.joined()]).await;
    server.wait_dispatched(1).await;

    let mut agent = Follower::start(&server, Role::Agent, &cast.agent_user(), None).await;
    let mut customer = Follower::start(&server, Role::Customer, CUSTOMER, Some(&cast.sid)).await;
    let burst: Vec<Value> = (1..=5000).map(|i| cast.message(i)).collect();
    let publisher = {
        let server = server.clone();
        tokio::spawn(async move {
            ingest_in_batches(&server, &burst, 250, Duration::ZERO).await;
        })
    };

    // The snapshot (the session as it stands: id "1"), then the burst,
    // killed a third of the way in.
    agent.follow_until("5001", &[1700]).await;
    publisher.await.unwrap();
    assert!(agent.resumed.iter().all(|r| *r), "{:?}", agent.resumed);
    assert!(
        !agent.resumed.is_empty(),
        "the agent was killed and resumed"
    );
    assert_eq!(
        agent.ids(),
        ids(1..=5001),
        "no loss, no duplicate, in order"
    );
    let upstream: Vec<String> = (1..=5000).map(|i| format!("burst-m{i}")).collect();
    assert_eq!(agent.texts(), upstream);

    let visible: Vec<String> = (1..=5000u64)
        .filter(|i| !is_agent_only(*i))
        .map(|i| format!("burst-m{i}"))
        .collect();
    let last = (visible.len() + 1).to_string();
    customer.follow_until(&last, &[1200]).await;
    assert!(customer.resumed.iter().all(|r| *r) && !customer.resumed.is_empty());
    assert_eq!(customer.ids(), ids(1..=visible.len() as u64 + 1));
    assert_eq!(customer.texts(), visible);
    let indices = customer.customer_indices();
    assert_eq!(indices, (1..=visible.len() as u64).collect::<Vec<_>>());
    server.wait_dispatched(5001).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_while_the_upstream_keeps_publishing() {
    let server = Arc::new(start(|_| {}).await);
    let (one, two) = (Cast::new("s1"), Cast::new("s2"));
    server.ingest_ok(&[one.joined(), two.joined()]).await;
    server.wait_dispatched(2).await;

    let mut agent = Follower::start(&server, Role::Agent, &one.agent_user(), None).await;
    let mut supervisor = Follower::start(&server, Role::Supervisor, "boss", None).await;
    // Two sessions interleaved: the agent sees one, the supervisor both.
    let upstream: Vec<Value> = (1..=1500)
        .flat_map(|i| [one.message(i), two.message(i)])
        .collect();
    let publisher = {
        let server = server.clone();
        tokio::spawn(async move {
            ingest_in_batches(&server, &upstream, 40, Duration::from_millis(3)).await;
        })
    };
    let kills = [150, 400, 700, 1000, 1300];
    let (a, s) = tokio::join!(
        agent.follow_until("3001", &kills),
        supervisor.follow_until("3002", &kills),
    );
    let ((), ()) = (a, s);
    publisher.await.unwrap();

    // Snapshot of s1 ("2"), then s1's messages: sequences 3, 5, 7, ...
    let mut expected = vec!["2".to_string()];
    expected.extend((3..=3001).step_by(2).map(|i| i.to_string()));
    assert_eq!(agent.ids(), expected);
    assert_eq!(agent.resumed, vec![true; kills.len()]);
    // Supervisor snapshot: one frame per session, "2:1" and "2".
    let mut expected = vec!["2:1".to_string(), "2".to_string()];
    expected.extend(ids(3..=3002));
    assert_eq!(supervisor.ids(), expected);
    assert_eq!(supervisor.resumed, vec![true; kills.len()]);
}

#[tokio::test]
async fn resume_outside_the_retention_window_gets_resumed_false_and_the_snapshot() {
    let server = start(|c| {
        c.retention_count = 5;
        c.retention_max = 5;
        c.retention_secs = 0;
        c.log_limit = 8;
    })
    .await;
    let cast = Cast::new("win");
    let mut upstream = vec![cast.joined()];
    upstream.extend((1..=3).map(|i| cast.message(i)));
    server.ingest_ok(&upstream).await;
    server.wait_dispatched(4).await;

    let mut agent = server.connect(Role::Agent, &cast.agent_user(), None).await;
    let snap = agent.notifications(2).await;
    assert_eq!(snap[1]["id"], "4");
    let mut customer = server.connect(Role::Customer, CUSTOMER, Some("win")).await;
    let snap = customer.notifications(2).await;
    let customer_last = snap[1]["id"].as_str().unwrap().to_owned();
    assert_eq!(customer_last, "3", "the join and two visible messages");
    drop((agent, customer));

    // 20 more (1 in 3 agent-only) while both are away: far past 5 frames.
    let more: Vec<Value> = (4..=23).map(|i| cast.message(i)).collect();
    server.ingest_ok(&more).await;
    server.wait_dispatched(24).await;

    let mut agent = server
        .resume(Role::Agent, &cast.agent_user(), None, "4")
        .await;
    assert_eq!(agent.welcome["resumed"], false);
    let snap = agent.notifications(2).await;
    assert_eq!(snap[0]["id"], "24:1");
    assert_eq!(snap[0]["data"]["notificationType"], "ParticipantsUpdated");
    assert_eq!(
        snap[0]["data"]["facebooksession"]["participants"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(snap[1]["id"], "24");
    let log: Vec<&str> = snap[1]["data"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    let last8: Vec<String> = (16..=23).map(|i| format!("win-m{i}")).collect();
    assert_eq!(log, last8, "the log holds the last 8 messages");

    let mut customer = server
        .resume(Role::Customer, CUSTOMER, Some("win"), &customer_last)
        .await;
    assert_eq!(customer.welcome["resumed"], false);
    let snap = customer.notifications(2).await;
    // Visible messages 1..=23 not divisible by 3: 16 of them, ids 2..=17.
    assert_eq!(snap[0]["id"], "17");
    assert_eq!(snap[1]["id"], "17");
    let shown: Vec<(u64, String)> = snap[1]["data"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["index"].as_u64().unwrap(),
                m["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // The log's visible messages, with the indices they had the first time.
    let expected: Vec<(u64, String)> = [(11, 16), (12, 17), (13, 19), (14, 20), (15, 22), (16, 23)]
        .iter()
        .map(|(index, i)| (*index, format!("win-m{i}")))
        .collect();
    assert_eq!(shown, expected);
    assert!(!snap[1].to_string().contains("win-consultant"));

    // Live from there, and resumable from the snapshot's id.
    server.ingest_ok(&[cast.message(25)]).await;
    let live = agent.next_notification().await;
    assert_eq!(live["id"], "25");
    let live = customer.next_notification().await;
    assert_eq!(live["id"], "18");
    assert_eq!(live["data"]["messages"][0]["index"], 17);
    drop(agent);
    server.ingest_ok(&[cast.message(26)]).await;
    server.wait_dispatched(26).await;
    let mut agent = server
        .resume(Role::Agent, &cast.agent_user(), None, "25")
        .await;
    assert_eq!(agent.welcome["resumed"], true);
    assert_eq!(agent.next_notification().await["id"], "26");
    server.stop().await;
}

#[tokio::test]
async fn a_customer_replay_repeats_the_same_ids_and_indices_byte_for_byte() {
    let server = start(|_| {}).await;
    let cast = Cast::new("replay");
    server.ingest_ok(&[cast.joined()]).await;
    server.wait_dispatched(1).await;
    let mut customer = server
        .connect(Role::Customer, CUSTOMER, Some("replay"))
        .await;
    let snapshot = customer.next_text_within(WAIT).await.unwrap().unwrap();
    assert_eq!(frame_id(&snapshot), Some("1"));

    let upstream: Vec<Value> = (1..=30).map(|i| cast.message(i)).collect();
    server.ingest_ok(&upstream).await;
    let mut first_time = vec![snapshot];
    for _ in 0..20 {
        first_time.push(customer.next_text_within(WAIT).await.unwrap().unwrap());
    }
    let ids: Vec<&str> = first_time.iter().filter_map(|f| frame_id(f)).collect();
    assert_eq!(ids, ids_str(1..=21));
    drop(customer);

    for since in ["0", "7", "21"] {
        let mut again = server
            .resume(Role::Customer, CUSTOMER, Some("replay"), since)
            .await;
        assert_eq!(again.welcome["resumed"], true, "since={since}");
        let from: usize = since.parse().unwrap();
        for expected in &first_time[from..] {
            let frame = again.next_text_within(WAIT).await.unwrap().unwrap();
            assert_eq!(&frame, expected, "since={since}: replay differs");
        }
        again.expect_silence(Duration::from_millis(200)).await;
    }
    // An id the customer was never given is not resumable.
    let mut ahead = server
        .resume(Role::Customer, CUSTOMER, Some("replay"), "22")
        .await;
    assert_eq!(ahead.welcome["resumed"], false);
    let snap = ahead.notifications(2).await;
    assert_eq!(
        (snap[0]["id"].as_str(), snap[1]["id"].as_str()),
        (Some("21"), Some("21"))
    );
    server.stop().await;
}

fn ids_str(range: std::ops::RangeInclusive<u64>) -> Vec<&'static str> {
    range
        .map(|i| &*Box::leak(i.to_string().into_boxed_str()))
        .collect()
}

#[tokio::test]
async fn a_slow_client_closed_with_1013_resumes_losing_nothing() {
    let server = start(|c| {
        c.queue_frames = 32;
        c.retention_count = 10_000;
        c.retention_max = 10_000;
    })
    .await;
    let cast = Cast::new("slow");
    server.ingest_ok(&[cast.joined()]).await;
    server.wait_dispatched(1).await;
    let mut slow = server.connect(Role::Agent, &cast.agent_user(), None).await;
    let snapshot = slow.next_notification().await;
    assert_eq!(snapshot["id"], "1");

    // ~16 MiB: more than the socket buffers hold, so the queue overflows.
    let upstream: Vec<Value> = (1..=4000).map(|i| cast.message_sized(i, 4000)).collect();
    server.publish(&upstream).await;
    server.wait_dispatched(4001).await;

    let mut last = 1u64;
    let (closed, error) = loop {
        match slow.next_json_within(WAIT).await.unwrap() {
            Some(f) if f["type"] == "notification" => {
                let id: u64 = f["id"].as_str().unwrap().parse().unwrap();
                assert_eq!(id, last + 1);
                last = id;
            }
            Some(f) if f["type"] == "error" => break (slow.until_close().await.0, f),
            Some(f) => panic!("unexpected {f}"),
            None => panic!("closed without an error frame after {last}"),
        }
    };
    assert_eq!(closed, Closed::Code(1013));
    assert_eq!(error["code"], 1013);
    assert!(last < 4001, "the queue overflowed before the end");

    let mut resumed = server
        .resume(Role::Agent, &cast.agent_user(), None, &last.to_string())
        .await;
    assert_eq!(resumed.welcome["resumed"], true);
    while last < 4001 {
        let text = resumed.next_text_within(WAIT).await.unwrap().unwrap();
        let id: u64 = frame_id(&text).unwrap().parse().unwrap();
        assert_eq!(id, last + 1);
        last = id;
    }
    resumed.expect_silence(Duration::from_millis(200)).await;
    server.stop().await;
}

#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_dropped() {
    let server = start(|c| {
        c.heartbeat_secs = 1;
        c.pong_timeout_secs = 1;
    })
    .await;
    let cast = Cast::new("ping");
    server.ingest_ok(&[cast.joined()]).await;
    server.wait_dispatched(1).await;
    // Never polled: its pings go unanswered.
    let mut silent = server.connect(Role::Agent, &cast.agent_user(), None).await;
    let mut alive = server.connect(Role::Supervisor, "boss", None).await;
    assert_eq!(server.state.hub.connection_count(), 2);

    // The live one reads (and so answers pings) for four heartbeats.
    assert_eq!(alive.next_notification().await["id"], "1");
    let mut beats = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    while tokio::time::Instant::now() < deadline {
        if let Ok(Some(f)) = alive.next_json_within(Duration::from_millis(200)).await {
            assert_eq!(f["type"], "heartbeat");
            beats += 1;
        }
    }
    assert!(beats >= 2, "heartbeats every second, got {beats}");
    assert_eq!(
        server.state.hub.connection_count(),
        1,
        "the silent peer is gone, the live one is not"
    );
    server.ingest_ok(&[cast.message(1)]).await;
    assert_eq!(alive.next_notification().await["id"], "2");

    // The silent one finds its snapshot, heartbeats, then why it was let
    // go: an error frame and a close code, not a silent drop.
    let mut seen = Vec::new();
    while let Ok(Some(f)) = silent.next_json_within(WAIT).await {
        seen.push(f);
    }
    let kinds: Vec<&str> = seen.iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"notification"));
    assert_eq!(kinds.last(), Some(&"error"), "{kinds:?}");
    assert!(
        kinds[1..kinds.len() - 1].iter().all(|t| *t == "heartbeat"),
        "{kinds:?}"
    );
    assert_eq!(seen.last().unwrap()["code"], 1011);
    server.stop().await;
}

#[tokio::test]
async fn client_text_over_4_kib_closes_with_1009() {
    let server = start(|_| {}).await;
    let cast = Cast::new("big");
    server.ingest_ok(&[cast.joined()]).await;
    server.wait_dispatched(1).await;

    let mut client = server.connect(Role::Agent, &cast.agent_user(), None).await;
    client.next_notification().await;
    // 4 KiB exactly is ignored; the stream goes on.
    client.send_text("a".repeat(4096)).await;
    server.ingest_ok(&[cast.message(1)]).await;
    assert_eq!(client.next_notification().await["id"], "2");
    // One byte more closes with 1009, after an error frame.
    client.send_text("a".repeat(4097)).await;
    let (closed, error) = client.until_close().await;
    assert_eq!(closed, Closed::Code(1009));
    assert_eq!(error.unwrap()["code"], 1009);

    // Far over tungstenite's own limit: refused from the frame header.
    let mut client = server.connect(Role::Agent, &cast.agent_user(), None).await;
    client.send_text("b".repeat(256 << 10)).await;
    let (closed, error) = client.until_close().await;
    assert_eq!(closed, Closed::Code(1009));
    assert_eq!(error.unwrap()["code"], 1009);
    server.stop().await;
}

#[tokio::test]
async fn sigterm_closes_every_client_with_1001_and_the_process_exits() {
    let mut binary = Binary::start();
    let cast = Cast::new("term");
    let ingest = post(
        &format!("http://{}/upstream/events", binary.addr),
        &token(Role::Service, "upstream", None),
        &json!([cast.joined(), cast.message(1)]).to_string(),
        "application/json",
    )
    .await;
    assert_eq!(ingest.0, 202, "{:?}", ingest.1);

    let parties = [
        token(Role::Agent, &cast.agent_user(), None),
        token(Role::Customer, CUSTOMER, Some("term")),
        token(Role::Supervisor, "boss", None),
        token(Role::Agent, "in-no-session", None),
    ];
    let mut clients = Vec::new();
    for t in &parties {
        clients.push(Client::connect(binary.addr, t, None).await.unwrap());
    }
    // Everyone is live (snapshots received) before the signal.
    for c in &mut clients[..3] {
        c.notifications(2).await;
    }

    binary.terminate();
    for (i, c) in clients.iter_mut().enumerate() {
        let (closed, error) = c.until_close().await;
        assert_eq!(closed, Closed::Code(1001), "client {i}");
        let error = error.expect("told why before the close");
        assert_eq!(error["code"], 1001, "client {i}");
    }
    let status = binary.exit_within(Duration::from_secs(15)).await;
    assert!(status.success(), "{status:?}");
    // And it no longer accepts anything.
    assert!(tokio::net::TcpStream::connect(binary.addr).await.is_err());
}

#[tokio::test]
async fn the_global_retention_budget_evicts_oldest_first_and_resume_falls_back_to_the_snapshot() {
    // Frames, logs and session states share it.
    const BUDGET: usize = 64 << 10;
    let server = start(|c| c.retention_bytes = BUDGET).await;
    let (one, two) = (Cast::new("b1"), Cast::new("b2"));
    server.ingest_ok(&[one.joined(), two.joined()]).await;
    server.wait_dispatched(2).await;
    let mut agent = server.connect(Role::Agent, &one.agent_user(), None).await;
    assert_eq!(agent.next_notification().await["id"], "2", "its snapshot");

    // 60 messages of ~1 KiB, the two sessions in turn: each costs a frame
    // for agents, one for the customer, and its log entries: far over the
    // budget.
    let upstream: Vec<Value> = (1..=30)
        .flat_map(|i| [one.message_sized(i, 800), two.message_sized(i, 800)])
        .collect();
    server.ingest_ok(&upstream).await;
    server.wait_dispatched(62).await;
    let mut ids = Vec::new();
    for _ in 0..30 {
        ids.push(
            agent.next_notification().await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(ids.last().map(String::as_str), Some("61"));
    let stats = server.state.hub.stats();
    assert!(stats.retained_bytes <= BUDGET, "{stats:?}");
    assert!(
        stats.retained_frames >= 10,
        "the newest frames stay: {stats:?}"
    );
    drop(agent);

    // From its first message: long evicted, so the snapshot.
    let mut early = server
        .resume(Role::Agent, &one.agent_user(), None, "3")
        .await;
    assert_eq!(early.welcome["resumed"], false);
    let snap = early.notifications(2).await;
    assert_eq!(
        (snap[0]["id"].as_str(), snap[1]["id"].as_str()),
        (Some("62:1"), Some("62"))
    );
    // From three messages back: still retained, replayed exactly.
    let mut recent = server
        .resume(Role::Agent, &one.agent_user(), None, "55")
        .await;
    assert_eq!(recent.welcome["resumed"], true);
    let got: Vec<Value> = recent.notifications(3).await;
    let got: Vec<&str> = got.iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!(got, ["57", "59", "61"]);
    recent.expect_silence(Duration::from_millis(200)).await;
    server.stop().await;
}

#[tokio::test]
async fn forgetting_an_ended_session_raises_the_floor_of_its_members_only() {
    // Ended sessions are forgotten as soon as they are idle.
    let server = start(|c| c.retention_secs = 0).await;
    let quiet = Cast::new("quiet");
    let ended = Cast::new("ended");
    let mut finished = ended.joined();
    finished["facebooksession"]["state"] = json!("Completed");
    server
        .ingest_ok(&[
            quiet.joined(),   // 1
            ended.joined(),   // 2
            quiet.message(1), // 3
            ended.message(1), // 4
            ended.message(2), // 5
            finished,         // 6: Completed
        ])
        .await;
    server.wait_dispatched(6).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    server.state.hub.sweep();
    assert!(
        server.state.hub.session_state("ended").is_none(),
        "forgotten"
    );
    assert!(
        server.state.hub.session_state("quiet").is_some(),
        "agents are in it"
    );

    // The quiet session's agent last saw 3; nothing of theirs was
    // forgotten, so they resume (the session forgotten was not theirs).
    let mut a = server
        .resume(Role::Agent, &quiet.agent_user(), None, "3")
        .await;
    assert_eq!(a.welcome["resumed"], true);
    a.expect_silence(Duration::from_millis(200)).await;
    // The ended session's agent missed its last frames: forgotten, so the
    // snapshot (of nothing: they are in no session now).
    let mut b = server
        .resume(Role::Agent, &ended.agent_user(), None, "4")
        .await;
    assert_eq!(b.welcome["resumed"], false);
    b.expect_silence(Duration::from_millis(200)).await;
    // Having seen the end, nothing is missing.
    let b = server
        .resume(Role::Agent, &ended.agent_user(), None, "6")
        .await;
    assert_eq!(b.welcome["resumed"], true);
    // A supervisor who missed the end cannot resume either.
    let boss = server.resume(Role::Supervisor, "boss", None, "5").await;
    assert_eq!(boss.welcome["resumed"], false);
    let boss = server.resume(Role::Supervisor, "boss", None, "6").await;
    assert_eq!(boss.welcome["resumed"], true);
    server.stop().await;
}
