//! The seed's story told end to end by the engine, over real HTTP and
//! WebSocket: a customer starts a chat, TestName answers, consults Agent2
//! by `targetUri`, Agent2 talks and types to agents only, TestName
//! transfers to Agent2, Agent2 completes. The customer sees exactly its
//! part and nothing else; each agent sees everything while in the session.

mod engine_support;
mod support;

use chatgate::auth::Role;
use engine_support::*;
use serde_json::{json, Value};
use support::*;

#[tokio::test]
async fn seed_consult_transfer_and_complete_seen_by_everyone_as_allowed() {
    let server = start(|_| {}).await;
    let mut testname = server.connect(Role::Agent, TESTNAME, None).await;
    let mut agent2 = server.connect(Role::Agent, AGENT2, None).await;
    let mut supervisor = server.connect(Role::Supervisor, "boss", None).await;

    // The customer starts a chat through the seed's queue: TestName gets it.
    let chat = open_chat(
        &server,
        "VitaliyOnv",
        "New Test a consult operation!!!",
        Some("SocialMediaAgentGroup"),
    )
    .await;
    let opened = datas(&mut testname, 2).await;
    assert_eq!(describe(&opened[0]), "ParticipantsUpdated(Chatting)");
    assert_eq!(
        describe(&opened[1]),
        "NewMessages[ParticipantJoined/All,Text/All,ParticipantJoined/All]"
    );
    let session = &opened[0]["facebooksession"];
    assert_eq!(session["id"], chat.sid.as_str());
    assert_eq!(session["participants"][1]["nickname"], "TestName");
    assert_eq!(
        session["participants"][1]["path"],
        format!("/users/{TESTNAME}")
    );
    assert_eq!(
        session["suggestedQueueUris"][0],
        server.url(&format!("/api/v2/queues/{QUEUE}"))
    );
    assert!(opened[0].get("referenceId").is_none(), "no agent request");
    agent2.expect_silence(QUIET).await;

    let mut customer = connect_customer(&server, &chat, 2).await;
    let snapshot = datas(&mut customer, 2).await;
    assert_eq!(
        snapshot[0]["facebooksession"]["participants"],
        json!([
            {"participantId": chat.participant, "nickname": "VitaliyOnv", "type": "Customer"},
            {"participantId": session["participants"][1]["participantId"], "nickname": "TestName", "type": "Agent"}
        ])
    );
    assert_eq!(message_types(&snapshot[1]).len(), 3);

    // TestName answers.
    let r1 = op_ok(
        &server,
        TESTNAME,
        &chat.sid,
        json!({"operationName": "SendMessage", "text": "Hello, how can I help?"}),
    )
    .await;
    let n = datas(&mut testname, 1).await.remove(0);
    assert_eq!(n["referenceId"], r1);
    assert_eq!(n["messages"][0]["index"], 4);
    let mut frames = customer.notifications(1).await;

    // Consult Agent2 by its URI, as the directory lists it.
    let (_, users) = get(&server, "/api/v2/users", &agent(TESTNAME)).await;
    let agent2_uri = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["nickname"] == "Agent2")
        .unwrap()["uri"]
        .clone();
    let r2 = op_ok(
        &server,
        TESTNAME,
        &chat.sid,
        json!({"operationName": "Consult", "targetUri": agent2_uri}),
    )
    .await;
    let consult = datas(&mut testname, 2).await;
    assert_eq!(
        consult,
        datas(&mut agent2, 2).await,
        "both agents see the same"
    );
    assert_eq!(
        shape_diff(&consult[0], &sample("consult-participants-updated.json")),
        None
    );
    assert_eq!(
        shape_diff(&consult[1], &sample("consult-new-messages.json")),
        None
    );
    assert_eq!(
        (&consult[0]["referenceId"], &consult[1]["referenceId"]),
        (&json!(r2), &json!(r2))
    );
    let consultant = &consult[1]["messages"][0]["from"];
    assert_eq!(
        (&consultant["nickname"], &consultant["visibility"]),
        (&json!("Agent2"), &json!("Agents"))
    );
    assert_eq!(consult[1]["messages"][0]["visibility"], "Agents");

    // Agent2 talks to agents only, types to agents, and writes as a
    // consultant: all of it stays among agents.
    let internal = [
        json!({"operationName": "SendToAgents", "text": "internal: refund is fine"}),
        json!({"operationName": "SendStartTypingToAgentsNotification"}),
        json!({"operationName": "SendStopTypingToAgentsNotification"}),
        json!({"operationName": "SendMessage", "text": "internal: consultant note"}),
        json!({"operationName": "SendStartTypingNotification"}),
    ];
    for body in internal {
        let r = op_ok(&server, AGENT2, &chat.sid, body).await;
        let seen = datas(&mut testname, 1).await.remove(0);
        assert_eq!(seen, datas(&mut agent2, 1).await.remove(0));
        assert_eq!(seen["referenceId"], r);
        assert_eq!(seen["messages"][0]["visibility"], "Agents", "{seen}");
    }
    customer.expect_silence(QUIET).await;

    // The customer writes; everybody in the session sees it.
    customer_op_ok(
        &server,
        &chat,
        json!({"operationName": "SendMessage", "text": "are you there?"}),
    )
    .await;
    for client in [&mut testname, &mut agent2] {
        let n = datas(client, 1).await.remove(0);
        assert_eq!(describe(&n), "NewMessages[Text/All]");
        assert!(n.get("referenceId").is_none());
    }
    frames.extend(customer.notifications(1).await);

    // Transfer to the consultant: Agent2 becomes visible, TestName leaves.
    let r3 = op_ok(
        &server,
        TESTNAME,
        &chat.sid,
        json!({"operationName": "Transfer", "targetPath": format!("/users/{AGENT2}")}),
    )
    .await;
    let transfer = datas(&mut testname, 3).await;
    assert_eq!(transfer, datas(&mut agent2, 3).await);
    let kinds: Vec<String> = transfer.iter().map(describe).collect();
    assert_eq!(
        kinds,
        [
            "ParticipantsUpdated(Chatting)",
            "NewMessages[ParticipantJoined/All,ParticipantLeft/All]",
            "ParticipantsUpdated(Chatting)"
        ]
    );
    assert!(transfer.iter().all(|n| n["referenceId"] == r3));
    let after: Vec<&Value> = transfer[2]["facebooksession"]["participants"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(after.len(), 2);
    assert_eq!(
        (&after[1]["nickname"], &after[1]["visibility"]),
        (&json!("Agent2"), &json!("All"))
    );

    // Agent2 answers visibly, then completes; TestName is out of it.
    op_ok(
        &server,
        AGENT2,
        &chat.sid,
        json!({"operationName": "SendMessage", "text": "Agent2 here, all sorted"}),
    )
    .await;
    let r4 = op_ok(
        &server,
        AGENT2,
        &chat.sid,
        json!({"operationName": "Complete"}),
    )
    .await;
    let end = datas(&mut agent2, 2).await;
    assert_eq!(describe(&end[0]), "NewMessages[Text/All]");
    assert_eq!(describe(&end[1]), "StatusChange(Completed)");
    assert_eq!(end[1]["referenceId"], r4);
    assert_eq!(end[1]["facebooksession"]["capabilities"], json!([]));
    testname.expect_silence(QUIET).await;
    agent2.expect_silence(QUIET).await;

    // The customer saw exactly this, with gap-free indices and ids.
    frames.extend(customer.notifications(5).await);
    let ids: Vec<&str> = frames.iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["3", "4", "5", "6", "7", "8", "9"]);
    let seen: Vec<Value> = frames.iter().map(|f| f["data"].clone()).collect();
    let kinds: Vec<String> = seen.iter().map(describe).collect();
    assert_eq!(
        kinds,
        [
            "NewMessages[Text/All]",
            "NewMessages[Text/All]",
            "ParticipantsUpdated(Chatting)",
            "NewMessages[ParticipantJoined/All,ParticipantLeft/All]",
            "ParticipantsUpdated(Chatting)",
            "NewMessages[Text/All]",
            "StatusChange(Completed)",
        ]
    );
    let texts: Vec<(u64, String)> = seen
        .iter()
        .flat_map(|n| n["messages"].as_array().cloned().unwrap_or_default())
        .map(|m| {
            (
                m["index"].as_u64().unwrap(),
                m["text"]
                    .as_str()
                    .unwrap_or(m["type"].as_str().unwrap())
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        texts,
        [
            (4, "Hello, how can I help?".to_owned()),
            (5, "are you there?".to_owned()),
            (6, "ParticipantJoined".to_owned()),
            (7, "ParticipantLeft".to_owned()),
            (8, "Agent2 here, all sorted".to_owned()),
        ]
    );
    // Nothing of the consultation before the transfer, and no agent-side
    // field at any time.
    let before_transfer = format!("{}{}", seen[0], seen[1]);
    assert!(!before_transfer.contains("Agent2"));
    for frame in &seen {
        let text = frame.to_string();
        for secret in [
            AGENT2,
            TESTNAME,
            "internal",
            "userData",
            "capabilities",
            "referenceId",
            "uri",
            "Typing",
        ] {
            assert!(
                !text.contains(secret),
                "customer frame leaks {secret}: {text}"
            );
        }
    }
    customer.expect_silence(QUIET).await;

    // The supervisor saw every notification of the session, in order.
    let all = datas(&mut supervisor, 2 + 1 + 2 + 5 + 1 + 3 + 2).await;
    assert_eq!(describe(&all[3]), "ParticipantsUpdated(Chatting)");
    assert_eq!(describe(all.last().unwrap()), "StatusChange(Completed)");
    supervisor.expect_silence(QUIET).await;
    server.stop().await;
}
