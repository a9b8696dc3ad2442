//! Wiring: builds the bus, the hub and the router from a [`Config`], runs
//! the dispatcher (bus -> hub) and the retention sweeper, serves HTTP, and
//! shuts down in order: stop accepting, close every WebSocket with 1001,
//! wait for connection tasks up to a deadline.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Authenticator, ClaimChecks};
use crate::bus::memory::MemoryBus;
use crate::bus::nats::NatsBus;
use crate::bus::{Bus, Feed};
use crate::client_addr::TrustedProxies;
use crate::config::Config;
use crate::engine::nats_store::NatsStore;
use crate::engine::{Engine, EngineState, Store};
use crate::error::StartError;
use crate::http::router;
use crate::hub::Hub;
use crate::limits::AddressLimiter;
use crate::metrics::Metrics;
use crate::publisher::Publisher;
use crate::state::{AppState, SharedState};

/// Deliveries buffered between the in-memory bus and the dispatcher.
const MEMORY_BUS_CAPACITY: usize = 8192;
/// How often retention is swept.
const SWEEP_EVERY: Duration = Duration::from_secs(15);

/// A running chatgate, for `main` and for tests.
pub struct Server {
    pub state: SharedState,
    listener: TcpListener,
    feed: Feed,
}

impl Server {
    /// Builds everything; binds nothing but what `listener` already is.
    pub async fn build(config: Config, listener: TcpListener) -> Result<Self, StartError> {
        config.validate()?;
        let secret = match &config.jwt_secret {
            Some(s) => s.as_bytes().to_vec(),
            None => dev_secret(),
        };
        let auth = Authenticator::new(&secret, config.jwt_public_key.as_deref())?.with_checks(
            ClaimChecks {
                audience: config.jwt_audience.clone(),
                issuer: config.jwt_issuer.clone(),
                leeway_secs: config.jwt_leeway_secs,
            },
        );
        let trusted_proxies = TrustedProxies::parse(&config.trusted_proxies)?;
        let metrics = Arc::new(Metrics::default());
        let address_limiter = AddressLimiter::new(config.max_connections_per_address);
        let (bus, hub, feed) = if config.bus.is_some() {
            let bus = NatsBus::connect(&config, metrics.clone()).await?;
            let hub = Hub::new(
                config.hub(),
                config.max_connections,
                metrics.clone(),
                bus.epoch(),
            );
            let feed = bus.feed(&config, &hub, metrics.clone()).await?;
            (Bus::Nats(Box::new(bus)), hub, feed)
        } else {
            let (bus, deliveries) = MemoryBus::new(MEMORY_BUS_CAPACITY);
            let hub = Hub::new(
                config.hub(),
                config.max_connections,
                metrics.clone(),
                memory_epoch(),
            );
            (Bus::Memory(bus), hub, Feed::Memory(deliveries))
        };
        let auth = Arc::new(auth);
        let publisher = Publisher::new(bus, metrics.clone(), config.max_frame_bytes);
        let engine = build_engine(&config, &listener, publisher.bus())
            .await?
            .map(|engine| EngineState {
                engine: Arc::new(engine),
                publisher: publisher.clone(),
                auth: auth.clone(),
                metrics: metrics.clone(),
                trusted_proxies: trusted_proxies.clone(),
            });
        let state = Arc::new(AppState {
            config,
            auth,
            hub,
            publisher,
            address_limiter,
            trusted_proxies,
            metrics,
            engine,
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
        });
        Ok(Self {
            state,
            listener,
            feed,
        })
    }

    /// Serves until `signal` completes, then shuts down gracefully.
    pub async fn run(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Server {
            state,
            listener,
            feed,
        } = self;
        let feed_ends_on_shutdown = matches!(feed, Feed::Nats(_));
        let mut dispatcher = tokio::spawn(feed.run(state.hub.clone(), state.shutdown.clone()));
        let sweeper = tokio::spawn(sweep(state.hub.clone(), state.shutdown.clone()));
        if let Some(EngineState { engine, .. }) = &state.engine {
            tokio::spawn(engine.clone().sweep_until(state.shutdown.clone()));
            let (engine, shutdown) = (engine.clone(), state.shutdown.clone());
            tokio::spawn(async move { engine.store.follow(shutdown).await });
        }
        let app = router(state.clone());
        let shutdown = state.shutdown.clone();
        let serve_shutdown = shutdown.clone();
        let hub = state.hub.clone();
        tokio::spawn(async move {
            signal.await;
            tracing::info!("shutting down");
            shutdown.cancel();
            // Every stream ends once what is queued for it is sent.
            hub.shutdown();
        });
        let result = crate::listen::serve(
            listener,
            app,
            Duration::from_secs(state.config.handshake_timeout_secs.max(1)),
            state.metrics.clone(),
            serve_shutdown,
        )
        .await;
        state.tracker.close();
        let deadline = Duration::from_secs(state.config.shutdown_secs);
        if tokio::time::timeout(deadline, state.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections still open at the shutdown deadline");
        }
        if feed_ends_on_shutdown {
            // Let it save a last checkpoint.
            let _ = tokio::time::timeout(Duration::from_secs(3), &mut dispatcher).await;
        }
        dispatcher.abort();
        sweeper.abort();
        result
    }
}

/// The session engine, when this process runs one: its directory, URIs
/// under the public URL (or the listening address), and on a NATS bus the
/// store every engine shares.
async fn build_engine(
    config: &Config,
    listener: &TcpListener,
    bus: &Bus,
) -> Result<Option<Engine>, StartError> {
    if !config.runs_engine() {
        return Ok(None);
    }
    let base = match &config.public_url {
        Some(url) => url.clone(),
        None => format!(
            "http://{}",
            listener.local_addr().map_err(StartError::LocalAddr)?
        ),
    };
    let mut engine = Engine::build(config, &base)?;
    if let Bus::Nats(nats) = bus {
        engine.store = Store::Nats(Box::new(NatsStore::open(nats, config).await?));
    }
    Ok(Some(engine))
}

async fn sweep(hub: Arc<Hub>, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => hub.sweep(),
        }
    }
}

/// The epoch of an in-memory bus: new at every start, so that no `since`
/// of an earlier process is ever taken for one of this one's ids.
fn memory_epoch() -> String {
    format!("m{:016x}", rand::random::<u64>())
}

/// A random secret for dev mode, new at every start.
fn dev_secret() -> Vec<u8> {
    use rand::RngCore;
    let mut key = vec![0u8; 32];
    rand::rng().fill_bytes(&mut key);
    key
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
