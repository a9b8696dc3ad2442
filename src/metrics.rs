//! Process metrics, exposed at `/metrics` in the OpenMetrics text format
//! (which Prometheus scrapes natively).
//!
//! Owns every counter, gauge and histogram other modules bump, and their
//! rendering through `prometheus-client`. What the fan-out path touches
//! (frames and bytes out, serializations, overflows, the latency histogram)
//! is a plain atomic resolved once at start-up: no lock, no allocation, no
//! label lookup per frame. Labelled families are bumped on rarer events
//! (a connection opens or closes, a batch is published, a request is
//! refused). Label values are fixed strings chosen by chatgate, never input.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter as PromCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A monotonic counter (one atomic).
#[derive(Debug, Clone, Default)]
pub struct Counter(PromCounter);

impl Counter {
    pub fn inc(&self) {
        self.0.inc();
    }
    pub fn add(&self, n: u64) {
        self.0.inc_by(n);
    }
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

type Labels = [(&'static str, String); 1];

/// Counters keyed by the value of one label (close code, role, source...).
#[derive(Debug, Clone)]
pub struct LabeledCounter {
    label: &'static str,
    family: Family<Labels, PromCounter>,
}

impl LabeledCounter {
    fn new(label: &'static str) -> Self {
        Self {
            label,
            family: Family::default(),
        }
    }

    pub fn inc(&self, value: &str) {
        self.add(value, 1);
    }

    pub fn add(&self, value: &str, n: u64) {
        self.family
            .get_or_create(&[(self.label, value.to_owned())])
            .inc_by(n);
    }

    /// The count for `value` (0 if never counted).
    pub fn get(&self, value: &str) -> u64 {
        self.family
            .get(&[(self.label, value.to_owned())])
            .map_or(0, |c| c.get())
    }

    /// Creates the series of `values` at 0, so that they are scraped (and
    /// rates computed) before their first event.
    fn preset(self, values: &[&str]) -> Self {
        for v in values {
            self.resolve(v);
        }
        self
    }

    /// The counter for one label value, resolved once, for hot paths.
    fn resolve(&self, value: &str) -> Counter {
        Counter(
            self.family
                .get_or_create_owned(&[(self.label, value.to_owned())]),
        )
    }
}

/// Upper bounds (seconds) of the delivery latency buckets: 100 µs to 10 s.
const LATENCY_BOUNDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Upper bounds (seconds) of the hub lock's hold-time buckets: 1 µs to 1 s.
const LOCK_HOLD_BOUNDS: [f64; 17] = [
    0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001,
    0.0025, 0.005, 0.01, 0.025, 0.1, 0.25, 1.0,
];

/// A fixed-bucket histogram of durations made of atomics only, so that
/// every connection task can observe without taking a lock.
pub struct LatencyHistogram {
    bounds: &'static [f64],
    /// One per bound, plus the `+Inf` bucket (not cumulative).
    buckets: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::with_bounds(&LATENCY_BOUNDS)
    }
}

impl fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("count", &self.count())
            .finish_non_exhaustive()
    }
}

impl LatencyHistogram {
    /// A histogram with these bucket bounds (seconds, increasing).
    pub fn with_bounds(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let bucket = self.bounds.partition_point(|bound| *bound < secs);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The upper bound of the highest non-empty bucket (`+Inf` as
    /// `f64::INFINITY`), 0 when empty: the longest observation, to its
    /// bucket's precision.
    pub fn max_bound(&self) -> f64 {
        let top = self
            .buckets
            .iter()
            .rposition(|b| b.load(Ordering::Relaxed) > 0);
        match top {
            None => 0.0,
            Some(i) => self.bounds.get(i).copied().unwrap_or(f64::INFINITY),
        }
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        // Bucket counts are read before the count, so the count is never
        // below their sum (a concurrent observation may land in between).
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let count = self.count().max(buckets.iter().map(|b| b.1).sum());
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Shares one [`LatencyHistogram`] between [`Metrics`] and its registry.
#[derive(Debug, Clone, Default)]
struct SharedHistogram(std::sync::Arc<LatencyHistogram>);

impl EncodeMetric for SharedHistogram {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), fmt::Error> {
        self.0.encode(encoder)
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Why a request or connection was refused by a limit (label values of
/// `chatgate_refusals_total`).
pub mod refusal {
    /// `CHATGATE_MAX_CONNECTIONS` reached: HTTP 503.
    pub const MAX_CONNECTIONS: &str = "max_connections";
    /// `CHATGATE_MAX_CONNECTIONS_PER_ADDRESS` reached: HTTP 429.
    pub const PER_ADDRESS: &str = "per_address";
    /// No complete request head within `CHATGATE_HANDSHAKE_TIMEOUT_SECS`:
    /// the TCP connection is closed.
    pub const HANDSHAKE_TIMEOUT: &str = "handshake_timeout";
    /// Ingest body over `CHATGATE_INGEST_MAX_BYTES`: HTTP 413.
    pub const INGEST_TOO_LARGE: &str = "ingest_too_large";
    /// An ingest item whose frame would exceed the frame bound: HTTP 413.
    pub const INGEST_ITEM_TOO_LARGE: &str = "ingest_item_too_large";
    /// Customer sessions created too fast from one address: HTTP 429.
    pub const CUSTOMER_SESSION_RATE: &str = "customer_session_rate";
    /// Session operations too fast for one agent: HTTP 429.
    pub const OPERATION_RATE: &str = "operation_rate";

    pub const ALL: [&str; 7] = [
        MAX_CONNECTIONS,
        PER_ADDRESS,
        HANDSHAKE_TIMEOUT,
        INGEST_TOO_LARGE,
        INGEST_ITEM_TOO_LARGE,
        CUSTOMER_SESSION_RATE,
        OPERATION_RATE,
    ];
}

/// Label values known in advance, created at 0.
const ROLES: [&str; 3] = ["agent", "customer", "supervisor"];
const CLOSE_CODES: [&str; 8] = [
    "peer", "1001", "1002", "1008", "1009", "1011", "1013", "4001",
];
const SOURCES: [&str; 2] = ["ingest", "engine"];
const AUTH_REASONS: [&str; 7] = [
    "missing",
    "invalid",
    "expired",
    "no_sid",
    "wrong_role",
    "origin",
    "not_the_customer",
];

#[derive(Debug)]
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
    pub bus_reconnects: Counter,
    pub bus_events_skipped: Counter,
    /// Events of the bus over the frame bound (another publisher's).
    pub bus_events_too_large: Counter,
    /// Sessions forgotten to keep the memory budget.
    pub sessions_evicted: Counter,
    pub connections_opened: LabeledCounter,
    pub connections_closed: LabeledCounter,
    pub auth_rejects: LabeledCounter,
    /// Refusals by a limit, by reason (see [`refusal`]).
    pub refusals: LabeledCounter,
    /// From the hub taking a notification off the bus to its frame being
    /// written to a socket, per live frame.
    pub delivery_latency: std::sync::Arc<LatencyHistogram>,
    /// How long each hold of the hub lock lasts.
    pub hub_lock_hold: std::sync::Arc<LatencyHistogram>,
    sessions: Gauge,
    retained_bytes: Gauge,
    open_connections: Family<Labels, Gauge>,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("chatgate");
        let open_connections = Family::<Labels, Gauge>::default();
        registry.register(
            "connections",
            "Open WebSocket connections, by role",
            open_connections.clone(),
        );
        let connections_opened = labeled(
            &mut registry,
            "connections_opened",
            "WebSocket connections opened, by role",
            "role",
        );
        let connections_closed = labeled(
            &mut registry,
            "connections_closed",
            "WebSocket connections closed, by close code (peer: closed by the client or the network)",
            "code",
        );
        let notifications_in = labeled(
            &mut registry,
            "notifications_in",
            "Notifications accepted from upstream, by source",
            "source",
        );
        let notifications_dispatched = counter(
            &mut registry,
            "notifications_dispatched",
            "Notifications fanned out by this gateway",
        );
        let serializations = counter(
            &mut registry,
            "serializations",
            "Live customer-view serializations: one per notification with a customer view (one per frame when the frame bound splits it), whatever the number of connections; agent frames carry the notification's bytes as received and are never serialized",
        );
        let frames_out = labeled(
            &mut registry,
            "frames_out",
            "Live frames queued to connections, by audience",
            "audience",
        );
        let bytes_out = counter(
            &mut registry,
            "bytes_out",
            "Live frame bytes queued to connections",
        );
        let queue_overflows = counter(
            &mut registry,
            "queue_overflows",
            "Connections closed as slow consumers (close code 1013)",
        );
        let resumes = labeled(
            &mut registry,
            "resumes",
            "Reconnections with since, by result (hit: replayed; miss: snapshot)",
            "result",
        );
        let redeliveries_ignored = counter(
            &mut registry,
            "redeliveries_ignored",
            "Bus redeliveries ignored (already dispatched)",
        );
        let ingest_rejects = counter(
            &mut registry,
            "ingest_rejects",
            "Upstream batches rejected as invalid (HTTP 400)",
        );
        let bus_publish_errors = counter(
            &mut registry,
            "bus_publish_errors",
            "Publishes the bus did not acknowledge",
        );
        let bus_reconnects = counter(&mut registry, "bus_reconnects", "Reconnections to the bus");
        let bus_events_skipped = counter(
            &mut registry,
            "bus_events_skipped",
            "Malformed events of the bus stream, logged and skipped",
        );
        let auth_rejects = labeled(
            &mut registry,
            "auth_rejects",
            "Requests and handshakes refused by authentication or Origin, by reason",
            "reason",
        );
        let refusals = labeled(
            &mut registry,
            "refusals",
            "Requests and connections refused by an abuse limit, by reason",
            "reason",
        );
        let bus_events_too_large = counter(
            &mut registry,
            "bus_events_too_large",
            "Events of the bus over the frame bound (CHATGATE_MAX_FRAME_BYTES), logged and skipped",
        );
        let sessions_evicted = counter(
            &mut registry,
            "sessions_evicted",
            "Sessions forgotten before their time to keep the memory budget (CHATGATE_RETENTION_BYTES)",
        );
        let sessions = Gauge::default();
        registry.register("sessions", "Sessions the gateway holds", sessions.clone());
        let retained_bytes = Gauge::default();
        registry.register_with_unit(
            "retained",
            "Memory counted against CHATGATE_RETENTION_BYTES: retained frames, message logs and session states",
            Unit::Bytes,
            retained_bytes.clone(),
        );
        let hub_lock_hold = SharedHistogram(std::sync::Arc::new(LatencyHistogram::with_bounds(
            &LOCK_HOLD_BOUNDS,
        )));
        registry.register_with_unit(
            "hub_lock_hold",
            "How long each hold of the hub lock lasted (commits, registrations, sweeps)",
            Unit::Seconds,
            hub_lock_hold.clone(),
        );
        let delivery_latency = SharedHistogram::default();
        registry.register_with_unit(
            "delivery_latency",
            "From the gateway taking a notification off the bus to its frame written to a socket",
            Unit::Seconds,
            delivery_latency.clone(),
        );
        for role in ROLES {
            let _ = open_connections.get_or_create(&[("role", role.to_owned())]);
        }
        Self {
            notifications_in: notifications_in.preset(&SOURCES),
            notifications_dispatched,
            serializations,
            agent_frames_out: frames_out.resolve("agent"),
            customer_frames_out: frames_out.resolve("customer"),
            bytes_out,
            queue_overflows,
            resume_hits: resumes.resolve("hit"),
            resume_misses: resumes.resolve("miss"),
            redeliveries_ignored,
            ingest_rejects,
            bus_publish_errors,
            bus_reconnects,
            bus_events_skipped,
            bus_events_too_large,
            sessions_evicted,
            connections_opened: connections_opened.preset(&ROLES),
            connections_closed: connections_closed.preset(&CLOSE_CODES),
            auth_rejects: auth_rejects.preset(&AUTH_REASONS),
            refusals: refusals.preset(&refusal::ALL),
            delivery_latency: delivery_latency.0,
            hub_lock_hold: hub_lock_hold.0,
            sessions,
            retained_bytes,
            open_connections,
            registry,
        }
    }

    /// Counts one frame queued for a connection of agents (or
    /// supervisors) or of a customer.
    pub fn frame_out(&self, agents: bool, bytes: usize) {
        if agents {
            self.agent_frames_out.inc();
        } else {
            self.customer_frames_out.inc();
        }
        self.bytes_out.add(bytes as u64);
    }

    /// Sets the gauges of what the hub holds.
    pub fn set_hub_gauges(&self, sessions: usize, retained_bytes: usize) {
        self.sessions
            .set(i64::try_from(sessions).unwrap_or(i64::MAX));
        self.retained_bytes
            .set(i64::try_from(retained_bytes).unwrap_or(i64::MAX));
    }

    /// The text exposition of every metric; `open` gives the current
    /// connections by role.
    pub fn render(&self, open: &[(&str, usize)]) -> String {
        for (role, n) in open {
            let n = i64::try_from(*n).unwrap_or(i64::MAX);
            self.open_connections
                .get_or_create(&[("role", (*role).to_owned())])
                .set(n);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn counter(registry: &mut Registry, name: &str, help: &str) -> Counter {
    let c = Counter::default();
    registry.register(name, help, c.0.clone());
    c
}

fn labeled(registry: &mut Registry, name: &str, help: &str, label: &'static str) -> LabeledCounter {
    let c = LabeledCounter::new(label);
    registry.register(name, help, c.family.clone());
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of one sample line, e.g. `chatgate_resumes_total{result="hit"}`.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn renders_counters_families_and_the_histogram() {
        let m = Metrics::new();
        m.frame_out(false, 10);
        m.frame_out(true, 5);
        m.frame_out(true, 5);
        m.resume_hits.inc();
        m.connections_closed.inc("1013");
        m.refusals.inc(refusal::PER_ADDRESS);
        m.delivery_latency.observe(Duration::from_micros(700));
        m.delivery_latency.observe(Duration::from_secs(20));
        let text = m.render(&[("agent", 3), ("customer", 0)]);

        assert_eq!(
            sample(&text, "chatgate_connections{role=\"agent\"}"),
            Some(3.0)
        );
        assert_eq!(
            sample(&text, "chatgate_frames_out_total{audience=\"agent\"}"),
            Some(2.0)
        );
        assert_eq!(
            sample(&text, "chatgate_frames_out_total{audience=\"customer\"}"),
            Some(1.0)
        );
        assert_eq!(sample(&text, "chatgate_bytes_out_total"), Some(20.0));
        assert_eq!(
            sample(&text, "chatgate_resumes_total{result=\"miss\"}"),
            Some(0.0)
        );
        assert_eq!(
            sample(&text, "chatgate_connections_closed_total{code=\"1013\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "chatgate_refusals_total{reason=\"per_address\"}"),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, "chatgate_delivery_latency_seconds_count"),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &text,
                "chatgate_delivery_latency_seconds_bucket{le=\"0.0005\"}"
            ),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &text,
                "chatgate_delivery_latency_seconds_bucket{le=\"0.001\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "chatgate_delivery_latency_seconds_bucket{le=\"10.0\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                "chatgate_delivery_latency_seconds_bucket{le=\"+Inf\"}"
            ),
            Some(2.0)
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn known_series_are_scraped_from_the_start() {
        let text = Metrics::new().render(&[]);
        for series in [
            "chatgate_connections{role=\"supervisor\"} 0",
            "chatgate_connections_opened_total{role=\"agent\"} 0",
            "chatgate_connections_closed_total{code=\"4001\"} 0",
            "chatgate_notifications_in_total{source=\"engine\"} 0",
            "chatgate_refusals_total{reason=\"operation_rate\"} 0",
            "chatgate_auth_rejects_total{reason=\"origin\"} 0",
        ] {
            assert!(text.contains(series), "{series} missing from\n{text}");
        }
        use crate::auth::AuthError;
        for e in [
            AuthError::Missing,
            AuthError::Invalid,
            AuthError::Expired,
            AuthError::NoSession,
            AuthError::WrongRole,
        ] {
            assert!(AUTH_REASONS.contains(&e.label()), "{}", e.label());
        }
    }

    #[test]
    fn labeled_counters_read_back() {
        let m = Metrics::new();
        assert_eq!(m.auth_rejects.get("origin"), 0);
        m.auth_rejects.inc("origin");
        m.auth_rejects.add("origin", 2);
        assert_eq!(m.auth_rejects.get("origin"), 3);
    }
}
