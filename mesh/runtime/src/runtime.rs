//! Start-up and orderly shutdown of one service process.

use baemin_mesh_store::Db;
use std::{net::SocketAddr, sync::Arc};

use baemin_mesh_events::{BusError, ConsumerMetrics, ConsumerSpec, EventBus, EventHandler, Outbox, spawn_consumer};
use baemin_mesh_server::{MeshServer, ServeError, Shutdown};
use baemin_mesh_store::StoreError;
use sea_orm_migration::MigratorTrait;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic_health::ServingStatus;

use crate::ServiceConfig;

/// A service could not start or stopped on an error.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The database could not be opened or migrated.
    #[error("database")]
    Store(#[from] StoreError),
    /// NATS or JetStream failed.
    #[error("event bus")]
    Bus(#[from] BusError),
    /// The gRPC server failed.
    #[error("gRPC server")]
    Serve(#[from] ServeError),
    /// A client of another service could not be built.
    #[error("client")]
    Client(#[from] baemin_mesh_client::ClientError),
}

/// What a running service holds: its database, bus, outbox and server, and its background tasks.
pub struct Runtime {
    config: ServiceConfig,
    db: Db,
    bus: EventBus,
    outbox: Outbox,
    server: MeshServer,
    draining: CancellationToken,
    background: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    consumer_metrics: Option<ConsumerMetrics>,
    /// Whether the service consumes events (it has an inbox to keep bounded).
    consumes: bool,
    /// `STARTUP_TIMEOUT` after the start began: what start-up retries (database, NATS, consumers) may take
    /// in all.
    startup_deadline: tokio::time::Instant,
}

/// How often the outbox and inbox are pruned and their sizes sampled.
const PRUNE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

impl Runtime {
    /// Binds the gRPC port (health NOT_SERVING), opens and migrates the database with `M`, connects to
    /// NATS and creates or updates the stream. A database or NATS that is not reachable yet is retried
    /// with backoff for up to `STARTUP_TIMEOUT` (they often start alongside the service).
    pub async fn start<M: MigratorTrait>(
        config: ServiceConfig,
        grpc_services: &[&'static str],
    ) -> Result<Self, StartupError> {
        let server = MeshServer::bind(config.listen_addr, config.admin_addr, grpc_services)
            .await?
            .drain_delay(config.shutdown_delay);
        let deadline = tokio::time::Instant::now() + config.startup_timeout;
        let mut db = retry_until(deadline, "the database", || {
            baemin_mesh_store::connect::<M>(&config.database_url, config.database_pool_size)
        })
        .await?;
        crate::db_telemetry::observe(&mut db, server.metrics());
        let bus = retry_until(deadline, "NATS", || async {
            let bus = EventBus::connect(&config.nats_url, config.name).await?;
            bus.ensure_stream(&config.stream).await?;
            Ok::<_, BusError>(bus)
        })
        .await?;
        tracing::info!(service = config.name, addr = %server.local_addr(), "started");
        Ok(Self {
            config,
            db,
            bus,
            outbox: Outbox::new(),
            server,
            draining: CancellationToken::new(),
            background: CancellationToken::new(),
            tasks: Vec::new(),
            consumer_metrics: None,
            consumes: false,
            startup_deadline: deadline,
        })
    }

    /// The service's database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The service's outbox.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The feed on which every replica of this service announces the changes its watchers follow.
    pub fn change_feed(&self) -> baemin_mesh_events::ChangeFeed {
        baemin_mesh_events::ChangeFeed::new(&self.bus, self.config.name)
    }

    /// The address the gRPC server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The address of the admin port (`/metrics`, `/livez`, `/readyz`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.server.admin_addr()
    }

    /// The service's metrics registry.
    pub fn metrics(&self) -> &baemin_mesh_telemetry::Metrics {
        self.server.metrics()
    }

    /// The token background work of the service should stop on (cancelled after the server drained).
    pub fn background_shutdown(&self) -> CancellationToken {
        self.background.clone()
    }

    /// Cancelled the moment shutdown starts. Long-lived RPCs (server streams) end on it, so the
    /// server's drain, which waits for every in-flight RPC, can finish.
    pub fn draining(&self) -> CancellationToken {
        self.draining.clone()
    }

    /// Runs `task` in the background until shutdown; it must return once `background_shutdown` fires.
    pub fn spawn(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.push(tokio::spawn(task));
    }

    /// Starts a durable consumer of `subject` feeding `handler`.
    pub async fn consume<H: EventHandler>(&mut self, subject: &str, handler: Arc<H>) -> Result<(), StartupError> {
        self.consumes = true;
        let spec = ConsumerSpec {
            ack_wait: self.config.event_ack_wait,
            lanes: self.config.event_lanes,
            ..ConsumerSpec::new(self.config.name, subject).with_max_attempts(self.config.event_max_attempts)
        };
        let metrics = self
            .consumer_metrics
            .get_or_insert_with(|| ConsumerMetrics::new(self.server.metrics()))
            .clone();
        // A cluster that lost a node answers JetStream's API late while it elects new leaders: the
        // consumer is retried like the stream was, within what is left of the start-up timeout.
        let what = format!("the consumer of {subject}");
        let task = retry_until(self.startup_deadline, &what, || {
            spawn_consumer(
                &self.bus,
                self.db.clone(),
                spec.clone(),
                handler.clone(),
                metrics.clone(),
                self.background.clone(),
            )
        })
        .await?;
        self.tasks.push(task);
        Ok(())
    }

    /// Serves `routes` with health SERVING until `shutdown`; then drains in order: health NOT_SERVING,
    /// streams end (the draining token) and in-flight RPCs finish, consumers and workers stop, and last
    /// the outbox relay flushes what they wrote. Each stage waits at most `SHUTDOWN_GRACE`.
    pub async fn run(mut self, routes: Routes, shutdown: Shutdown) -> Result<(), StartupError> {
        let relay_stop = CancellationToken::new();
        let relay = self
            .outbox
            .relay(self.db.clone(), self.bus.jetstream().clone(), self.server.metrics());
        let relay = tokio::spawn(relay.run(relay_stop.clone()));
        self.spawn(sample_pool(
            self.db.clone(),
            self.server.metrics().clone(),
            self.background.clone(),
        ));
        let (db, metrics, stop) = (self.db.clone(), self.server.metrics().clone(), self.background.clone());
        let (nats, retention, consumes) = (self.bus.client().clone(), self.config.retention, self.consumes);
        self.spawn(async move {
            baemin_mesh_events::retention::run(db, nats, retention, consumes, PRUNE_INTERVAL, &metrics, stop).await;
        });
        self.server.serving().set(ServingStatus::Serving).await;
        let draining = self.draining.clone();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            signal.cancelled().await;
            draining.cancel();
        });
        let grace = self.config.shutdown_grace;
        let name = self.config.name;
        let serve = self.server.serve(
            routes,
            baemin_mesh_server::ServeOptions {
                require_identity: self.config.require_identity,
                identity_key: self.config.identity_key.clone(),
                max_message_bytes: self.config.max_message_bytes,
                request_read_timeout: self.config.request_read_timeout,
            },
            shutdown.clone(),
        );
        let served = baemin_mesh_server::within_grace(serve, &shutdown, grace, name).await;
        tracing::info!(service = name, "server drained; stopping consumers and workers");
        self.background.cancel();
        let tasks = async {
            for task in self.tasks.drain(..) {
                let _ = task.await;
            }
        };
        if tokio::time::timeout(grace, tasks).await.is_err() {
            tracing::warn!(service = name, "consumers and workers did not stop within {grace:?}");
        }
        relay_stop.cancel();
        if tokio::time::timeout(grace, relay).await.is_err() {
            tracing::warn!(service = name, "the outbox relay did not stop within {grace:?}");
        }
        let _ = self.bus.client().flush().await;
        self.db.clone().close().await.ok();
        tracing::info!(service = name, "stopped");
        Ok(served?)
    }
}

/// Sets `baemin_db_pool_connections{state="in_use"|"idle"}` every few seconds until `stop`.
async fn sample_pool(db: Db, metrics: baemin_mesh_telemetry::Metrics, stop: CancellationToken) {
    use baemin_mesh_telemetry::{Family, Gauge};
    let family: Family<Vec<(&'static str, &'static str)>, Gauge> = metrics.register(
        "db_pool_connections",
        "Database connections of the pool, by state",
        Family::default(),
    );
    let in_use = family.get_or_create(&vec![("state", "in_use")]).clone();
    let idle = family.get_or_create(&vec![("state", "idle")]).clone();
    loop {
        let (open, free) = db.usage();
        let free = i64::try_from(free).unwrap_or(i64::MAX);
        idle.set(free);
        in_use.set(i64::from(open) - free);
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Retries `attempt` with backoff until it succeeds or `deadline` passes, logging what it waits for.
async fn retry_until<T, E, F, Fut>(
    deadline: tokio::time::Instant,
    what: &str,
    mut attempt: F,
) -> Result<T, StartupError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: Into<StartupError> + std::error::Error,
{
    let mut pause = std::time::Duration::from_millis(200);
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(err) if tokio::time::Instant::now() + pause < deadline => {
                tracing::warn!(error = %err, cause = ?std::error::Error::source(&err), "waiting for {what}; retrying in {pause:?}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(5));
            }
            Err(err) => return Err(err.into()),
        }
    }
}
