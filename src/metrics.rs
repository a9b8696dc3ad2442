//! Process metrics, rendered in the Prometheus text format at `/metrics`.
//!
//! Owns the counters and gauges every other module bumps. Counters are
//! plain atomics (no locks on the fan-out path); rendering walks them once
//! per scrape.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counters keyed by a label value (close code, role, source...).
#[derive(Debug, Default)]
pub struct LabeledCounter(Mutex<BTreeMap<String, u64>>);

impl LabeledCounter {
    pub fn inc(&self, label: &str) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(label.to_owned()).or_default() += 1;
    }
    fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub notifications_in: LabeledCounter,
    pub notifications_dispatched: Counter,
    pub serializations: Counter,
    pub agent_frames_out: Counter,
    pub customer_frames_out: Counter,
    pub bytes_out: Counter,
    pub queue_overflows: Counter,
    pub resume_hits: Counter,
    pub resume_misses: Counter,
    pub redeliveries_ignored: Counter,
    pub ingest_rejects: Counter,
    pub bus_publish_errors: Counter,
    pub connections_opened: LabeledCounter,
    pub connections_closed: LabeledCounter,
    pub auth_rejects: LabeledCounter,
}

impl Metrics {
    /// Counts one frame queued for a connection of `audience`.
    pub fn frames_out(&self, audience: &str, bytes: usize) {
        if audience == "customer" {
            self.customer_frames_out.inc();
        } else {
            self.agent_frames_out.inc();
        }
        self.bytes_out.add(bytes as u64);
    }

    /// The Prometheus text exposition of every metric; `open` gives the
    /// current connections by role.
    pub fn render(&self, open: &[(&str, usize)]) -> String {
        let mut out = String::new();
        gauge_by(
            &mut out,
            "chatgate_connections",
            "Open WebSocket connections by role.",
            "role",
            open.iter().map(|(r, n)| (r.to_string(), *n as u64)),
        );
        counter_by(
            &mut out,
            "chatgate_connections_opened_total",
            "WebSocket connections opened, by role.",
            "role",
            self.connections_opened.snapshot(),
        );
        counter_by(
            &mut out,
            "chatgate_connections_closed_total",
            "WebSocket connections closed, by close code.",
            "code",
            self.connections_closed.snapshot(),
        );
        counter_by(
            &mut out,
            "chatgate_notifications_in_total",
            "Notifications accepted from upstream, by source.",
            "source",
            self.notifications_in.snapshot(),
        );
        counter(
            &mut out,
            "chatgate_notifications_dispatched_total",
            "Notifications fanned out by this gateway.",
            self.notifications_dispatched.get(),
        );
        counter(
            &mut out,
            "chatgate_serializations_total",
            "Frame serializations (one per notification and audience).",
            self.serializations.get(),
        );
        counter_by(
            &mut out,
            "chatgate_frames_out_total",
            "Frames queued to connections, by audience.",
            "audience",
            [
                ("agent".to_string(), self.agent_frames_out.get()),
                ("customer".to_string(), self.customer_frames_out.get()),
            ],
        );
        counter(
            &mut out,
            "chatgate_bytes_out_total",
            "Frame bytes queued to connections.",
            self.bytes_out.get(),
        );
        counter(
            &mut out,
            "chatgate_queue_overflows_total",
            "Connections closed as slow (1013).",
            self.queue_overflows.get(),
        );
        counter_by(
            &mut out,
            "chatgate_resumes_total",
            "Resume attempts, by result.",
            "result",
            [
                ("hit".to_string(), self.resume_hits.get()),
                ("miss".to_string(), self.resume_misses.get()),
            ],
        );
        counter(
            &mut out,
            "chatgate_redeliveries_ignored_total",
            "Bus redeliveries ignored (already dispatched).",
            self.redeliveries_ignored.get(),
        );
        counter(
            &mut out,
            "chatgate_ingest_rejects_total",
            "Upstream batches rejected.",
            self.ingest_rejects.get(),
        );
        counter(
            &mut out,
            "chatgate_bus_publish_errors_total",
            "Publishes the bus did not acknowledge.",
            self.bus_publish_errors.get(),
        );
        counter_by(
            &mut out,
            "chatgate_auth_rejects_total",
            "Refused WebSocket handshakes and requests, by reason.",
            "reason",
            self.auth_rejects.snapshot(),
        );
        out
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, help, "counter");
    let _ = writeln!(out, "{name} {value}");
}

fn counter_by(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = (String, u64)>,
) {
    header(out, name, help, "counter");
    for (k, v) in values {
        let _ = writeln!(out, "{name}{{{label}=\"{k}\"}} {v}");
    }
}

fn gauge_by(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = (String, u64)>,
) {
    header(out, name, help, "gauge");
    for (k, v) in values {
        let _ = writeln!(out, "{name}{{{label}=\"{k}\"}} {v}");
    }
}
