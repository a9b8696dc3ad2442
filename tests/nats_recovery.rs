//! NATS recovery: nats-server stopped (SIGTERM, and separately SIGKILL)
//! and restarted on the same port and store under traffic, with two
//! gateways. The first frame published once NATS is back reaches the
//! clients of both gateways within a second; `/readyz` is 503 from the
//! outage until the gateway's consumer is back (when it says 200, what was
//! published reaches its clients); nothing is lost or doubled; the epoch
//! is the stream's, kept across restarts and new with a new stream.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatgate::auth::Role;
use chatgate::bus::nats::NatsBus;
use chatgate::bus::Bus;
use chatgate::config::{Config, RoleSetting};
use chatgate::metrics::Metrics;
use futures::StreamExt;
use support::nats::*;
use support::{token, Client, TestServer, WAIT};
use tokio::time::Instant;

const SID: &str = "recovery-session";
const AGENT: &str = "agent-r";
/// Messages published in all, before, during and after the outage.
const MESSAGES: u64 = 400;
/// Messages published before NATS is stopped.
const BEFORE_OUTAGE: u64 = 60;
/// The acceptance bound of the issue: recovery in under a second.
const RECOVERY: Duration = Duration::from_secs(1);
/// Time a gateway may take to notice that NATS is gone (its socket is
/// closed with the process: a few milliseconds).
const NOTICE: Duration = Duration::from_millis(200);

#[derive(Clone, Copy, Debug)]
enum Stop {
    Term,
    Kill,
}

#[tokio::test]
async fn nats_stopped_with_sigterm_and_restarted_recovers_within_a_second() {
    restart_under_traffic(Stop::Term).await;
}

#[tokio::test]
async fn nats_killed_with_sigkill_and_restarted_recovers_within_a_second() {
    restart_under_traffic(Stop::Kill).await;
}

/// One message's publication by the publisher loop.
#[derive(Debug, Clone, Copy)]
struct Published {
    /// When the attempt that was accepted was sent.
    sent: Instant,
    /// When it was acknowledged (202).
    acked: Instant,
    /// Attempts refused before.
    refused: u32,
}

/// Frames a client received, with the time each arrived.
type Received = Arc<Mutex<Vec<(Instant, serde_json::Value)>>>;

async fn restart_under_traffic(stop: Stop) {
    let mut nats = NatsServer::start().await;
    let a = gateway(&nats).await;
    let b = gateway(&nats).await;
    a.ingest_ok(&[session_with(SID, AGENT)]).await;
    a.wait_dispatched(1).await;
    b.wait_dispatched(1).await;
    let epoch = epoch_of(&a);
    assert_eq!(epoch, epoch_of(&b), "one stream, one epoch");

    // The agent on both gateways, the customer on B.
    let agent_token = token(Role::Agent, AGENT, None);
    let agent_a = receive(a.addr, &agent_token, 1 + MESSAGES as usize).await;
    let agent_b = receive(b.addr, &agent_token, 1 + MESSAGES as usize).await;
    let customer_token = token(Role::Customer, &format!("c-{SID}"), Some(SID));
    let customer_b = receive(b.addr, &customer_token, 1 + (MESSAGES / 2) as usize).await;

    let published: Arc<Mutex<Vec<Published>>> = Arc::default();
    let publisher = tokio::spawn(publish_all(a.url(""), published.clone()));
    let readiness = Readiness::watch(&[&a, &b]);

    wait_published(&published, BEFORE_OUTAGE).await;
    let outage = Instant::now();
    match stop {
        Stop::Term => nats.terminate(),
        Stop::Kill => nats.kill(),
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    nats.restart().await;
    let back = Instant::now();

    let published = tokio::time::timeout(WAIT * 6, publisher)
        .await
        .expect("the publisher finished in time")
        .unwrap();
    let (agent_a, agent_b, customer_b) = (
        finish(agent_a).await,
        finish(agent_b).await,
        finish(customer_b).await,
    );
    let samples = readiness.stop().await;

    // Nothing lost, nothing doubled, in order.
    let all: Vec<String> = (1..=MESSAGES).map(|i| format!("m{i}")).collect();
    let evens: Vec<String> = (1..=MESSAGES)
        .filter(|i| i.is_multiple_of(2))
        .map(|i| format!("m{i}"))
        .collect();
    assert_eq!(texts(&agent_a), all, "agent on gateway A");
    assert_eq!(texts(&agent_b), all, "agent on gateway B");
    assert_eq!(texts(&customer_b), evens, "customer on gateway B");
    let ids: Vec<String> = customer_b
        .iter()
        .map(|(_, f)| f["id"].as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = (1..=customer_b.len()).map(|i| i.to_string()).collect();
    assert_eq!(ids, want, "the customer's ids are contiguous");
    let outage_hit = published.iter().any(|p| p.refused > 0);
    assert!(outage_hit, "a publish was refused during the outage");

    // The first frame published once NATS is back reaches both gateways'
    // clients within a second of NATS being back.
    let first = published
        .iter()
        .position(|p| p.sent >= back)
        .expect("frames published after NATS was back");
    let text = format!("m{}", first + 1);
    let mut worst = Duration::ZERO;
    for (name, frames) in [("agent on A", &agent_a), ("agent on B", &agent_b)] {
        let at = arrival(frames, &text);
        let delay = at - back;
        println!(
            "{stop:?}: {text} reached the {name} {} ms after NATS was back ({} ms after its publish was acknowledged)",
            delay.as_millis(),
            at.saturating_duration_since(published[first].acked).as_millis()
        );
        worst = worst.max(delay);
    }
    let customer_first = (first as u64 + 1..=MESSAGES)
        .find(|i| i.is_multiple_of(2))
        .expect("an even message after the outage");
    let customer_text = format!("m{customer_first}");
    let customer_delay = arrival(&customer_b, &customer_text)
        - published[customer_first as usize - 1].sent.max(back);
    println!(
        "{stop:?}: {customer_text} reached the customer on B {} ms after NATS was back or its publish",
        customer_delay.as_millis()
    );
    assert!(
        worst < RECOVERY,
        "{stop:?}: the first frame after NATS was back took {worst:?}"
    );
    assert!(
        customer_delay < RECOVERY,
        "{stop:?}: customer {customer_delay:?}"
    );

    // /readyz: 503 during the outage (once the gateway has noticed it);
    // whenever it says 200 after it, what was acknowledged before reaches
    // that gateway's clients within a second (a gateway whose consumer is
    // not back says 503).
    for (g, frames) in [(0, &agent_a), (1, &agent_b)] {
        let gateway = ["A", "B"][g];
        let noticed = outage + NOTICE;
        let during: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.gateway == g && s.sent > noticed && s.sent < back)
            .collect();
        assert!(
            !during.is_empty(),
            "{gateway}: /readyz sampled during the outage"
        );
        assert!(
            during.iter().all(|s| s.status == 503),
            "{gateway}: /readyz during the outage: {:?}",
            during.iter().map(|s| s.status).collect::<Vec<_>>()
        );
        let ready_again = samples
            .iter()
            .find(|s| s.gateway == g && s.sent > back && s.status == 200)
            .unwrap_or_else(|| panic!("{gateway}: /readyz never 200 again"));
        println!(
            "{stop:?}: gateway {gateway} ready {} ms after NATS was back",
            (ready_again.sent - back).as_millis()
        );
        for sample in samples
            .iter()
            .filter(|s| s.gateway == g && s.sent > outage && s.status == 200)
        {
            // Frames arrive in order: the last one acknowledged before the
            // sample stands for all of them.
            let Some(last) = published.iter().rposition(|p| p.acked < sample.sent) else {
                continue;
            };
            let at = arrival(frames, &format!("m{}", last + 1));
            assert!(
                at < sample.sent + RECOVERY,
                "{stop:?}: {gateway} said ready {} ms after NATS was back, but m{} (acknowledged before) arrived {} ms after that",
                sample.sent.saturating_duration_since(back).as_millis(),
                last + 1,
                at.saturating_duration_since(sample.sent).as_millis()
            );
        }
    }

    // The epoch is the stream's: NATS restarted, it is the same.
    let after = NatsBus::connect(&bus_config(&nats), Arc::new(Metrics::default()))
        .await
        .unwrap();
    assert_eq!(after.epoch(), epoch);

    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn the_epoch_is_the_streams_and_new_with_a_new_stream() {
    let mut nats = NatsServer::start().await;
    let config = bus_config(&nats);
    let connect = || NatsBus::connect(&config, Arc::new(Metrics::default()));
    let first = connect().await.unwrap().epoch();
    let second = connect().await.unwrap().epoch();
    assert!(first.starts_with('n') && first.len() > 1, "{first}");
    assert_eq!(first, second, "two connections, one stream");

    nats.kill();
    nats.restart().await;
    assert_eq!(connect().await.unwrap().epoch(), first, "NATS restarted");

    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.delete_stream(&config.nats_stream).await.unwrap();
    let recreated = connect().await.unwrap().epoch();
    assert_ne!(recreated, first, "a stream created again has a new epoch");
    assert_eq!(connect().await.unwrap().epoch(), recreated);
}

/// Settings of a process on `nats` that only publishes (no consumer).
fn bus_config(nats: &NatsServer) -> Config {
    let mut c = Config::for_tests();
    c.bus = Some(nats.url());
    c.role = RoleSetting::Engine;
    c.nats.nats_timeout_secs = 2;
    // As `support::nats::node`: updating the stream must not change it.
    c.nats.nats_max_bytes = 64 << 20;
    c
}

/// The epoch clients of this gateway get: the stream's.
fn epoch_of(server: &TestServer) -> String {
    match server.state.publisher.bus() {
        Bus::Nats(bus) => {
            assert_eq!(
                server.state.hub.epoch(),
                bus.epoch(),
                "the hub counts in the stream's epoch"
            );
            bus.epoch()
        }
        Bus::Memory(_) => panic!("a NATS gateway"),
    }
}

/// Posts m1..=MESSAGES to the ingest at `base`, one at a time, each with
/// its Idempotency-Key, retrying every 20 ms while refused; bounded by
/// time.
async fn publish_all(base: String, published: Arc<Mutex<Vec<Published>>>) -> Vec<Published> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let service = token(Role::Service, "upstream", None);
    let deadline = Instant::now() + WAIT * 5;
    for i in 1..=MESSAGES {
        let vis = if i.is_multiple_of(2) { "All" } else { "Agents" };
        let item = text_message(SID, AGENT, i, vis, &format!("m{i}"));
        let mut refused = 0;
        loop {
            assert!(Instant::now() < deadline, "the ingest kept refusing m{i}");
            let sent = Instant::now();
            let status = http
                .post(format!("{base}/upstream/events"))
                .bearer_auth(&service)
                .header("idempotency-key", format!("m{i}"))
                .json(&[&item])
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            match status {
                202 => {
                    let acked = Instant::now();
                    published.lock().unwrap().push(Published {
                        sent,
                        acked,
                        refused,
                    });
                    break;
                }
                503 | 0 => {
                    refused += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                other => panic!("ingest answered {other}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    published.lock().unwrap().clone()
}

async fn wait_published(published: &Mutex<Vec<Published>>, n: u64) {
    let deadline = Instant::now() + WAIT;
    while (published.lock().unwrap().len() as u64) < n {
        assert!(Instant::now() < deadline, "the publisher is stuck");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A client connected now, reading `total` notifications in a task of its
/// own, each stamped with its arrival.
async fn receive(
    addr: std::net::SocketAddr,
    token: &str,
    total: usize,
) -> (Received, tokio::task::JoinHandle<()>) {
    let mut client = Client::connect(addr, token, None).await.expect("connect");
    let frames: Received = Arc::default();
    let into = frames.clone();
    let task = tokio::spawn(async move {
        for _ in 0..total {
            let f = client.next_notification().await;
            into.lock().unwrap().push((Instant::now(), f));
        }
        // Nothing more is coming: no late duplicate.
        client.expect_silence(Duration::from_millis(300)).await;
    });
    (frames, task)
}

async fn finish(
    (frames, task): (Received, tokio::task::JoinHandle<()>),
) -> Vec<(Instant, serde_json::Value)> {
    tokio::time::timeout(WAIT * 3, task)
        .await
        .expect("every frame arrived in time")
        .expect("the client saw every frame, then nothing more");
    let frames = frames.lock().unwrap().clone();
    frames
}

/// The message texts of frames (the session's ParticipantsUpdated has
/// none).
fn texts(frames: &[(Instant, serde_json::Value)]) -> Vec<String> {
    frames
        .iter()
        .filter_map(|(_, f)| f["data"]["messages"][0]["text"].as_str().map(str::to_owned))
        .collect()
}

fn arrival(frames: &[(Instant, serde_json::Value)], text: &str) -> Instant {
    frames
        .iter()
        .find(|(_, f)| f["data"]["messages"][0]["text"] == text)
        .map(|(at, _)| *at)
        .unwrap_or_else(|| panic!("{text} never arrived"))
}

/// One answer of `/readyz`.
#[derive(Debug, Clone, Copy)]
struct Sample {
    gateway: usize,
    sent: Instant,
    status: u16,
}

/// Asks each gateway's `/readyz` every 20 ms until stopped.
struct Readiness {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<Sample>>,
}

impl Readiness {
    fn watch(gateways: &[&TestServer]) -> Self {
        let urls: Vec<String> = gateways.iter().map(|g| g.url("/readyz")).collect();
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap();
            let mut samples = Vec::new();
            let deadline = Instant::now() + WAIT * 8;
            while Instant::now() < deadline && stopped.try_recv().is_err() {
                for (gateway, url) in urls.iter().enumerate() {
                    let sent = Instant::now();
                    let status = http
                        .get(url)
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0);
                    samples.push(Sample {
                        gateway,
                        sent,
                        status,
                    });
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            samples
        });
        Readiness { stop, task }
    }

    async fn stop(self) -> Vec<Sample> {
        let _ = self.stop.send(());
        self.task.await.unwrap()
    }
}

/// A consumer that goes quiet while the connection stays up and the
/// client library sees nothing wrong (its deliveries stop; heartbeats and
/// everything else go on): the watchdog sees the stream ahead with
/// nothing arriving and recreates it.
#[tokio::test]
async fn a_consumer_gone_quiet_is_recreated_by_the_watchdog() {
    let nats = NatsServer::start().await;
    let proxy = DeliveryFilter::start(nats.port).await;
    let url = proxy.url();
    let a = node(&nats, RoleSetting::Gateway, |c| c.bus = Some(url)).await;
    a.ingest_ok(&[session_with(SID, AGENT)]).await;
    a.wait_dispatched(1).await;
    let mut agent = a.connect(Role::Agent, AGENT, None).await;
    agent.next_notification().await;

    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream("CHATGATE").await.unwrap();
    let names: Vec<String> = stream
        .consumer_names()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(names.len(), 1, "the gateway's consumer: {names:?}");
    proxy.swallow_deliveries_of(&names[0]);

    let published = Instant::now();
    for (i, text) in [(1, "first while quiet"), (2, "second while quiet")] {
        let item = text_message(SID, AGENT, i, "All", text);
        js.publish(format!("chatgate.sessions.{SID}"), item.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let first = agent.next_notification().await;
    let delay = published.elapsed();
    let second = agent.next_notification().await;
    assert_eq!(first["data"]["messages"][0]["text"], "first while quiet");
    assert_eq!(second["data"]["messages"][0]["text"], "second while quiet");
    println!(
        "a consumer gone quiet: the next frame arrived after {} ms",
        delay.as_millis()
    );
    // The watchdog's bound: a look that finds nothing arrived since the
    // last (250 ms apart, so up to 500 ms), then 500 ms of looks with the
    // stream ahead, then the new consumer; the client library alone never
    // recovers (without the watchdog nothing arrives at all).
    assert!(delay < Duration::from_secs(2), "{delay:?}");
    agent.expect_silence(Duration::from_millis(300)).await;
    a.stop().await;
}

/// A TCP proxy in front of nats-server that passes everything, except,
/// once told, the deliveries of one consumer (messages whose reply subject
/// is that consumer's `$JS.ACK...`): to the client, that consumer simply
/// goes quiet.
struct DeliveryFilter {
    port: u16,
    swallow: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl DeliveryFilter {
    async fn start(nats_port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let swallow: Arc<Mutex<Option<String>>> = Arc::default();
        let filter = swallow.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", nats_port)).await
                else {
                    continue;
                };
                let (mut client_read, client_write) = client.into_split();
                let (server_read, mut server_write) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                });
                tokio::spawn(forward_filtered(server_read, client_write, filter.clone()));
            }
        });
        DeliveryFilter {
            port,
            swallow,
            task,
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn swallow_deliveries_of(&self, consumer: &str) {
        *self.swallow.lock().unwrap() = Some(consumer.to_owned());
    }
}

impl Drop for DeliveryFilter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies the server's side of the NATS protocol to the client, frame by
/// frame, leaving out the deliveries of the consumer named in `swallow`.
async fn forward_filtered(
    from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    swallow: Arc<Mutex<Option<String>>>,
) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let mut from = tokio::io::BufReader::new(from);
    loop {
        let mut line = Vec::new();
        match from.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let head = String::from_utf8_lossy(&line).trim_end().to_owned();
        let fields: Vec<&str> = head.split(' ').collect();
        // MSG <subject> <sid> [reply] <size>; HMSG <subject> <sid> [reply] <header size> <size>
        let (with_reply, size) = match fields[0] {
            "MSG" => (fields.len() == 5, fields.last()),
            "HMSG" => (fields.len() == 6, fields.last()),
            _ => (false, None),
        };
        let mut frame = line.clone();
        if let Some(size) = size {
            let size: usize = size.parse().expect("a payload size");
            let mut payload = vec![0; size + 2];
            if from.read_exact(&mut payload).await.is_err() {
                return;
            }
            frame.extend_from_slice(&payload);
            let swallowed = swallow.lock().unwrap().as_ref().is_some_and(|name| {
                with_reply
                    && fields[3].starts_with("$JS.ACK.")
                    && fields[3].contains(&format!(".{name}."))
            });
            if swallowed {
                continue;
            }
        }
        if to.write_all(&frame).await.is_err() {
            return;
        }
    }
}
