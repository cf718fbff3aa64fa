//! Durable pull consumers with explicit acks: each message is decoded, handed to the service's handler
//! (which applies it with the inbox in one transaction), then acked, retried later, or terminated.

use std::{future::Future, sync::Arc, time::Duration};

use async_nats::jetstream::{
    AckKind,
    consumer::{self, AckPolicy, Consumer, DeliverPolicy},
};
use futures::StreamExt;
use prost::Message;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{BusError, Envelope, EventBus, STREAM_NAME};

/// What a handler could not do with an event.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// Try again later (database down, lock conflict): the message is redelivered after a delay.
    #[error("transient failure: {0}")]
    Transient(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The event can never be applied: it is terminated and logged (dead-lettered).
    #[error("rejected: {0}")]
    Rejected(String),
}

impl From<sea_orm::DbErr> for HandleError {
    fn from(err: sea_orm::DbErr) -> Self {
        Self::Transient(Box::new(err))
    }
}

/// A service's reaction to events. Applying the same event twice must change nothing the second
/// time (use [`crate::inbox::first_delivery`] in the same transaction as the change).
pub trait EventHandler: Send + Sync + 'static {
    /// Applies one event that arrived on `subject`.
    fn handle(&self, subject: &str, envelope: Envelope) -> impl Future<Output = Result<(), HandleError>> + Send;
}

/// One durable consumer: a name that survives restarts, and the subject it reads.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// Durable name, unique per service and subject.
    pub durable: String,
    /// The subject filter, for example `baemin.events.call.placed` or `baemin.events.>`.
    pub subject: String,
    /// Deliveries before a failing message is given up (terminated and logged).
    pub max_deliver: i64,
}

impl ConsumerSpec {
    /// A consumer of `subject` for `service`, named `<service>__<subject with . and > replaced>`.
    pub fn new(service: &str, subject: &str) -> Self {
        let suffix = subject.replace('.', "_").replace('>', "all").replace('*', "any");
        Self {
            durable: format!("{service}__{suffix}"),
            subject: subject.to_owned(),
            max_deliver: 20,
        }
    }
}

/// Creates (or reuses) the durable consumer, then processes its messages in a task until `shutdown`.
pub async fn spawn_consumer<H: EventHandler>(
    bus: &EventBus,
    spec: ConsumerSpec,
    handler: Arc<H>,
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
        .get_or_create_consumer(
            &spec.durable,
            consumer::pull::Config {
                durable_name: Some(spec.durable.clone()),
                filter_subject: spec.subject.clone(),
                ack_policy: AckPolicy::Explicit,
                deliver_policy: DeliverPolicy::All,
                ack_wait: Duration::from_secs(30),
                max_deliver: spec.max_deliver,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| consumer_error(Box::new(e)))?;
    Ok(tokio::spawn(run(consumer, spec, handler, shutdown)))
}

async fn run<H: EventHandler>(
    consumer: Consumer<consumer::pull::Config>,
    spec: ConsumerSpec,
    handler: Arc<H>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        let mut messages = match consumer
            .stream()
            .max_messages_per_batch(128)
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
                next = messages.next() => next,
                () = shutdown.cancelled() => return,
            };
            match next {
                Some(Ok(message)) => process(&spec, handler.as_ref(), message).await,
                Some(Err(err)) => {
                    tracing::warn!(consumer = %spec.durable, error = %err, "pull stream error; re-pulling");
                    break;
                }
                None => break,
            }
        }
    }
}

async fn process<H: EventHandler>(spec: &ConsumerSpec, handler: &H, message: async_nats::jetstream::Message) {
    let subject = message.subject.to_string();
    let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
    let outcome = match Envelope::decode(message.payload.as_ref()) {
        Ok(envelope) if envelope.event.is_some() && !envelope.event_id.is_empty() => {
            handler.handle(&subject, envelope).await
        }
        Ok(_) => Err(HandleError::Rejected("envelope without event or event id".into())),
        Err(err) => Err(HandleError::Rejected(format!("undecodable envelope: {err}"))),
    };
    let ack = match outcome {
        Ok(()) => AckKind::Ack,
        Err(HandleError::Transient(err)) if delivered < spec.max_deliver => {
            let delay = Duration::from_millis(250 * 2u64.pow(delivered.clamp(1, 6) as u32 - 1));
            tracing::warn!(consumer = %spec.durable, %subject, delivered, error = %err, "event not applied; redelivery in {delay:?}");
            AckKind::Nak(Some(delay))
        }
        Err(err) => {
            tracing::error!(consumer = %spec.durable, %subject, delivered, error = %err, "event dead-lettered (terminated)");
            AckKind::Term
        }
    };
    if let Err(err) = message.ack_with(ack).await {
        tracing::warn!(consumer = %spec.durable, %subject, error = %err, "ack failed; the event will be redelivered");
    }
}
