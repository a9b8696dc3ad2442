//! Hub fan-out: one notification dispatched to 1, 100 and 10,000
//! connections of a session's agent, each frame then taken off its queue
//! (as the connection task would). Throughput is in frames.

use std::hint::black_box;
use std::sync::Arc;

use chatgate::config::Config;
use chatgate::event::Event;
use chatgate::frame::AgentFrame;
use chatgate::hub::{Attached, Attachment, Hub, Party};
use chatgate::metrics::Metrics;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const SESSION: &str = "bench-session";
const AGENT: &str = "bench-agent";

fn participants(max_frame: usize) -> Event {
    Event::parse_str(
        &format!(
            r#"{{"notificationType":"ParticipantsUpdated","messageType":"FacebooksessionStateChangeMessage","facebooksession":{{"id":"{SESSION}","state":"Chatting","participants":[{{"participantId":"c1","id":"c1","type":"Customer","nickname":"customer","visibility":"All"}},{{"participantId":"p-{AGENT}","id":"p-{AGENT}","type":"Agent","nickname":"agent","visibility":"All","path":"/users/{AGENT}"}}]}}}}"#
        ),
        max_frame,
    )
    .expect("valid")
}

fn message(max_frame: usize) -> Event {
    Event::parse_str(
        &format!(
            r#"{{"notificationType":"NewMessages","messageType":"MessageLogUpdated","facebooksessionPath":"/facebooksessions/{SESSION}","messages":[{{"index":1,"type":"Text","visibility":"All","text":"Hello, I have a question about my order"}}]}}"#
        ),
        max_frame,
    )
    .expect("valid")
}

/// An agent connection, its snapshot taken.
fn agent(hub: &Arc<Hub>) -> Attachment<AgentFrame> {
    match hub.attach(&Party::Agent(AGENT.into()), None) {
        Ok(Attached::Agent(mut a)) => {
            a.backlog.by_ref().for_each(drop);
            while a.inbox.try_recv().is_some() {}
            a
        }
        Ok(Attached::Customer(_)) => panic!("an agent attached as a customer"),
        Err(e) => panic!("not attached: {e}"),
    }
}

fn fan_out(c: &mut Criterion) {
    let config = Config::for_tests().hub();
    let max_frame = config.max_frame;
    let mut g = c.benchmark_group("hub_fan_out");
    for subscribers in [1usize, 100, 10_000] {
        let hub = Hub::new(
            config.clone(),
            usize::MAX,
            Arc::new(Metrics::default()),
            "bench".into(),
        );
        hub.dispatch(1, &participants(max_frame));
        let mut conns: Vec<Attachment<AgentFrame>> =
            (0..subscribers).map(|_| agent(&hub)).collect();
        let n = message(max_frame);
        let mut seq = 1;
        g.throughput(Throughput::Elements(subscribers as u64));
        g.bench_with_input(BenchmarkId::from_parameter(subscribers), &n, |b, n| {
            b.iter(|| {
                seq += 1;
                hub.dispatch(seq, black_box(n));
                for a in &mut conns {
                    black_box(a.inbox.try_recv());
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, fan_out);
criterion_main!(benches);
