//! Every engine operation at least once, each refusal with its status and
//! no effect, queue routing by load, the directory file, the rate limit of
//! anonymous sessions and the roles: over real HTTP and WebSocket.

mod engine_support;
mod support;

use std::io::Write;

use chatgate::auth::Role;
use engine_support::*;
use serde_json::{json, Value};
use support::*;

/// The session as an agent participant reads it, for before/after checks.
async fn snapshot(server: &TestServer, user: &str, sid: &str) -> Value {
    let (status, body) = get(
        server,
        &format!("/api/v2/me/facebooksessions/{sid}"),
        &agent(user),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

fn nicknames(n: &Value) -> Vec<(String, String)> {
    n["facebooksession"]["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["nickname"].as_str().unwrap().to_owned(),
                p["visibility"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn consult_through_a_queue_picks_its_least_busy_agent_not_in_the_session() {
    let server = start(|_| {}).await;
    let mut supervisor = server.connect(Role::Supervisor, "boss", None).await;
    // Routing of new chats: fewest active sessions, ties in directory order.
    let a = open_chat(&server, "Ann", "hi", None).await;
    let b = open_chat(&server, "Bob", "hi", None).await;
    let c = open_chat(&server, "Cid", "hi", None).await;
    let owners: Vec<String> = datas(&mut supervisor, 6)
        .await
        .iter()
        .filter(|n| n["notificationType"] == "ParticipantsUpdated")
        .map(|n| {
            n["facebooksession"]["participants"][1]["nickname"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(owners, ["TestName", "Agent2", "Agent3"]);

    // Through the seed's queue by targetPath: TestName is in the session,
    // so Agent2 is the one (it has one session, like TestName).
    let r = op_ok(
        &server,
        TESTNAME,
        &a.sid,
        json!({"operationName": "Consult", "targetPath": format!("/queues/{QUEUE}")}),
    )
    .await;
    let consult = datas(&mut supervisor, 2).await;
    assert_eq!(consult[0]["referenceId"], r);
    assert_eq!(
        nicknames(&consult[0])[2],
        ("Agent2".to_owned(), "Agents".to_owned())
    );
    assert_eq!(
        describe(&consult[1]),
        "NewMessages[ParticipantJoined/Agents]"
    );

    // The escalation queue [Agent3, Agent4]: Agent3 has a session, Agent4 none.
    let escalation = "9b3d2f6e-4a1c-4e8b-b7d5-2c6f1a8e3d90";
    op_ok(&server, TESTNAME, &a.sid, json!({"operationName": "Consult", "targetUri": server.url(&format!("/api/v2/queues/{escalation}"))})).await;
    let consult = datas(&mut supervisor, 2).await;
    assert_eq!(nicknames(&consult[0])[3].0, "Agent4");

    // Every agent of the seed's queue is in the session now: refused.
    let (status, reply) = op(
        &server,
        TESTNAME,
        &a.sid,
        json!({"operationName": "Consult", "targetPath": format!("/queues/{QUEUE}")}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        reply["statusMessage"]
            .as_str()
            .unwrap()
            .contains("SocialMediaAgentGroup"),
        "{reply}"
    );
    assert_eq!(reply["statusCode"], 2, "not valid in the current state");
    let error = datas(&mut supervisor, 1).await;
    assert_eq!(describe(&error[0]), "Error(Chatting)");
    assert_eq!(error[0]["referenceId"], reply["referenceId"]);
    supervisor.expect_silence(QUIET).await;

    // Invite and Transfer through a queue: Agent2 invites into B from the
    // escalation queue, whose agents have one session each: the tie goes
    // to Agent3, first in the directory; then Agent2 transfers through the
    // seed's queue, where it is already in B: TestName takes over.
    op_ok(
        &server,
        AGENT2,
        &b.sid,
        json!({"operationName": "Invite", "targetPath": format!("/queues/{escalation}")}),
    )
    .await;
    let invite = datas(&mut supervisor, 2).await;
    assert_eq!(
        nicknames(&invite[0])[2],
        ("Agent3".to_owned(), "All".to_owned())
    );
    op_ok(
        &server,
        AGENT2,
        &b.sid,
        json!({"operationName": "Transfer", "targetPath": format!("/queues/{QUEUE}")}),
    )
    .await;
    let transfer = datas(&mut supervisor, 3).await;
    assert_eq!(
        describe(&transfer[1]),
        "NewMessages[ParticipantJoined/All,ParticipantLeft/All]"
    );
    assert_eq!(transfer[1]["messages"][0]["from"]["nickname"], "TestName");
    let after: Vec<String> = nicknames(&transfer[2])
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(after, ["Bob", "Agent3", "TestName"]);
    drop(c);
    server.stop().await;
}

/// A refusal: what, HTTP status, GWS statusCode, whether the caller is a
/// participant (so an Error notification tells the session's agents),
/// and the answer.
type Case<'a> = (&'a str, u16, u64, bool, (u16, Value));

#[tokio::test]
async fn every_refusal_has_its_gws_status_changes_nothing_and_tells_a_participant() {
    let server = start(|_| {}).await;
    let chat = open_chat(&server, "Vitaliy", "hello", Some(QUEUE)).await;
    op_ok(
        &server,
        TESTNAME,
        &chat.sid,
        json!({"operationName": "Consult", "targetPath": format!("/users/{AGENT2}")}),
    )
    .await;
    server.wait_dispatched(4).await;
    let other = open_chat(&server, "Other", "hello", None).await;
    server.wait_dispatched(6).await;
    let before = snapshot(&server, TESTNAME, &chat.sid).await;
    let mut supervisor = server.connect(Role::Supervisor, "boss", None).await;
    supervisor.notifications(4).await; // the two sessions' snapshots

    let sid = chat.sid.as_str();
    let url = |path: &str| server.url(path);
    let post = reqwest::Method::POST;
    let cases: Vec<Case> = vec![
        ("unknown session", 404, 6, false, op(&server, TESTNAME, "0000000000000000", json!({"operationName": "SendMessage", "text": "x"})).await),
        ("not a participant", 403, 5, false, op(&server, AGENT3, sid, json!({"operationName": "SendMessage", "text": "x"})).await),
        ("consultant transfers", 400, 2, true, op(&server, AGENT2, sid, json!({"operationName": "Transfer", "targetPath": format!("/users/{AGENT3}")})).await),
        ("consultant completes", 400, 2, true, op(&server, AGENT2, sid, json!({"operationName": "Complete"})).await),
        ("consult without target", 400, 1, true, op(&server, TESTNAME, sid, json!({"operationName": "Consult"})).await),
        ("consult of nobody", 400, 10, true, op(&server, TESTNAME, sid, json!({"operationName": "Consult", "targetUri": "http://localhost:8080/api/v2/contacts/429a55994ef64991a77acb77c1cf9041"})).await),
        ("consult of a participant", 400, 2, true, op(&server, TESTNAME, sid, json!({"operationName": "Consult", "targetPath": format!("/users/{AGENT2}")})).await),
        ("unknown operationName", 400, 10, true, op(&server, TESTNAME, sid, json!({"operationName": "Dance"})).await),
        ("no operationName", 400, 1, true, op(&server, TESTNAME, sid, json!({"text": "x"})).await),
        ("empty text", 400, 10, true, op(&server, TESTNAME, sid, json!({"operationName": "SendMessage", "text": ""})).await),
        ("bad url", 400, 10, true, op(&server, TESTNAME, sid, json!({"operationName": "SendUrl", "url": "javascript:alert(1)"})).await),
        ("nested userData", 400, 10, true, op(&server, TESTNAME, sid, json!({"operationName": "AttachUserData", "userData": {"a": {"b": 1}}})).await),
        ("remove a stranger", 400, 6, true, op(&server, TESTNAME, sid, json!({"operationName": "RemoveParticipantFromConference", "participantId": "nobody"})).await),
        ("remove oneself", 400, 2, true, op(&server, TESTNAME, sid, json!({"operationName": "RemoveParticipantFromConference", "targetPath": format!("/users/{TESTNAME}")})).await),
        ("remove the customer", 400, 2, true, op(&server, TESTNAME, sid, json!({"operationName": "RemoveParticipantFromConference", "participantId": chat.participant})).await),
        ("consult of an unknown user", 400, 6, true, op(&server, TESTNAME, sid, json!({"operationName": "Consult", "targetPath": "/users/nobody"})).await),
        ("complete to an unknown queue", 400, 6, true, op(&server, TESTNAME, sid, json!({"operationName": "Complete", "queueName": "Nope"})).await),
        ("accept while chatting", 400, 2, true, op(&server, TESTNAME, sid, json!({"operationName": "Accept"})).await),
        ("reject while chatting", 400, 2, true, op(&server, TESTNAME, sid, json!({"operationName": "Reject"})).await),
        ("comment without text", 400, 1, true, op(&server, TESTNAME, sid, json!({"operationName": "AddComment"})).await),
        ("not JSON", 400, 10, true, send(post.clone(), &url(&format!("/api/v2/me/facebooksessions/{sid}")), Some(&agent(TESTNAME)), None).await),
        ("no token", 401, 20, false, send(post.clone(), &url(&format!("/api/v2/me/facebooksessions/{sid}")), None, Some(&json!({"operationName": "Leave"}))).await),
        ("customer token on the agent API", 403, 5, false, send(post.clone(), &url(&format!("/api/v2/me/facebooksession/{sid}")), Some(&chat.token), Some(&json!({"operationName": "Leave"}))).await),
        ("customer of another session", 403, 5, false, send(post.clone(), &url(&format!("/api/v2/customer/sessions/{sid}")), Some(&other.token), Some(&json!({"operationName": "SendMessage", "text": "x"}))).await),
        ("customer transfers", 400, 10, false, customer_op(&server, &chat, json!({"operationName": "Transfer"})).await),
        ("agent token on the customer API", 403, 5, false, send(post.clone(), &url(&format!("/api/v2/customer/sessions/{sid}")), Some(&agent(TESTNAME)), Some(&json!({"operationName": "Leave"}))).await),
        ("session without nickname", 400, 1, false, send(post.clone(), &url("/api/v2/customer/sessions"), None, Some(&json!({"message": "hi"}))).await),
        ("session in an unknown queue", 400, 6, false, send(post.clone(), &url("/api/v2/customer/sessions"), None, Some(&json!({"nickname": "n", "message": "hi", "queue": "Nope"}))).await),
    ];
    for (what, status, code, _, (got_status, reply)) in &cases {
        assert_eq!(
            (got_status, &reply["statusCode"]),
            (status, &json!(code)),
            "{what}: {reply}"
        );
        let message = reply["statusMessage"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{what}: no statusMessage in {reply}");
    }
    let message_of = |i: usize| cases[i].4 .1["statusMessage"].as_str().unwrap().to_owned();
    assert!(message_of(4).contains("targetUri or targetPath"));
    assert!(message_of(2).contains("consulting agent"));
    assert!(message_of(7).contains("Dance"));

    // Each refusal of a participant was also announced to the session's
    // agents (and supervisors): an Error with the request's referenceId,
    // its statusCode and statusMessage, and the unchanged session; the
    // others announced nothing.
    let announced: Vec<&Case> = cases.iter().filter(|c| c.3).collect();
    let errors = datas(&mut supervisor, announced.len()).await;
    for (n, (what, _, code, _, (_, reply))) in errors.iter().zip(announced) {
        assert_eq!(n["notificationType"], "Error", "{what}: {n}");
        assert_eq!(n["messageType"], "FacebooksessionStateChangeMessage");
        assert_eq!(n["errorCode"], json!(code), "{what}: {n}");
        assert_eq!(n["errorMessage"], reply["statusMessage"], "{what}");
        assert_eq!(n["referenceId"], reply["referenceId"], "{what}: {reply}");
        assert!(reply["referenceId"].is_u64(), "{what}: {reply}");
        assert_eq!(n["facebooksession"]["id"], sid);
        assert_eq!(
            n["facebooksession"]["participants"],
            before["facebooksession"]["participants"]
        );
    }
    for (what, _, _, told, (_, reply)) in &cases {
        if !told {
            assert!(reply.get("referenceId").is_none(), "{what}: {reply}");
        }
    }
    supervisor.expect_silence(QUIET).await;
    assert_eq!(
        snapshot(&server, TESTNAME, &chat.sid).await,
        before,
        "nothing changed"
    );
    server.stop().await;
}

#[tokio::test]
async fn every_operation_once_with_what_each_party_sees() {
    let server = start(|_| {}).await;
    let mut testname = server.connect(Role::Agent, TESTNAME, None).await;
    let mut agent2 = server.connect(Role::Agent, AGENT2, None).await;
    let mut agent3 = server.connect(Role::Agent, AGENT3, None).await;
    let chat = open_chat(&server, "Vitaliy", "hello", Some("SocialMediaAgentGroup")).await;
    datas(&mut testname, 2).await;
    let mut customer = connect_customer(&server, &chat, 2).await;
    datas(&mut customer, 2).await;
    let sid = chat.sid.as_str();

    let (_, mine) = get(&server, "/api/v2/me/facebooksessions", &agent(TESTNAME)).await;
    assert_eq!(mine["facebooksessions"][0]["id"], sid);
    assert_eq!(mine["facebooksessions"][0]["state"], "Chatting");
    let (_, queues) = get(&server, "/api/v2/queues", &agent(TESTNAME)).await;
    assert_eq!(queues["queues"][0]["name"], "SocialMediaAgentGroup");
    assert_eq!(queues["queues"][0]["path"], format!("/queues/{QUEUE}"));

    // Invite: a conference; Agent3 is visible to the customer.
    op_ok(
        &server,
        TESTNAME,
        sid,
        json!({"operationName": "Invite", "targetPath": format!("/users/{AGENT3}")}),
    )
    .await;
    let invite = datas(&mut agent3, 2).await;
    assert_eq!(describe(&invite[1]), "NewMessages[ParticipantJoined/All]");
    assert_eq!(invite, datas(&mut testname, 2).await);
    let seen = datas(&mut customer, 2).await;
    assert_eq!(
        seen[0]["facebooksession"]["participants"][2]["nickname"],
        "Agent3"
    );

    // Consult and Leave: the consultant leaves no trace for the customer.
    op_ok(
        &server,
        TESTNAME,
        sid,
        json!({"operationName": "Consult", "targetPath": format!("/users/{AGENT2}")}),
    )
    .await;
    op_ok(&server, AGENT2, sid, json!({"operationName": "Leave"})).await;
    let consultation = datas(&mut agent2, 4).await;
    let kinds: Vec<String> = consultation.iter().map(describe).collect();
    assert_eq!(
        kinds,
        [
            "ParticipantsUpdated(Chatting)",
            "NewMessages[ParticipantJoined/Agents]",
            "NewMessages[ParticipantLeft/Agents]",
            "ParticipantsUpdated(Chatting)"
        ]
    );
    assert_eq!(datas(&mut testname, 4).await, consultation);
    datas(&mut agent3, 4).await;
    agent2.expect_silence(QUIET).await;

    // Lines to the customer: a URL, typing on and off (the singular path).
    op_ok(
        &server,
        TESTNAME,
        sid,
        json!({"operationName": "SendUrl", "url": "https://shop.example.com/order/42"}),
    )
    .await;
    for name in ["SendStartTypingNotification", "SendStopTypingNotification"] {
        let (status, reply) = send(
            reqwest::Method::POST,
            &server.url(&format!("/api/v2/me/facebooksession/{sid}")),
            Some(&agent(TESTNAME)),
            Some(&json!({"operationName": name})),
        )
        .await;
        assert_eq!(status, 200, "{reply}");
    }
    let lines = datas(&mut customer, 3).await;
    assert_eq!(lines[0]["messages"][0]["type"], "PushUrl");
    assert_eq!(
        lines[0]["messages"][0]["url"],
        "https://shop.example.com/order/42"
    );
    assert_eq!(describe(&lines[1]), "NewMessages[TypingStarted/All]");
    assert_eq!(describe(&lines[2]), "NewMessages[TypingStopped/All]");
    datas(&mut testname, 3).await;
    datas(&mut agent3, 3).await;

    // Focus: acknowledged, nothing announced.
    op_ok(
        &server,
        TESTNAME,
        sid,
        json!({"operationName": "SetInFocus"}),
    )
    .await;
    testname.expect_silence(QUIET).await;

    // userData: announced to agents, invisible to the customer.
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
        json!({"operationName": "AttachUserData", "userData": {"OrderId": "42", "Priority": 2}}),
    )
    .await;
    op_ok(
        &server,
        TESTNAME,
        sid,
        json!({"operationName": "UpdateUserData", "userData": {"Priority": 1}}),
    )
    .await;
    op_ok(
        &server,
        TESTNAME,
        sid,
        json!({"operationName": "DeleteUserData", "keys": ["OrderId"]}),
    )
    .await;
    op_ok(&server, TESTNAME, sid, json!({"operationName": "SetDisposition", "disposition": "escalated", "dispositionKey": "DISP_KEY"})).await;
    let props = datas(&mut testname, 5).await;
    assert!(props
        .iter()
        .all(|n| describe(n) == "PropertiesUpdated(Chatting)"));
    let data = |i: usize| props[i]["facebooksession"]["userData"].clone();
    assert_eq!(data(0)["Disposition"], "resolved");
    assert_eq!(
        (&data(1)["OrderId"], &data(1)["Priority"]),
        (&json!("42"), &json!(2))
    );
    assert_eq!(data(2)["Priority"], 1);
    assert!(data(3).get("OrderId").is_none());
    assert_eq!(data(4)["DISP_KEY"], "escalated");
    assert_eq!(data(4)["FromAddress"], "Vitaliy");
    datas(&mut agent3, 5).await;

    // One of two visible agents leaves: Agent3 goes, visibly.
    op_ok(&server, AGENT3, sid, json!({"operationName": "Leave"})).await;
    let leaving = datas(&mut agent3, 2).await;
    assert_eq!(describe(&leaving[0]), "NewMessages[ParticipantLeft/All]");
    assert_eq!(nicknames(&leaving[1]).len(), 2);
    agent3.expect_silence(QUIET).await;
    datas(&mut testname, 2).await;

    // The customer types, then leaves: agents wrap up without them.
    customer_op_ok(
        &server,
        &chat,
        json!({"operationName": "SendStartTypingNotification"}),
    )
    .await;
    customer_op_ok(
        &server,
        &chat,
        json!({"operationName": "SendStopTypingNotification"}),
    )
    .await;
    customer_op_ok(&server, &chat, json!({"operationName": "Leave"})).await;
    let end = datas(&mut testname, 4).await;
    let kinds: Vec<String> = end.iter().map(describe).collect();
    assert_eq!(
        kinds,
        [
            "NewMessages[TypingStarted/All]",
            "NewMessages[TypingStopped/All]",
            "NewMessages[ParticipantLeft/All]",
            "ParticipantsUpdated(Chatting)"
        ]
    );
    let caps = end[3]["facebooksession"]["capabilities"]
        .as_array()
        .unwrap();
    assert!(!caps.contains(&json!("SendMessage")) && caps.contains(&json!("Complete")));
    let (status, reply) = op(
        &server,
        TESTNAME,
        sid,
        json!({"operationName": "SendMessage", "text": "still there?"}),
    )
    .await;
    assert_eq!((status, &reply["statusCode"]), (400, &json!(2)), "{reply}");
    let error = datas(&mut testname, 1).await;
    assert_eq!(describe(&error[0]), "Error(Chatting)");
    assert_eq!(error[0]["errorCode"], 2);
    let (status, _) = customer_op(
        &server,
        &chat,
        json!({"operationName": "SendMessage", "text": "back"}),
    )
    .await;
    assert_eq!(status, 403, "a customer who left cannot write");
    op_ok(
        &server,
        TESTNAME,
        sid,
        json!({"operationName": "SendToAgents", "text": "wrap-up note"}),
    )
    .await;

    // The last visible agent leaves the chat, wraps up, then completes.
    op_ok(&server, TESTNAME, sid, json!({"operationName": "Leave"})).await;
    op_ok(&server, TESTNAME, sid, json!({"operationName": "Complete"})).await;
    let last = datas(&mut testname, 4).await;
    let kinds: Vec<String> = last.iter().map(describe).collect();
    assert_eq!(
        kinds,
        [
            "NewMessages[Text/Agents]",
            "NewMessages[ParticipantLeft/All]",
            "ParticipantsUpdated(Chatting)",
            "StatusChange(Completed)"
        ]
    );
    let (_, mine) = get(&server, "/api/v2/me/facebooksessions", &agent(TESTNAME)).await;
    assert_eq!(mine["facebooksessions"], json!([]));

    let seen = datas(&mut customer, 9).await;
    let kinds: Vec<String> = seen.iter().map(describe).collect();
    assert_eq!(
        kinds,
        [
            "NewMessages[ParticipantLeft/All]",
            "ParticipantsUpdated(Chatting)",
            "NewMessages[TypingStarted/All]",
            "NewMessages[TypingStopped/All]",
            "NewMessages[ParticipantLeft/All]",
            "ParticipantsUpdated(Chatting)",
            "NewMessages[ParticipantLeft/All]",
            "ParticipantsUpdated(Chatting)",
            "StatusChange(Completed)"
        ],
        "Agent3's leave, the customer's typing and leave, TestName's leave and Complete"
    );
    let text = seen.iter().map(Value::to_string).collect::<String>();
    assert!(!text.contains("Agent2") && !text.contains("wrap-up"));
    customer.expect_silence(QUIET).await;
    server.stop().await;
}

#[tokio::test]
async fn anonymous_sessions_are_rate_limited_per_address() {
    let server = start(|c| c.customer_session_rate = 2).await;
    open_chat(&server, "a", "1", None).await;
    open_chat(&server, "b", "2", None).await;
    let resp = reqwest::Client::new()
        .post(server.url("/api/v2/customer/sessions"))
        .json(&json!({"nickname": "c", "message": "3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "retry after {retry}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["statusCode"], 3, "GWS: the operation is forbidden");
    server.wait_dispatched(4).await;
    assert_eq!(
        server.state.hub.last_seq(),
        4,
        "the refused one published nothing"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_directory_file_replaces_the_demo_and_a_bad_one_refuses_to_start() {
    let mut file = tempfile();
    write!(
        file.1,
        "[[agents]]\nid = \"alice\"\nnickname = \"Alice\"\n\n[[agents]]\nid = \"bob\"\nnickname = \"Bob\"\n\n\
         [[queues]]\nid = \"q1\"\nname = \"Billing\"\nagents = [\"bob\"]\n"
    )
    .unwrap();
    let path = file.0.clone();
    let server = start(move |c| c.directory = Some(path)).await;
    let (_, users) = get(&server, "/api/v2/users", &agent("alice")).await;
    let names: Vec<&str> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["nickname"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Alice", "Bob"]);
    assert_eq!(users["users"][0]["uri"], server.url("/api/v2/users/alice"));
    let mut bob = server.connect(Role::Agent, "bob", None).await;
    let chat = open_chat(&server, "n", "hi", Some("Billing")).await;
    let opened = datas(&mut bob, 1).await;
    assert_eq!(opened[0]["facebooksession"]["id"], chat.sid.as_str());
    server.stop().await;

    let mut bad = tempfile();
    write!(
        bad.1,
        "[[queues]]\nid = \"q\"\nname = \"Q\"\nagents = [\"ghost\"]\n"
    )
    .unwrap();
    let mut config = chatgate::config::Config::for_tests();
    config.jwt_secret = Some(SECRET.into());
    config.directory = Some(bad.0.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = chatgate::server::Server::build(config, listener)
        .await
        .err();
    assert!(refused.is_some_and(|e| e.to_string().contains("CHATGATE_DIRECTORY")));
    let _ = std::fs::remove_file(&file.0);
    let _ = std::fs::remove_file(&bad.0);
}

#[tokio::test]
async fn the_gateway_role_serves_no_engine_route() {
    // Split roles need a shared bus.
    let nats = support::nats::NatsServer::start().await;
    let server = support::nats::gateway(&nats).await;
    let (status, _) = send(
        reqwest::Method::POST,
        &server.url("/api/v2/customer/sessions"),
        None,
        Some(&json!({"nickname": "n", "message": "m"})),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(get(&server, "/api/v2/users", &agent(TESTNAME)).await.0, 404);
    assert!(server.state.engine.is_none());
    server.stop().await;
}

/// A fresh file in the temporary directory.
fn tempfile() -> (std::path::PathBuf, std::fs::File) {
    let path = std::env::temp_dir().join(format!(
        "chatgate-directory-{}-{}.toml",
        std::process::id(),
        chatgate::engine::new_id()
    ));
    let file = std::fs::File::create(&path).unwrap();
    (path, file)
}

#[tokio::test]
async fn a_transfer_within_a_conference_only_shows_the_caller_leaving() {
    let server = start(|_| {}).await;
    let chat = open_chat(&server, "Vitaliy", "hello", None).await;
    let mut customer = connect_customer(&server, &chat, 2).await;
    datas(&mut customer, 2).await;
    let invite = json!({"operationName": "Invite", "targetPath": format!("/users/{AGENT2}")});
    op_ok(&server, TESTNAME, &chat.sid, invite).await;
    datas(&mut customer, 2).await;
    let mut agent2 = server.connect(Role::Agent, AGENT2, None).await;
    datas(&mut agent2, 2).await; // the snapshot

    let transfer = json!({"operationName": "Transfer", "targetUri": server.url(&format!("/api/v2/users/{AGENT2}"))});
    let r = op_ok(&server, TESTNAME, &chat.sid, transfer).await;
    let got = datas(&mut agent2, 2).await;
    let kinds: Vec<String> = got.iter().map(describe).collect();
    assert_eq!(
        kinds,
        [
            "NewMessages[ParticipantLeft/All]",
            "ParticipantsUpdated(Chatting)"
        ]
    );
    assert!(got.iter().all(|n| n["referenceId"] == r));
    assert_eq!(got[0]["messages"][0]["from"]["nickname"], "TestName");
    let seen = datas(&mut customer, 2).await;
    assert_eq!(nicknames(&got[1]).len(), 2);
    assert_eq!(
        seen[1]["facebooksession"]["participants"][1]["nickname"],
        "Agent2"
    );
    agent2.expect_silence(QUIET).await;
    server.stop().await;
}
