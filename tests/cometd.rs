//! The official CometD JavaScript client (npm `cometd` with
//! `cometd-nodejs-client`, run by node: `tests/cometd/client.mjs`) against
//! the real chatgate binary's `/api/v2/notifications`: the seed's consult
//! over long-polling and over WebSocket, refused tokens, and a long-poll
//! response cut on its way delivered again exactly once (AckExtension).
//! A missing node or package fails the test: `scripts/test` installs them.

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use chatgate::auth::Role;
use serde_json::{json, Value};
use support::*;

const SID: &str = "0002EaAY01MT007C";
const CUSTOMER: &str = "007356263E140144";
const TESTNAME: &str = "5e101708f14442c7ab79814bb4f799b2";
const AGENT2: &str = "e2c90c960d3d40c79684818983ceb314";
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// Runs a scenario of `client.mjs`; its report.
async fn scenario(base: &str, name: &str, env: &[(&str, Value)]) -> Value {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(root.join("tests/cometd/client.mjs"))
        .arg(base)
        .arg(name)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v.to_string());
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node (install Node.js): {e}"));
    let out = tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
        .await
        .expect("the scenario ends in time")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{name} failed ({}): {stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{name}'s report: {e}: {stdout}"))
}

fn party(name: &str, role: Role, sub: &str, sid: Option<&str>) -> Value {
    json!({"name": name, "token": token(role, sub, sid)})
}

fn ingest(items: Vec<Value>) -> Value {
    json!({"token": token(Role::Service, "upstream", None), "items": items})
}

async fn ingest_direct(bin: &Binary, items: &[Value]) {
    let (status, reply) = post(
        &bin.url("/upstream/events"),
        &token(Role::Service, "upstream", None),
        &Value::Array(items.to_vec()).to_string(),
        "application/json",
    )
    .await;
    assert_eq!(status, 202, "{reply}");
}

async fn seed_consult_over(transport: &str) {
    let bin = Binary::start();
    let base = bin.url("");
    let pu = sample("consult-participants-updated.json");
    let parts = pu["facebooksession"]["participants"]
        .as_array()
        .unwrap()
        .clone();
    let (customer_p, agent2_p, testname_p) = (&parts[0], &parts[1], &parts[2]);
    ingest_direct(
        &bin,
        &[
            seed_before_consult(),
            seed_message(1, customer_p, "All", "hello"),
        ],
    )
    .await;
    let consult = vec![
        pu.clone(),
        sample("consult-new-messages.json"),
        seed_message(5, agent2_p, "Agents", "internal: refund is fine"),
        seed_message(6, testname_p, "All", "let me check"),
    ];
    let report = scenario(
        &base,
        "parties",
        &[
            (
                "PARTIES",
                json!([
                    party("agent", Role::Agent, TESTNAME, None),
                    party("consultant", Role::Agent, AGENT2, None),
                    party("supervisor", Role::Supervisor, "boss", None),
                    party("customer", Role::Customer, CUSTOMER, Some(SID)),
                ]),
            ),
            ("TRANSPORT", json!(transport)),
            ("INGEST", ingest(consult.clone())),
            (
                "EXPECT",
                json!({"agent": 4, "consultant": 4, "supervisor": 4, "customer": 1}),
            ),
        ],
    )
    .await;
    for (name, hs) in report["handshakes"].as_object().unwrap() {
        assert_eq!(hs["transport"], transport, "{name} negotiated {hs}");
    }
    let got = &report["messages"];
    for name in ["agent", "consultant", "supervisor"] {
        let data: Vec<&Value> = got[name]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| &m["data"])
            .collect();
        assert_eq!(
            data,
            consult.iter().collect::<Vec<_>>(),
            "{name} gets each unchanged"
        );
        assert_eq!(got[name][0]["channel"], "/v2/me/facebooksession");
    }
    let customer = got["customer"].as_array().unwrap();
    assert_eq!(customer.len(), 1, "only the line for all: {customer:?}");
    assert_eq!(customer[0]["data"]["messages"][0]["text"], "let me check");
    let text = Value::Array(customer.clone()).to_string();
    for hidden in ["Agent2", "internal", "userData", "referenceId"] {
        assert!(
            !text.contains(hidden),
            "{hidden} reached the customer: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cometd_client_over_long_polling_sees_the_seed_consult_as_allowed() {
    seed_consult_over("long-polling").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cometd_client_over_websocket_sees_the_seed_consult_as_allowed() {
    seed_consult_over("websocket").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cometd_client_with_a_bad_or_missing_token_is_refused() {
    let bin = Binary::start();
    let report = scenario(
        &bin.url(""),
        "refused",
        &[(
            "TOKENS",
            json!([null, "not-a-jwt", token(Role::Agent, TESTNAME, None)]),
        )],
    )
    .await;
    let replies = report["replies"].as_array().unwrap();
    for r in &replies[..2] {
        assert_eq!(r["successful"], false, "{r}");
        assert!(r["error"].as_str().unwrap().starts_with("401::"), "{r}");
        assert!(r["clientId"].is_null());
        assert_eq!(r["status"], "disconnected", "the client gives up: {r}");
    }
    assert_eq!(replies[2]["successful"], true, "a good token passes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_long_poll_response_is_delivered_again_exactly_once() {
    let bin = Binary::start();
    let pu = sample("consult-participants-updated.json");
    let customer_p = pu["facebooksession"]["participants"][0].clone();
    let items: Vec<Value> = std::iter::once(seed_before_consult())
        .chain((1..=3).map(|i| seed_message(i, &customer_p, "All", &format!("line {i}"))))
        .collect();
    let report = scenario(
        &bin.url(""),
        "ack",
        &[
            (
                "PARTIES",
                json!([party("agent", Role::Agent, TESTNAME, None)]),
            ),
            ("INGEST", ingest(items.clone())),
            ("EXPECT", json!({"agent": 4})),
        ],
    )
    .await;
    assert_eq!(report["cuts"], 1, "a response was cut: {report}");
    assert_eq!(report["handshakes"]["agent"]["ext"]["ack"], true);
    let got = report["messages"]["agent"].as_array().unwrap();
    let ids: Vec<&str> = got.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["1", "2", "3", "4"], "each once, in order");
    let data: Vec<&Value> = got.iter().map(|m| &m["data"]).collect();
    assert_eq!(data, items.iter().collect::<Vec<_>>());
}
