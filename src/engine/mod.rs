//! The session engine: chatgate's reference upstream.
//!
//! Implements the facebooksession operations (SPEC section 5) and
//! publishes their notifications on the bus through
//! [`AppState::publish`](crate::http::AppState::publish), exactly like any
//! other upstream: the gateway learns about sessions only from the bus.
//!
//! # Layout
//!
//! - [`directory`]: agents and queues (TOML file or demo), URIs, targets.
//! - [`record`]: a session record, its capabilities, notification shapes.
//! - [`op`]: the agent and customer operations (`operationName` dispatch).
//! - [`store`]: where records live; applies one operation atomically per
//!   session and publishes its notifications in order.
//! - [`routes`]: the agent REST API; [`customer`]: the widget's API.
//! - [`limiter`]: rate limit of anonymous session creation.
//! - [`error`]: refusals as `{"statusCode","statusMessage"}`.

pub mod customer;
pub mod directory;
pub mod error;
pub mod limiter;
pub mod op;
pub mod record;
pub mod routes;
pub mod store;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::http::AppState;
use crate::model::Notification;

pub use directory::Directory;
pub use error::OpError;
pub use routes::router;
pub use store::{Change, Publish, Store};

/// How often completed sessions and idle rate-limit buckets are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// The engine of this process: directory, store, counters.
pub struct Engine {
    pub directory: Directory,
    pub store: Store,
    /// The last `referenceId` handed out (process-wide).
    reference: AtomicU64,
    /// Messages kept per session record.
    log_limit: usize,
    /// How long a completed session is kept, in ms.
    completed_ttl_ms: u64,
    pub limiter: limiter::RateLimiter,
    /// Serializes "read the load, then place an agent", so that two
    /// concurrent routings do not both pick the same least-busy agent.
    routing: tokio::sync::Mutex<()>,
}

impl Engine {
    /// Builds the engine: the directory from `config.directory` (or the
    /// demo one), URIs under `base`.
    pub fn build(config: &Config, base: &str) -> Result<Self, String> {
        let directory = Directory::load(config.directory.as_deref(), base)?;
        Ok(Self::new(directory, config))
    }

    pub fn new(directory: Directory, config: &Config) -> Self {
        Self {
            directory,
            store: Store::memory(),
            reference: AtomicU64::new(0),
            log_limit: config.log_limit,
            completed_ttl_ms: config.retention_secs.saturating_mul(1000),
            limiter: limiter::RateLimiter::new(config.customer_session_rate),
            routing: tokio::sync::Mutex::new(()),
        }
    }

    /// The next `referenceId`: increasing per request.
    pub fn next_reference(&self) -> u64 {
        self.reference.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Active sessions per agent, under the routing lock held by the caller.
    async fn load(&self) -> HashMap<String, usize> {
        self.store.load().await
    }

    /// Sweeps completed sessions and idle buckets until shutdown.
    pub async fn sweep_until(self: Arc<Self>, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => {
                    let cutoff = now_ms().saturating_sub(self.completed_ttl_ms);
                    let forgotten = self.store.sweep(cutoff).await;
                    self.limiter.prune(Instant::now());
                    if forgotten > 0 {
                        tracing::debug!(forgotten, "completed sessions swept");
                    }
                }
            }
        }
    }
}

impl Publish for AppState {
    async fn publish_batch(&self, batch: Vec<Notification>) -> Result<(), OpError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.publish(batch, "engine")
            .await
            .map_err(|e| OpError::Unavailable(format!("{e}; nothing changed")))
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// A new session or participant id: 16 upper-case hex digits, like the
/// seed's (`0002EaAY01MT007C`), random so engines sharing a bus never
/// collide in practice.
pub fn new_id() -> String {
    format!("{:016X}", rand::random::<u64>())
}
