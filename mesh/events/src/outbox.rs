//! The transactional outbox: an event row is written in the same transaction as the state change, and
//! a relay publishes unsent rows to JetStream (with `Nats-Msg-Id` = event id) and marks them sent.
//! A crash between commit and publish loses nothing: the row is still there at the next start.

use baemin_mesh_store::{Db, Txn};
use std::{future::IntoFuture, sync::Arc, time::Duration};

use async_nats::jetstream::{self, message::PublishMessage};
use baemin_mesh_telemetry::{Counter, Family, Histogram, Metrics, propagation};
use prost::Message;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::Expr,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{Envelope, envelope::now_millis};

/// The `outbox_events` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// One event waiting to be, or already, published.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox_events")]
    pub struct Model {
        /// Publication order.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The envelope's event id (`Nats-Msg-Id`).
        #[sea_orm(unique)]
        pub event_id: String,
        /// Where it is published.
        pub subject: String,
        /// The encoded envelope.
        pub payload: Vec<u8>,
        /// W3C trace context of the producing span, when tracing is on.
        pub traceparent: Option<String>,
        /// When it was written, ms since the epoch.
        pub created_at: i64,
        /// When JetStream acknowledged it; `None` while pending.
        pub published_at: Option<i64>,
    }

    /// No relations.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// How many events in the outbox of `db` wait to be published (the operator's "outbox backlog").
pub async fn backlog<C: ConnectionTrait>(db: &C) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    entity::Entity::find()
        .filter(entity::Column::PublishedAt.is_null())
        .count(db)
        .await
}

/// Writes events into a service's outbox and wakes its relay after commit.
#[derive(Clone, Default)]
pub struct Outbox {
    wake: Arc<Notify>,
}

impl Outbox {
    /// An outbox with no relay attached yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `envelope` to the outbox inside `txn`; it is published only if `txn` commits.
    pub async fn enqueue<C: ConnectionTrait>(&self, txn: &C, envelope: &Envelope) -> Result<(), DbErr> {
        let event = envelope
            .event
            .as_ref()
            .ok_or_else(|| DbErr::Custom("an outbox envelope must carry an event".into()))?;
        let row = entity::ActiveModel {
            id: NotSet,
            event_id: Set(envelope.event_id.clone()),
            subject: Set(baemin_proto::events::subject_of(event).to_owned()),
            payload: Set(envelope.encode_to_vec()),
            // The trace the change belongs to, continued by the relay's publish span.
            traceparent: Set(propagation::traceparent_of(&Span::current())),
            created_at: Set(now_millis()),
            published_at: Set(None),
        };
        entity::Entity::insert(row).exec_without_returning(txn).await?;
        Ok(())
    }

    /// Commits `txn` and wakes the relay so the events go out at once.
    pub async fn commit(&self, txn: Txn) -> Result<(), DbErr> {
        txn.commit().await?;
        self.wake.notify_one();
        Ok(())
    }

    /// The relay publishing this outbox, reporting into `metrics`.
    pub fn relay(&self, db: Db, jetstream: jetstream::Context, metrics: &Metrics) -> OutboxRelay {
        OutboxRelay {
            db,
            jetstream,
            wake: self.wake.clone(),
            batch: 256,
            idle_poll: Duration::from_millis(500),
            metrics: RelayMetrics::new(metrics),
            holder: uuid::Uuid::now_v7().to_string(),
            lease_ttl: crate::lease::LEASE_TTL,
            renewed: std::sync::Mutex::new(None),
        }
    }
}

/// `baemin_outbox_backlog`, `baemin_outbox_published_total{subject}`, `baemin_outbox_publish_failures_total`,
/// `baemin_outbox_publish_delay_seconds` (commit to JetStream's ack).
#[derive(Clone)]
struct RelayMetrics {
    backlog: baemin_mesh_telemetry::Gauge,
    published: Family<Vec<(&'static str, String)>, Counter>,
    failures: Counter,
    delay: Histogram,
}

impl RelayMetrics {
    fn new(metrics: &Metrics) -> Self {
        Self {
            backlog: metrics.gauge(
                "outbox_backlog",
                "Events committed but not yet acknowledged by JetStream",
            ),
            published: metrics.register(
                "outbox_published",
                "Events the relay published, by subject: each is one change stored (a call placed, accepted, …)",
                Family::default(),
            ),
            failures: metrics.counter("outbox_publish_failures", "Relay batches that failed to publish"),
            delay: metrics.latency("outbox_publish_delay", "From an event's commit to JetStream's ack"),
        }
    }
}

/// The producer span of one event: a child of the change that wrote it, its context sent on as
/// `traceparent`. Rows written without a trace get none.
fn publish_span(row: &entity::Model) -> Span {
    let Some(traceparent) = &row.traceparent else {
        return Span::none();
    };
    let span = tracing::info_span!(
        "outbox.publish",
        otel.name = %format!("{} publish", row.subject),
        otel.kind = "producer",
        otel.status_code = Empty,
        messaging.system = "nats",
        messaging.operation.type = "send",
        messaging.destination.name = %row.subject,
        messaging.message.id = %row.event_id,
    );
    let _ = span.set_parent(propagation::from_traceparent(traceparent));
    span
}

/// Publishes outbox rows in order, pipelined, and marks them sent once JetStream acknowledged them —
/// while it holds the database's relay lease ([`crate::lease`]): of the replicas sharing a database,
/// one relay publishes at a time. The others stand by, checking every `idle_poll` whether the holder
/// is gone, so rows a standby's own service wrote go out within that poll of its commit. The lease is
/// only taken or renewed when rows are pending, so idle relays read but never write.
pub struct OutboxRelay {
    db: Db,
    jetstream: jetstream::Context,
    wake: Arc<Notify>,
    batch: u64,
    idle_poll: Duration,
    metrics: RelayMetrics,
    holder: String,
    lease_ttl: Duration,
    /// When this relay last took or renewed the lease (it holds it for `lease_ttl` from then).
    renewed: std::sync::Mutex<Option<tokio::time::Instant>>,
}

/// Publishing failed; the rows stay pending and are retried.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Reading or marking rows failed.
    #[error("outbox database")]
    Db(#[from] DbErr),
    /// JetStream refused or did not acknowledge a publish.
    #[error("publishing to JetStream")]
    Publish(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl OutboxRelay {
    /// Lets the lease go after `ttl` without renewal instead of [`crate::lease::LEASE_TTL`] (tests).
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Publishes up to one batch of pending rows if this relay holds (or takes) the lease; returns how
    /// many were published (0 while another relay holds it).
    ///
    /// All publishes of the batch are sent before any ack is awaited (pipelining); rows are marked in
    /// order up to the first failure, so nothing is marked that JetStream did not store.
    pub async fn relay_once(&self) -> Result<usize, RelayError> {
        let rows = entity::Entity::find()
            .filter(entity::Column::PublishedAt.is_null())
            .order_by_asc(entity::Column::Id)
            .limit(self.batch)
            .all(&self.db)
            .await?;
        // The lease is taken (or renewed) only when there is work: an idle relay writes nothing. A row
        // read just before a previous holder marked it may go out once more; `Nats-Msg-Id` drops it.
        if rows.is_empty() || !self.holds_lease().await? {
            return Ok(0);
        }
        let mut pending = Vec::with_capacity(rows.len());
        let mut failure = None;
        for row in &rows {
            let span = publish_span(row);
            let mut message = PublishMessage::build()
                .payload(row.payload.clone().into())
                .message_id(&row.event_id);
            let mut trace_headers = Vec::new();
            propagation::inject_with(&span.context(), |key, value| {
                trace_headers.push((key.to_owned(), value))
            });
            for (key, value) in trace_headers {
                message = message.header(key.as_str(), value.as_str());
            }
            let sent = self
                .jetstream
                .send_publish(row.subject.clone(), message)
                .instrument(span.clone())
                .await;
            match sent {
                Ok(ack) => pending.push((row, ack, span)),
                Err(err) => {
                    span.record("otel.status_code", "ERROR");
                    failure = Some(RelayError::Publish(Box::new(err)));
                    break;
                }
            }
        }
        let mut acked = Vec::with_capacity(pending.len());
        for (row, ack, span) in pending {
            match ack.into_future().instrument(span.clone()).await {
                Ok(_) => {
                    acked.push(row.id);
                    self.metrics
                        .published
                        .get_or_create(&vec![("subject", row.subject.clone())])
                        .inc();
                    let delay = now_millis().saturating_sub(row.created_at).max(0) as f64 / 1000.0;
                    self.metrics.delay.observe(delay);
                }
                Err(err) => {
                    span.record("otel.status_code", "ERROR");
                    failure.get_or_insert(RelayError::Publish(Box::new(err)));
                    break;
                }
            }
        }
        let published = acked.len();
        if failure.is_some() {
            self.metrics.failures.inc();
        }
        if !acked.is_empty() {
            // One statement, atomic by itself: no BEGIN/COMMIT round trips around it.
            entity::Entity::update_many()
                .col_expr(entity::Column::PublishedAt, Expr::value(now_millis()))
                .filter(entity::Column::Id.is_in(acked))
                .exec(&self.db)
                .await?;
        }
        match failure {
            Some(err) if published == 0 => Err(err),
            Some(err) => {
                tracing::warn!(error = %err, published, "outbox batch partly published; the rest is retried");
                Ok(published)
            }
            None => Ok(published),
        }
    }

    /// Whether this relay holds the lease, renewing it once a quarter of its time has passed since the
    /// last renewal (not on every batch: a write, and on SQLite a sync, per batch saved). Three
    /// quarters of the lease are always left when a batch starts; the time is taken before the
    /// statement, so the lease in the database lasts at least as long as this relay counts on it.
    async fn holds_lease(&self) -> Result<bool, DbErr> {
        let now = tokio::time::Instant::now();
        let renewed = *self.renewed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if renewed.is_some_and(|at| now < at + self.lease_ttl / 4) {
            return Ok(true);
        }
        let held = crate::lease::hold(&self.db, &self.holder, self.lease_ttl).await?;
        *self.renewed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = held.then_some(now);
        Ok(held)
    }

    /// Sets `baemin_outbox_backlog` from the table.
    async fn sample_backlog(&self) {
        if let Ok(n) = backlog(&self.db).await {
            self.metrics.backlog.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Relays until `shutdown`, then flushes what is left (best effort) and returns.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        let mut sampled = tokio::time::Instant::now() - Duration::from_secs(1);
        loop {
            if sampled.elapsed() >= Duration::from_secs(1) {
                self.sample_backlog().await;
                sampled = tokio::time::Instant::now();
            }
            match self.relay_once().await {
                Ok(n) if n as u64 >= self.batch => continue,
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    tokio::select! {
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(self.idle_poll) => {}
                        () = shutdown.cancelled() => break,
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, source = ?std::error::Error::source(&err), "outbox relay failed; retrying in {backoff:?}");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        let flush = async {
            while let Ok(n) = self.relay_once().await {
                if n == 0 {
                    break;
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), flush).await.is_err() {
            tracing::warn!("outbox not fully flushed at shutdown; the rest goes out at the next start");
        }
        // Another replica's relay (or this service's next start) takes over at once.
        if let Err(err) = crate::lease::release(&self.db, &self.holder).await {
            tracing::debug!(error = %err, "relay lease not released; it expires by itself");
        }
    }
}

#[cfg(test)]
mod tests {
    use sea_orm_migration::{MigrationTrait, MigratorTrait};

    use super::*;
    use crate::{Event, new_envelope};

    struct Migrator;

    impl MigratorTrait for Migrator {
        fn migrations() -> Vec<Box<dyn MigrationTrait>> {
            vec![Box::new(crate::migration::CreateOutbox)]
        }
    }

    #[tokio::test]
    async fn the_backlog_counts_committed_unpublished_events_only() {
        let db = baemin_mesh_store::connect::<Migrator>("sqlite::memory:", 1)
            .await
            .unwrap();
        let outbox = Outbox::new();
        let txn = baemin_mesh_store::begin_write(&db).await.unwrap();
        outbox
            .enqueue(
                &txn,
                &new_envelope("test", "c-1", Event::CallCancelled(Default::default())),
            )
            .await
            .unwrap();
        txn.rollback().await.unwrap();
        assert_eq!(
            backlog(&db).await.unwrap(),
            0,
            "a rolled-back change leaves no event behind"
        );
        let txn = baemin_mesh_store::begin_write(&db).await.unwrap();
        for call in ["c-1", "c-2"] {
            outbox
                .enqueue(
                    &txn,
                    &new_envelope("test", call, Event::CallCancelled(Default::default())),
                )
                .await
                .unwrap();
        }
        outbox.commit(txn).await.unwrap();
        assert_eq!(backlog(&db).await.unwrap(), 2);
    }
}
