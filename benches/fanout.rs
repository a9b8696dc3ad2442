//! Hub fan-out: one notification dispatched to 1, 100 and 10,000
//! connections of a session's agent, each frame then taken off its queue
//! (as the connection task would). Throughput is in frames.

use std::hint::black_box;
use std::sync::Arc;

use chatgate::hub::{Attachment, Hub, HubConfig, Party};
use chatgate::metrics::Metrics;
use chatgate::model::Notification;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const SESSION: &str = "bench-session";
const AGENT: &str = "bench-agent";

fn participants() -> Notification {
    Notification::parse(&format!(
        r#"{{"notificationType":"ParticipantsUpdated","messageType":"FacebooksessionStateChangeMessage","facebooksession":{{"id":"{SESSION}","state":"Chatting","participants":[{{"participantId":"c1","id":"c1","type":"Customer","nickname":"customer","visibility":"All"}},{{"participantId":"p-{AGENT}","id":"p-{AGENT}","type":"Agent","nickname":"agent","visibility":"All","path":"/users/{AGENT}"}}]}}}}"#
    ))
    .expect("valid")
}

fn message() -> Notification {
    Notification::parse(&format!(
        r#"{{"notificationType":"NewMessages","messageType":"MessageLogUpdated","facebooksessionPath":"/facebooksessions/{SESSION}","messages":[{{"index":1,"type":"Text","visibility":"All","text":"Hello, I have a question about my order"}}]}}"#
    ))
    .expect("valid")
}

fn fan_out(c: &mut Criterion) {
    let mut g = c.benchmark_group("hub_fan_out");
    for subscribers in [1usize, 100, 10_000] {
        let hub = Hub::new(
            HubConfig::default(),
            usize::MAX,
            Arc::new(Metrics::default()),
        );
        hub.dispatch(1, &participants());
        let mut conns: Vec<Attachment> = (0..subscribers)
            .map(|_| {
                hub.attach(&Party::Agent(AGENT.into()), None)
                    .expect("attached")
            })
            .collect();
        for a in &mut conns {
            while a.inbox.try_recv().is_some() {}
        }
        let n = message();
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
