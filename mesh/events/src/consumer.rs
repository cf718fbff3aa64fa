//! Durable pull consumers with explicit acks: each message is decoded, handed to the service's handler
//! (which applies it with the inbox in one transaction), then acked, retried later, or terminated.
//!
//! A consumer applies events in [`LANES`] lanes: the events of one call go through the same lane, one
//! after another in delivery order; events of different calls are applied concurrently (handlers are
//! already safe for that: replicas of a service share the durable consumer). Delivery order is not
//! always publication order — a redelivered event (after a retry, or given back by a stopping
//! consumer) comes after later ones — which the handlers' inbox and state checks already allow for. One event at a time
//! would bound a consumer by the round trips of one transaction — on PostgreSQL, fewer events a second
//! than the mesh produces.

use baemin_mesh_store::Db;
use std::{future::Future, panic::AssertUnwindSafe, sync::Arc, time::Duration};

use async_nats::jetstream::{
    self, AckKind,
    consumer::{self, AckPolicy, Consumer, DeliverPolicy},
};
use baemin_mesh_telemetry::{Counter, Family, Gauge, Metrics, propagation};
use futures::{FutureExt, StreamExt};
use prost::Message;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{
    BusError, Envelope, EventBus, STREAM_NAME,
    deadletter::{self, Casualty},
    envelope::now_millis,
    failures,
};

/// What a handler could not do with an event.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// Try again later (database down, lock conflict): the message is redelivered after a delay, as
    /// often as it takes — an event is never given up because a dependency was down for a while.
    #[error("transient failure: {0}")]
    Transient(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The database gave up on a statement after its timeout (PostgreSQL's statement or lock timeout):
    /// usually load, so retried with backoff like a transient failure, but counted, because a statement
    /// that always exceeds the timeout would otherwise hold its event for ever: past
    /// [`TIMEOUT_ALLOWANCE`] × the consumer's `max_attempts` it is dead-lettered.
    #[error("timed out: {0}")]
    TimedOut(String),
    /// Something unexpected went wrong (an unclassified database error, a panic): retried with backoff
    /// until it has failed the consumer's `max_attempts` times (counted in `crate::failures`), then dead-lettered.
    #[error("failed: {0}")]
    Failed(String),
    /// The event can never be applied (it does not decode, or contradicts what the service knows): it is
    /// stored as a dead letter with this reason at once, then terminated.
    #[error("rejected: {0}")]
    Rejected(String),
}

/// How many times more a statement timeout may fail an event than another failure before it is
/// dead-lettered: timeouts under load pass, so they get a long allowance, but not an endless one.
pub const TIMEOUT_ALLOWANCE: u32 = 10;

/// A handler's outcome, once its failures are counted.
enum Failure {
    /// Failed `.0` times so far, fewer than allowed: tried again.
    Counted(u32, String),
    /// Failed, and the failure could not be recorded (the database is down): tried again, uncounted.
    Uncounted(String, sea_orm::DbErr),
    /// Transient (tried again, uncounted), or final: dead-lettered.
    Final(HandleError),
}

/// A database error is transient when the database is unavailable or a race was lost (retrying
/// cures it, however long it takes); anything else — a constraint we did not expect, a row that does
/// not decode — is a failure: tried the configured number of times, then dead-lettered (kept,
/// re-drivable once fixed) instead of blocking its consumer in an endless retry.
impl From<sea_orm::DbErr> for HandleError {
    fn from(err: sea_orm::DbErr) -> Self {
        if baemin_mesh_store::is_timeout(&err) {
            Self::TimedOut(format!("database statement timed out: {err}"))
        } else if baemin_mesh_store::is_transient(&err) {
            Self::Transient(Box::new(err))
        } else {
            Self::Failed(format!("database error: {err}"))
        }
    }
}

/// A service's reaction to events. Applying the same event twice must change nothing the second
/// time (use [`crate::inbox::first_delivery`] in the same transaction as the change).
pub trait EventHandler: Send + Sync + 'static {
    /// Applies one event that arrived on `subject`.
    fn handle(&self, subject: &str, envelope: Envelope) -> impl Future<Output = Result<(), HandleError>> + Send;

    /// Whether [`Self::handle_all`] applies several events as one unit: then a lane hands it the
    /// events it has queued together (up to 16).
    const HANDLES_ALL: bool = false;

    /// Applies several events a lane had queued (`(subject, envelope)`, in delivery order), as one unit
    /// — one transaction for all. `Ok` means every one is applied; an `Err` says nothing about which
    /// were: the consumer then applies them one by one with [`Self::handle`], where failures are
    /// counted, rejected events dead-lettered, and what was applied already is recognised by the
    /// inbox. By default one by one (used only when [`Self::HANDLES_ALL`]).
    fn handle_all(&self, events: &[(String, Envelope)]) -> impl Future<Output = Result<(), HandleError>> + Send {
        async move {
            for (subject, envelope) in events {
                self.handle(subject, envelope.clone()).await?;
            }
            Ok(())
        }
    }
}

/// One durable consumer: a name that survives restarts, and the subject it reads.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// Durable name, unique per service and subject.
    pub durable: String,
    /// The subject filter, for example `baemin.events.call.placed` or `baemin.events.>`.
    pub subject: String,
    /// Upper bound of the redelivery delay after transient failures (the delay doubles up to it).
    pub max_backoff: Duration,
    /// Failures of an event's handler ([`HandleError::Failed`]) before it is dead-lettered.
    pub max_attempts: u32,
    /// How long the server waits for the ack of a delivered event before delivering it again. This is
    /// how long the events a crashed (SIGKILLed) instance had taken wait before another instance, or
    /// the restarted one, gets them; it must exceed the time a lane takes to apply the events queued
    /// ahead of one (up to `lanes` lanes of a few events each are in flight; a later delivery is
    /// applied once all the same, by the inbox).
    pub ack_wait: Duration,
    /// Events of different calls applied at once (default [`LANES`]); each holds a database
    /// connection while it applies one, so more lanes than the pool has connections only queue.
    pub lanes: usize,
}

impl ConsumerSpec {
    /// A consumer of `subject` for `service`, named `<service>__<subject with . and > replaced>`.
    pub fn new(service: &str, subject: &str) -> Self {
        let suffix = subject.replace('.', "_").replace('>', "all").replace('*', "any");
        Self {
            durable: format!("{service}__{suffix}"),
            subject: subject.to_owned(),
            max_backoff: Duration::from_secs(30),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            ack_wait: Duration::from_secs(10),
            lanes: LANES,
        }
    }

    /// The same, dead-lettering an event after `attempts` failures of its handler (at least 1).
    pub fn with_max_attempts(self, attempts: u32) -> Self {
        Self {
            max_attempts: attempts.max(1),
            ..self
        }
    }
}

/// Events pulled at once: small enough that a batch is applied well within the ack wait.
const BATCH: usize = 32;

/// How often a consumer's pending count is sampled.
const PENDING_SAMPLE: Duration = Duration::from_secs(5);

type Labels = Vec<(&'static str, String)>;

/// What the consumers of one service report: `baemin_events_processed_total{consumer,outcome}`
/// (`applied`, `retried`, `dead_lettered`), `baemin_events_redelivered_total{consumer}` (deliveries
/// after the first) and `baemin_consumer_pending{consumer}` (not yet delivered or not yet acked).
#[derive(Clone)]
pub struct ConsumerMetrics {
    processed: Family<Labels, Counter>,
    redelivered: Family<Labels, Counter>,
    pending: Family<Labels, Gauge>,
}

impl ConsumerMetrics {
    /// Registers the families in `metrics` (once per registry).
    pub fn new(metrics: &Metrics) -> Self {
        Self {
            processed: metrics.register(
                "events_processed",
                "Event deliveries handled, by outcome",
                Family::default(),
            ),
            redelivered: metrics.register(
                "events_redelivered",
                "Deliveries of an event after its first",
                Family::default(),
            ),
            pending: metrics.register(
                "consumer_pending",
                "Events of the consumer's subject not yet delivered, or delivered and not yet acked",
                Family::default(),
            ),
        }
    }

    pub(crate) fn count_redelivery(&self, consumer: &str) {
        self.redelivered
            .get_or_create(&vec![("consumer", consumer.to_owned())])
            .inc();
    }

    pub(crate) fn processed(&self, consumer: &str, outcome: &'static str) {
        self.processed
            .get_or_create(&vec![
                ("consumer", consumer.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .inc();
    }
}

/// Failures of an event's handler before it is dead-lettered, unless configured otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// Creates the durable consumer (or brings an existing one to `spec`), then processes its messages in a task until `shutdown`.
/// The handler's failures on each event are counted in `db` (the service's database, shared by its
/// replicas: see [`crate::failures`]).
pub async fn spawn_consumer<H: EventHandler>(
    bus: &EventBus,
    db: Db,
    spec: ConsumerSpec,
    handler: Arc<H>,
    metrics: ConsumerMetrics,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, BusError> {
    let consumer_error = |source: Box<dyn std::error::Error + Send + Sync>| BusError::Consumer {
        name: spec.durable.clone(),
        source,
    };
    let stream = bus
        .jetstream()
        .get_stream(STREAM_NAME)
        .await
        .map_err(|e| consumer_error(Box::new(e)))?;
    let consumer: Consumer<consumer::pull::Config> = stream
        // Create, or update an existing durable to this config (so a changed ack wait takes effect).
        .create_consumer(consumer::pull::Config {
            durable_name: Some(spec.durable.clone()),
            filter_subject: spec.subject.clone(),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            ack_wait: spec.ack_wait,
            // Unlimited: transient failures are retried until they pass; poison messages are
            // terminated explicitly by `process`, so the server never drops one on its own.
            max_deliver: -1,
            ..Default::default()
        })
        .await
        .map_err(|e| consumer_error(Box::new(e)))?;
    let sampler = sample_pending(
        consumer.clone(),
        spec.durable.clone(),
        metrics.clone(),
        shutdown.clone(),
    );
    let run = run(bus.jetstream().clone(), db, consumer, spec, handler, metrics, shutdown);
    Ok(tokio::spawn(async move {
        tokio::join!(run, sampler);
    }))
}

/// Sets `baemin_consumer_pending` every few seconds until `shutdown`.
async fn sample_pending(
    consumer: Consumer<consumer::pull::Config>,
    durable: String,
    metrics: ConsumerMetrics,
    shutdown: CancellationToken,
) {
    // Every series exists from the start (at 0), so rates and alerts see the first occurrence.
    for outcome in ["applied", "retried", "dead_lettered"] {
        let _ = metrics
            .processed
            .get_or_create(&vec![("consumer", durable.clone()), ("outcome", outcome.to_owned())]);
    }
    let _ = metrics.redelivered.get_or_create(&vec![("consumer", durable.clone())]);
    let gauge = metrics.pending.get_or_create(&vec![("consumer", durable)]).clone();
    loop {
        if let Ok(info) = consumer.get_info().await {
            let pending = info.num_pending.saturating_add(info.num_ack_pending as u64);
            gauge.set(i64::try_from(pending).unwrap_or(i64::MAX));
        }
        tokio::select! {
            () = tokio::time::sleep(PENDING_SAMPLE) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Events of different calls applied at once by one consumer on PostgreSQL, unless configured
/// otherwise (see the module documentation): each lane holds a pooled connection while it applies.
pub const LANES: usize = 8;

/// The same on SQLite: lanes cost no connection there (they take turns on the one), and the write
/// transactions of lanes waiting together commit with one sync — more lanes, fewer syncs per event.
pub const SQLITE_LANES: usize = 32;

/// Events waiting per lane; the pull waits while the lane of the next event is full. Short, so a lane
/// that pauses (a failing dependency) holds few events past their ack wait.
const LANE_QUEUE: usize = 4;

/// The same for a handler that applies several at once ([`EventHandler::HANDLES_ALL`]): it takes what
/// is queued (and what the pull adds meanwhile, up to 16) in one go.
const BATCHING_LANE_QUEUE: usize = 8;

async fn run<H: EventHandler>(
    jetstream: jetstream::Context,
    db: Db,
    consumer: Consumer<consumer::pull::Config>,
    spec: ConsumerSpec,
    handler: Arc<H>,
    metrics: ConsumerMetrics,
    shutdown: CancellationToken,
) {
    let spec = Arc::new(spec);
    let (lanes, workers): (Vec<_>, Vec<_>) = (0..spec.lanes.max(1))
        .map(|_| {
            // Short queues: a lane that pauses (a failing dependency) holds few events past their ack wait.
            let (tx, rx) = tokio::sync::mpsc::channel(if H::HANDLES_ALL {
                BATCHING_LANE_QUEUE
            } else {
                LANE_QUEUE
            });
            let worker = tokio::spawn(lane(
                jetstream.clone(),
                db.clone(),
                Arc::clone(&spec),
                Arc::clone(&handler),
                metrics.clone(),
                rx,
                shutdown.clone(),
            ));
            (tx, worker)
        })
        .unzip();
    pull(&consumer, &spec, &lanes, &shutdown).await;
    if !shutdown.is_cancelled() {
        tracing::error!(consumer = %spec.durable, "a lane of this consumer stopped; the consumer stops with it");
    }
    // Each lane finishes the event it is applying and gives the queued ones back (nak): JetStream
    // redelivers them at once, to this service's next start or another replica.
    drop(lanes);
    for worker in workers {
        let _ = worker.await;
    }
}

/// Pulls messages until `shutdown`, handing each to the lane of its call.
async fn pull(
    consumer: &Consumer<consumer::pull::Config>,
    spec: &ConsumerSpec,
    lanes: &[tokio::sync::mpsc::Sender<async_nats::jetstream::Message>],
    shutdown: &CancellationToken,
) {
    let mut backoff = Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        let mut messages = match consumer
            .stream()
            .max_messages_per_batch(BATCH)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
        {
            Ok(messages) => messages,
            Err(err) => {
                tracing::warn!(consumer = %spec.durable, error = %err, "cannot pull; retrying in {backoff:?}");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        loop {
            let next = tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    give_back(Vec::new(), messages).await;
                    return;
                }
                next = messages.next() => next,
            };
            match next {
                Some(Ok(message)) => {
                    let lane = &lanes[lane_of(&message, lanes.len())];
                    // Waits while that lane is full (back-pressure), but never past shutdown.
                    let slot = tokio::select! {
                        biased;
                        () = shutdown.cancelled() => {
                            give_back(vec![message], messages).await;
                            return;
                        }
                        slot = lane.reserve() => slot,
                    };
                    match slot {
                        Ok(slot) => slot.send(message),
                        Err(_) => return,
                    }
                }
                Some(Err(err)) => {
                    tracing::warn!(consumer = %spec.durable, error = %err, "pull stream error; re-pulling");
                    break;
                }
                None => break,
            }
        }
    }
}

/// Hands a delivered message back to JetStream for redelivery now (instead of after the ack wait).
async fn give_back_one(message: async_nats::jetstream::Message) {
    if let Err(err) = message.ack_with(AckKind::Nak(None)).await {
        tracing::debug!(error = %err, "nak at shutdown failed; the event is redelivered after the ack wait");
    }
}

/// Gives back `held` and the messages the pull stream has already received but not handed out — after
/// closing the stream. Order matters: JetStream redelivers a nak'ed message at once to a pull request
/// still waiting, and this stream's request is one until it expires; once the stream is gone (its
/// subscription with it, on the same connection, so before the naks) the server has no interest to
/// deliver to and hands the messages to another consumer instead of to a closed inbox, where they would
/// wait out their ack wait.
async fn give_back(mut held: Vec<async_nats::jetstream::Message>, mut messages: consumer::pull::Stream) {
    while let Some(Some(Ok(message))) = messages.next().now_or_never() {
        held.push(message);
    }
    drop(messages);
    for message in held {
        give_back_one(message).await;
    }
}

/// The lane of a message: by its call id, so one call's events stay in order (an undecodable message
/// goes to lane 0, where `apply` rejects it).
fn lane_of(message: &async_nats::jetstream::Message, lanes: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let Ok(envelope) = Envelope::decode(message.payload.as_ref()) else {
        return 0;
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    envelope.call_id.hash(&mut hasher);
    (hasher.finish() % lanes.max(1) as u64) as usize
}

/// Applies the messages of one lane in order until its queue closes or `shutdown`.
async fn lane<H: EventHandler>(
    jetstream: jetstream::Context,
    db: Db,
    spec: Arc<ConsumerSpec>,
    handler: Arc<H>,
    metrics: ConsumerMetrics,
    mut queue: tokio::sync::mpsc::Receiver<async_nats::jetstream::Message>,
    shutdown: CancellationToken,
) {
    loop {
        let message = tokio::select! {
            biased;
            () = shutdown.cancelled() => None,
            message = queue.recv() => message,
        };
        let Some(message) = message else {
            break;
        };
        let mut messages = vec![message];
        while H::HANDLES_ALL && messages.len() < crate::batch::MOST {
            match queue.try_recv() {
                Ok(message) => messages.push(message),
                Err(_) => break,
            }
        }
        if messages.len() > 1 && crate::batch::process_all(&db, &spec, handler.as_ref(), &metrics, &messages).await {
            continue;
        }
        let mut messages = messages.into_iter();
        let mut stopped = false;
        while let Some(message) = messages.next() {
            if shutdown.is_cancelled() {
                // Stopping: what is not applied yet goes back at once, as what is still queued does.
                give_back_one(message).await;
                for message in messages.by_ref() {
                    give_back_one(message).await;
                }
                stopped = true;
                break;
            }
            if let Some(pause) = process(&jetstream, &db, &spec, handler.as_ref(), &metrics, message).await {
                // A dependency is failing: slow down instead of churning through the queue.
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = shutdown.cancelled() => {
                        for message in messages.by_ref() {
                            give_back_one(message).await;
                        }
                        stopped = true;
                    }
                }
            }
        }
        if stopped {
            break;
        }
    }
    queue.close();
    while let Ok(message) = queue.try_recv() {
        give_back_one(message).await;
    }
}

/// How often `message` has been delivered, this time included.
pub(crate) fn delivery_count(message: &async_nats::jetstream::Message) -> i64 {
    message.info().map(|i| i.delivered).unwrap_or(1)
}

/// The consumer span of `message`: a child of the producer's (the trace context in its headers).
pub(crate) fn consumer_span(
    spec: &ConsumerSpec,
    message: &async_nats::jetstream::Message,
    subject: &str,
    delivered: i64,
) -> tracing::Span {
    let span = tracing::info_span!(
        "event.process",
        otel.name = %format!("{subject} process"),
        otel.kind = "consumer",
        otel.status_code = Empty,
        messaging.system = "nats",
        messaging.operation.type = "process",
        messaging.destination.name = %subject,
        messaging.consumer.group.name = %spec.durable,
        messaging.message.delivery_count = delivered,
        messaging.message.id = Empty,
    );
    if let Some(headers) = &message.headers {
        let _ = span.set_parent(propagation::extract_with(|key| {
            headers.get(key).map(|v| v.as_str().to_owned())
        }));
    }
    span
}

/// Applies one message and acks it, in a consumer span that is a child of the producer's (the trace
/// context in the message's headers); returns a pause when the handler failed transiently.
async fn process<H: EventHandler>(
    jetstream: &jetstream::Context,
    db: &Db,
    spec: &ConsumerSpec,
    handler: &H,
    metrics: &ConsumerMetrics,
    message: async_nats::jetstream::Message,
) -> Option<Duration> {
    let subject = message.subject.to_string();
    let delivered = delivery_count(&message);
    let span = consumer_span(spec, &message, &subject, delivered);
    if delivered > 1 {
        metrics.count_redelivery(&spec.durable);
    }
    let (pause, outcome) = apply(jetstream, db, spec, handler, message, subject, delivered)
        .instrument(span.clone())
        .await;
    if outcome != "applied" {
        span.record("otel.status_code", "ERROR");
    }
    metrics.processed(&spec.durable, outcome);
    pause
}

/// [`process`] without the telemetry: the pause, and `applied`, `retried` or `dead_lettered`.
async fn apply<H: EventHandler>(
    jetstream: &jetstream::Context,
    db: &Db,
    spec: &ConsumerSpec,
    handler: &H,
    message: async_nats::jetstream::Message,
    subject: String,
    delivered: i64,
) -> (Option<Duration>, &'static str) {
    let mut event_id = None;
    let outcome = match Envelope::decode(message.payload.as_ref()) {
        Ok(envelope) if envelope.event.is_some() && !envelope.event_id.is_empty() => {
            tracing::Span::current().record("messaging.message.id", envelope.event_id.as_str());
            event_id = Some(envelope.event_id.clone());
            // A panicking handler must not kill the consumer task (nothing would restart it).
            AssertUnwindSafe(handler.handle(&subject, envelope))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Err(HandleError::Failed("the handler panicked".into())))
        }
        Ok(_) => Err(HandleError::Rejected("envelope without event or event id".into())),
        Err(err) => Err(HandleError::Rejected(format!("undecodable envelope: {err}"))),
    };
    // A failure counts toward dead-lettering once recorded; one that cannot be recorded (the database
    // is down) is retried like a transient one.
    let outcome = match (outcome, &event_id) {
        (Err(failed @ (HandleError::Failed(_) | HandleError::TimedOut(_))), Some(id)) => {
            // Timeouts and other failures each count against their own allowance.
            let (counter, allowed) = match failed {
                HandleError::TimedOut(_) => (
                    failures::timeouts_of(&spec.durable),
                    spec.max_attempts.saturating_mul(TIMEOUT_ALLOWANCE),
                ),
                _ => (spec.durable.clone(), spec.max_attempts),
            };
            let reason = match failed {
                HandleError::Failed(reason) | HandleError::TimedOut(reason) => reason,
                other => other.to_string(),
            };
            match failures::record(db, &counter, id, now_millis()).await {
                Ok(failures) if failures < allowed => Err(Failure::Counted(failures, reason)),
                Ok(failures) => Err(Failure::Final(HandleError::Failed(format!(
                    "failed {failures} times, last: {reason}"
                )))),
                Err(err) if baemin_mesh_store::is_transient(&err) => Err(Failure::Uncounted(reason, err)),
                // Not countable for another reason (an event id the table cannot hold): JetStream's
                // delivery count stands in, so the event is still dead-lettered in the end.
                Err(err) if delivered < i64::from(allowed) => {
                    tracing::warn!(consumer = %spec.durable, event_id = %id, error = %err, "cannot count the failure; counting deliveries");
                    Err(Failure::Counted(u32::try_from(delivered).unwrap_or(u32::MAX), reason))
                }
                Err(err) => Err(Failure::Final(HandleError::Failed(format!(
                    "failed on {delivered} deliveries (its failures could not be counted: {err}), last: {reason}"
                )))),
            }
        }
        (Err(HandleError::Failed(reason) | HandleError::TimedOut(reason)), None) => {
            Err(Failure::Final(HandleError::Failed(reason)))
        }
        (Err(err), _) => Err(Failure::Final(err)),
        (Ok(()), _) => Ok(()),
    };
    let (ack, pause) = match outcome {
        Ok(()) => (AckKind::Ack, None),
        Err(Failure::Final(HandleError::Transient(err))) => {
            let delay = backoff(delivered, spec.max_backoff);
            tracing::warn!(consumer = %spec.durable, %subject, delivered, error = %err, "event not applied; redelivery in {delay:?}");
            (AckKind::Nak(Some(delay)), Some(delay.min(Duration::from_secs(5))))
        }
        Err(Failure::Uncounted(reason, err)) => {
            let delay = backoff(delivered, spec.max_backoff);
            tracing::warn!(consumer = %spec.durable, %subject, delivered, %reason, error = %err, "event failed and its failure cannot be recorded; redelivery in {delay:?}");
            (AckKind::Nak(Some(delay)), Some(delay.min(Duration::from_secs(5))))
        }
        Err(Failure::Counted(failures, reason)) => {
            let delay = backoff(i64::from(failures), spec.max_backoff);
            tracing::warn!(consumer = %spec.durable, %subject, failures, max_attempts = spec.max_attempts, %reason, "event failed; redelivery in {delay:?}");
            (AckKind::Nak(Some(delay)), None)
        }
        Err(Failure::Final(err)) => {
            let reason = match err {
                HandleError::Failed(reason) => reason,
                other => other.to_string(),
            };
            let stream_sequence = message.info().map(|i| i.stream_sequence).unwrap_or_default();
            let casualty = Casualty {
                consumer: &spec.durable,
                subject: &subject,
                stream_sequence,
                delivered,
                reason: &reason,
                payload: message.payload.clone(),
            };
            match deadletter::record(jetstream, casualty).await {
                Ok(()) => {
                    tracing::error!(consumer = %spec.durable, %subject, delivered, %reason, "event dead-lettered: it can never apply");
                    (AckKind::Term, None)
                }
                // Not stored yet, so not terminated either: try again later.
                Err(store) => {
                    let delay = backoff(delivered, spec.max_backoff);
                    tracing::warn!(consumer = %spec.durable, %subject, %reason, error = %store, "cannot store a dead letter; redelivery in {delay:?}");
                    (AckKind::Nak(Some(delay)), Some(delay.min(Duration::from_secs(5))))
                }
            }
        }
    };
    let outcome = match ack {
        AckKind::Ack => "applied",
        AckKind::Term => "dead_lettered",
        _ => "retried",
    };
    acknowledge(db, spec, &message, ack, event_id.as_deref(), delivered).await;
    (pause, outcome)
}

/// Acks `message` (delivered `delivered` times) as `ack`. An event done with — applied after an earlier
/// delivery, or dead-lettered — has its failures forgotten once acked (before, a lost ack would restart
/// its count): the table holds only events still failing. A count that stays is harmless until the
/// event fails again.
pub(crate) async fn acknowledge(
    db: &Db,
    spec: &ConsumerSpec,
    message: &async_nats::jetstream::Message,
    ack: AckKind,
    event_id: Option<&str>,
    delivered: i64,
) {
    let done = matches!(ack, AckKind::Term) || (matches!(ack, AckKind::Ack) && delivered > 1);
    match message.ack_with(ack).await {
        Err(err) => {
            tracing::warn!(consumer = %spec.durable, subject = %message.subject, error = %err, "ack failed; the event will be redelivered");
        }
        Ok(()) if done => {
            if let Some(id) = event_id
                && let Err(err) = failures::forget(db, &spec.durable, id).await
            {
                tracing::debug!(consumer = %spec.durable, event_id = %id, error = %err, "failure count not forgotten");
            }
        }
        Ok(()) => {}
    }
}

/// 250 ms after the first failure, doubling per delivery, at most `max`.
fn backoff(delivered: i64, max: Duration) -> Duration {
    let exponent = u32::try_from(delivered.clamp(1, 16) - 1).unwrap_or(0);
    Duration::from_millis(250)
        .saturating_mul(2u32.saturating_pow(exponent))
        .min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redelivery_backs_off_exponentially_up_to_the_cap() {
        let cap = Duration::from_secs(30);
        assert_eq!(backoff(1, cap), Duration::from_millis(250));
        assert_eq!(backoff(2, cap), Duration::from_millis(500));
        assert_eq!(backoff(4, cap), Duration::from_secs(2));
        assert_eq!(backoff(9, cap), cap);
        assert_eq!(backoff(10_000, cap), cap);
    }

    #[test]
    fn an_unavailable_database_is_retried_for_ever_and_a_bug_a_bounded_number_of_times() {
        let down = sea_orm::DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout);
        assert!(matches!(HandleError::from(down), HandleError::Transient(_)));
        let bug = sea_orm::DbErr::Custom("row does not map to the domain".into());
        assert!(matches!(HandleError::from(bug), HandleError::Failed(_)));
    }

    #[test]
    fn attempts_are_at_least_one() {
        let spec = ConsumerSpec::new("report", "baemin.events.>");
        assert_eq!(spec.max_attempts, DEFAULT_MAX_ATTEMPTS);
        assert_eq!(spec.with_max_attempts(0).max_attempts, 1);
    }

    #[test]
    fn durable_names_are_derived_from_service_and_subject() {
        assert_eq!(
            ConsumerSpec::new("report", "baemin.events.>").durable,
            "report__baemin_events_all"
        );
        assert_eq!(
            ConsumerSpec::new("rider", "baemin.events.call.placed").durable,
            "rider__baemin_events_call_placed"
        );
    }
}
