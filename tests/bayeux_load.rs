//! 1,000 long-polling Bayeux clients at once against the real binary,
//! each receiving every notification exactly once, and what they cost
//! beside 1,000 `/ws` connections: resident memory per client and the
//! server's CPU time per delivered message (printed; bounded loosely so
//! that a regression by an order of magnitude fails).

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chatgate::auth::Role;
use futures::StreamExt;
use serde_json::{json, Value};
use support::*;

const CLIENTS: usize = 1000;
const NOTIFICATIONS: usize = 10;
const LIMIT: Duration = Duration::from_secs(60);

/// CPU time (user + system) the process has used, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

fn notification(i: usize) -> Value {
    let customer = participant("c1", "Customer", "Ann", "All");
    message_from(
        "load-session",
        i as u64,
        &customer,
        "All",
        &format!("line {i}"),
    )
}

async fn ingest(bin: &Binary, item: Value) {
    let (status, reply) = post(
        &bin.url("/upstream/events"),
        &token(Role::Service, "upstream", None),
        &json!([item]).to_string(),
        "application/json",
    )
    .await;
    assert_eq!(status, 202, "{reply}");
}

/// Sends the notifications one at a time, each once every client has the
/// one before; the server's CPU seconds meanwhile.
async fn deliver(bin: &Binary, pid: u32, received: &AtomicUsize) -> f64 {
    let cpu = cpu_secs(pid);
    for i in 1..=NOTIFICATIONS {
        ingest(bin, notification(i)).await;
        let deadline = tokio::time::Instant::now() + LIMIT;
        while received.load(Ordering::SeqCst) < i * CLIENTS {
            assert!(
                tokio::time::Instant::now() < deadline,
                "notification {i}: {} of {} delivered",
                received.load(Ordering::SeqCst),
                i * CLIENTS
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    cpu_secs(pid) - cpu
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_long_polling_clients_at_once_then_the_same_over_ws() {
    rlimit::increase_nofile_limit(8 * CLIENTS as u64).unwrap();
    let bin = Binary::start_with(&[("CHATGATE_MAX_CONNECTIONS_PER_ADDRESS", "0")]);
    let pid = bin.pid();
    let base = bin.url("");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .timeout(LIMIT)
        .build()
        .unwrap();
    let rss_before = bin.rss_kib();

    // Handshake and subscribe, in one batch each, a hundred at a time.
    let tok = token(Role::Supervisor, "boss", None);
    let mut ids = Vec::new();
    let mut handshakes = futures::stream::iter(0..CLIENTS)
        .map(|_| {
            let (http, base, tok) = (http.clone(), base.clone(), tok.clone());
            async move {
                let hs = json!([{"channel": "/meta/handshake", "version": "1.0",
                    "supportedConnectionTypes": ["long-polling"], "ext": {"access_token": tok}}]);
                let r: Value = http.post(format!("{base}/api/v2/notifications"))
                    .body(hs.to_string()).send().await.unwrap().json().await.unwrap();
                let id = r[0]["clientId"].as_str().expect("a clientId").to_owned();
                let sub = json!([{"channel": "/meta/subscribe", "clientId": id,
                    "subscription": "/v2/me/facebooksession"},
                    {"channel": "/meta/connect", "clientId": id, "connectionType": "long-polling"}]);
                let r: Value = http.post(format!("{base}/api/v2/notifications"))
                    .body(sub.to_string()).send().await.unwrap().json().await.unwrap();
                assert_eq!(r[0]["successful"], true, "{r}");
                id
            }
        })
        .buffer_unordered(100);
    while let Some(id) = handshakes.next().await {
        ids.push(id);
    }
    assert_eq!(ids.len(), CLIENTS);

    // Every client holds a connect; each notification comes to each once.
    let received = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
        String,
        usize,
    >::new()));
    let pollers: Vec<_> = ids
        .into_iter()
        .map(|id| {
            let (http, base, received, seen) =
                (http.clone(), base.clone(), received.clone(), seen.clone());
            tokio::spawn(async move {
                let mut got = 0;
                let deadline = tokio::time::Instant::now() + LIMIT * 2;
                while got < NOTIFICATIONS && tokio::time::Instant::now() < deadline {
                    let c = json!([{"channel": "/meta/connect", "clientId": id,
                        "connectionType": "long-polling"}]);
                    let r: Value = http
                        .post(format!("{base}/api/v2/notifications"))
                        .body(c.to_string())
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    for m in r.as_array().unwrap() {
                        if m["channel"] == "/v2/me/facebooksession" {
                            got += 1;
                            *seen
                                .lock()
                                .unwrap()
                                .entry(m["id"].as_str().unwrap().to_owned())
                                .or_default() += 1;
                            received.fetch_add(1, Ordering::SeqCst);
                        } else {
                            assert_eq!(m["successful"], true, "{m}");
                        }
                    }
                }
                got
            })
        })
        .collect();
    // All are held before the first notification.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_held = bin.rss_kib();
    let poll_cpu = deliver(&bin, pid, &received).await;
    for p in pollers {
        assert_eq!(p.await.unwrap(), NOTIFICATIONS);
    }
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), NOTIFICATIONS);
        assert!(
            seen.values().all(|&n| n == CLIENTS),
            "each to each once: {seen:?}"
        );
    }

    // The same number of /ws connections on the same process.
    let rss_ws_before = bin.rss_kib();
    let ws_received = Arc::new(AtomicUsize::new(0));
    let mut sockets = Vec::new();
    for _ in 0..CLIENTS {
        sockets.push(Client::connect(bin.addr, &tok, None).await.unwrap());
    }
    // Their snapshot: the session so far.
    let mut readers = Vec::new();
    for mut c in sockets {
        let received = ws_received.clone();
        readers.push(tokio::spawn(async move {
            let mut got = 0;
            while got < NOTIFICATIONS {
                let n = c.next_notification().await;
                if !n["id"].as_str().unwrap().contains(':')
                    && n["data"]["notificationType"] == "NewMessages"
                    && n["data"]["messages"].as_array().unwrap().len() == 1
                {
                    got += 1;
                    received.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_ws = bin.rss_kib();
    // The snapshot counted nothing (its one NewMessages holds ten lines).
    ws_received.store(0, Ordering::SeqCst);
    let ws_cpu = {
        let cpu = cpu_secs(pid);
        for i in 1..=NOTIFICATIONS {
            ingest(&bin, notification(NOTIFICATIONS + i)).await;
            let deadline = tokio::time::Instant::now() + LIMIT;
            while ws_received.load(Ordering::SeqCst) < i * CLIENTS {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "ws notification {i}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        cpu_secs(pid) - cpu
    };
    for r in readers {
        r.await.unwrap();
    }

    let delivered = (CLIENTS * NOTIFICATIONS) as f64;
    let poll_kib = (rss_held.saturating_sub(rss_before)) as f64 / CLIENTS as f64;
    let ws_kib = (rss_ws.saturating_sub(rss_ws_before)) as f64 / CLIENTS as f64;
    let poll_us = poll_cpu * 1e6 / delivered;
    let ws_us = ws_cpu * 1e6 / delivered;
    println!(
        "bayeux long-polling: {poll_kib:.1} KiB per client held, {poll_us:.1} us CPU per delivered message; \
         /ws: {ws_kib:.1} KiB per connection, {ws_us:.1} us CPU per delivered message \
         ({CLIENTS} clients, {NOTIFICATIONS} notifications each)"
    );
    assert!(poll_kib < 256.0, "{poll_kib} KiB per long-polling client");
}
