//! The per-notification work of chatgate, stage by stage: parsing an
//! upstream notification (the seed's samples, a common text message, a
//! 1 KB one), the customer view (projected and serialized in one step),
//! the agent frame (the notification's bytes in the envelope), and the
//! whole of a session's apply step.

use std::hint::black_box;

use bytes::Bytes;
use chatgate::event::Event;
use chatgate::frame::AgentFrame;
use chatgate::session::SessionState;
use chatgate::view::{customer_view, session_path_json, CustomerCursor, Listing, Target};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// The default frame bound (`CHATGATE_MAX_FRAME_BYTES`).
const MAX_FRAME: usize = 512 << 10;

fn sample(name: &str) -> String {
    let path = format!("{}/proto-samples/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path).expect("seed sample")
}

/// A visible text message, the common case of a chat.
const TEXT_MESSAGE: &str = r#"{"notificationType":"NewMessages","messageType":"MessageLogUpdated","facebooksessionPath":"/facebooksessions/0002EaAY01MT007C","messages":[{"index":7,"type":"Text","from":{"participantId":"007356263E140144","id":"007356263E140144","type":"Customer","nickname":"customer","visibility":"All"},"visibility":"All","text":"Hello, I have a question about my order","timestamp":"2015-10-20T16:14:41.000+0300","timestampSeconds":1445346881000}]}"#;

/// The text message with its text made longer: 1 KB of notification.
fn text_message_1kb() -> String {
    let text = "Hello, I have a question about my order";
    let longer: String = text
        .chars()
        .cycle()
        .take(text.len() + 1024 - TEXT_MESSAGE.len())
        .collect();
    TEXT_MESSAGE.replace(text, &longer)
}

/// The notifications measured: name and text.
fn inputs() -> [(&'static str, String); 4] {
    [
        (
            "participants_updated",
            sample("consult-participants-updated.json"),
        ),
        ("new_messages", sample("consult-new-messages.json")),
        ("text_message", TEXT_MESSAGE.to_owned()),
        ("text_message_1kb", text_message_1kb()),
    ]
}

fn event(text: &str) -> Event {
    Event::parse_str(text, MAX_FRAME).expect("valid")
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    for (name, text) in inputs() {
        // Shared bytes, as the ingest and the bus hand them over.
        let bytes = Bytes::from(text);
        g.bench_function(name, |b| {
            b.iter(|| Event::parse(black_box(bytes.clone()), MAX_FRAME).expect("valid"))
        });
    }
    g.finish();
}

fn project(c: &mut Criterion) {
    let mut g = c.benchmark_group("customer_view");
    g.throughput(Throughput::Elements(1));
    for (name, text) in inputs() {
        let n = event(&text);
        let listing: Listing = n
            .participants()
            .iter()
            .map(|p| (p.key.clone(), p.visibility))
            .collect();
        let path = session_path_json(n.session_id());
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut last_id = 0;
                customer_view(
                    black_box(&n),
                    &mut CustomerCursor::default(),
                    &listing,
                    Target {
                        path_json: &path,
                        last_id: &mut last_id,
                        max_frame: MAX_FRAME,
                    },
                )
            })
        });
    }
    g.finish();
}

fn agent_frame(c: &mut Criterion) {
    let mut g = c.benchmark_group("agent_frame");
    g.throughput(Throughput::Elements(1));
    for (name, text) in inputs() {
        let n = event(&text);
        g.bench_function(name, |b| {
            b.iter(|| AgentFrame::new(black_box("12345"), black_box(n.raw())))
        });
    }
    g.finish();
}

/// A session's whole prepare step for one notification: state, customer
/// view, log entries (the hub then adds the agent frame and commits).
fn apply(c: &mut Criterion) {
    let joined = event(&sample("consult-participants-updated.json"));
    let mut g = c.benchmark_group("session_apply");
    g.throughput(Throughput::Elements(1));
    for (name, text) in inputs() {
        let n = event(&text);
        let mut state = SessionState::new(n.session_id(), 1);
        state.apply(1, &joined, MAX_FRAME);
        let mut seq = 1;
        g.bench_function(name, |b| {
            b.iter(|| {
                seq += 1;
                state.apply(seq, black_box(&n), MAX_FRAME)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, parse, project, agent_frame, apply);
criterion_main!(benches);
