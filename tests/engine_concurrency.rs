//! Concurrent operations on one session over real HTTP: every one is
//! applied (no lost update), every referenceId is distinct, and the
//! notifications reach the WebSocket in the order they were applied.

mod engine_support;
mod support;

use std::collections::BTreeSet;

use chatgate::auth::Role;
use engine_support::*;
use serde_json::json;
use support::*;

/// Requests sent at once, half by the agent, half by the customer.
const N: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_operations_on_one_session_are_all_applied_in_order() {
    let server = start(|_| {}).await;
    let chat = open_chat(&server, "Vitaliy", "hello", None).await;
    server.wait_dispatched(2).await;
    let mut supervisor = server.connect(Role::Supervisor, "boss", None).await;
    supervisor.notifications(2).await; // the snapshot

    let sid = chat.sid.clone();
    let mut tasks = Vec::new();
    for i in 0..N {
        let url = server.url("");
        let (sid, token) = (sid.clone(), chat.token.clone());
        tasks.push(tokio::spawn(async move {
            let (path, token, body) = if i % 2 == 0 {
                (
                    format!("/api/v2/me/facebooksessions/{sid}"),
                    agent(TESTNAME),
                    json!({"operationName": "SendMessage", "text": format!("agent {i}")}),
                )
            } else {
                (
                    format!("/api/v2/customer/sessions/{sid}"),
                    token,
                    json!({"operationName": "SendMessage", "text": format!("customer {i}")}),
                )
            };
            send(
                reqwest::Method::POST,
                &format!("{url}{path}"),
                Some(&token),
                Some(&body),
            )
            .await
        }));
    }
    let mut references = BTreeSet::new();
    for t in tasks {
        let (status, reply) = t.await.unwrap();
        assert_eq!(status, 200, "{reply}");
        if let Some(r) = reply.get("referenceId") {
            assert!(
                references.insert(r.as_u64().unwrap()),
                "referenceId {r} twice"
            );
        }
    }
    assert_eq!(references.len(), N / 2);

    let got = datas(&mut supervisor, N).await;
    let indices: Vec<u64> = got
        .iter()
        .map(|n| n["messages"][0]["index"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (4..4 + N as u64).collect();
    assert_eq!(
        indices, expected,
        "applied one at a time, announced in order"
    );
    let texts: BTreeSet<String> = got
        .iter()
        .map(|n| n["messages"][0]["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts.len(), N, "no lost update");
    let announced: BTreeSet<u64> = got
        .iter()
        .filter_map(|n| n["referenceId"].as_u64())
        .collect();
    assert_eq!(
        announced, references,
        "each notification carries its request's id"
    );
    supervisor.expect_silence(QUIET).await;

    let (_, session) = get(
        &server,
        &format!("/api/v2/me/facebooksessions/{sid}"),
        &agent(TESTNAME),
    )
    .await;
    let log = session["messages"].as_array().unwrap();
    assert_eq!(log.len(), 3 + N);
    assert_eq!(log.last().unwrap()["index"], 3 + N as u64);
    server.stop().await;
}
