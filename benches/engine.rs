//! The session engine's core, without HTTP or bus: one operation applied
//! through the in-memory store (clone the record, build the change and its
//! notifications, publish to a sink, commit), and a session opened.
//!
//! `cargo bench --bench engine`

use std::hint::black_box;

use chatgate::config::Config;
use chatgate::engine::customer::open_session;
use chatgate::engine::record::{Member, SessionRecord};
use chatgate::engine::{Ctx, Directory, Op, OpError, Publish, Resolved, Store};
use chatgate::model::{Notification, ParticipantType, Visibility};
use criterion::{criterion_group, criterion_main, Criterion};

/// Takes the notifications and drops them (what a bus costs is not ours).
struct Sink;

impl Publish for Sink {
    async fn publish_batch(&self, batch: Vec<Notification>) -> Result<(), OpError> {
        black_box(batch);
        Ok(())
    }
}

fn member(id: &str, kind: ParticipantType, user: Option<&str>) -> Member {
    Member {
        participant_id: id.into(),
        kind,
        user: user.map(str::to_owned),
        nickname: id.to_uppercase(),
        visibility: Visibility::All,
    }
}

fn session(id: &str) -> SessionRecord {
    let mut r = SessionRecord::new(
        id.into(),
        0,
        Some("41cc5016-2d18-4a91-93ec-b43748948608".into()),
    );
    r.participants = vec![
        member("c1", ParticipantType::Customer, None),
        member(
            "a1",
            ParticipantType::Agent,
            Some("5e101708f14442c7ab79814bb4f799b2"),
        ),
    ];
    r
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let dir = Directory::demo("http://127.0.0.1:8080");
    let config = Config::for_tests();
    let op = Op::SendMessage("Hello, how can I help you today?".into());

    // The store's log is full after warm-up: the steady state of a long
    // chat, with the default limit and a short one.
    for log_limit in [config.log_limit, 50] {
        let store = Store::memory(log_limit);
        rt.block_on(store.create(session("s1"), Vec::new(), &Sink))
            .unwrap();
        let name = format!("engine: SendMessage applied and published (log {log_limit})");
        c.bench_function(&name, |b| {
            b.iter(|| {
                let ctx = Ctx {
                    dir: &dir,
                    now_ms: 1_445_346_881_000,
                    reference_id: Some(1),
                    new_participant_id: String::new(),
                };
                let apply = |r: &SessionRecord| {
                    let me = r
                        .agent("5e101708f14442c7ab79814bb4f799b2")
                        .ok_or_else(|| OpError::bad("gone"))?;
                    op.apply(r, me, &Resolved::None, &ctx)
                };
                rt.block_on(store.apply("s1", apply, &Sink)).unwrap();
            })
        });
    }

    let store = Store::memory(config.log_limit);
    let mut n = 0u64;
    c.bench_function("engine: session opened and published", |b| {
        b.iter(|| {
            n += 1;
            let ctx = Ctx {
                dir: &dir,
                now_ms: 1_445_346_881_000,
                reference_id: None,
                new_participant_id: String::new(),
            };
            let record = SessionRecord::new(format!("new{n}"), 0, None);
            let [customer, agent] = [
                member("c1", ParticipantType::Customer, None),
                member(
                    "a1",
                    ParticipantType::Agent,
                    Some("5e101708f14442c7ab79814bb4f799b2"),
                ),
            ];
            let (record, notifications) = open_session(
                record,
                customer,
                agent,
                "New Test a consult operation!!!",
                &ctx,
            );
            rt.block_on(store.create(record, notifications, &Sink))
                .unwrap();
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
