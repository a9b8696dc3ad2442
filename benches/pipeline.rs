//! The per-notification work of chatgate, stage by stage: parsing an
//! upstream notification (the seed's samples), the customer projection,
//! serializing a frame.

use std::hint::black_box;

use chatgate::hub::notification_frame;
use chatgate::model::Notification;
use chatgate::view::{customer_view, CustomerCursor};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn sample(name: &str) -> String {
    let path = format!("{}/proto-samples/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path).expect("seed sample")
}

/// A visible text message, the common case of a chat.
const TEXT_MESSAGE: &str = r#"{"notificationType":"NewMessages","messageType":"MessageLogUpdated","facebooksessionPath":"/facebooksessions/0002EaAY01MT007C","messages":[{"index":7,"type":"Text","from":{"participantId":"007356263E140144","id":"007356263E140144","type":"Customer","nickname":"customer","visibility":"All"},"visibility":"All","text":"Hello, I have a question about my order","timestamp":"2015-10-20T16:14:41.000+0300","timestampSeconds":1445346881000}]}"#;

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    for (name, text) in [
        (
            "participants_updated",
            sample("consult-participants-updated.json"),
        ),
        ("new_messages", sample("consult-new-messages.json")),
        ("text_message", TEXT_MESSAGE.to_owned()),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| Notification::parse(black_box(&text)).expect("valid"))
        });
    }
    g.finish();
}

fn project(c: &mut Criterion) {
    let pu = Notification::parse(&sample("consult-participants-updated.json")).expect("valid");
    let msg = Notification::parse(TEXT_MESSAGE).expect("valid");
    let mut g = c.benchmark_group("customer_view");
    g.bench_function("participants_updated", |b| {
        b.iter(|| customer_view(black_box(&pu), &mut CustomerCursor::default()))
    });
    g.bench_function("text_message", |b| {
        b.iter(|| customer_view(black_box(&msg), &mut CustomerCursor::default()))
    });
    g.finish();
}

fn serialize(c: &mut Criterion) {
    let pu = Notification::parse(&sample("consult-participants-updated.json")).expect("valid");
    let msg = Notification::parse(TEXT_MESSAGE).expect("valid");
    let view = customer_view(&msg, &mut CustomerCursor::default()).expect("visible");
    let mut g = c.benchmark_group("serialize_frame");
    g.bench_function("participants_updated", |b| {
        b.iter(|| notification_frame(black_box("12345"), black_box(&pu)))
    });
    g.bench_function("text_message", |b| {
        b.iter(|| notification_frame(black_box("12345"), black_box(&msg)))
    });
    g.bench_function("text_message_customer_view", |b| {
        b.iter(|| notification_frame(black_box("17"), black_box(&view)))
    });
    g.finish();
}

criterion_group!(benches, parse, project, serialize);
criterion_main!(benches);
