//! A failover storm: a gateway stops with 1,000 clients on it, and all of
//! them reconnect at once to the other one, which was bound with the
//! listen backlog setting (`CHATGATE_LISTEN_BACKLOG`, default 4,096): every
//! one is welcomed within a second, none waits for a SYN retransmission.

mod support;

use std::sync::Arc;
use std::time::Duration;

use chatgate::auth::Role;
use chatgate::config::RoleSetting;
use support::nats::*;
use support::{token, Client, TestServer, WAIT};
use tokio::sync::Barrier;
use tokio::time::Instant;

const CLIENTS: usize = 1_000;
/// The acceptance bound.
const ALL_WELCOMED: Duration = Duration::from_secs(1);

/// Gateway settings for the storm: every client comes from 127.0.0.1, so
/// the per-address limit must cover them all.
async fn storm_gateway(nats: &NatsServer) -> TestServer {
    node(nats, RoleSetting::Gateway, |c| {
        c.max_connections_per_address = 2 * CLIENTS;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_moving_to_another_gateway_are_welcomed_within_a_second() {
    // Each client holds a socket, and so does each gateway's end of it.
    rlimit::increase_nofile_limit(8 * CLIENTS as u64).unwrap();
    let nats = NatsServer::start().await;
    let a = storm_gateway(&nats).await;
    let b = storm_gateway(&nats).await;
    assert_eq!(b.state.config.listen_backlog, 4096, "the default");
    assert_eq!(
        listen_backlog(b.addr.port()),
        b.state.config.listen_backlog.min(somaxconn()),
        "gateway B listens with the backlog setting"
    );

    // 1,000 agents on gateway A.
    let on_a: Vec<Client> = futures::future::join_all((0..CLIENTS).map(|i| {
        let token = token(Role::Agent, &format!("agent-storm-{i}"), None);
        async move { Client::connect(a.addr, &token, None).await.expect("on A") }
    }))
    .await;
    assert_eq!(on_a.len(), CLIENTS);

    // A goes away; each client sees its stream end, then all of them
    // move to B at once.
    let go = Arc::new(Barrier::new(CLIENTS + 1));
    let addr_b = b.addr;
    let movers: Vec<_> = on_a
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| {
            let go = go.clone();
            let token = token(Role::Agent, &format!("agent-storm-{i}"), None);
            tokio::spawn(async move {
                while client.next_json().await.is_some() {}
                go.wait().await;
                let started = Instant::now();
                let moved = Client::connect(addr_b, &token, None).await.expect("on B");
                assert_eq!(moved.welcome["type"], "welcome");
                (started.elapsed(), moved)
            })
        })
        .collect();
    a.stop().await;
    tokio::time::timeout(WAIT, go.wait())
        .await
        .expect("every client saw gateway A close");
    let storm = Instant::now();
    let mut welcomes = Vec::with_capacity(CLIENTS);
    let mut kept = Vec::with_capacity(CLIENTS);
    for mover in movers {
        let (took, client) = tokio::time::timeout(WAIT, mover)
            .await
            .expect("welcomed in time")
            .unwrap();
        welcomes.push(took);
        kept.push(client);
    }
    let all = storm.elapsed();
    welcomes.sort();
    println!(
        "{CLIENTS} clients moved to gateway B: all welcomed within {} ms of the storm (p50 {} ms, p99 {} ms, slowest {} ms)",
        all.as_millis(),
        welcomes[CLIENTS / 2].as_millis(),
        welcomes[CLIENTS * 99 / 100].as_millis(),
        welcomes[CLIENTS - 1].as_millis()
    );
    assert_eq!(b.state.hub.connection_count(), CLIENTS);
    assert!(
        all < ALL_WELCOMED,
        "the last of {CLIENTS} welcomes took {all:?}"
    );
    drop(kept);
    b.stop().await;
}

/// The backlog the kernel reports for the listening socket on `port`
/// (`ss`: a listener's Send-Q is its backlog).
fn listen_backlog(port: u16) -> u32 {
    let out = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2) must be installed (scripts/test installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no listener on {port}"));
    // State Recv-Q Send-Q Local Peer
    line.split_whitespace()
        .nth(2)
        .and_then(|q| q.parse().ok())
        .unwrap_or_else(|| panic!("unexpected ss output: {line}"))
}

fn somaxconn() -> u32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4096)
}
