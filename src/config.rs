//! Settings: every address, limit and timeout, with its default.
//!
//! Each setting is a flag named after its environment variable
//! (`--listen` = `CHATGATE_LISTEN`). Owns validation of the combination
//! (no secret outside loopback); does not open anything.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::hub::retention::RetentionRule;
use crate::hub::HubConfig;
use crate::outbox::QueueLimits;

/// Every setting's default, named once: the flags below and anything
/// else that needs one (the hub's own defaults, the health check) use
/// these.
pub mod defaults {
    pub const LISTEN: &str = "127.0.0.1:8080";
    pub const JWT_LEEWAY_SECS: u64 = 0;
    pub const NATS_STREAM: &str = "CHATGATE";
    pub const NATS_PREFIX: &str = "chatgate";
    pub const QUEUE_FRAMES: usize = 1024;
    pub const QUEUE_BYTES: usize = 1 << 20;
    pub const RETENTION_COUNT: usize = 1000;
    pub const RETENTION_SECS: u64 = 600;
    pub const RETENTION_MAX: usize = 10_000;
    pub const RETENTION_BYTES: usize = 256 << 20;
    pub const SESSION_IDLE_SECS: u64 = 86_400;
    pub const MAX_FRAME_BYTES: usize = 512 << 10;
    pub const LOG_LIMIT: usize = 1000;
    pub const HEARTBEAT_SECS: u64 = 30;
    pub const PONG_TIMEOUT_SECS: u64 = 20;
    pub const WRITE_TIMEOUT_SECS: u64 = 30;
    pub const MAX_CONNECTIONS: usize = 100_000;
    pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 1000;
    pub const HANDSHAKE_TIMEOUT_SECS: u64 = 10;
    pub const INGEST_MAX_BYTES: usize = 16 << 20;
    pub const CUSTOMER_SESSION_RATE: u32 = 30;
    pub const AGENT_OPERATION_RATE: u32 = 300;
    pub const AUTO_ACCEPT: bool = true;
    pub const SHUTDOWN_SECS: u64 = 10;
    pub const NATS_MAX_AGE_SECS: u64 = 86_400;
    pub const NATS_MAX_BYTES: i64 = 1 << 30;
    pub const NATS_MAX_MSGS_PER_SESSION: i64 = 10_000;
    pub const NATS_REPLICAS: usize = 1;
    pub const NATS_DUPLICATE_WINDOW_SECS: u64 = 120;
    pub const NATS_TIMEOUT_SECS: u64 = 5;
    pub const CHECKPOINT_SECS: u64 = 5;
    pub const RESUME_WAIT_MS: u64 = 2_000;
    pub const BAYEUX_TIMEOUT_MS: u64 = 25_000;
    pub const BAYEUX_MAX_INTERVAL_MS: u64 = 10_000;
}

/// The smallest frame bound accepted: an engine notification with a full
/// 8,192-character text, a session's state, a snapshot's envelope.
pub const MIN_FRAME_BYTES: usize = 64 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleSetting {
    /// Engine and gateway in one process.
    All,
    /// Only the WebSocket gateway (and HTTP ingest).
    Gateway,
    /// Only the session engine (REST operations).
    Engine,
}

impl RoleSetting {
    /// Whether this process runs a hub and serves `/ws`.
    pub fn serves_clients(self) -> bool {
        matches!(self, RoleSetting::All | RoleSetting::Gateway)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "CHATGATE_LISTEN", default_value = defaults::LISTEN)]
    pub listen: SocketAddr,

    /// Connections the kernel may hold, accepted but not yet taken by
    /// chatgate (the listen(2) backlog), so that a failover storm of
    /// reconnecting clients is not dropped and retried. The kernel caps it
    /// at net.core.somaxconn (4096 by default on Linux 5.4 and later).
    #[arg(long, env = "CHATGATE_LISTEN_BACKLOG", default_value_t = 4096)]
    pub listen_backlog: u32,

    /// HS256 secret for tokens. Without one, on a loopback address only,
    /// dev mode mints demo tokens at /dev/token.
    #[arg(long, env = "CHATGATE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// PEM public key (RSA or EC) verifying RS256 / ES256 tokens.
    #[arg(long, env = "CHATGATE_JWT_PUBLIC_KEY", hide_env_values = true)]
    pub jwt_public_key: Option<String>,

    /// Required `aud` claim of every token (unset: not checked). Tokens
    /// chatgate mints carry it.
    #[arg(long, env = "CHATGATE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Required `iss` claim of every token (unset: not checked). Tokens
    /// chatgate mints carry it.
    #[arg(long, env = "CHATGATE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Seconds a token stays valid past its `exp` (and before its `nbf`),
    /// for clock skew with the token issuer. Streams close when it runs out.
    #[arg(long, env = "CHATGATE_JWT_LEEWAY_SECS", default_value_t = defaults::JWT_LEEWAY_SECS)]
    pub jwt_leeway_secs: u64,

    /// Bus: unset for the in-memory bus, or nats://host:port.
    #[arg(long, env = "CHATGATE_BUS")]
    pub bus: Option<String>,

    /// JetStream stream name.
    #[arg(long, env = "CHATGATE_NATS_STREAM", default_value = defaults::NATS_STREAM)]
    pub nats_stream: String,

    /// Subject prefix: events go to <prefix>.sessions.<sessionId>.
    #[arg(long, env = "CHATGATE_NATS_PREFIX", default_value = defaults::NATS_PREFIX)]
    pub nats_prefix: String,

    /// Process role.
    #[arg(long, env = "CHATGATE_ROLE", value_enum, default_value = "all")]
    pub role: RoleSetting,

    /// Limits and timings of the NATS JetStream bus.
    #[command(flatten)]
    pub nats: NatsSettings,

    /// TOML file with the agents and queues; a demo directory without it.
    #[arg(long, env = "CHATGATE_DIRECTORY")]
    pub directory: Option<PathBuf>,

    /// Comma-separated Origins allowed to open /ws (unset: any).
    #[arg(long, env = "CHATGATE_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Comma-separated addresses or CIDRs of reverse proxies trusted to
    /// name the client: from them only, the client address is the
    /// right-most untrusted one of X-Forwarded-For (or Forwarded) (unset:
    /// the TCP peer is the client).
    #[arg(long, env = "CHATGATE_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,

    /// Base URL used in user, queue and session URIs (default: from --listen).
    #[arg(long, env = "CHATGATE_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// No frame the server sends exceeds this many bytes: an upstream item
    /// whose frame would is refused (ingest 413, engine 400), a snapshot's
    /// log comes in several frames. Connection queues hold at least one.
    #[arg(long, env = "CHATGATE_MAX_FRAME_BYTES", default_value_t = defaults::MAX_FRAME_BYTES)]
    pub max_frame_bytes: usize,

    /// Frames a connection may have queued before it is closed as slow.
    #[arg(long, env = "CHATGATE_QUEUE_FRAMES", default_value_t = defaults::QUEUE_FRAMES)]
    pub queue_frames: usize,

    /// Bytes a connection may have queued before it is closed as slow.
    #[arg(long, env = "CHATGATE_QUEUE_BYTES", default_value_t = defaults::QUEUE_BYTES)]
    pub queue_bytes: usize,

    /// Frames retained per session for resume, at least.
    #[arg(long, env = "CHATGATE_RETENTION_COUNT", default_value_t = defaults::RETENTION_COUNT)]
    pub retention_count: usize,

    /// Seconds frames are retained for resume, at least.
    #[arg(long, env = "CHATGATE_RETENTION_SECS", default_value_t = defaults::RETENTION_SECS)]
    pub retention_secs: u64,

    /// Hard cap of frames retained per session (memory bound).
    #[arg(long, env = "CHATGATE_RETENTION_MAX", default_value_t = defaults::RETENTION_MAX)]
    pub retention_max: usize,

    /// The memory budget of everything kept for resume and snapshots:
    /// retained frames, message logs and session states, counted as the
    /// memory they take; past it the oldest goes first.
    #[arg(long, env = "CHATGATE_RETENTION_BYTES", default_value_t = defaults::RETENTION_BYTES)]
    pub retention_bytes: usize,

    /// Seconds after which a session with no notification at all is
    /// forgotten, ended or not.
    #[arg(long, env = "CHATGATE_SESSION_IDLE_SECS", default_value_t = defaults::SESSION_IDLE_SECS)]
    pub session_idle_secs: u64,

    /// Messages kept per session for snapshots.
    #[arg(long, env = "CHATGATE_LOG_LIMIT", default_value_t = defaults::LOG_LIMIT)]
    pub log_limit: usize,

    /// Seconds between heartbeat frames and pings.
    #[arg(long, env = "CHATGATE_HEARTBEAT_SECS", default_value_t = defaults::HEARTBEAT_SECS)]
    pub heartbeat_secs: u64,

    /// Seconds to wait for a pong before dropping a silent peer.
    #[arg(long, env = "CHATGATE_PONG_TIMEOUT_SECS", default_value_t = defaults::PONG_TIMEOUT_SECS)]
    pub pong_timeout_secs: u64,

    /// Seconds a write to a socket may take before the peer is dropped.
    #[arg(long, env = "CHATGATE_WRITE_TIMEOUT_SECS", default_value_t = defaults::WRITE_TIMEOUT_SECS)]
    pub write_timeout_secs: u64,

    /// Maximum concurrent WebSocket connections.
    #[arg(long, env = "CHATGATE_MAX_CONNECTIONS", default_value_t = defaults::MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Maximum concurrent WebSocket connections from one client address, 0
    /// for no limit (behind a reverse proxy, see CHATGATE_TRUSTED_PROXIES).
    #[arg(
        long,
        env = "CHATGATE_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = defaults::MAX_CONNECTIONS_PER_ADDRESS
    )]
    pub max_connections_per_address: usize,

    /// Seconds a client has, from the TCP accept, to send a complete
    /// request head (the WebSocket upgrade request included).
    #[arg(long, env = "CHATGATE_HANDSHAKE_TIMEOUT_SECS", default_value_t = defaults::HANDSHAKE_TIMEOUT_SECS)]
    pub handshake_timeout_secs: u64,

    /// Maximum body of POST /upstream/events, in bytes (each item is bound
    /// by CHATGATE_MAX_FRAME_BYTES besides).
    #[arg(long, env = "CHATGATE_INGEST_MAX_BYTES", default_value_t = defaults::INGEST_MAX_BYTES)]
    pub ingest_max_bytes: usize,

    /// New customer sessions a client address may start per minute (also
    /// the burst); 0 = unlimited.
    #[arg(long, env = "CHATGATE_CUSTOMER_SESSION_RATE", default_value_t = defaults::CUSTOMER_SESSION_RATE)]
    pub customer_session_rate: u32,

    /// Session operations an agent may make per minute (also the burst);
    /// 0 = unlimited.
    #[arg(long, env = "CHATGATE_AGENT_OPERATION_RATE", default_value_t = defaults::AGENT_OPERATION_RATE)]
    pub agent_operation_rate: u32,

    /// Whether a new customer session joins its routed agent at once
    /// (true), or first reaches them as an invitation in state Invited,
    /// which they Accept or Reject (false; Reject routes it on).
    #[arg(
        long,
        env = "CHATGATE_AUTO_ACCEPT",
        default_value_t = defaults::AUTO_ACCEPT,
        action = clap::ArgAction::Set
    )]
    pub auto_accept: bool,

    /// Milliseconds a Bayeux /meta/connect is held when there is nothing
    /// to deliver (the advised `timeout` of /api/v2/notifications).
    #[arg(long, env = "CHATGATE_BAYEUX_TIMEOUT_MS", default_value_t = defaults::BAYEUX_TIMEOUT_MS)]
    pub bayeux_timeout_ms: u64,

    /// Milliseconds a Bayeux client may go without a /meta/connect before
    /// its clientId expires and its queue is freed (the advised
    /// `maxInterval`).
    #[arg(long, env = "CHATGATE_BAYEUX_MAX_INTERVAL_MS", default_value_t = defaults::BAYEUX_MAX_INTERVAL_MS)]
    pub bayeux_max_interval_ms: u64,

    /// Seconds to wait for connections to close on shutdown.
    #[arg(long, env = "CHATGATE_SHUTDOWN_SECS", default_value_t = defaults::SHUTDOWN_SECS)]
    pub shutdown_secs: u64,

    /// Log format.
    #[arg(long, env = "CHATGATE_LOG_FORMAT", value_enum, default_value = "human")]
    pub log_format: LogFormat,
}

impl Config {
    /// Settings from the given arguments only (no environment): for tests.
    pub fn for_tests() -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: Config,
        }
        Wrapper::parse_from(["chatgate", "--listen", "127.0.0.1:0"]).config
    }

    pub fn hub(&self) -> HubConfig {
        HubConfig {
            queue: QueueLimits {
                frames: self.queue_frames,
                // A queue always holds at least one frame of the bound.
                bytes: self.queue_bytes.max(self.max_frame_bytes),
            },
            retention: RetentionRule {
                count: self.retention_count,
                age: Duration::from_secs(self.retention_secs),
                max: self.retention_max.max(self.retention_count),
            },
            retention_bytes: self.retention_bytes,
            log_limit: self.log_limit,
            max_frame: self.max_frame_bytes,
            session_idle: Duration::from_secs(self.session_idle_secs),
        }
    }

    /// Whether this process runs the session engine.
    pub fn runs_engine(&self) -> bool {
        matches!(self.role, RoleSetting::All | RoleSetting::Engine)
    }

    /// Dev mode: no secret, loopback only.
    pub fn dev_mode(&self) -> bool {
        self.jwt_secret.is_none()
    }

    /// Refuses combinations that would be unsafe to run.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_frame_bytes < MIN_FRAME_BYTES {
            return Err(ConfigError::FrameBoundTooSmall(self.max_frame_bytes));
        }
        if self.dev_mode() && !self.listen.ip().is_loopback() {
            return Err(ConfigError::DevModeOffLoopback(self.listen));
        }
        if self.bus.is_none() && self.role != RoleSetting::All {
            let role = self.role.to_possible_value();
            return Err(ConfigError::RoleNeedsBus(
                role.map_or("?".into(), |v| v.get_name().to_owned()),
            ));
        }
        Ok(())
    }
}

/// A combination of settings chatgate refuses to run with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "refusing to listen on {0} without CHATGATE_JWT_SECRET: dev tokens are for loopback only"
    )]
    DevModeOffLoopback(SocketAddr),
    #[error("CHATGATE_ROLE={0} needs CHATGATE_BUS=nats://host:port: with the in-memory bus one process is both engine and gateway (role all)")]
    RoleNeedsBus(String),
    #[error("CHATGATE_MAX_FRAME_BYTES={0} is below {MIN_FRAME_BYTES}: snapshots and engine notifications need room")]
    FrameBoundTooSmall(usize),
}

/// The NATS JetStream bus's limits and timings (used with `CHATGATE_BUS`).
#[derive(Debug, Clone, Args)]
pub struct NatsSettings {
    /// Seconds an event stays in the stream (JetStream max_age).
    #[arg(long, env = "CHATGATE_NATS_MAX_AGE_SECS", default_value_t = defaults::NATS_MAX_AGE_SECS)]
    pub nats_max_age_secs: u64,

    /// Bytes the stream may hold; beyond, the oldest events are discarded.
    #[arg(long, env = "CHATGATE_NATS_MAX_BYTES", default_value_t = defaults::NATS_MAX_BYTES)]
    pub nats_max_bytes: i64,

    /// Events kept per session (per subject); beyond, its oldest are discarded.
    #[arg(
        long,
        env = "CHATGATE_NATS_MAX_MSGS_PER_SESSION",
        default_value_t = defaults::NATS_MAX_MSGS_PER_SESSION
    )]
    pub nats_max_msgs_per_session: i64,

    /// Replicas of the stream and buckets (in a clustered NATS).
    #[arg(long, env = "CHATGATE_NATS_REPLICAS", default_value_t = defaults::NATS_REPLICAS)]
    pub nats_replicas: usize,

    /// Seconds within which a publish retried with the same Idempotency-Key is stored once.
    #[arg(
        long,
        env = "CHATGATE_NATS_DUPLICATE_WINDOW_SECS",
        default_value_t = defaults::NATS_DUPLICATE_WINDOW_SECS
    )]
    pub nats_duplicate_window_secs: u64,

    /// Seconds to wait for NATS to acknowledge a publish or answer a request.
    #[arg(long, env = "CHATGATE_NATS_TIMEOUT_SECS", default_value_t = defaults::NATS_TIMEOUT_SECS)]
    pub nats_timeout_secs: u64,

    /// Seconds between two checkpoints of the gateway's session states.
    #[arg(long, env = "CHATGATE_CHECKPOINT_SECS", default_value_t = defaults::CHECKPOINT_SECS)]
    pub checkpoint_secs: u64,

    /// Milliseconds a gateway waits to catch up with a resume id it has not reached yet.
    #[arg(long, env = "CHATGATE_RESUME_WAIT_MS", default_value_t = defaults::RESUME_WAIT_MS)]
    pub resume_wait_ms: u64,
}
