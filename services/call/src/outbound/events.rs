//! The events the call service emits, and the inbox record of the events it follows.

use baemin_mesh_events::{Envelope, Event, new_envelope};
use baemin_proto::events::v1::{CallCancelled, CallPlaced};

use crate::domain::{Call, PaymentState};

/// The producer name on every envelope of this service.
const PRODUCER: &str = "call";

/// `CallPlaced` for a newly stored call; `payment_pending` when its fee is not registered yet (the
/// `defer` fallback).
pub fn placed(call: &Call) -> Envelope {
    new_envelope(
        PRODUCER,
        call.call_id.as_str(),
        Event::CallPlaced(CallPlaced {
            restaurant_id: call.restaurant_id.to_string(),
            destination: call.destination.to_string(),
            fee: call.fee.krw(),
            payment_pending: call.payment_state == PaymentState::Pending,
        }),
    )
}

/// `CallCancelled` for a call whose cancellation just completed.
pub fn cancelled(call: &Call) -> Envelope {
    new_envelope(
        PRODUCER,
        call.call_id.as_str(),
        Event::CallCancelled(CallCancelled {
            reason: call
                .cancel_reason
                .as_ref()
                .map(|r| r.as_str().to_owned())
                .unwrap_or_default(),
        }),
    )
}
