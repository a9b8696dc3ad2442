//! `/metrics` and `/readyz` scraped over HTTP while a scenario runs: the
//! seed's consult replayed to many connections, a resume, a slow consumer,
//! a bad batch. Each step moves exactly the series it should, and the
//! serialization count proves one serialization per notification and
//! audience whatever the number of connections.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use chatgate::auth::Role;
use support::*;

const SID: &str = "0002EaAY01MT007C";
const CUSTOMER: &str = "007356263E140144";
const TESTNAME: &str = "5e101708f14442c7ab79814bb4f799b2";
/// Connections per audience: the serialization count must not depend on it.
const FAN: usize = 12;

/// One scrape, as series (`name{labels}`) -> value.
async fn scrape(server: &TestServer) -> HashMap<String, f64> {
    let resp = reqwest::get(server.url("/metrics")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = resp.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"));
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn get(m: &HashMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

/// Scrapes until `series` reaches `want` (counters move asynchronously
/// with the connection tasks).
async fn until(server: &TestServer, series: &str, want: f64) -> HashMap<String, f64> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let m = scrape(server).await;
        if get(&m, series) == want {
            return m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} is {}, expected {want}",
            get(&m, series)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn metrics_follow_a_scenario() {
    let server = start(|_| {}).await;
    let ready = reqwest::get(server.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200, "the in-memory bus is ready");

    let m = scrape(&server).await;
    assert_eq!(get(&m, "chatgate_connections{role=\"agent\"}"), 0.0);
    assert_eq!(get(&m, "chatgate_serializations_total"), 0.0);
    assert!(m.contains_key("chatgate_delivery_latency_seconds_count"));
    assert!(m.contains_key("chatgate_bus_publish_errors_total"));
    assert!(m.contains_key("chatgate_bus_reconnects_total"));

    let pu = sample("consult-participants-updated.json");
    let parts = pu["facebooksession"]["participants"]
        .as_array()
        .unwrap()
        .clone();
    let (customer_p, agent2_p, testname_p) = (&parts[0], &parts[1], &parts[2]);
    server.ingest_ok(&[seed_before_consult()]).await;
    server.wait_dispatched(1).await;

    let mut agents = Vec::new();
    let mut customers = Vec::new();
    for _ in 0..FAN {
        agents.push(server.connect(Role::Agent, TESTNAME, None).await);
        customers.push(server.connect(Role::Customer, CUSTOMER, Some(SID)).await);
    }
    let mut supervisor = server.connect(Role::Supervisor, "boss", None).await;
    for c in agents.iter_mut().chain(customers.iter_mut()) {
        c.notifications(1).await; // the snapshot
    }
    supervisor.notifications(1).await;

    let m = scrape(&server).await;
    assert_eq!(get(&m, "chatgate_connections{role=\"agent\"}"), FAN as f64);
    assert_eq!(
        get(&m, "chatgate_connections{role=\"customer\"}"),
        FAN as f64
    );
    assert_eq!(get(&m, "chatgate_connections{role=\"supervisor\"}"), 1.0);
    assert_eq!(
        get(&m, "chatgate_connections_opened_total{role=\"customer\"}"),
        FAN as f64
    );
    let before = m;

    // The consult: 5 notifications, 2 of which have a customer view (the
    // first and the last message); the consult itself and agent-only
    // chatter have none.
    server
        .ingest_ok(&[
            seed_message(1, customer_p, "All", "hello"),
            pu.clone(),
            sample("consult-new-messages.json"),
            seed_message(5, agent2_p, "Agents", "internal: refund is fine"),
            seed_message(6, testname_p, "All", "let me check"),
        ])
        .await;
    server.wait_dispatched(6).await;
    for a in agents.iter_mut() {
        a.notifications(5).await;
    }
    for c in customers.iter_mut() {
        c.notifications(2).await;
    }
    supervisor.notifications(5).await;

    let m = until(
        &server,
        "chatgate_delivery_latency_seconds_count",
        // Live frames written: 5 per agent and the supervisor, 2 per customer.
        (5 * (FAN + 1) + 2 * FAN) as f64,
    )
    .await;
    let delta = |series: &str| get(&m, series) - get(&before, series);
    assert_eq!(
        delta("chatgate_notifications_in_total{source=\"ingest\"}"),
        5.0
    );
    assert_eq!(delta("chatgate_notifications_dispatched_total"), 5.0);
    assert_eq!(
        delta("chatgate_serializations_total"),
        2.0,
        "none for agents (their frames are the notifications' own bytes), one per customer \
         view, for {FAN} connections each"
    );
    assert_eq!(
        delta("chatgate_frames_out_total{audience=\"agent\"}"),
        (5 * (FAN + 1)) as f64
    );
    assert_eq!(
        delta("chatgate_frames_out_total{audience=\"customer\"}"),
        (2 * FAN) as f64
    );
    assert!(delta("chatgate_bytes_out_total") > 0.0);
    assert_eq!(
        get(&m, "chatgate_delivery_latency_seconds_bucket{le=\"+Inf\"}"),
        get(&m, "chatgate_delivery_latency_seconds_count")
    );

    // Resumes: one within the window (hit), one with an id never handed
    // out (miss).
    let last = agents[0].welcome.clone();
    assert_eq!(last["resumed"], false);
    let t = token(Role::Agent, TESTNAME, None);
    let epoch = agents[0].epoch();
    let hit = Client::connect(server.addr, &t, Some(("3", &epoch)))
        .await
        .unwrap();
    assert_eq!(hit.welcome["resumed"], true);
    let miss = Client::connect(server.addr, &t, Some(("999999", &epoch)))
        .await
        .unwrap();
    assert_eq!(miss.welcome["resumed"], false);
    let m = scrape(&server).await;
    assert_eq!(get(&m, "chatgate_resumes_total{result=\"hit\"}"), 1.0);
    assert_eq!(get(&m, "chatgate_resumes_total{result=\"miss\"}"), 1.0);
    drop((hit, miss));

    // A bad batch is rejected and counted, and changes nothing.
    let (status, _) = server.ingest("[{\"x\":1}]", "application/json").await;
    assert_eq!(status, 400);
    let m = scrape(&server).await;
    assert_eq!(get(&m, "chatgate_ingest_rejects_total"), 1.0);
    assert_eq!(
        get(&m, "chatgate_notifications_in_total{source=\"ingest\"}"),
        6.0
    );

    // Clients leaving: closed by the peer.
    for c in customers.drain(..) {
        drop(c);
    }
    let m = until(&server, "chatgate_connections{role=\"customer\"}", 0.0).await;
    assert!(get(&m, "chatgate_connections_closed_total{code=\"peer\"}") >= FAN as f64);
    server.stop().await;
}

#[tokio::test]
async fn a_slow_consumer_close_is_counted_as_an_overflow_and_a_1013() {
    // A queue of 8 frames (its bytes are at least one frame of the bound)
    // and a client that reads nothing while 8 MB come: once the socket's
    // buffers are full, the queue overflows.
    let server = start(|c| c.queue_frames = 8).await;
    let mut agent = server.connect(Role::Agent, TESTNAME, None).await;
    server.ingest_ok(&[seed_before_consult()]).await;
    let testname = seed_before_consult()["facebooksession"]["participants"][1].clone();
    let flood: Vec<serde_json::Value> = (1..=2000)
        .map(|i| seed_message(i, &testname, "All", &"f".repeat(4000)))
        .collect();
    server.publish(&flood).await;
    let (closed, error) = agent.until_close().await;
    assert_eq!(closed, Closed::Code(1013));
    assert_eq!(error.unwrap()["code"], 1013);
    let m = until(
        &server,
        "chatgate_connections_closed_total{code=\"1013\"}",
        1.0,
    )
    .await;
    assert_eq!(get(&m, "chatgate_queue_overflows_total"), 1.0);
    server.stop().await;
}

#[tokio::test]
async fn refused_handshakes_are_counted_by_reason() {
    let server = start(|_| {}).await;
    assert_eq!(
        Client::connect(server.addr, "not-a-jwt", None).await.err(),
        Some(401)
    );
    let service = token(Role::Service, "upstream", None);
    assert_eq!(
        Client::connect(server.addr, &service, None).await.err(),
        Some(403)
    );
    let m = scrape(&server).await;
    assert_eq!(
        get(&m, "chatgate_auth_rejects_total{reason=\"invalid\"}"),
        1.0
    );
    assert_eq!(
        get(&m, "chatgate_auth_rejects_total{reason=\"wrong_role\"}"),
        1.0
    );
    server.stop().await;
}
