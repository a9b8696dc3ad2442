//! `chatgate-load fanout`: the parties of S sessions (one customer and
//! K-1 agents each) connected, M notifications/s published in total for T
//! seconds, and every frame accounted for.
//!
//! Each notification is one visible message whose text is a probe,
//! `t=<send time, us> n=<per-session number> s=<session>`: every party of the session
//! receives it (the agents unchanged, the customer through its view), so a
//! receiver knows the latency of each frame and can tell a lost, repeated
//! or reordered one. Publishing is one request at a time, so upstream order
//! is the publish order. `--find-max` raises the rate step by step until
//! p99 passes 50 ms or delivery falls behind, then checks half that rate.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use futures::{stream, StreamExt};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::client::{self, Ws};
use crate::procstat::{self, ProcSample};
use crate::report::{self, mib, opt};
use crate::{Target, TargetArgs};
use chatgate::auth::{Authenticator, Role};

/// How notifications reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Via {
    /// NDJSON batches to `POST /upstream/events` (`POST /publish` for bare).
    Ingest,
    /// The engine's operations: sessions opened through the customer API
    /// (routed to the directory's agents), each notification a customer's
    /// SendMessage. The server needs CHATGATE_CUSTOMER_SESSION_RATE=0.
    Engine,
    /// JetStream publishes to `<prefix>.sessions.<id>` on the server's NATS
    /// bus (`--nats-url`, `--nats-prefix`), each acknowledged.
    Nats,
}

impl Via {
    fn as_str(self) -> &'static str {
        match self {
            Via::Ingest => "ingest",
            Via::Engine => "engine",
            Via::Nats => "nats",
        }
    }
}

/// Concurrent operation requests with `--via engine`; a session always
/// goes through the same one, so its messages stay in order.
const ENGINE_WORKERS: usize = 32;

#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    /// Sessions (rooms for the bare server).
    #[arg(long, default_value_t = 100)]
    pub sessions: usize,

    /// Parties per session: one customer, the rest agents.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub per_session: u64,

    /// Notifications per second, in total.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub rate: u64,

    /// Seconds of publishing (per step with --find-max).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub duration: u64,

    /// Upstream path of the notifications.
    #[arg(long, value_enum, default_value = "ingest")]
    pub via: Via,

    /// Raise the rate from --rate by --step until p99 passes 50 ms or
    /// delivery falls behind; then run at half the highest sustained rate.
    #[arg(long)]
    pub find_max: bool,

    /// Rate factor between --find-max steps.
    #[arg(long, default_value_t = 1.5)]
    pub step: f64,

    /// Most --find-max steps.
    #[arg(long, default_value_t = 12)]
    pub max_steps: usize,

    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,

    /// Milliseconds between publish batches.
    #[arg(long, default_value_t = 5)]
    pub tick_ms: u64,

    /// NATS server of the chatgate under test (`--via nats`).
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,

    /// Its subject prefix (the server's CHATGATE_NATS_PREFIX).
    #[arg(long, default_value = "chatgate")]
    pub nats_prefix: String,
}

/// p99 above this ends --find-max.
pub const P99_LIMIT_US: u64 = 50_000;
/// Notifications per publish request, at most.
const MAX_BATCH: u64 = 2_000;
/// After publishing, delivery must complete within this to count as keeping up.
const DRAIN_KEEPING_UP: Duration = Duration::from_secs(1);
/// Waiting for stragglers ends after this long without a new frame.
const DRAIN_STALL: Duration = Duration::from_secs(3);
/// ... and after this long in any case.
const DRAIN_MAX: Duration = Duration::from_secs(30);
const LATENCY_SHARDS: usize = 32;

/// The figures of one run (one rate).
#[derive(Debug, Clone, Serialize)]
pub struct FanoutReport {
    pub scenario: &'static str,
    pub label: String,
    pub target: &'static str,
    pub via: &'static str,
    pub sessions: usize,
    pub per_session: u64,
    pub connections: usize,
    pub rate_offered: u64,
    pub duration_secs: u64,
    pub notifications: u64,
    /// Notifications published per second, as achieved.
    pub rate_published: f64,
    pub frames_expected: u64,
    pub frames_delivered: u64,
    pub frames_per_sec: f64,
    pub latency_p50_us: u64,
    pub latency_p99_us: u64,
    pub latency_p999_us: u64,
    pub latency_max_us: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub disconnected: u64,
    pub drain_secs: f64,
    pub server_cpu_secs: Option<f64>,
    pub server_cpu_us_per_frame: Option<f64>,
    pub server_rss_bytes: Option<u64>,
    pub loadgen_cpu_secs: f64,
    /// Kept up: published on time, delivered within a second, nothing
    /// lost, repeated, reordered or disconnected, p99 within 50 ms.
    pub sustained: bool,
}

impl FanoutReport {
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.out_of_order == 0 && self.disconnected == 0
    }
}

/// What all receivers add up, shared.
struct Tally {
    epoch: Instant,
    received: AtomicU64,
    duplicated: AtomicU64,
    out_of_order: AtomicU64,
    disconnected: AtomicU64,
    last_receipt_us: AtomicU64,
    latency: Vec<Mutex<Histogram<u64>>>,
}

impl Tally {
    fn new() -> Result<Self, String> {
        let latency = (0..LATENCY_SHARDS)
            .map(|_| new_histogram().map(Mutex::new))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            epoch: Instant::now(),
            received: AtomicU64::new(0),
            duplicated: AtomicU64::new(0),
            out_of_order: AtomicU64::new(0),
            disconnected: AtomicU64::new(0),
            last_receipt_us: AtomicU64::new(0),
            latency,
        })
    }

    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn counts(&self) -> [u64; 4] {
        [
            self.received.load(Ordering::Acquire),
            self.duplicated.load(Ordering::Acquire),
            self.out_of_order.load(Ordering::Acquire),
            self.disconnected.load(Ordering::Acquire),
        ]
    }

    fn reset_latency(&self) {
        for shard in &self.latency {
            lock(shard).reset();
        }
    }

    fn merged_latency(&self) -> Result<Histogram<u64>, String> {
        let mut all = new_histogram()?;
        for shard in &self.latency {
            all.add(&*lock(shard)).map_err(|e| e.to_string())?;
        }
        Ok(all)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Latencies from 1 us to 10 minutes, 3 significant digits.
fn new_histogram() -> Result<Histogram<u64>, String> {
    Histogram::new_with_bounds(1, 600_000_000, 3).map_err(|e| e.to_string())
}

/// The probe text: send time (us), number within the session, session.
fn probe_text(sent_us: u64, n: u64, session: usize) -> String {
    format!("t={sent_us} n={n} s={session}")
}

/// `(t, n, s)` of the probe in the `text` of a frame.
pub fn parse_probe(frame: &str) -> Option<(u64, u64, u64)> {
    const KEY: &str = r#""text":"t="#;
    let rest = &frame[frame.find(KEY)? + KEY.len()..];
    let (t, rest) = leading_number(rest)?;
    let (n, rest) = leading_number(rest.strip_prefix(" n=")?)?;
    let (s, _) = leading_number(rest.strip_prefix(" s=")?)?;
    Some((t, n, s))
}

fn leading_number(s: &str) -> Option<(u64, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    Some((s[..end].parse().ok()?, &s[end..]))
}

/// Which numbers of one session a receiver has seen.
#[derive(Default)]
struct Seen {
    bits: Vec<u64>,
    highest: u64,
}

enum Arrival {
    InOrder,
    Repeated,
    Reordered,
}

impl Seen {
    fn note(&mut self, n: u64) -> Arrival {
        let (word, bit) = ((n / 64) as usize, 1u64 << (n % 64));
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        if self.bits[word] & bit != 0 {
            return Arrival::Repeated;
        }
        self.bits[word] |= bit;
        if n < self.highest {
            return Arrival::Reordered;
        }
        self.highest = n;
        Arrival::InOrder
    }
}

/// Reads one party's frames until `stop` or the socket ends.
async fn receive(mut ws: Ws, shard: usize, tally: Arc<Tally>, stop: CancellationToken) {
    // Per session: an agent of the engine's directory is in many.
    let mut seen: HashMap<u64, Seen> = HashMap::new();
    loop {
        let msg = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            msg = ws.next() => msg,
        };
        match msg {
            Some(Ok(Message::Text(text))) => {
                let Some((sent_us, n, session)) = parse_probe(&text) else {
                    continue;
                };
                let now = tally.now_us();
                let _ = lock(&tally.latency[shard]).record(now.saturating_sub(sent_us).max(1));
                match seen.entry(session).or_default().note(n) {
                    Arrival::InOrder => {}
                    Arrival::Repeated => {
                        tally.duplicated.fetch_add(1, Ordering::AcqRel);
                    }
                    Arrival::Reordered => {
                        tally.out_of_order.fetch_add(1, Ordering::AcqRel);
                    }
                }
                tally.last_receipt_us.fetch_max(now, Ordering::AcqRel);
                tally.received.fetch_add(1, Ordering::AcqRel);
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => {
                tally.disconnected.fetch_add(1, Ordering::AcqRel);
                return;
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
}

/// Names of this run's sessions and parties (unique per run, so runs
/// against one server do not see each other's sessions).
struct Names {
    run: u32,
}

impl Names {
    fn session(&self, s: usize) -> String {
        format!("f{}-s{s}", self.run)
    }
    fn customer(&self, s: usize) -> String {
        format!("f{}-c{s}", self.run)
    }
    fn agent(&self, s: usize, j: u64) -> String {
        format!("f{}-a{s}-{j}", self.run)
    }
}

/// The upstream notification adding a session's parties.
fn participants_line(names: &Names, s: usize, per_session: u64) -> String {
    let c = names.customer(s);
    let mut parts = vec![format!(
        r#"{{"participantId":"{c}","id":"{c}","type":"Customer","nickname":"customer","visibility":"All"}}"#
    )];
    for j in 1..per_session {
        let a = names.agent(s, j);
        parts.push(format!(
            r#"{{"participantId":"{a}","id":"{a}","type":"Agent","nickname":"agent","visibility":"All","path":"/users/{a}"}}"#
        ));
    }
    format!(
        r#"{{"notificationType":"ParticipantsUpdated","messageType":"FacebooksessionStateChangeMessage","facebooksession":{{"id":"{}","state":"Chatting","participants":[{}]}}}}"#,
        names.session(s),
        parts.join(",")
    )
}

/// One visible message carrying the probe.
fn message_notification(session: &str, n: u64, text: &str) -> String {
    format!(
        r#"{{"notificationType":"NewMessages","messageType":"MessageLogUpdated","facebooksessionPath":"/facebooksessions/{session}","messages":[{{"index":{n},"type":"Text","visibility":"All","text":"{text}"}}]}}"#
    )
}

/// A session opened through the engine's customer API.
#[derive(Debug, Clone)]
struct EngineSession {
    id: String,
    token: String,
}

/// Where notifications go.
enum Upstream {
    /// NDJSON to chatgate's ingest (with a service token) or the bare server.
    Batches { url: String, token: Option<String> },
    /// Customer operations of the engine, at `base`.
    Engine {
        base: String,
        sessions: Vec<EngineSession>,
    },
    /// JetStream, one message per notification on its session's subject.
    Nats {
        js: async_nats::jetstream::Context,
        prefix: String,
    },
}

/// Sends batches to the server, one request at a time.
struct Publisher {
    http: reqwest::Client,
    upstream: Upstream,
    target: Target,
    names: Names,
    /// The last number sent to each session.
    numbers: Vec<u64>,
    /// Frame ids for the bare server.
    frame_seq: u64,
    next_session: usize,
}

impl Publisher {
    /// Sends the next `count` notifications.
    async fn send(&mut self, count: u64, sent_us: u64) -> Result<(), String> {
        match self.upstream {
            Upstream::Engine { .. } => return self.operate(count, sent_us).await,
            Upstream::Nats { .. } => {
                let items = (0..count)
                    .map(|_| {
                        let (s, n) = self.next();
                        let session = self.names.session(s);
                        let text = probe_text(sent_us, n, s);
                        let notification = message_notification(&session, n, &text);
                        (session, notification)
                    })
                    .collect();
                return self.publish_nats(items).await;
            }
            Upstream::Batches { .. } => {}
        }
        let body = self.batch(count, sent_us);
        self.post(body).await
    }

    async fn post(&self, body: String) -> Result<(), String> {
        let Upstream::Batches { url, token } = &self.upstream else {
            return Err("no batch upstream".into());
        };
        let mut req = self
            .http
            .post(url)
            .header("content-type", "application/x-ndjson")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| format!("publish: {e}"))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            return Err(format!("publish refused: {status} {text}"));
        }
        Ok(())
    }

    /// Publishes `(session, notification)` in order on one connection, then
    /// waits for every acknowledgment (as chatgate's own NATS bus does).
    async fn publish_nats(&self, items: Vec<(String, String)>) -> Result<(), String> {
        let Upstream::Nats { js, prefix } = &self.upstream else {
            return Err("no NATS upstream".into());
        };
        let mut acks = Vec::with_capacity(items.len());
        for (session, notification) in items {
            let subject = format!("{prefix}.sessions.{session}");
            let ack = js
                .publish(subject, notification.into())
                .await
                .map_err(|e| format!("NATS publish: {e}"))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await
                .map_err(|e| format!("NATS publish not acknowledged: {e}"))?;
        }
        Ok(())
    }

    /// The next session, round-robin, and its next number.
    fn next(&mut self) -> (usize, u64) {
        let s = self.next_session;
        self.next_session = (s + 1) % self.numbers.len();
        self.numbers[s] += 1;
        (s, self.numbers[s])
    }

    /// The next `count` customer messages through the engine: requests of
    /// one session in order, sessions spread over concurrent workers.
    async fn operate(&mut self, count: u64, sent_us: u64) -> Result<(), String> {
        let mut lanes: Vec<Vec<(usize, u64)>> = vec![Vec::new(); ENGINE_WORKERS];
        for _ in 0..count {
            let (s, n) = self.next();
            lanes[s % ENGINE_WORKERS].push((s, n));
        }
        let Upstream::Engine { base, sessions } = &self.upstream else {
            return Err("no engine upstream".into());
        };
        let http = &self.http;
        let lanes = lanes
            .into_iter()
            .filter(|l| !l.is_empty())
            .map(|lane| async move {
                for (s, n) in lane {
                    let session = &sessions[s];
                    let body = serde_json::json!({
                        "operationName": "SendMessage",
                        "text": probe_text(sent_us, n, s),
                    });
                    let resp = http
                        .post(format!("{base}/api/v2/customer/sessions/{}", session.id))
                        .bearer_auth(&session.token)
                        .json(&body)
                        .send()
                        .await
                        .map_err(|e| format!("SendMessage: {e}"))?;
                    if !resp.status().is_success() {
                        let status = resp.status();
                        let text = resp.text().await.unwrap_or_default();
                        return Err(format!("SendMessage refused: {status} {text}"));
                    }
                }
                Ok::<(), String>(())
            });
        futures::future::try_join_all(lanes).await.map(|_| ())
    }

    /// The next `count` notifications, round-robin over the sessions.
    fn batch(&mut self, count: u64, sent_us: u64) -> String {
        let mut body = String::with_capacity(count as usize * 256);
        for _ in 0..count {
            let (s, n) = self.next();
            let session = self.names.session(s);
            let notification = message_notification(&session, n, &probe_text(sent_us, n, s));
            match self.target {
                Target::Chatgate => body.push_str(&notification),
                Target::Bare => {
                    self.frame_seq += 1;
                    body.push_str(&format!(
                        r#"{session} {{"type":"notification","id":"{}","channel":"/v2/me/facebooksession","data":{notification}}}"#,
                        self.frame_seq
                    ));
                }
            }
            body.push('\n');
        }
        body
    }
}

/// Connected parties and the publisher, across the steps of a run.
struct Rig {
    args: FanoutArgs,
    publisher: Publisher,
    tally: Arc<Tally>,
    stop: CancellationToken,
    receivers: Vec<JoinHandle<()>>,
    /// Frames each notification makes: one per party of its session.
    frames_per_notification: u64,
}

impl Rig {
    async fn set_up(args: &FanoutArgs) -> Result<Self, String> {
        if args.sessions == 0 {
            return Err("--sessions must be at least 1".into());
        }
        let conns = args.sessions * args.per_session as usize;
        client::check_fd_budget(conns + 16)?;
        let minter = args.target.minter()?;
        let names = Names {
            run: rand::random::<u32>() % 1_000_000,
        };
        let server = args.target.addr;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        let (upstream, parties, frames_per_notification) = match (args.via, minter.as_ref()) {
            (Via::Engine, Some(minter)) => {
                let base = format!("http://{server}");
                let sessions = open_engine_sessions(&http, &base, args).await?;
                let parties = engine_parties(&http, &base, minter, &sessions).await?;
                // The customer and the agent the session was routed to.
                (Upstream::Engine { base, sessions }, parties, 2)
            }
            (Via::Engine | Via::Nats, None) => {
                return Err("--via engine and --via nats need --target chatgate".into())
            }
            (Via::Nats, Some(_)) => {
                let client = async_nats::connect(&args.nats_url)
                    .await
                    .map_err(|e| format!("NATS at {}: {e}", args.nats_url))?;
                let js = async_nats::jetstream::new(client);
                let parties = ingest_parties(args, &names, minter.as_ref());
                let prefix = args.nats_prefix.clone();
                (Upstream::Nats { js, prefix }, parties, args.per_session)
            }
            (Via::Ingest, _) => {
                let (url, token) = match args.target.target {
                    Target::Chatgate => (
                        format!("http://{server}/upstream/events"),
                        minter
                            .as_ref()
                            .map(|m| m.mint(Role::Service, "chatgate-load", None, 86_400)),
                    ),
                    Target::Bare => (format!("http://{server}/publish"), None),
                };
                let parties = ingest_parties(args, &names, minter.as_ref());
                (Upstream::Batches { url, token }, parties, args.per_session)
            }
        };
        let mut publisher = Publisher {
            http,
            upstream,
            target: args.target.target,
            names,
            numbers: vec![0; args.sessions],
            frame_seq: 0,
            next_session: 0,
        };
        if args.target.target == Target::Chatgate && args.via != Via::Engine {
            announce_sessions(&mut publisher, args).await?;
        }
        let sockets = connect_all(args, parties).await?;
        let tally = Arc::new(Tally::new()?);
        let stop = CancellationToken::new();
        let receivers = sockets
            .into_iter()
            .enumerate()
            .map(|(i, ws)| {
                tokio::spawn(receive(ws, i % LATENCY_SHARDS, tally.clone(), stop.clone()))
            })
            .collect();
        Ok(Self {
            args: args.clone(),
            publisher,
            tally,
            stop,
            receivers,
            frames_per_notification,
        })
    }

    /// Publishes at `rate` for the run's duration and accounts for it.
    async fn step(&mut self, rate: u64, label: &str) -> Result<FanoutReport, String> {
        let args = self.args.clone();
        let [received0, dup0, ooo0, disc0] = self.tally.counts();
        self.tally.reset_latency();
        let server0 = procstat::sample_pid(args.target.server_pid)?;
        let self0 = procstat::sample("self")?;
        let started = Instant::now();
        let started_us = self.tally.now_us();
        let sent = self.publish(rate).await?;
        let publish_secs = started.elapsed().as_secs_f64();
        let expected = sent * self.frames_per_notification;
        let drain_secs = self.drain(received0 + expected).await;
        let server1 = procstat::sample_pid(args.target.server_pid)?;
        let self1 = procstat::sample("self")?;
        let [received1, dup1, ooo1, disc1] = self.tally.counts();
        let delivered = received1 - received0;
        let duplicated = dup1 - dup0;
        let latency = self.tally.merged_latency()?;
        let span_us = self
            .tally
            .last_receipt_us
            .load(Ordering::Acquire)
            .saturating_sub(started_us)
            .max(1);
        let server_cpu = cpu_between(server0, server1);
        let mut report = FanoutReport {
            scenario: "fanout",
            label: label.to_owned(),
            target: args.target.target.as_str(),
            via: args.via.as_str(),
            sessions: args.sessions,
            per_session: self.frames_per_notification,
            connections: self.receivers.len(),
            rate_offered: rate,
            duration_secs: args.duration,
            notifications: sent,
            rate_published: sent as f64 / publish_secs.max(1e-9),
            frames_expected: expected,
            frames_delivered: delivered,
            frames_per_sec: delivered as f64 / (span_us as f64 / 1e6),
            latency_p50_us: latency.value_at_quantile(0.5),
            latency_p99_us: latency.value_at_quantile(0.99),
            latency_p999_us: latency.value_at_quantile(0.999),
            latency_max_us: latency.max(),
            lost: expected.saturating_sub(delivered - duplicated),
            duplicated,
            out_of_order: ooo1 - ooo0,
            disconnected: disc1 - disc0,
            drain_secs,
            server_cpu_secs: server_cpu,
            server_cpu_us_per_frame: server_cpu
                .filter(|_| delivered > 0)
                .map(|c| c * 1e6 / delivered as f64),
            server_rss_bytes: server1.map(|s| s.rss_bytes),
            loadgen_cpu_secs: self1.cpu_secs - self0.cpu_secs,
            sustained: false,
        };
        let on_time = publish_secs <= args.duration as f64 * 1.1 + 0.5;
        report.sustained = on_time
            && report.is_clean()
            && drain_secs <= DRAIN_KEEPING_UP.as_secs_f64()
            && report.latency_p99_us <= P99_LIMIT_US;
        Ok(report)
    }

    /// Publishes `rate` notifications/s for the duration; returns how many.
    /// Gives up (short) when publishing takes three times as long.
    async fn publish(&mut self, rate: u64) -> Result<u64, String> {
        let total = rate * self.args.duration;
        let give_up = Duration::from_secs(self.args.duration * 3 + 10);
        let mut ticker = tokio::time::interval(Duration::from_millis(self.args.tick_ms.max(1)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let started = Instant::now();
        let mut sent = 0;
        while sent < total && started.elapsed() < give_up {
            ticker.tick().await;
            let due = ((rate as f64 * started.elapsed().as_secs_f64()) as u64).min(total);
            while sent < due {
                let count = (due - sent).min(MAX_BATCH);
                self.publisher.send(count, self.tally.now_us()).await?;
                sent += count;
            }
        }
        Ok(sent)
    }

    /// Waits until `target` frames are received in total (or delivery
    /// stalls); returns how long it took after publishing ended.
    async fn drain(&self, target: u64) -> f64 {
        let started = Instant::now();
        let mut last = self.tally.received.load(Ordering::Acquire);
        let mut last_progress = Instant::now();
        while started.elapsed() < DRAIN_MAX && last_progress.elapsed() < DRAIN_STALL {
            if last >= target {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            let now = self.tally.received.load(Ordering::Acquire);
            if now > last {
                last = now;
                last_progress = Instant::now();
            }
        }
        started.elapsed().as_secs_f64()
    }

    async fn tear_down(self) {
        self.stop.cancel();
        for r in self.receivers {
            let _ = tokio::time::timeout(Duration::from_secs(10), r).await;
        }
    }
}

fn cpu_between(a: Option<ProcSample>, b: Option<ProcSample>) -> Option<f64> {
    Some(b?.cpu_secs - a?.cpu_secs)
}

/// Makes every session's agents participants before anyone connects.
async fn announce_sessions(publisher: &mut Publisher, args: &FanoutArgs) -> Result<(), String> {
    let lines: Vec<String> = (0..args.sessions)
        .map(|s| participants_line(&publisher.names, s, args.per_session))
        .collect();
    if matches!(publisher.upstream, Upstream::Nats { .. }) {
        let items = lines
            .into_iter()
            .enumerate()
            .map(|(s, line)| (publisher.names.session(s), line))
            .collect();
        return publisher.publish_nats(items).await;
    }
    for chunk in lines.chunks(MAX_BATCH as usize) {
        publisher.post(chunk.join("\n")).await?;
    }
    Ok(())
}

/// A party to connect: its path (with query) and token.
type PartySpec = (String, Option<String>);

/// Every party of the ingest scenario: for session s, the customer then
/// agents 1..K (rooms for the bare server).
fn ingest_parties(
    args: &FanoutArgs,
    names: &Names,
    minter: Option<&Authenticator>,
) -> Vec<PartySpec> {
    let k = args.per_session;
    (0..args.sessions)
        .flat_map(|s| (0..k).map(move |j| (s, j)))
        .map(|(s, j)| match (args.target.target, minter) {
            (Target::Chatgate, Some(m)) => {
                let token = if j == 0 {
                    m.mint(
                        Role::Customer,
                        &names.customer(s),
                        Some(&names.session(s)),
                        86_400,
                    )
                } else {
                    m.mint(Role::Agent, &names.agent(s, j), None, 86_400)
                };
                ("/ws".to_owned(), Some(token))
            }
            _ => (format!("/ws?room={}", names.session(s)), None),
        })
        .collect()
}

/// Opens `--sessions` sessions through the engine's customer API.
async fn open_engine_sessions(
    http: &reqwest::Client,
    base: &str,
    args: &FanoutArgs,
) -> Result<Vec<EngineSession>, String> {
    let url = format!("{base}/api/v2/customer/sessions");
    stream::iter(0..args.sessions)
        .map(|s| {
            let url = url.clone();
            async move {
                let body = serde_json::json!({"nickname": format!("load-{s}"), "message": "hello"});
                let resp = http
                    .post(&url)
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| format!("open session: {e}"))?;
                let status = resp.status();
                let reply: serde_json::Value = resp.json().await.map_err(|e| e.to_string())?;
                match (reply["sessionId"].as_str(), reply["token"].as_str()) {
                    (Some(id), Some(token)) if status.is_success() => Ok(EngineSession {
                        id: id.to_owned(),
                        token: token.to_owned(),
                    }),
                    _ => Err(format!(
                        "open session refused: {status} {reply} \
                         (start the server with CHATGATE_CUSTOMER_SESSION_RATE=0)"
                    )),
                }
            }
        })
        .buffered(args.concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// The customers of `sessions` and every agent of the directory.
async fn engine_parties(
    http: &reqwest::Client,
    base: &str,
    minter: &Authenticator,
    sessions: &[EngineSession],
) -> Result<Vec<PartySpec>, String> {
    let observer = minter.mint(Role::Agent, "chatgate-load", None, 3600);
    let reply: serde_json::Value = http
        .get(format!("{base}/api/v2/users"))
        .bearer_auth(observer)
        .send()
        .await
        .map_err(|e| format!("list users: {e}"))?
        .json()
        .await
        .map_err(|e| format!("list users: {e}"))?;
    let agents: Vec<&str> = reply["users"]
        .as_array()
        .map(|u| u.iter().filter_map(|a| a["id"].as_str()).collect())
        .unwrap_or_default();
    if agents.is_empty() {
        return Err(format!("the directory lists no agents: {reply}"));
    }
    let mut parties: Vec<PartySpec> = sessions
        .iter()
        .map(|s| ("/ws".to_owned(), Some(s.token.clone())))
        .collect();
    parties.extend(agents.into_iter().map(|a| {
        (
            "/ws".to_owned(),
            Some(minter.mint(Role::Agent, a, None, 86_400)),
        )
    }));
    Ok(parties)
}

/// Connects every party, `--concurrency` handshakes at a time.
async fn connect_all(args: &FanoutArgs, parties: Vec<PartySpec>) -> Result<Vec<Ws>, String> {
    let server: SocketAddr = args.target.addr;
    let results: Vec<Result<Ws, String>> = stream::iter(parties.into_iter().enumerate())
        .map(|(i, (path, token))| async move {
            client::connect(
                server,
                client::source_ip(server, i),
                &path,
                token.as_deref(),
            )
            .await
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    let total = results.len();
    let mut sockets = Vec::with_capacity(total);
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(ws) => sockets.push(ws),
            Err(e) => errors.push(e),
        }
    }
    if let Some(first) = errors.first() {
        return Err(format!(
            "{} of {total} connections failed, first: {first}",
            errors.len()
        ));
    }
    Ok(sockets)
}

/// Runs the scenario (every step with --find-max) and returns the reports.
pub async fn run(args: &FanoutArgs) -> Result<Vec<FanoutReport>, String> {
    run_with(args, |_| {}).await
}

/// As [`run`], handing each report to `each` as soon as it is measured.
pub async fn run_with(
    args: &FanoutArgs,
    mut each: impl FnMut(&FanoutReport),
) -> Result<Vec<FanoutReport>, String> {
    let mut rig = Rig::set_up(args).await?;
    let mut reports = Vec::new();
    let result = async {
        if !args.find_max {
            let r = rig.step(args.rate, "run").await?;
            each(&r);
            reports.push(r);
            return Ok(());
        }
        let mut rate = args.rate;
        let mut best = None;
        for i in 0..args.max_steps.max(1) {
            let r = rig.step(rate, &format!("step {}", i + 1)).await?;
            each(&r);
            let sustained = r.sustained;
            reports.push(r);
            if !sustained {
                break;
            }
            best = Some(rate);
            rate = ((rate as f64 * args.step.max(1.05)).ceil() as u64).max(rate + 1);
        }
        if let Some(max) = best {
            let r = rig.step((max / 2).max(1), "half of max").await?;
            each(&r);
            reports.push(r);
        }
        Ok::<(), String>(())
    }
    .await;
    rig.tear_down().await;
    result.map(|()| reports)
}

/// The highest sustained rate among `reports` (excluding the half-rate check).
pub fn max_sustained(reports: &[FanoutReport]) -> Option<u64> {
    reports
        .iter()
        .filter(|r| r.sustained && r.label.starts_with("step"))
        .map(|r| r.rate_offered)
        .max()
}

fn print(r: &FanoutReport, json: bool) {
    let us = |v: u64| format!("{:.2} ms", v as f64 / 1000.0);
    report::print_table(
        &format!(
            "fanout ({}): {} at {} notifications/s for {} s, {} sessions x {} parties, via {}",
            r.label, r.target, r.rate_offered, r.duration_secs, r.sessions, r.per_session, r.via
        ),
        &[
            ("notifications", r.notifications.to_string()),
            ("published/s", format!("{:.0}", r.rate_published)),
            ("frames expected", r.frames_expected.to_string()),
            ("frames delivered", r.frames_delivered.to_string()),
            ("delivered frames/s", format!("{:.0}", r.frames_per_sec)),
            ("latency p50", us(r.latency_p50_us)),
            ("latency p99", us(r.latency_p99_us)),
            ("latency p99.9", us(r.latency_p999_us)),
            ("latency max", us(r.latency_max_us)),
            (
                "lost / dup / reordered",
                format!("{} / {} / {}", r.lost, r.duplicated, r.out_of_order),
            ),
            ("disconnected", r.disconnected.to_string()),
            ("drain after publish", format!("{:.2} s", r.drain_secs)),
            (
                "server CPU",
                opt(r.server_cpu_secs.map(|c| format!("{c:.2} s"))),
            ),
            (
                "server CPU / frame",
                opt(r.server_cpu_us_per_frame.map(|c| format!("{c:.2} us"))),
            ),
            ("server RSS", opt(r.server_rss_bytes.map(mib))),
            ("load generator CPU", format!("{:.2} s", r.loadgen_cpu_secs)),
            ("sustained", r.sustained.to_string()),
        ],
    );
    if json {
        report::print_json(r);
    }
}

pub async fn main(args: FanoutArgs) -> Result<(), String> {
    let json = args.target.json;
    let reports = run_with(&args, |r| print(r, json)).await?;
    if args.find_max {
        match max_sustained(&reports) {
            Some(max) => println!("highest sustained rate: {max} notifications/s"),
            None => println!("no step was sustained (start lower with --rate)"),
        }
    }
    if reports.iter().any(|r| !r.is_clean()) {
        return Err("frames were lost, repeated, reordered or disconnected".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_round_trips_through_a_frame() {
        let n = message_notification("s1", 7, &probe_text(123_456, 7, 3));
        let frame = format!(r#"{{"type":"notification","id":"9","data":{n}}}"#);
        assert_eq!(parse_probe(&frame), Some((123_456, 7, 3)));
        assert_eq!(parse_probe(r#"{"type":"heartbeat"}"#), None);
        let parsed = chatgate::model::Notification::parse(&n).unwrap();
        assert_eq!(parsed.session_id(), Some("s1"));
    }

    #[test]
    fn seen_tells_repeats_and_reorders() {
        let mut seen = Seen::default();
        assert!(matches!(seen.note(1), Arrival::InOrder));
        assert!(matches!(seen.note(3), Arrival::InOrder));
        assert!(matches!(seen.note(2), Arrival::Reordered));
        assert!(matches!(seen.note(3), Arrival::Repeated));
        assert!(matches!(seen.note(200), Arrival::InOrder));
    }

    #[test]
    fn participants_line_is_a_valid_notification() {
        let names = Names { run: 1 };
        let n = chatgate::model::Notification::parse(&participants_line(&names, 3, 3)).unwrap();
        let parts = n.participants().unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[2].user_id(), Some("f1-a3-2"));
    }
}
