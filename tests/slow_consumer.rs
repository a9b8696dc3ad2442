//! A client that never reads, among readers that do, under a flood: it is
//! closed with 1013, nobody else notices, and the process's memory stays
//! bounded by retention, not by the flood. A test binary of its own: it
//! measures the resident memory of its process, which other tests running
//! beside it would change.

mod support;

use std::sync::Arc;
use std::time::Duration;

use chatgate::auth::Role;
use serde_json::Value;
use support::cast::*;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_closed_with_1013_and_nobody_else_notices() {
    const SESSIONS: u64 = 10;
    const PER_SESSION: u64 = 10_000;
    let server = Arc::new(
        start(|c| {
            c.retention_count = 200;
            c.retention_max = 200;
            c.log_limit = 50;
            // The slow client reads its close only once the flood is over.
            c.write_timeout_secs = 600;
        })
        .await,
    );
    let casts: Vec<Cast> = (0..SESSIONS)
        .map(|s| Cast::new(&format!("flood{s}")))
        .collect();
    // One agent in every session: the slow one and a reader share it.
    let shared_agent = participant("everywhere", "Agent", "Both", "All");
    let joins: Vec<Value> = casts
        .iter()
        .map(|c| {
            participants_updated(
                &c.sid,
                &[c.customer.clone(), shared_agent.clone(), c.agent.clone()],
            )
        })
        .collect();
    server.publish(&joins).await;
    server.wait_dispatched(SESSIONS).await;

    let agent_user = user_of("everywhere");
    let mut slow = server.connect(Role::Agent, &agent_user, None).await;
    let readers = [
        (Role::Agent, agent_user.clone(), None),
        (Role::Supervisor, "boss".to_string(), None),
        (
            Role::Customer,
            CUSTOMER.to_string(),
            Some(casts[0].sid.clone()),
        ),
    ];
    let total = SESSIONS * PER_SESSION;
    let visible0 = (1..=PER_SESSION).filter(|i| !is_agent_only(*i)).count() as u64;
    let mut tasks = Vec::new();
    for (role, sub, sid) in readers {
        let mut client = server.connect(role, &sub, sid.as_deref()).await;
        let (snapshot, expected) = match role {
            Role::Customer => (1, visible0),
            _ => (SESSIONS, total),
        };
        tasks.push(tokio::spawn(async move {
            // Counts and order: every id once, increasing.
            let mut prev: Option<u64> = None;
            let mut got = 0u64;
            for _ in 0..snapshot {
                client.next_text_within(WAIT).await.unwrap().unwrap();
            }
            while got < expected {
                let frame = client.next_text_within(WAIT).await.unwrap().unwrap();
                let Some(id) = frame_id(&frame) else { continue };
                let id: u64 = id.parse().unwrap();
                assert!(prev.is_none_or(|p| id > p), "{role:?}: {id} after {prev:?}");
                if role == Role::Customer {
                    assert_eq!(id, prev.unwrap_or(1) + 1, "customer ids without gaps");
                }
                prev = Some(id);
                got += 1;
            }
            client.expect_silence(Duration::from_millis(100)).await;
            (role, got, prev, client)
        }));
    }

    let rss_before = vm_rss_kib();
    let started = std::time::Instant::now();
    let mut peak_retained = 0;
    for round in 1..=PER_SESSION / 50 {
        let batch: Vec<Value> = ((round - 1) * 50 + 1..=round * 50)
            .flat_map(|i| casts.iter().map(move |c| c.message_sized(i, 1000)))
            .collect();
        server.publish(&batch).await;
        let stats = server.state.hub.stats();
        peak_retained = peak_retained.max(stats.retained_frames);
    }
    server.wait_dispatched(SESSIONS + total).await;
    let mut readers = Vec::new();
    for task in tasks {
        let (role, got, last, client) = task.await.unwrap();
        readers.push(client);
        let expected = match role {
            Role::Customer => visible0,
            _ => total,
        };
        assert_eq!(got, expected, "{role:?} got every frame");
        if role != Role::Customer {
            assert_eq!(last, Some(SESSIONS + total));
        }
    }
    let rss_growth_mib = vm_rss_kib().saturating_sub(rss_before) / 1024;
    eprintln!(
        "flood: {:?}, rss growth {rss_growth_mib} MiB, peak retained {peak_retained}",
        started.elapsed()
    );

    // The slow client was let go: only the three readers remain, and what
    // the hub holds is bounded by retention, not by the flood.
    let stats = server.state.hub.stats();
    assert_eq!(stats.connections, 3, "{stats:?}");
    assert!(
        peak_retained <= (SESSIONS * 200) as usize,
        "{peak_retained}"
    );
    assert!(stats.queued_bytes < 3 << 20, "{stats:?}");
    // 100,000 frames of ~2 KiB would be ~200 MiB if the slow client's
    // share were kept; retention holds ~8 MiB.
    assert!(
        rss_growth_mib < 100,
        "resident memory grew by {rss_growth_mib} MiB"
    );

    // What it finds when it finally reads: frames it had, an error frame,
    // then 1013.
    let (closed, error) = slow.until_close().await;
    assert_eq!(closed, Closed::Code(1013));
    let error = error.expect("an error frame before the close");
    assert_eq!(error["code"], 1013);
    drop(readers);
}
