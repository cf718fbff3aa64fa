//! The connection to NATS and the one stream every event lives on.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

/// The stream of every domain event (DESIGN.md, "Events").
pub const STREAM_NAME: &str = "BAEMIN_EVENTS";
/// Every event subject starts with this.
pub(crate) const EVENTS_PREFIX: &str = "baemin.events.";

/// NATS or JetStream failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The URL (or list of URLs) is not usable.
    #[error("NATS URL {url:?}: {reason}")]
    Url {
        /// The NATS URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The server could not be reached.
    #[error("cannot reach NATS at {url}")]
    Connect {
        /// The NATS URL.
        url: String,
        /// Why.
        #[source]
        source: async_nats::ConnectError,
    },
    /// The stream could not be created or updated.
    #[error("creating or updating stream {STREAM_NAME}")]
    Stream(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A dead letter could not be stored, listed or re-driven.
    #[error("dead letters")]
    DeadLetter(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A subscription (the change feed's) could not be made.
    #[error("subscribing")]
    Subscribe(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A consumer could not be created.
    #[error("creating consumer {name}")]
    Consumer {
        /// The durable name.
        name: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// How the stream is kept (values an SRE may change per environment).
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Copies kept by a NATS cluster.
    pub replicas: usize,
    /// Window in which a repeated `Nats-Msg-Id` is dropped by the broker (≥ 2 minutes).
    pub duplicate_window: Duration,
    /// How long events are kept (zero: forever).
    pub max_age: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            max_age: Duration::ZERO,
        }
    }
}

/// A connection to NATS with JetStream.
#[derive(Clone)]
pub struct EventBus {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    reconnects: tokio::sync::broadcast::Sender<()>,
}

impl EventBus {
    /// Connects to `url` — one server, or a comma-separated list of a cluster's members (see
    /// [`crate::server_addrs`]) — naming the connection after the service; fails fast if NATS is
    /// unreachable.
    pub async fn connect(url: &str, service: &str) -> Result<Self, BusError> {
        let servers = crate::server_addrs(url).map_err(|reason| BusError::Url {
            url: url.to_owned(),
            reason,
        })?;
        let reconnects = crate::changes::reconnect_channel();
        let told = reconnects.clone();
        let was_lost = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let client = async_nats::ConnectOptions::new()
            .event_callback(move |event| {
                let (told, was_lost) = (told.clone(), was_lost.clone());
                async move {
                    use std::sync::atomic::Ordering::SeqCst;
                    match event {
                        async_nats::Event::Disconnected => was_lost.store(true, SeqCst),
                        async_nats::Event::Connected if was_lost.swap(false, SeqCst) => {
                            let _ = told.send(());
                        }
                        _ => {}
                    }
                }
            })
            .name(format!("baemin-{service}"))
            .connection_timeout(Duration::from_secs(5))
            .connect(servers)
            .await
            .map_err(|source| BusError::Connect {
                url: url.to_owned(),
                source,
            })?;
        let jetstream = jetstream::new(client.clone());
        Ok(Self {
            client,
            jetstream,
            reconnects,
        })
    }

    /// Creates the events stream and the dead-letter stream with `settings` where they are missing; where
    /// they exist, adds what the services need (their subjects, at least `settings`' replicas and duplicate
    /// window) and keeps whatever an operator set beyond it. Idempotent, safe for every replica at start-up.
    pub async fn ensure_stream(&self, settings: &StreamSettings) -> Result<(), BusError> {
        let events = stream::Config {
            name: STREAM_NAME.to_owned(),
            subjects: vec![format!("{}.>", baemin_proto::events::SUBJECT_PREFIX)],
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            num_replicas: settings.replicas,
            duplicate_window: settings.duplicate_window,
            max_age: settings.max_age,
            ..Default::default()
        };
        self.ensure(events).await?;
        self.ensure(crate::deadletter::stream_config(settings.replicas)).await
    }

    async fn ensure(&self, wanted: stream::Config) -> Result<(), BusError> {
        let failed = |e: Box<dyn std::error::Error + Send + Sync>| BusError::Stream(e);
        let mut stream = self
            .jetstream
            .get_or_create_stream(wanted.clone())
            .await
            .map_err(|e| failed(Box::new(e)))?;
        let existing = stream.info().await.map_err(|e| failed(Box::new(e)))?.config.clone();
        if let Some(update) = crate::reconcile::reconcile(&existing, &wanted) {
            tracing::info!(stream = %wanted.name, "adding to the stream what the services need");
            self.jetstream
                .update_stream(update)
                .await
                .map_err(|e| failed(Box::new(e)))?;
        }
        Ok(())
    }

    /// The JetStream context.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    /// A message each time the connection came back after it was lost.
    pub fn reconnects(&self) -> tokio::sync::broadcast::Receiver<()> {
        self.reconnects.subscribe()
    }

    /// The core NATS client.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }
}
