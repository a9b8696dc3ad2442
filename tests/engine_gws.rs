//! The engine behaves as Genesys Web Services does, over real HTTP and
//! WebSocket: the invitation (auto-accept off) with Accept and Reject,
//! AddComment (never in a customer frame), Leave before Complete, the
//! consultant left behind, RemoveParticipantFromConference's
//! notifications, Complete to a queue, each agent's capabilities.

mod engine_support;
mod support;

use chatgate::auth::Role;
use engine_support::*;
use serde_json::{json, Value};
use support::*;

const AGENT4: &str = "8a2e6c4f1d3b4e9a9c5f7b2d1e6a4c80";
const ESCALATION: &str = "9b3d2f6e-4a1c-4e8b-b7d5-2c6f1a8e3d90";

fn caps(n: &Value) -> Vec<String> {
    n["facebooksession"]["capabilities"]
        .as_array()
        .expect("capabilities")
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect()
}

fn people(n: &Value) -> Vec<(String, String)> {
    n["facebooksession"]["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["nickname"].as_str().unwrap_or_default().to_owned(),
                p["visibility"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect()
}

/// `user`'s own view of session `sid`, as the REST API answers them.
async fn mine(server: &TestServer, user: &str, sid: &str) -> Value {
    let (status, body) = get(
        server,
        &format!("/api/v2/me/facebooksessions/{sid}"),
        &agent(user),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// An operation that must be refused with `code` (and is announced to
/// `watcher` as an Error with that code).
async fn refused(
    server: &TestServer,
    user: &str,
    sid: &str,
    body: Value,
    code: u64,
    watcher: &mut Client,
) {
    let (status, reply) = op(server, user, sid, body.clone()).await;
    assert_eq!(
        (status, &reply["statusCode"]),
        (400, &json!(code)),
        "{body}: {reply}"
    );
    let error = datas(watcher, 1).await;
    assert_eq!(
        describe(&error[0]).split('(').next(),
        Some("Error"),
        "{}",
        error[0]
    );
    assert_eq!(error[0]["errorCode"], json!(code));
    assert_eq!(error[0]["referenceId"], reply["referenceId"]);
}

/// The state of the queues' listing: queue id -> [(session, state)].
async fn placed(server: &TestServer) -> Vec<(String, Vec<(String, String)>)> {
    let (_, queues) = get(server, "/api/v2/queues", &agent(TESTNAME)).await;
    queues["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            let list = q["interactions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| {
                    (
                        i["id"].as_str().unwrap().to_owned(),
                        i["state"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            (q["id"].as_str().unwrap().to_owned(), list)
        })
        .collect()
}

#[tokio::test]
async fn with_auto_accept_off_a_session_is_an_invitation_accepted_or_rejected_on() {
    assert!(
        chatgate::config::Config::for_tests().auto_accept,
        "on by default: the agent joins at once"
    );
    let server = start(|c| c.auto_accept = false).await;
    let mut testname = server.connect(Role::Agent, TESTNAME, None).await;
    let mut agent2 = server.connect(Role::Agent, AGENT2, None).await;
    let chat = open_chat(&server, "Vitaliy", "hello", Some(QUEUE)).await;
    let sid = chat.sid.as_str();

    // TestName is offered it: state Invited, Accept and Reject only,
    // listed agents-only; no ParticipantJoined of theirs yet.
    let offer = datas(&mut testname, 2).await;
    assert_eq!(describe(&offer[0]), "ParticipantsUpdated(Invited)");
    assert_eq!(caps(&offer[0]), ["Accept", "Reject"]);
    assert_eq!(
        people(&offer[0]),
        [
            ("Vitaliy".into(), "All".into()),
            ("TestName".into(), "Agents".into())
        ]
    );
    assert_eq!(
        describe(&offer[1]),
        "NewMessages[ParticipantJoined/All,Text/All]"
    );
    let mut customer = connect_customer(&server, &chat, 2).await;
    let first = datas(&mut customer, 2).await;
    assert_eq!(first[0]["facebooksession"]["state"], "Invited");
    assert_eq!(
        people(&first[0]).len(),
        1,
        "the customer alone: {}",
        first[0]
    );

    // Not accepted yet: nothing but Accept or Reject.
    refused(
        &server,
        TESTNAME,
        sid,
        json!({"operationName": "SendMessage", "text": "hi"}),
        2,
        &mut testname,
    )
    .await;
    refused(
        &server,
        TESTNAME,
        sid,
        json!({"operationName": "Accept", "nickname": ""}),
        10,
        &mut testname,
    )
    .await;
    let (status, reply) = op(&server, AGENT2, sid, json!({"operationName": "Accept"})).await;
    assert_eq!(
        (status, &reply["statusCode"]),
        (403, &json!(5)),
        "not offered to Agent2"
    );

    // Reject: back to routing; Agent2 (next of the queue) is offered it.
    let r = op_ok(&server, TESTNAME, sid, json!({"operationName": "Reject"})).await;
    let gone = datas(&mut testname, 1).await;
    assert_eq!(gone[0]["referenceId"], r);
    assert_eq!(
        people(&gone[0]),
        [
            ("Vitaliy".into(), "All".into()),
            ("Agent2".into(), "Agents".into())
        ]
    );
    testname.expect_silence(QUIET).await;
    let offer = datas(&mut agent2, 1).await;
    assert_eq!(caps(&offer[0]), ["Accept", "Reject"]);
    let (status, _) = op(&server, TESTNAME, sid, json!({"operationName": "Accept"})).await;
    assert_eq!(status, 403, "a rejecting agent is out of the session");

    // Accept, with the nickname the customer sees.
    let r = op_ok(
        &server,
        AGENT2,
        sid,
        json!({"operationName": "Accept", "nickname": "Ann from support"}),
    )
    .await;
    let accepted = datas(&mut agent2, 3).await;
    let kinds: Vec<String> = accepted.iter().map(describe).collect();
    assert_eq!(
        kinds,
        [
            "StatusChange(Chatting)",
            "ParticipantsUpdated(Chatting)",
            "NewMessages[ParticipantJoined/All]"
        ]
    );
    assert!(accepted.iter().all(|n| n["referenceId"] == r));
    assert!(caps(&accepted[0]).contains(&"SendMessage".to_owned()));
    assert!(!caps(&accepted[0]).contains(&"Accept".to_owned()));
    assert_eq!(
        people(&accepted[1])[1],
        ("Ann from support".into(), "All".into())
    );
    refused(
        &server,
        AGENT2,
        sid,
        json!({"operationName": "Accept"}),
        2,
        &mut agent2,
    )
    .await;

    // The customer saw the queue's agents only once one joined.
    let seen = datas(&mut customer, 2).await;
    assert_eq!(describe(&seen[0]), "StatusChange(Chatting)");
    assert_eq!(
        seen[1]["messages"][0]["from"]["nickname"],
        "Ann from support"
    );
    customer.expect_silence(QUIET).await;
    let all: String = first.iter().chain(&seen).map(Value::to_string).collect();
    assert!(
        !all.contains("TestName") && !all.contains("Agent2"),
        "{all}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_session_every_agent_rejected_waits_in_its_queue_until_the_customer_leaves() {
    let server = start(|c| c.auto_accept = false).await;
    let mut supervisor = server.connect(Role::Supervisor, "boss", None).await;
    let chat = open_chat(&server, "Vitaliy", "hello", Some(QUEUE)).await;
    let sid = chat.sid.as_str();
    datas(&mut supervisor, 2).await;
    op_ok(&server, TESTNAME, sid, json!({"operationName": "Reject"})).await;
    datas(&mut supervisor, 1).await;
    op_ok(&server, AGENT2, sid, json!({"operationName": "Reject"})).await;
    let queued = datas(&mut supervisor, 1).await;
    assert_eq!(describe(&queued[0]), "StatusChange(Queued)");
    assert_eq!(people(&queued[0]).len(), 1, "the customer alone");
    assert!(caps(&queued[0]).is_empty());
    let listing = placed(&server).await;
    assert_eq!(
        listing[0],
        (
            QUEUE.to_owned(),
            vec![(sid.to_owned(), "Queued".to_owned())]
        )
    );
    assert!(listing[1].1.is_empty());

    customer_op_ok(&server, &chat, json!({"operationName": "Leave"})).await;
    let end = datas(&mut supervisor, 2).await;
    assert_eq!(describe(&end[1]), "StatusChange(Completed)");
    assert_eq!(
        placed(&server).await[0].1,
        [(sid.to_owned(), "Completed".to_owned())]
    );
    server.stop().await;
}

#[tokio::test]
async fn add_comment_reaches_agents_and_never_a_customer() {
    const COMMENT: &str = "VIP: refund approved by the supervisor";
    let server = start(|_| {}).await;
    let mut testname = server.connect(Role::Agent, TESTNAME, None).await;
    let chat = open_chat(&server, "Vitaliy", "hello", Some(QUEUE)).await;
    let sid = chat.sid.as_str();
    let opened = datas(&mut testname, 2).await;
    assert!(caps(&opened[0]).contains(&"AddComment".to_owned()));
    let mut customer = connect_customer(&server, &chat, 2).await;
    let mut frames = datas(&mut customer, 2).await;

    refused(
        &server,
        TESTNAME,
        sid,
        json!({"operationName": "AddComment", "comment": "  "}),
        10,
        &mut testname,
    )
    .await;
    refused(
        &server,
        TESTNAME,
        sid,
        json!({"operationName": "AddComment", "comment": 7}),
        10,
        &mut testname,
    )
    .await;
    let r = op_ok(
        &server,
        TESTNAME,
        sid,
        json!({"operationName": "AddComment", "comment": COMMENT}),
    )
    .await;
    let props = datas(&mut testname, 1).await;
    assert_eq!(describe(&props[0]), "PropertiesUpdated(Chatting)");
    assert_eq!(props[0]["referenceId"], r);
    assert_eq!(props[0]["facebooksession"]["comment"], COMMENT);
    assert_eq!(
        mine(&server, TESTNAME, sid).await["facebooksession"]["comment"],
        COMMENT
    );
    // The customer's stream goes on (a line of theirs), without it; a
    // fresh connection's snapshot has no trace of it either.
    customer_op_ok(
        &server,
        &chat,
        json!({"operationName": "SendMessage", "text": "still there?"}),
    )
    .await;
    frames.extend(datas(&mut customer, 1).await);
    customer.expect_silence(QUIET).await;
    datas(&mut testname, 1).await;
    let mut again = connect_customer(&server, &chat, 5).await;
    frames.extend(datas(&mut again, 2).await);
    let text: String = frames.iter().map(Value::to_string).collect();
    assert!(text.contains("still there?"), "the stream was read: {text}");
    assert!(!text.contains("VIP") && !text.contains("comment"), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn leave_keeps_the_interaction_for_disposition_and_user_data_until_complete() {
    let server = start(|_| {}).await;
    let mut testname = server.connect(Role::Agent, TESTNAME, None).await;
    let mut agent2 = server.connect(Role::Agent, AGENT2, None).await;
    let chat = open_chat(&server, "Vitaliy", "hello", Some(QUEUE)).await;
    let sid = chat.sid.as_str();
    datas(&mut testname, 2).await;
    let mut customer = connect_customer(&server, &chat, 2).await;
    datas(&mut customer, 2).await;
    op_ok(
        &server,
        TESTNAME,
        sid,
        json!({"operationName": "Consult", "targetPath": format!("/users/{AGENT2}")}),
    )
    .await;
    datas(&mut testname, 2).await;
    datas(&mut agent2, 2).await;

    // TestName leaves the chat: the consultant left behind is told it is
    // out too (its own ParticipantLeft, agents only).
    let r = op_ok(&server, TESTNAME, sid, json!({"operationName": "Leave"})).await;
    let left = datas(&mut agent2, 3).await;
    let kinds: Vec<String> = left.iter().map(describe).collect();
    assert_eq!(
        kinds,
        [
            "NewMessages[ParticipantLeft/All]",
            "NewMessages[ParticipantLeft/Agents]",
            "ParticipantsUpdated(Chatting)"
        ]
    );
    assert_eq!(left[1]["messages"][0]["from"]["nickname"], "Agent2");
    assert!(left.iter().all(|n| n["referenceId"] == r));
    assert_eq!(
        people(&left[2]),
        [
            ("Vitaliy".into(), "All".into()),
            ("TestName".into(), "Agents".into())
        ]
    );
    agent2.expect_silence(QUIET).await;
    assert_eq!(datas(&mut testname, 3).await, left);

    // Wrapping up: what the capabilities say, and nothing else.
    let wrap = [
        "SetInFocus",
        "InFocus",
        "SetDisposition",
        "AttachUserData",
        "DeleteUserData",
        "UpdateUserData",
        "AddComment",
        "Complete",
    ];
    assert_eq!(caps(&left[2]), wrap);
    assert_eq!(caps(&mine(&server, TESTNAME, sid).await), wrap);
    op_ok(
        &server,
        TESTNAME,
        sid,
        json!({"operationName": "SetDisposition", "disposition": "resolved"}),
    )
    .await;
    op_ok(
        &server,
        TESTNAME,
        sid,
        json!({"operationName": "AttachUserData", "userData": {"OrderId": "42"}}),
    )
    .await;
    let props = datas(&mut testname, 2).await;
    assert_eq!(
        props[1]["facebooksession"]["userData"]["Disposition"],
        "resolved"
    );
    assert_eq!(props[1]["facebooksession"]["userData"]["OrderId"], "42");
    for body in [
        json!({"operationName": "SendMessage", "text": "hello?"}),
        json!({"operationName": "Leave"}),
        json!({"operationName": "Consult", "targetPath": format!("/users/{AGENT2}")}),
    ] {
        refused(&server, TESTNAME, sid, body, 2, &mut testname).await;
    }

    // Complete ends it; then nothing is allowed.
    op_ok(&server, TESTNAME, sid, json!({"operationName": "Complete"})).await;
    assert_eq!(
        describe(&datas(&mut testname, 1).await[0]),
        "StatusChange(Completed)"
    );
    let (status, reply) = op(
        &server,
        TESTNAME,
        sid,
        json!({"operationName": "SetDisposition", "disposition": "x"}),
    )
    .await;
    assert_eq!((status, &reply["statusCode"]), (403, &json!(5)), "{reply}");

    // The customer saw TestName go, then the end; never the consultant.
    let seen = datas(&mut customer, 3).await;
    let kinds: Vec<String> = seen.iter().map(describe).collect();
    assert_eq!(
        kinds,
        [
            "NewMessages[ParticipantLeft/All]",
            "ParticipantsUpdated(Chatting)",
            "StatusChange(Completed)"
        ]
    );
    assert_eq!(people(&seen[1]), [("Vitaliy".into(), "-".into())]);
    let text: String = seen.iter().map(Value::to_string).collect();
    assert!(
        !text.contains("Agent2") && !text.contains("OrderId"),
        "{text}"
    );
    customer.expect_silence(QUIET).await;
    server.stop().await;
}

#[tokio::test]
async fn a_consultant_left_behind_by_complete_gets_its_participant_left() {
    let server = start(|_| {}).await;
    let mut agent2 = server.connect(Role::Agent, AGENT2, None).await;
    let chat = open_chat(&server, "Vitaliy", "hello", Some(QUEUE)).await;
    let sid = chat.sid.as_str();
    op_ok(
        &server,
        TESTNAME,
        sid,
        json!({"operationName": "Consult", "targetPath": format!("/users/{AGENT2}")}),
    )
    .await;
    datas(&mut agent2, 2).await;
    op_ok(&server, TESTNAME, sid, json!({"operationName": "Complete"})).await;
    let end = datas(&mut agent2, 2).await;
    assert_eq!(describe(&end[0]), "NewMessages[ParticipantLeft/Agents]");
    assert_eq!(end[0]["messages"][0]["from"]["nickname"], "Agent2");
    assert_eq!(describe(&end[1]), "StatusChange(Completed)");
    agent2.expect_silence(QUIET).await;
    server.stop().await;
}

#[tokio::test]
async fn remove_participant_from_conference_removes_a_consultant_with_a_notice_to_agents() {
    let server = start(|_| {}).await;
    let mut testname = server.connect(Role::Agent, TESTNAME, None).await;
    let mut agent2 = server.connect(Role::Agent, AGENT2, None).await;
    let chat = open_chat(&server, "Vitaliy", "hello", Some(QUEUE)).await;
    let sid = chat.sid.as_str();
    datas(&mut testname, 2).await;
    let mut customer = connect_customer(&server, &chat, 2).await;
    datas(&mut customer, 2).await;
    let opened_caps = caps(&mine(&server, TESTNAME, sid).await);
    assert!(
        !opened_caps.contains(&"RemoveParticipantFromConference".to_owned()),
        "no consultant to remove: {opened_caps:?}"
    );
    op_ok(
        &server,
        TESTNAME,
        sid,
        json!({"operationName": "Consult", "targetPath": format!("/users/{AGENT2}")}),
    )
    .await;
    let consult = datas(&mut testname, 2).await;
    assert!(caps(&consult[0]).contains(&"RemoveParticipantFromConference".to_owned()));
    datas(&mut agent2, 2).await;

    let uri = server.url(&format!("/api/v2/users/{AGENT2}"));
    let r = op_ok(
        &server,
        TESTNAME,
        sid,
        json!({"operationName": "RemoveParticipantFromConference", "targetUri": uri}),
    )
    .await;
    let removal = datas(&mut agent2, 2).await;
    assert_eq!(
        describe(&removal[0]),
        "NewMessages[Notice/Agents,ParticipantLeft/Agents]"
    );
    let notice = &removal[0]["messages"][0];
    assert_eq!(
        notice["text"],
        format!("REMOVE_PARTICIPANT_FROM_CONFERENCE{AGENT2}")
    );
    assert_eq!(notice["from"]["nickname"], "TestName");
    assert_eq!(describe(&removal[1]), "ParticipantsUpdated(Chatting)");
    assert!(removal.iter().all(|n| n["referenceId"] == r));
    assert_eq!(people(&removal[1]).len(), 2);
    agent2.expect_silence(QUIET).await;
    assert_eq!(datas(&mut testname, 2).await, removal);

    // A visible agent of a conference is not removed (GWS removes from a
    // consultation only); nothing changes.
    op_ok(
        &server,
        TESTNAME,
        sid,
        json!({"operationName": "Invite", "targetPath": format!("/users/{AGENT4}")}),
    )
    .await;
    datas(&mut testname, 2).await;
    let before = mine(&server, TESTNAME, sid).await;
    let four = format!("/users/{AGENT4}");
    refused(
        &server,
        TESTNAME,
        sid,
        json!({"operationName": "RemoveParticipantFromConference", "targetPath": four}),
        2,
        &mut testname,
    )
    .await;
    assert_eq!(mine(&server, TESTNAME, sid).await, before);

    // The customer saw Agent4 join, and nothing of the consultation.
    let seen = datas(&mut customer, 2).await;
    assert_eq!(describe(&seen[1]), "NewMessages[ParticipantJoined/All]");
    customer.expect_silence(QUIET).await;
    let text: String = seen.iter().map(Value::to_string).collect();
    assert!(
        !text.contains("Agent2") && !text.contains("REMOVE"),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test]
async fn complete_with_a_queue_name_places_the_interaction_in_that_queue() {
    let server = start(|_| {}).await;
    let mut testname = server.connect(Role::Agent, TESTNAME, None).await;
    let chat = open_chat(&server, "Vitaliy", "hello", None).await;
    let sid = chat.sid.as_str();
    datas(&mut testname, 2).await;
    assert!(placed(&server)
        .await
        .iter()
        .all(|(_, list)| list.is_empty()));
    refused(
        &server,
        TESTNAME,
        sid,
        json!({"operationName": "Complete", "queueName": 5}),
        10,
        &mut testname,
    )
    .await;
    op_ok(
        &server,
        TESTNAME,
        sid,
        json!({"operationName": "Complete", "queueName": "EscalationAgentGroup"}),
    )
    .await;
    assert_eq!(
        describe(&datas(&mut testname, 1).await[0]),
        "StatusChange(Completed)"
    );
    let listing = placed(&server).await;
    assert_eq!(listing[0], (QUEUE.to_owned(), vec![]));
    assert_eq!(
        listing[1],
        (
            ESCALATION.to_owned(),
            vec![(sid.to_owned(), "Completed".to_owned())]
        )
    );
    server.stop().await;
}

#[tokio::test]
async fn each_agent_is_told_its_own_capabilities() {
    let server = start(|_| {}).await;
    let mut agent2 = server.connect(Role::Agent, AGENT2, None).await;
    let chat = open_chat(&server, "Vitaliy", "hello", Some(QUEUE)).await;
    let sid = chat.sid.as_str();
    op_ok(
        &server,
        TESTNAME,
        sid,
        json!({"operationName": "Consult", "targetPath": format!("/users/{AGENT2}")}),
    )
    .await;
    let consult = datas(&mut agent2, 2).await;

    let owner = caps(&mine(&server, TESTNAME, sid).await);
    assert_eq!(
        caps(&consult[0]),
        owner,
        "notifications carry the lead agent's"
    );
    let consultant = caps(&mine(&server, AGENT2, sid).await);
    let (_, listed) = get(&server, "/api/v2/me/facebooksessions", &agent(AGENT2)).await;
    assert_eq!(
        caps(&json!({"facebooksession": listed["facebooksessions"][0]})),
        consultant
    );
    for op in [
        "Transfer",
        "Invite",
        "Consult",
        "Complete",
        "RemoveParticipantFromConference",
    ] {
        assert!(owner.contains(&op.to_owned()), "the owner may {op}");
        assert!(
            !consultant.contains(&op.to_owned()),
            "a consultant may not {op}"
        );
    }
    for op in [
        "Leave",
        "SendToAgents",
        "SetInFocus",
        "InFocus",
        "AddComment",
    ] {
        assert!(consultant.contains(&op.to_owned()), "a consultant may {op}");
    }
    // Every listed operation is accepted, whatever it is listed as.
    op_ok(&server, AGENT2, sid, json!({"operationName": "InFocus"})).await;
    op_ok(&server, AGENT2, sid, json!({"operationName": "SetInFocus"})).await;
    let (status, reply) = op(&server, AGENT2, sid, json!({"operationName": "Complete"})).await;
    assert_eq!((status, &reply["statusCode"]), (400, &json!(2)));
    let listed_in_refusal = reply["statusMessage"].as_str().unwrap();
    assert!(
        listed_in_refusal.contains("capabilities: Leave"),
        "{listed_in_refusal}"
    );
    server.stop().await;
}
