//! The load generator against a real chatgate and a real chatgate-bare:
//! a small, bounded fan-out that must deliver every frame exactly once,
//! in order (counts, never times). chatgate runs in this process, through
//! its library (the fixtures of the product's own tests); chatgate-bare is
//! this package's binary, in a process of its own.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chatgate_tools::fanout::{self, FanoutArgs, FanoutReport, Via};
use chatgate_tools::{Target, TargetArgs};
use support::*;

const SESSIONS: usize = 20;
const PARTIES: u64 = 3;
const RATE: u64 = 200;
const SECS: u64 = 1;

fn args(addr: std::net::SocketAddr, target: Target, pid: u32) -> FanoutArgs {
    FanoutArgs {
        target: TargetArgs {
            addr,
            secret: Some(SECRET.into()),
            server_pid: Some(pid),
            target,
            json: false,
        },
        sessions: SESSIONS,
        per_session: PARTIES,
        rate: RATE,
        duration: SECS,
        via: Via::Ingest,
        find_max: false,
        step: 1.5,
        max_steps: 1,
        concurrency: 16,
        tick_ms: 5,
        nats_url: String::new(),
        nats_prefix: "chatgate".into(),
    }
}

fn assert_every_frame_once_in_order(r: &FanoutReport) {
    assert_eq!(r.connections, SESSIONS * PARTIES as usize);
    assert_eq!(r.notifications, RATE * SECS, "{r:?}");
    assert_eq!(r.frames_expected, RATE * SECS * PARTIES);
    assert_eq!(r.frames_delivered, r.frames_expected, "{r:?}");
    assert_eq!(
        (r.lost, r.duplicated, r.out_of_order, r.disconnected),
        (0, 0, 0, 0),
        "{r:?}"
    );
    assert!(r.server_cpu_secs.is_some() && r.server_rss_bytes.is_some());
}

#[tokio::test]
async fn fanout_through_chatgate_delivers_every_frame_once() {
    let server = start(|_| {}).await;
    let reports = fanout::run(&args(server.addr, Target::Chatgate, std::process::id()))
        .await
        .unwrap();
    assert_eq!(reports.len(), 1);
    assert_every_frame_once_in_order(&reports[0]);
    // One serialization per notification with a customer view (all of
    // them here: the sessions' ParticipantsUpdated and the messages), none
    // for agents (their frames are the notifications' bytes as received),
    // however many agents receive it.
    let notifications = SESSIONS as u64 + RATE * SECS;
    assert_eq!(server.state.metrics.serializations.get(), notifications);
    server.stop().await;
}

#[tokio::test]
async fn fanout_through_the_engine_delivers_every_frame_once() {
    let server = start(|c| {
        c.customer_session_rate = 0;
        c.max_connections_per_address = 0;
    })
    .await;
    let mut a = args(server.addr, Target::Chatgate, std::process::id());
    a.via = Via::Engine;
    let reports = fanout::run(&a).await.unwrap();
    let r = &reports[0];
    // Each session's customer and the directory agent it was routed to.
    assert_eq!(r.per_session, 2);
    assert_eq!(r.notifications, RATE * SECS, "{r:?}");
    assert_eq!(r.frames_expected, RATE * SECS * 2);
    assert_eq!(r.frames_delivered, r.frames_expected, "{r:?}");
    assert_eq!(
        (r.lost, r.duplicated, r.out_of_order, r.disconnected),
        (0, 0, 0, 0),
        "{r:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn fanout_through_nats_delivers_every_frame_once() {
    let nats = support::nats::NatsServer::start().await;
    let server = support::nats::gateway(&nats).await;
    let mut a = args(server.addr, Target::Chatgate, std::process::id());
    a.via = Via::Nats;
    a.nats_url = nats.url();
    let reports = fanout::run(&a).await.unwrap();
    assert_every_frame_once_in_order(&reports[0]);
    server.stop().await;
}

/// The bare reference server, stopped (killed by its PID) when dropped.
struct Bare(Child);

impl Drop for Bare {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn fanout_through_the_bare_server_delivers_every_frame_once() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let bare = Bare(
        Command::new(env!("CARGO_BIN_EXE_chatgate-bare"))
            .args(["--listen", &addr.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bare server did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reports = fanout::run(&args(addr, Target::Bare, bare.0.id()))
        .await
        .unwrap();
    assert_every_frame_once_in_order(&reports[0]);
}
