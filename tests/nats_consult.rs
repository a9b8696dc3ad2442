//! The seed's consult through NATS JetStream: published on an engine node,
//! the customer on one gateway, the agents on another; each party sees
//! exactly what it may, under the same ids on every gateway.

mod support;

use std::time::Duration;

use chatgate::auth::Role;
use chatgate::config::RoleSetting;
use support::nats::{gateway, node, status, wait_status, NatsServer};
use support::*;

const SID: &str = "0002EaAY01MT007C";
const CUSTOMER: &str = "007356263E140144";
const TESTNAME: &str = "5e101708f14442c7ab79814bb4f799b2";
const AGENT2: &str = "e2c90c960d3d40c79684818983ceb314";

#[tokio::test]
async fn seed_consult_across_gateways() {
    let nats = NatsServer::start().await;
    let engine = node(&nats, RoleSetting::Engine, |_| {}).await;
    let a = gateway(&nats).await;
    let b = gateway(&nats).await;
    let pu = sample("consult-participants-updated.json");
    let parts = pu["facebooksession"]["participants"]
        .as_array()
        .unwrap()
        .clone();
    let (customer_p, agent2_p, testname_p) = (&parts[0], &parts[1], &parts[2]);

    engine
        .ingest_ok(&[
            seed_before_consult(),
            seed_message(1, customer_p, "All", "hello"),
        ])
        .await;
    a.wait_dispatched(2).await;
    b.wait_dispatched(2).await;

    let mut customer = a.connect(Role::Customer, CUSTOMER, Some(SID)).await;
    let mut agent = b.connect(Role::Agent, TESTNAME, None).await;
    let mut consultant = b.connect(Role::Agent, AGENT2, None).await;
    let mut supervisor = a.connect(Role::Supervisor, "boss", None).await;

    let snap = customer.notifications(2).await;
    assert_eq!(snap[1]["data"]["messages"][0]["index"], 1);
    assert_eq!(snap[1]["id"], "2");
    let snap = agent.notifications(2).await;
    assert_eq!(snap[1]["id"], "2");
    supervisor.notifications(2).await;

    engine
        .ingest_ok(&[
            pu.clone(),
            sample("consult-new-messages.json"),
            seed_message(5, agent2_p, "Agents", "internal: refund is fine"),
            seed_message(6, testname_p, "All", "let me check"),
        ])
        .await;

    let got = agent.notifications(4).await;
    assert_eq!(got[0]["data"], pu, "the agent gets it unchanged");
    let ids: Vec<&str> = got.iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["3", "4", "5", "6"], "agent ids are stream sequences");
    let got = consultant.notifications(4).await;
    assert_eq!(got[0]["data"]["notificationType"], "ParticipantsUpdated");
    assert_eq!(
        got[2]["data"]["messages"][0]["text"],
        "internal: refund is fine"
    );
    let sup = supervisor.notifications(4).await;
    let sup_ids: Vec<&str> = sup.iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!(sup_ids, ids, "the same ids on the other gateway");

    let got = customer.next_notification().await;
    assert_eq!(got["id"], "3");
    let text = got.to_string();
    for secret in ["Agent2", AGENT2, "internal", "userData", "referenceId"] {
        assert!(
            !text.contains(secret),
            "customer frame leaks {secret}: {text}"
        );
    }
    assert_eq!(got["data"]["messages"][0]["index"], 2);
    assert_eq!(got["data"]["messages"][0]["text"], "let me check");
    customer.expect_silence(Duration::from_millis(300)).await;

    // Both gateways computed the same session state from the same history.
    a.wait_dispatched(6).await;
    b.wait_dispatched(6).await;
    assert_eq!(
        a.state.hub.session_state(SID),
        b.state.hub.session_state(SID)
    );

    engine.stop().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn roles_split_the_routes() {
    let nats = NatsServer::start().await;
    let engine = node(&nats, RoleSetting::Engine, |_| {}).await;
    let gw = gateway(&nats).await;
    wait_status(engine.url("/readyz"), 200).await;
    wait_status(gw.url("/readyz"), 200).await;
    assert_eq!(
        status(engine.url("/ws")).await,
        404,
        "an engine serves no WebSocket clients"
    );
    assert_ne!(status(gw.url("/ws")).await, 404, "a gateway does");

    // Without a bus, only role all makes sense.
    let mut config = chatgate::config::Config::for_tests();
    config.role = RoleSetting::Gateway;
    let err = config.validate().unwrap_err();
    assert!(err.to_string().contains("CHATGATE_BUS"), "{err}");
    engine.stop().await;
    gw.stop().await;
}
