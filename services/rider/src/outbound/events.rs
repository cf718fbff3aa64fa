//! The events the rider service emits, and the inbox record of the events it applies.

use baemin_mesh_events::{Envelope, Event, new_envelope};
use baemin_proto::events::v1::{CallAccepted, DeliveryCompleted, DeliveryPicked};

use crate::domain::Delivery;

/// The producer name on every envelope this service writes.
const PRODUCER: &str = "rider";

fn rider_of(d: &Delivery) -> String {
    d.rider_id.as_ref().map(ToString::to_string).unwrap_or_default()
}

/// CallAccepted: `d`'s rider won the call.
pub fn call_accepted(d: &Delivery) -> Envelope {
    let event = Event::CallAccepted(CallAccepted { rider_id: rider_of(d) });
    new_envelope(PRODUCER, d.call_id.as_str(), event)
}

/// DeliveryPicked: `d`'s rider has the food.
pub fn delivery_picked(d: &Delivery) -> Envelope {
    let event = Event::DeliveryPicked(DeliveryPicked { rider_id: rider_of(d) });
    new_envelope(PRODUCER, d.call_id.as_str(), event)
}

/// DeliveryCompleted: delivered, and settled as payment split the fee, or with the settlement
/// pending (zero split) when payment was unavailable; PaymentSettled brings the split later.
pub fn delivery_completed(d: &Delivery) -> Envelope {
    let fee = d.fee.map(baemin_kernel::Fee::krw).unwrap_or_default();
    let event = Event::DeliveryCompleted(DeliveryCompleted {
        rider_id: rider_of(d),
        fee: d.settlement.map_or(fee, |s| s.fee),
        commission: d.settlement.map(|s| s.commission).unwrap_or_default(),
        rider_payout: d.settlement.map(|s| s.rider_payout).unwrap_or_default(),
        settlement_pending: d.settlement.is_none(),
    });
    new_envelope(PRODUCER, d.call_id.as_str(), event)
}
