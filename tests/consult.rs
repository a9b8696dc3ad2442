//! The seed's consult replayed through the ingest, seen by every party.

mod support;

use std::time::Duration;

use chatgate::auth::Role;
use support::*;

const SID: &str = "0002EaAY01MT007C";
const CUSTOMER: &str = "007356263E140144";
const TESTNAME: &str = "5e101708f14442c7ab79814bb4f799b2";
const AGENT2: &str = "e2c90c960d3d40c79684818983ceb314";

#[tokio::test]
async fn seed_consult_is_seen_by_each_party_exactly_as_allowed() {
    let server = start(|_| {}).await;
    let pu = sample("consult-participants-updated.json");
    let parts = pu["facebooksession"]["participants"]
        .as_array()
        .unwrap()
        .clone();
    let (customer_p, agent2_p, testname_p) = (&parts[0], &parts[1], &parts[2]);

    server
        .ingest_ok(&[
            seed_before_consult(),
            seed_message(1, customer_p, "All", "hello"),
        ])
        .await;
    server.wait_dispatched(2).await;

    let mut customer = server.connect(Role::Customer, CUSTOMER, Some(SID)).await;
    let mut agent = server.connect(Role::Agent, TESTNAME, None).await;
    let mut consultant = server.connect(Role::Agent, AGENT2, None).await;
    let mut supervisor = server.connect(Role::Supervisor, "boss", None).await;
    let mut stranger = server.connect(Role::Agent, "someone-else", None).await;

    // Snapshots: the customer view of the state and log; the agent the full one.
    let snap = customer.notifications(2).await;
    assert_eq!(
        snap[0]["data"]["facebooksession"]["participants"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(snap[1]["data"]["messages"][0]["index"], 1);
    assert_eq!(snap[1]["id"], "2");
    let snap = agent.notifications(2).await;
    assert_eq!(snap[1]["id"], "2");
    assert!(snap[0]["data"]["facebooksession"]["userData"].is_object());
    supervisor.notifications(2).await;

    // The consult: the seed's two notifications, then agent-only chatter.
    server
        .ingest_ok(&[
            pu.clone(),
            sample("consult-new-messages.json"),
            seed_message(5, agent2_p, "Agents", "internal: refund is fine"),
            seed_message(6, testname_p, "All", "let me check"),
        ])
        .await;
    server.wait_dispatched(6).await;

    let got = agent.notifications(4).await;
    assert_eq!(
        got[0]["data"], pu,
        "the agent gets the notification unchanged"
    );
    assert_eq!(got[0]["channel"], "/v2/me/facebooksession");
    let got = consultant.notifications(4).await;
    assert_eq!(got[0]["data"]["notificationType"], "ParticipantsUpdated");
    assert_eq!(
        got[2]["data"]["messages"][0]["text"],
        "internal: refund is fine"
    );
    supervisor.notifications(4).await;
    stranger.expect_silence(Duration::from_millis(300)).await;

    let got = customer.next_notification().await;
    assert_eq!(got["id"], "3");
    let text = got.to_string();
    for secret in [
        "Agent2",
        AGENT2,
        "007356263E410147",
        "internal",
        "userData",
        "referenceId",
    ] {
        assert!(
            !text.contains(secret),
            "customer frame leaks {secret}: {text}"
        );
    }
    assert_eq!(
        got["data"]["messages"][0]["index"], 2,
        "indices run without gaps"
    );
    assert_eq!(got["data"]["messages"][0]["text"], "let me check");
    customer.expect_silence(Duration::from_millis(300)).await;
    server.stop().await;
}
