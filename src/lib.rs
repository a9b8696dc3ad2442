//! chatgate: a WebSocket notification gateway for contact-center chat.
//!
//! # Layout
//!
//! - [`event`]: one upstream notification as received, and its parsing
//!   (unique keys, visibility, the frame bound).
//! - [`model`]: the facebooksession shapes the engine builds (serde types).
//! - [`view`]: the customer projection, the privacy boundary (pure).
//! - [`frame`]: the frames connections receive, one type per audience.
//! - [`session`]: one session's participants, state and customer numbering.
//! - [`hub`]: sessions, subscriptions, retention, resume and fan-out.
//! - [`outbox`]: a connection's bounded queue and the slow-consumer rule.
//! - [`ws`]: `GET /ws`, one task per connection.
//! - [`ingest`]: `POST /upstream/events`.
//! - [`bus`]: between upstreams and gateways (in-memory, NATS JetStream).
//! - [`publisher`]: how upstreams publish onto the bus, counted.
//! - [`engine`]: the session engine, the reference upstream (operations).
//! - [`auth`]: JWT verification and minting.
//! - [`limits`]: per-address connection limits.
//! - [`client_addr`]: the client's address, behind trusted proxies too.
//! - [`health`]: `chatgate health`, the container's health check.
//! - [`listen`]: the HTTP listener (handshake timeout, graceful close).
//! - [`http`]: the router.
//! - [`state`]: what every handler may reach, and publishing.
//! - [`error`]: refusals as responses.
//! - [`config`]: every setting, with defaults.
//! - [`metrics`]: counters rendered for Prometheus.
//! - [`server`]: wiring it together and shutting it down.
//! - [`web`]: the agent desktop and customer widget pages.

pub mod auth;
pub mod bayeux;
pub mod bus;
pub mod client_addr;
pub mod config;
pub mod engine;
pub mod error;
pub mod event;
pub mod frame;
pub mod health;
pub mod http;
pub mod hub;
pub mod ingest;
pub mod limits;
pub mod listen;
pub mod metrics;
pub mod model;
pub mod openapi;
pub mod outbox;
pub mod publisher;
pub mod server;
pub mod session;
pub mod state;
pub mod view;
pub mod web;
pub mod ws;
