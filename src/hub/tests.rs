//! The hub without sockets: dispatch, attach, replay, snapshots, floors,
//! the memory budget and forgetting, driven through its public API.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::event::Event;
use crate::frame::Frame;

const BOUND: usize = 512 << 10;
const EPOCH: &str = "test-epoch";

fn config() -> HubConfig {
    HubConfig {
        queue: QueueLimits {
            frames: 1024,
            bytes: 1 << 20,
        },
        retention: RetentionRule {
            count: 1000,
            age: Duration::from_secs(600),
            max: 10_000,
        },
        retention_bytes: 256 << 20,
        log_limit: 1000,
        max_frame: BOUND,
        session_idle: Duration::from_secs(86_400),
    }
}

fn hub(tune: impl FnOnce(&mut HubConfig)) -> Arc<Hub> {
    let mut c = config();
    tune(&mut c);
    Hub::new(c, 1000, Arc::new(Metrics::default()), EPOCH.into())
}

fn event(v: Value) -> Event {
    Event::parse_str(&v.to_string(), BOUND).unwrap()
}

fn joined(sid: &str, agent: &str, state: &str) -> Event {
    event(json!({
        "notificationType": "ParticipantsUpdated", "messageType": "m",
        "facebooksession": {"id": sid, "state": state, "participants": [
            {"participantId": format!("{sid}-c"), "type": "Customer", "visibility": "All", "nickname": "C"},
            {"participantId": format!("{sid}-a"), "type": "Agent", "visibility": "All", "path": format!("/users/{agent}")},
        ]}
    }))
}

fn line(sid: &str, i: u64, visibility: &str, padding: usize) -> Event {
    event(json!({
        "notificationType": "NewMessages", "messageType": "MessageLogUpdated",
        "facebooksessionPath": format!("/facebooksessions/{sid}"),
        "messages": [{"index": i, "type": "Text", "visibility": visibility,
                      "text": format!("{sid}-{i}{}", "x".repeat(padding))}]
    }))
}

fn agent_attachment(a: Attached) -> Attachment<AgentFrame> {
    match a {
        Attached::Agent(a) => a,
        Attached::Customer(_) => panic!("a customer attachment"),
    }
}

fn customer_attachment(a: Attached) -> Attachment<CustomerFrame> {
    match a {
        Attached::Customer(a) => a,
        Attached::Agent(_) => panic!("an agent attachment"),
    }
}

fn ids<F: Frame>(frames: impl Iterator<Item = F>) -> Vec<String> {
    frames
        .map(|f| {
            let v: Value = serde_json::from_str(f.bytes().as_str()).unwrap();
            v["id"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// A customer's attach with `since` in `epoch`.
fn customer_resume(
    h: &Arc<Hub>,
    party: &Party,
    since: &str,
    epoch: &str,
) -> Attachment<CustomerFrame> {
    customer_attachment(
        h.attach(
            party,
            Some(Resume {
                since,
                epoch: Some(epoch),
            }),
        )
        .unwrap(),
    )
}

fn resume(since: &str) -> Option<Resume<'_>> {
    Some(Resume {
        since,
        epoch: Some(EPOCH),
    })
}

#[test]
fn agents_get_the_bytes_as_received_and_customers_their_view() {
    let h = hub(|_| {});
    let mut agent = agent_attachment(h.attach(&Party::Agent("u1".into()), None).unwrap());
    let party = Party::Customer {
        session: "s".into(),
        participant: "s-c".into(),
    };
    h.dispatch(1, &joined("s", "u1", "Chatting"));
    let mut customer = customer_attachment(h.attach(&party, None).unwrap());
    let secret = line("s", 1, "INT", 0);
    h.dispatch(2, &secret);
    h.dispatch(3, &line("s", 2, "All", 0));
    let f = agent.inbox.try_recv().unwrap().frame;
    assert!(f.bytes().as_str().ends_with(&format!(
        "\"data\":{}}}",
        joined("s", "u1", "Chatting").raw()
    )));
    let f = agent.inbox.try_recv().unwrap().frame;
    assert!(
        f.bytes().as_str().contains(secret.raw()),
        "unchanged for agents"
    );
    assert!(agent.inbox.try_recv().is_some());
    // The customer had the state in its snapshot; the INT line never.
    assert_eq!(ids(customer.backlog.by_ref()), ["1"]);
    let f = customer.inbox.try_recv().unwrap().frame;
    assert!(f.bytes().as_str().contains("s-2"));
    assert!(customer.inbox.try_recv().is_none());
}

#[test]
fn a_resume_needs_the_epoch_and_replays_exactly_what_was_missed() {
    let h = hub(|_| {});
    h.dispatch(1, &joined("s", "u1", "Chatting"));
    for i in 1..=4 {
        h.dispatch(1 + i, &line("s", i, "All", 0));
    }
    let a = agent_attachment(h.attach(&Party::Agent("u1".into()), resume("2")).unwrap());
    assert!(a.resumed);
    assert_eq!(a.epoch, EPOCH);
    assert_eq!(ids(a.backlog), ["3", "4", "5"]);
    for epoch in [None, Some("another")] {
        let r = Some(Resume { since: "2", epoch });
        let a = agent_attachment(h.attach(&Party::Agent("u1".into()), r).unwrap());
        assert!(!a.resumed, "{epoch:?}");
        assert_eq!(ids(a.backlog), ["5:1", "5"], "the snapshot instead");
    }
    // Ids this hub never gave are not resumed either.
    let a = agent_attachment(h.attach(&Party::Agent("u1".into()), resume("9")).unwrap());
    assert!(!a.resumed);
}

#[test]
fn a_customer_resumes_only_in_its_session_incarnation() {
    let h = hub(|c| c.retention.age = Duration::ZERO);
    let party = Party::Customer {
        session: "s".into(),
        participant: "s-c".into(),
    };
    h.dispatch(1, &joined("s", "u1", "Chatting"));
    h.dispatch(2, &line("s", 1, "All", 0));
    let first = customer_attachment(h.attach(&party, None).unwrap());
    assert_eq!(first.epoch, format!("{EPOCH}.1"));
    let epoch = first.epoch.clone();
    let again = customer_resume(&h, &party, "1", &epoch);
    assert!(again.resumed);
    assert_eq!(ids(again.backlog), ["2"]);
    drop(first);

    // The session ends, is forgotten, and comes back: its customer ids
    // start again at 1, in another incarnation.
    h.dispatch(3, &joined("s", "u1", "Completed"));
    std::thread::sleep(Duration::from_millis(5));
    h.sweep();
    assert!(!h.has_session("s"));
    h.dispatch(4, &joined("s", "u1", "Chatting"));
    h.dispatch(5, &line("s", 1, "All", 0));
    h.dispatch(6, &line("s", 2, "All", 0));
    let old = customer_resume(&h, &party, "2", &epoch);
    assert!(!old.resumed, "an id of the old numbering");
    assert_eq!(old.epoch, format!("{EPOCH}.4"));
}

#[test]
fn forgetting_raises_the_floors_of_the_sessions_members() {
    let h = hub(|c| c.retention.age = Duration::ZERO);
    h.dispatch(1, &joined("gone", "u1", "Chatting"));
    h.dispatch(2, &joined("kept", "u2", "Chatting"));
    h.dispatch(3, &line("gone", 1, "All", 0));
    h.dispatch(4, &joined("gone", "u1", "Completed"));
    std::thread::sleep(Duration::from_millis(5));
    h.sweep();
    assert!(!h.has_session("gone") && h.has_session("kept"));
    // u1 missed frames of the forgotten session: a miss, never a gap.
    let a = agent_attachment(h.attach(&Party::Agent("u1".into()), resume("3")).unwrap());
    assert!(!a.resumed);
    let a = agent_attachment(h.attach(&Party::Agent("u1".into()), resume("4")).unwrap());
    assert!(a.resumed);
    // u2 was not in it.
    let a = agent_attachment(h.attach(&Party::Agent("u2".into()), resume("2")).unwrap());
    assert!(a.resumed);
    let s = agent_attachment(h.attach(&Party::Supervisor, resume("3")).unwrap());
    assert!(!s.resumed, "a supervisor saw everything, the forgotten too");
}

#[test]
fn the_budget_holds_in_total_and_evicts_the_oldest_first() {
    const BUDGET: usize = 64 << 10;
    let h = hub(|c| c.retention_bytes = BUDGET);
    for s in 0..4 {
        h.dispatch(s + 1, &joined(&format!("s{s}"), "u", "Chatting"));
    }
    let mut seq = 4;
    for i in 1..=100 {
        for s in 0..4 {
            seq += 1;
            h.dispatch(seq, &line(&format!("s{s}"), i, "All", 500));
            assert!(h.stats().retained_bytes <= BUDGET, "{:?}", h.stats());
        }
    }
    let stats = h.stats();
    assert_eq!(stats.sessions, 4, "states fit: no session was forgotten");
    assert!(stats.retained_frames > 4, "{stats:?}");
    // The newest are kept, the oldest went: resumes near the end work,
    // from the start they do not.
    let a = agent_attachment(
        h.attach(&Party::Agent("u".into()), resume(&(seq - 4).to_string()))
            .unwrap(),
    );
    assert!(a.resumed);
    assert_eq!(ids(a.backlog).len(), 4);
    let a = agent_attachment(h.attach(&Party::Agent("u".into()), resume("5")).unwrap());
    assert!(!a.resumed);
    // The snapshot's logs were evicted oldest first too: what is left is
    // the most recent lines of each session, in order.
    let log = h.session_log("s0");
    assert!(!log.is_empty() && log.len() < 100, "{}", log.len());
    assert!(log.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(log.last().unwrap().seq, seq - 3);
}

#[test]
fn states_alone_over_the_budget_forget_the_least_recently_active_sessions() {
    let h = hub(|c| c.retention_bytes = 16 << 10);
    for s in 0..200u64 {
        h.dispatch(s + 1, &joined(&format!("s{s}"), "u", "Chatting"));
    }
    let stats = h.stats();
    assert!(stats.retained_bytes <= 16 << 10, "{stats:?}");
    assert!(stats.sessions < 200 && stats.sessions > 0, "{stats:?}");
    assert!(h.has_session("s199"), "the newest stays");
    assert!(!h.has_session("s0"), "the oldest went");
}

#[test]
fn a_supervisor_snapshot_covers_every_session_in_frames_within_the_bound() {
    let h = hub(|c| c.max_frame = 16 << 10);
    let mut seq = 0;
    for s in 0..3 {
        seq += 1;
        h.dispatch(seq, &joined(&format!("s{s}"), "u", "Chatting"));
        for i in 1..=40 {
            seq += 1;
            h.dispatch(seq, &line(&format!("s{s}"), i, "All", 1000));
        }
    }
    let s = agent_attachment(h.attach(&Party::Supervisor, None).unwrap());
    let frames: Vec<AgentFrame> = s.backlog.collect();
    assert!(frames.iter().all(|f| f.len() <= 16 << 10));
    let mut lines = 0;
    for f in &frames {
        let v: Value = serde_json::from_str(f.bytes().as_str()).unwrap();
        lines += v["data"]["messages"].as_array().map_or(0, Vec::len);
    }
    assert_eq!(lines, 120, "every line once");
    let last: Value = serde_json::from_str(frames.last().unwrap().bytes().as_str()).unwrap();
    assert_eq!(last["id"], seq.to_string());
}

#[test]
fn what_was_committed_before_the_registration_is_in_the_snapshot_and_after_it_in_the_queue() {
    let h = hub(|_| {});
    h.dispatch(1, &joined("s", "u", "Chatting"));
    h.dispatch(2, &line("s", 1, "All", 0));
    let mut a = agent_attachment(h.attach(&Party::Agent("u".into()), None).unwrap());
    // Committed after the registration, before the snapshot is read.
    h.dispatch(3, &line("s", 2, "All", 0));
    let frames: Vec<AgentFrame> = a.backlog.by_ref().collect();
    let last: Value = serde_json::from_str(frames.last().unwrap().bytes().as_str()).unwrap();
    assert_eq!(last["id"], "2");
    assert_eq!(
        last["data"]["messages"].as_array().unwrap().len(),
        1,
        "cut at 2"
    );
    assert_eq!(
        ids(std::iter::from_fn(|| a.inbox.try_recv().map(|q| q.frame))),
        ["3"]
    );
}

#[test]
fn redeliveries_are_ignored() {
    let h = hub(|_| {});
    let mut a = agent_attachment(h.attach(&Party::Supervisor, None).unwrap());
    h.dispatch(1, &joined("s", "u", "Chatting"));
    h.dispatch(1, &joined("s", "u", "Chatting"));
    h.dispatch(2, &line("s", 1, "All", 0));
    h.dispatch(2, &line("s", 1, "All", 0));
    assert_eq!(
        ids(std::iter::from_fn(|| a.inbox.try_recv().map(|q| q.frame))),
        ["1", "2"]
    );
}

#[test]
fn checkpoints_restore_a_hub_that_resumes_nothing_before_them() {
    let a = hub(|_| {});
    a.dispatch(1, &joined("s", "u", "Chatting"));
    a.dispatch(2, &line("s", 1, "All", 0));
    let (watermark, changed) = a.changed_since(0);
    let cps = a.checkpoints_of(&changed);
    let b = hub(|_| {});
    b.restore(watermark, cps);
    assert_eq!(b.session_state("s"), a.session_state("s"));
    assert_eq!(b.session_log("s"), a.session_log("s"));
    // A redelivery of what the checkpoint covers changes nothing.
    b.dispatch(2, &line("s", 1, "All", 0));
    assert_eq!(b.session_state("s"), a.session_state("s"));
    let r = agent_attachment(b.attach(&Party::Agent("u".into()), resume("1")).unwrap());
    assert!(!r.resumed, "nothing at or below the watermark is replayed");
    b.dispatch(3, &line("s", 2, "All", 0));
    let r = agent_attachment(b.attach(&Party::Agent("u".into()), resume("2")).unwrap());
    assert!(r.resumed);
    assert_eq!(ids(r.backlog), ["3"]);
}

#[test]
fn a_customer_who_came_before_the_session_resumes_in_its_first_incarnation() {
    let h = hub(|c| c.retention.age = Duration::ZERO);
    let party = Party::Customer {
        session: "s".into(),
        participant: "s-c".into(),
    };
    h.dispatch(1, &joined("other", "u2", "Chatting"));
    let early = customer_attachment(h.attach(&party, None).unwrap());
    assert_eq!(early.epoch, format!("{EPOCH}.after-1"));
    let epoch = early.epoch.clone();
    h.dispatch(2, &joined("s", "u1", "Chatting"));
    h.dispatch(3, &line("s", 1, "All", 0));
    h.dispatch(4, &line("s", 2, "All", 0));
    drop(early);
    let resume_at = |since| customer_resume(&h, &party, since, &epoch);
    let again = resume_at("2");
    assert!(again.resumed, "the incarnation that began after the cut");
    assert_eq!(again.epoch, format!("{EPOCH}.2"));
    assert_eq!(ids(again.backlog), ["3"]);
    drop(again.registration);

    // Another epoch's `after-`, or a cut past the incarnation: a miss.
    for wrong in [
        "another.after-1",
        &format!("{EPOCH}.after-2"),
        &format!("{EPOCH}.after-x"),
    ] {
        let a = customer_resume(&h, &party, "2", wrong);
        assert!(!a.resumed, "{wrong}");
    }

    // The session is forgotten and comes back: the early epoch no longer
    // names one incarnation.
    h.dispatch(5, &joined("s", "u1", "Completed"));
    std::thread::sleep(Duration::from_millis(5));
    h.sweep();
    assert!(!h.has_session("s"));
    h.dispatch(6, &joined("s", "u1", "Chatting"));
    h.dispatch(7, &line("s", 1, "All", 0));
    h.dispatch(8, &line("s", 2, "All", 0));
    let old = resume_at("1");
    assert!(!old.resumed, "an id of the forgotten incarnation");
}

#[test]
fn an_early_customer_epoch_does_not_resume_where_the_history_starts_later() {
    let h = hub(|_| {});
    let party = Party::Customer {
        session: "s".into(),
        participant: "s-c".into(),
    };
    // This hub's history starts at 10: what came after 3 is not all known.
    h.dispatch(10, &joined("s", "u1", "Chatting"));
    h.dispatch(11, &line("s", 1, "All", 0));
    let a = customer_resume(&h, &party, "1", &format!("{EPOCH}.after-3"));
    assert!(!a.resumed);
}
