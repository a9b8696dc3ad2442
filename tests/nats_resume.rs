//! Resume across gateways while events keep coming: an agent and a
//! customer move from gateway A to gateway B with `since`, then B is shut
//! down under them and they resume on A; each gets every notification
//! exactly once, in order.

mod support;

use chatgate::auth::Role;
use chatgate::config::RoleSetting;
use serde_json::Value;
use support::nats::*;

const SID: &str = "resume-session";
const AGENT: &str = "agent-r";
const MESSAGES: u64 = 400;

fn visible(i: u64) -> bool {
    !i.is_multiple_of(3)
}

#[tokio::test]
async fn clients_resume_across_gateways_during_continuous_publishing() {
    let nats = NatsServer::start().await;
    let engine = node(&nats, RoleSetting::Engine, |_| {}).await;
    let a = gateway(&nats).await;
    let b = gateway(&nats).await;
    engine.ingest_ok(&[session_with(SID, AGENT)]).await;
    a.wait_dispatched(1).await;

    let mut agent = Follower::new(Role::Agent, AGENT, None);
    let mut customer = Follower::new(Role::Customer, &format!("c-{SID}"), Some(SID));
    agent.attach(&a).await;
    customer.attach(&a).await;

    let base = engine.url("");
    let publisher = tokio::spawn(async move {
        let http = reqwest::Client::new();
        for batch in 0..MESSAGES / 4 {
            let items: Vec<Value> = (batch * 4 + 1..=batch * 4 + 4)
                .map(|i| {
                    let vis = if visible(i) { "All" } else { "Agents" };
                    text_message(SID, AGENT, i, vis, &format!("m{i}"))
                })
                .collect();
            ingest_retrying(
                &http,
                base.trim_end_matches('/'),
                &items,
                &format!("b{batch}"),
            )
            .await;
            tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        }
    });

    let agent_total = 1 + MESSAGES as usize;
    let customer_total = 1 + (1..=MESSAGES).filter(|i| visible(*i)).count();

    // A -> B by choice.
    agent.read_until(100).await;
    agent.detach().await;
    agent.attach(&b).await;
    customer.read_until(60).await;
    customer.detach().await;
    customer.attach(&b).await;

    // B goes away under them: they resume on A.
    agent.read_until(250).await;
    b.stop().await;
    agent.read_until_closed().await;
    customer.read_until_closed().await;
    agent.attach(&a).await;
    customer.attach(&a).await;
    agent.read_until(agent_total).await;
    customer.read_until(customer_total).await;
    publisher.await.unwrap();

    let expected: Vec<String> = (1..=MESSAGES).map(|i| format!("m{i}")).collect();
    assert_eq!(
        agent.texts(),
        expected,
        "the agent lost or repeated something"
    );
    let ids: Vec<u64> = agent
        .frames
        .iter()
        .map(|f| f["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "agent ids increase: {ids:?}"
    );

    let expected: Vec<String> = (1..=MESSAGES)
        .filter(|i| visible(*i))
        .map(|i| format!("m{i}"))
        .collect();
    assert_eq!(
        customer.texts(),
        expected,
        "the customer lost or repeated something"
    );
    let ids: Vec<String> = customer
        .frames
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = (1..=customer_total).map(|i| i.to_string()).collect();
    assert_eq!(ids, want, "customer ids run 1, 2, 3, ...");
    let indices: Vec<u64> = customer.frames[1..]
        .iter()
        .map(|f| f["data"]["messages"][0]["index"].as_u64().unwrap())
        .collect();
    let want: Vec<u64> = (1..customer_total as u64).collect();
    assert_eq!(indices, want, "customer indices run without gaps");
    assert_eq!((agent.resumes, customer.resumes), (2, 2));

    // No agent-only message reached the customer, on either gateway.
    assert!(customer
        .frames
        .iter()
        .all(|f| !f.to_string().contains("\"Agents\"")));
    engine.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn clients_of_a_killed_gateway_resume_on_another() {
    let nats = NatsServer::start().await;
    let engine = node(&nats, RoleSetting::Engine, |_| {}).await;
    let mut doomed = GatewayProcess::start(&nats).await;
    let survivor = gateway(&nats).await;
    engine.ingest_ok(&[session_with(SID, AGENT)]).await;
    survivor.wait_dispatched(1).await;

    let mut agent = Follower::new(Role::Agent, AGENT, None);
    let mut customer = Follower::new(Role::Customer, &format!("c-{SID}"), Some(SID));
    agent.attach_to(doomed.addr).await;
    customer.attach_to(doomed.addr).await;
    let total = 200u64;
    let base = engine.url("");
    let publisher = tokio::spawn(async move {
        let http = reqwest::Client::new();
        for i in 1..=total {
            let vis = if visible(i) { "All" } else { "Agents" };
            let item = text_message(SID, AGENT, i, vis, &format!("m{i}"));
            ingest_retrying(&http, base.trim_end_matches('/'), &[item], &format!("k{i}")).await;
            tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        }
    });

    agent.read_until(50).await;
    doomed.kill();
    agent.read_until_closed().await;
    customer.read_until_closed().await;
    agent.attach(&survivor).await;
    customer.attach(&survivor).await;
    let customer_total = 1 + (1..=total).filter(|i| visible(*i)).count();
    agent.read_until(1 + total as usize).await;
    customer.read_until(customer_total).await;
    publisher.await.unwrap();

    let expected: Vec<String> = (1..=total).map(|i| format!("m{i}")).collect();
    assert_eq!(
        agent.texts(),
        expected,
        "the agent lost or repeated something"
    );
    let expected: Vec<String> = (1..=total)
        .filter(|i| visible(*i))
        .map(|i| format!("m{i}"))
        .collect();
    assert_eq!(
        customer.texts(),
        expected,
        "the customer lost or repeated something"
    );
    let ids: Vec<String> = customer
        .frames
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = (1..=customer_total).map(|i| i.to_string()).collect();
    assert_eq!(ids, want);
    agent
        .expect_silence(std::time::Duration::from_millis(300))
        .await;
    engine.stop().await;
    survivor.stop().await;
}
