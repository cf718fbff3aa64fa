//! The NATS subject each event is published on (DESIGN.md, "Events").

use super::v1::envelope::Event;

/// Every event subject starts with this; the stream captures `baemin.events.>`.
pub const SUBJECT_PREFIX: &str = "baemin.events";

/// The subject an event belongs on.
pub fn subject_of(event: &Event) -> &'static str {
    match event {
        Event::CallPlaced(_) => "baemin.events.call.placed",
        Event::CallCancelled(_) => "baemin.events.call.cancelled",
        Event::CallAccepted(_) => "baemin.events.call.accepted",
        Event::DeliveryPicked(_) => "baemin.events.delivery.picked",
        Event::DeliveryCompleted(_) => "baemin.events.delivery.completed",
        Event::PaymentRegistered(_) => "baemin.events.payment.registered",
        Event::PaymentSettled(_) => "baemin.events.payment.settled",
        Event::PaymentVoided(_) => "baemin.events.payment.voided",
    }
}
