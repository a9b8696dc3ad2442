//! `proto-samples/` against what the engine really emits: a session that
//! goes through every kind of notification the engine has, each compared
//! in shape (field names and nesting, not values) with its sample; every
//! kind has a sample, every sample is emitted, and the README there names
//! each file.
//!
//! `CHATGATE_WRITE_SAMPLES=1 cargo test --test engine_samples` writes the
//! samples that are missing from a run (never the seed's two).

mod engine_support;
mod support;

use std::collections::BTreeSet;

use chatgate::auth::Role;
use engine_support::*;
use serde_json::{json, Value};
use support::*;

const AGENT4: &str = "8a2e6c4f1d3b4e9a9c5f7b2d1e6a4c80";

/// Kind of notification -> its sample. A kind is the notificationType,
/// and for NewMessages the types of its messages with their sender's type.
const SAMPLES: [(&str, &str); 17] = [
    ("ParticipantsUpdated", "consult-participants-updated.json"),
    (
        "NewMessages:ParticipantJoined/Agent",
        "consult-new-messages.json",
    ),
    ("StatusChange", "status-change-completed.json"),
    ("PropertiesUpdated", "properties-updated.json"),
    (
        "NewMessages:ParticipantJoined/Customer+Text/Customer+ParticipantJoined/Agent",
        "session-opened-new-messages.json",
    ),
    ("NewMessages:Text/Agent", "text-from-agent.json"),
    ("NewMessages:Text/Customer", "text-from-customer.json"),
    ("NewMessages:PushUrl/Agent", "push-url.json"),
    (
        "NewMessages:TypingStarted/Agent",
        "typing-started-agent.json",
    ),
    (
        "NewMessages:TypingStopped/Agent",
        "typing-stopped-agent.json",
    ),
    (
        "NewMessages:TypingStarted/Customer",
        "typing-started-customer.json",
    ),
    (
        "NewMessages:TypingStopped/Customer",
        "typing-stopped-customer.json",
    ),
    (
        "NewMessages:ParticipantLeft/Agent",
        "participant-left-agent.json",
    ),
    (
        "NewMessages:ParticipantLeft/Customer",
        "participant-left-customer.json",
    ),
    (
        "NewMessages:ParticipantJoined/Agent+ParticipantLeft/Agent",
        "transfer-new-messages.json",
    ),
    ("Error", "error.json"),
    (
        "NewMessages:Notice/Agent+ParticipantLeft/Agent",
        "remove-participant-new-messages.json",
    ),
];

const SEED: [&str; 2] = [
    "consult-participants-updated.json",
    "consult-new-messages.json",
];

fn kind_of(n: &Value) -> String {
    match n["messages"].as_array() {
        Some(ms) => {
            let parts: Vec<String> = ms
                .iter()
                .map(|m| {
                    format!(
                        "{}/{}",
                        m["type"].as_str().unwrap_or("?"),
                        m["from"]["type"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            format!("NewMessages:{}", parts.join("+"))
        }
        None => n["notificationType"].as_str().unwrap_or("?").to_owned(),
    }
}

fn samples_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("proto-samples")
}

/// Every notification of a session that uses every kind, as emitted.
async fn emitted() -> Vec<Value> {
    let server = start(|c| c.public_url = Some("http://127.0.0.1:8080".into())).await;
    let mut supervisor = server.connect(Role::Supervisor, "boss", None).await;
    let chat = open_chat(
        &server,
        "VitaliyOnv",
        "New Test a consult operation!!!",
        Some("SocialMediaAgentGroup"),
    )
    .await;
    let sid = chat.sid.as_str();
    let agent_ops = [
        (
            TESTNAME,
            json!({"operationName": "SendMessage", "text": "Hello, how can I help?"}),
        ),
        (
            TESTNAME,
            json!({"operationName": "SendUrl", "url": "https://shop.example.com/order/42"}),
        ),
        (
            TESTNAME,
            json!({"operationName": "SendStartTypingNotification"}),
        ),
        (
            TESTNAME,
            json!({"operationName": "SendStopTypingNotification"}),
        ),
        (
            TESTNAME,
            json!({"operationName": "Consult", "targetPath": format!("/users/{AGENT2}")}),
        ),
        (
            AGENT2,
            json!({"operationName": "SendToAgents", "text": "refund is fine"}),
        ),
        (AGENT2, json!({"operationName": "Leave"})),
        (
            TESTNAME,
            json!({"operationName": "Consult", "targetPath": format!("/users/{AGENT4}")}),
        ),
        (
            TESTNAME,
            json!({"operationName": "RemoveParticipantFromConference", "targetPath": format!("/users/{AGENT4}")}),
        ),
        (
            TESTNAME,
            json!({"operationName": "AttachUserData", "userData": {"OrderId": "42"}}),
        ),
        (
            TESTNAME,
            json!({"operationName": "Transfer", "targetPath": format!("/users/{AGENT3}")}),
        ),
    ];
    for (user, body) in agent_ops {
        op_ok(&server, user, sid, body).await;
    }
    // A refusal: an Error notification.
    let (status, _) = op(&server, AGENT3, sid, json!({"operationName": "Accept"})).await;
    assert_eq!(status, 400);
    for name in ["SendStartTypingNotification", "SendStopTypingNotification"] {
        customer_op_ok(&server, &chat, json!({"operationName": name})).await;
    }
    customer_op_ok(
        &server,
        &chat,
        json!({"operationName": "SendMessage", "text": "thanks"}),
    )
    .await;
    customer_op_ok(&server, &chat, json!({"operationName": "Leave"})).await;
    op_ok(&server, AGENT3, sid, json!({"operationName": "Complete"})).await;

    let mut all = Vec::new();
    while let Ok(Some(frame)) = supervisor.next_json_within(QUIET).await {
        if frame["type"] == "notification" {
            all.push(frame["data"].clone());
        }
    }
    server.stop().await;
    all
}

#[tokio::test]
async fn every_notification_the_engine_emits_has_the_shape_of_its_sample() {
    let all = emitted().await;
    assert!(
        all.len() >= 20,
        "the scenario ran: {} notifications",
        all.len()
    );
    let write = std::env::var_os("CHATGATE_WRITE_SAMPLES").is_some();
    let mut used = BTreeSet::new();
    for n in &all {
        let kind = kind_of(n);
        let Some((_, file)) = SAMPLES.iter().find(|(k, _)| *k == kind) else {
            panic!("the engine emits {kind} but proto-samples has no sample of it: {n}");
        };
        let path = samples_dir().join(file);
        if write && !path.exists() && !SEED.contains(file) {
            std::fs::write(&path, serde_json::to_string_pretty(n).unwrap() + "\n").unwrap();
        }
        assert_eq!(
            shape_diff(n, &sample(file)),
            None,
            "{kind} differs from {file}: {n}"
        );
        used.insert(*file);
    }
    let all_files: BTreeSet<&str> = SAMPLES.iter().map(|(_, f)| *f).collect();
    assert_eq!(
        used, all_files,
        "every sample is something the engine emits"
    );

    let on_disk: BTreeSet<String> = std::fs::read_dir(samples_dir())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|f| f.ends_with(".json"))
        .collect();
    let listed: BTreeSet<String> = all_files.iter().map(|f| f.to_string()).collect();
    assert_eq!(on_disk, listed, "proto-samples holds exactly these samples");
    let readme = std::fs::read_to_string(samples_dir().join("README.md")).unwrap();
    for f in &all_files {
        assert!(
            readme.contains(f),
            "proto-samples/README.md does not describe {f}"
        );
    }
}

#[tokio::test]
async fn a_consult_emits_exactly_the_seed_notifications_in_shape() {
    let server = start(|_| {}).await;
    let mut agent2 = server.connect(Role::Agent, AGENT2, None).await;
    let chat = open_chat(
        &server,
        "VitaliyOnv",
        "New Test a consult operation!!!",
        Some(QUEUE),
    )
    .await;
    let uri = server.url(&format!("/api/v2/users/{AGENT2}"));
    let r = op_ok(
        &server,
        TESTNAME,
        &chat.sid,
        json!({"operationName": "Consult", "targetUri": uri}),
    )
    .await;
    let got = datas(&mut agent2, 2).await;
    let seed = [
        sample("consult-participants-updated.json"),
        sample("consult-new-messages.json"),
    ];
    for (n, s) in got.iter().zip(&seed) {
        assert_eq!(shape_diff(n, s), None, "{n}");
        assert_eq!(n["referenceId"], r);
    }
    // The shape check is strict enough to fail on a missing or extra field.
    let mut broken = got[0].clone();
    broken["facebooksession"]["participants"][2]
        .as_object_mut()
        .unwrap()
        .remove("path");
    assert!(shape_diff(&broken, &seed[0]).is_some());
    let mut extra = got[1].clone();
    extra["messages"][0]["secret"] = json!(1);
    assert!(shape_diff(&extra, &seed[1]).is_some());
    agent2.expect_silence(QUIET).await;
    server.stop().await;
}
