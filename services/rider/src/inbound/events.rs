//! The call events the rider service consumes: CallPlaced opens a call on the board, CallCancelled
//! closes it. Each is applied with its inbox record in one transaction; a lane's queued events in one
//! transaction together.

use std::sync::Arc;

use baemin_kernel::{CallId, Destination, Fee, InvalidInput, RestaurantId, now_millis};
use baemin_mesh_events::{Envelope, Event, EventHandler, HandleError};
use baemin_proto::{events::v1::CallPlaced, time::to_millis};

use crate::domain::{CallEvent, CallFact, PlacedCall, Receipt, RiderApp, RiderError};

/// The subjects this handler is registered for.
pub const SUBJECTS: [&str; 2] = ["baemin.events.call.placed", "baemin.events.call.cancelled"];

/// Applies call events to the rider application.
pub struct CallEvents {
    app: Arc<RiderApp>,
}

impl CallEvents {
    /// A handler feeding `app`.
    pub fn new(app: Arc<RiderApp>) -> Self {
        Self { app }
    }
}

impl EventHandler for CallEvents {
    const HANDLES_ALL: bool = true;

    async fn handle(&self, subject: &str, envelope: Envelope) -> Result<(), HandleError> {
        let event = call_event(subject, envelope)?;
        self.app
            .apply_call_events(std::slice::from_ref(&event))
            .await
            .map_err(handle_error)
    }

    /// A lane's queued events in one transaction (one commit); the lane applies them one by one
    /// instead if this fails (an unreadable event among them is dead-lettered there).
    async fn handle_all(&self, events: &[(String, Envelope)]) -> Result<(), HandleError> {
        let events = events
            .iter()
            .map(|(subject, envelope)| call_event(subject, envelope.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        self.app.apply_call_events(&events).await.map_err(handle_error)
    }
}

/// The event `envelope` (arrived on `subject`) in domain terms; one that cannot be read now never will.
fn call_event(subject: &str, envelope: Envelope) -> Result<CallEvent, HandleError> {
    let call_id =
        CallId::parse(&envelope.call_id, "call_id").map_err(|v| HandleError::Rejected(format!("envelope {v}")))?;
    let at = envelope.occurred_at.as_ref().map_or_else(now_millis, to_millis);
    let fact = match envelope.event {
        Some(Event::CallPlaced(placed)) => CallFact::Placed(
            parse_placed(&placed, at)
                .map_err(|e| HandleError::Rejected(format!("CallPlaced for call {call_id}: {e}")))?,
        ),
        Some(Event::CallCancelled(_)) => CallFact::Cancelled(at),
        _ => return Err(HandleError::Rejected(format!("unexpected event on {subject}"))),
    };
    let receipt = Receipt {
        event_id: envelope.event_id,
        subject: subject.to_owned(),
    };
    Ok(CallEvent { receipt, call_id, fact })
}

/// A storage failure or a lost race is the consumer's to retry; anything else can never apply.
fn handle_error(err: RiderError) -> HandleError {
    match err {
        RiderError::Db(db) => HandleError::from(db),
        contention @ RiderError::Contention(_) => HandleError::Transient(Box::new(contention)),
        other => HandleError::Rejected(other.to_string()),
    }
}

/// The call's facts as the domain takes them; a malformed event can never apply.
fn parse_placed(placed: &CallPlaced, called_at: i64) -> Result<PlacedCall, InvalidInput> {
    let mut errors = InvalidInput::collector();
    let restaurant_id = errors.take(RestaurantId::parse(&placed.restaurant_id, "restaurant_id"));
    let destination = errors.take(Destination::parse(&placed.destination, "destination"));
    let fee = errors.take(Fee::parse(placed.fee, "fee"));
    errors.finish()?;
    match (restaurant_id, destination, fee) {
        (Some(restaurant_id), Some(destination), Some(fee)) => Ok(PlacedCall {
            restaurant_id,
            destination,
            fee,
            called_at,
        }),
        _ => Err(InvalidInput(Vec::new())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_call_placed_names_every_bad_field() {
        let bad = CallPlaced {
            restaurant_id: String::new(),
            destination: " ".into(),
            fee: 0,
            ..CallPlaced::default()
        };
        let err = parse_placed(&bad, 1).unwrap_err();
        let fields: Vec<_> = err.0.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["restaurant_id", "destination", "fee"]);
    }
}
