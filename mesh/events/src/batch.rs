//! Applying the events a lane has queued in one go: one call of the handler's
//! [`EventHandler::handle_all`] (one transaction, one commit, where the handler can), then an ack each.
//! Anything unusual — an event that does not decode, a handler error — and the lane applies the same
//! events one by one instead, where every failure is counted, retried or dead-lettered as usual.

use std::panic::AssertUnwindSafe;

use async_nats::jetstream::{AckKind, Message};
use baemin_mesh_store::Db;
use futures::FutureExt;
use prost::Message as _;
use tracing::Instrument;

use crate::{
    Envelope, EventHandler,
    consumer::{ConsumerMetrics, ConsumerSpec, acknowledge, consumer_span, delivery_count},
};

/// Events a lane applies at once at most.
pub(crate) const MOST: usize = 16;

/// Applies `messages` (of one lane, in delivery order) with one `handle_all`, then acks each. `false`
/// when that could not be done: nothing was acked, and the caller applies them one by one (the inbox
/// recognises what was applied already).
pub(crate) async fn process_all<H: EventHandler>(
    db: &Db,
    spec: &ConsumerSpec,
    handler: &H,
    metrics: &ConsumerMetrics,
    messages: &[Message],
) -> bool {
    let mut events = Vec::with_capacity(messages.len());
    for message in messages {
        match Envelope::decode(message.payload.as_ref()) {
            Ok(envelope) if envelope.event.is_some() && !envelope.event_id.is_empty() => {
                events.push((message.subject.to_string(), envelope));
            }
            _ => return false,
        }
    }
    // Every event keeps its own consumer span, a child of its producer's; the batch's work (its
    // statements) shows under the first.
    let spans: Vec<_> = messages
        .iter()
        .zip(&events)
        .map(|(message, (subject, envelope))| {
            let span = consumer_span(spec, message, subject, delivery_count(message));
            span.record("messaging.message.id", envelope.event_id.as_str());
            span
        })
        .collect();
    let applied = AssertUnwindSafe(handler.handle_all(&events))
        .catch_unwind()
        .instrument(spans[0].clone())
        .await;
    if !matches!(applied, Ok(Ok(()))) {
        // The attempt shows as failed; each event gets a span of its own again one by one.
        for span in &spans {
            span.record("otel.status_code", "ERROR");
        }
        return false;
    }
    for (message, (_, envelope)) in messages.iter().zip(&events) {
        let delivered = delivery_count(message);
        if delivered > 1 {
            metrics.count_redelivery(&spec.durable);
        }
        metrics.processed(&spec.durable, "applied");
        acknowledge(db, spec, message, AckKind::Ack, Some(&envelope.event_id), delivered).await;
    }
    true
}
