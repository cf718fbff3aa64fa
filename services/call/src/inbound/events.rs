//! The consumer of the rider's events: the call follows its delivery (accepted, picked, completed).

use std::sync::Arc;

use baemin_kernel::{CallId, RiderId, now_millis};
use baemin_mesh_events::{Envelope, Event, EventHandler, HandleError};
use baemin_proto::time::to_millis;

use crate::domain::{CallApp, CallError, Delivery, DeliveryEvent};

/// The subjects the call service follows.
pub const SUBJECTS: [&str; 4] = [
    "baemin.events.call.accepted",
    "baemin.events.delivery.picked",
    "baemin.events.delivery.completed",
    // The settled amount of a delivery completed while payment was unavailable comes from payment.
    "baemin.events.payment.settled",
];

/// Applies `CallAccepted`, `DeliveryPicked`, `DeliveryCompleted` and `PaymentSettled` to the call.
pub struct DeliveryFollower {
    app: Arc<CallApp>,
}

impl DeliveryFollower {
    /// Follows deliveries into `app`.
    pub fn new(app: Arc<CallApp>) -> Self {
        Self { app }
    }
}

impl EventHandler for DeliveryFollower {
    const HANDLES_ALL: bool = true;

    async fn handle(&self, subject: &str, envelope: Envelope) -> Result<(), HandleError> {
        let delivery = delivery(subject, envelope).map_err(HandleError::Rejected)?;
        self.app.follow(delivery).await.map_err(handle_error)
    }

    /// A lane's queued events in one transaction (one commit); the lane applies them one by one
    /// instead if this fails (an unreadable event, or one for an unknown call, is dead-lettered there).
    async fn handle_all(&self, events: &[(String, Envelope)]) -> Result<(), HandleError> {
        let deliveries = events
            .iter()
            .map(|(subject, envelope)| delivery(subject, envelope.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(HandleError::Rejected)?;
        self.app.follow_all(&deliveries).await.map_err(handle_error)
    }
}

fn handle_error(err: CallError) -> HandleError {
    match err {
        // The call service stores a call before anyone can learn its id, so an unknown call never
        // appears later: waiting for it would loop.
        err @ CallError::NotFound(_) => HandleError::Rejected(err.to_string()),
        CallError::Db(db) => HandleError::from(db),
        err @ CallError::Contended(_) => HandleError::Transient(Box::new(err)),
        err => HandleError::Rejected(err.to_string()),
    }
}

/// The envelope as a domain delivery event, or why it can never apply.
fn delivery(subject: &str, envelope: Envelope) -> Result<Delivery, String> {
    let call_id = CallId::parse(&envelope.call_id, "call_id").map_err(|v| format!("envelope {v}"))?;
    let rider = |raw: &str| RiderId::parse(raw, "rider_id").map_err(|v| format!("event {v}"));
    let event = match envelope.event {
        Some(Event::CallAccepted(e)) => DeliveryEvent::Accepted {
            rider: rider(&e.rider_id)?,
        },
        Some(Event::DeliveryPicked(e)) => DeliveryEvent::Picked {
            rider: rider(&e.rider_id)?,
        },
        Some(Event::DeliveryCompleted(e)) if e.settlement_pending => DeliveryEvent::CompletedUnsettled {
            rider: rider(&e.rider_id)?,
        },
        Some(Event::DeliveryCompleted(e)) => DeliveryEvent::Completed {
            rider: rider(&e.rider_id)?,
            rider_payout: e.rider_payout,
        },
        Some(Event::PaymentSettled(e)) => DeliveryEvent::Settled {
            rider: rider(&e.rider_id)?,
            rider_payout: e.rider_payout,
        },
        other => {
            return Err(format!(
                "the call service does not follow {:?} events",
                other.map(|e| baemin_proto::events::subject_of(&e))
            ));
        }
    };
    Ok(Delivery {
        event_id: envelope.event_id,
        subject: subject.to_owned(),
        call_id,
        event,
        occurred_at: envelope.occurred_at.as_ref().map(to_millis).unwrap_or_else(now_millis),
    })
}

#[cfg(test)]
mod tests {
    use baemin_mesh_events::new_envelope;
    use baemin_proto::events::v1::{CallPlaced, DeliveryCompleted, PaymentSettled};

    use super::*;

    #[test]
    fn a_completion_becomes_a_delivery_event_with_its_payout() {
        let call_id = CallId::generate();
        let envelope = new_envelope(
            "rider",
            call_id.as_str(),
            Event::DeliveryCompleted(DeliveryCompleted {
                rider_id: "r-1".into(),
                fee: 3_000,
                commission: 300,
                rider_payout: 2_700,
                ..DeliveryCompleted::default()
            }),
        );
        let d = delivery(SUBJECTS[2], envelope.clone()).unwrap();
        assert_eq!(d.call_id, call_id);
        assert_eq!(d.event_id, envelope.event_id);
        assert_eq!(
            d.event,
            DeliveryEvent::Completed {
                rider: RiderId::parse("r-1", "rider_id").unwrap(),
                rider_payout: 2_700
            }
        );
    }

    #[test]
    fn a_completion_with_its_settlement_pending_carries_no_payout_and_payment_settled_does() {
        let call_id = CallId::generate();
        let r1 = RiderId::parse("r-1", "rider_id").unwrap();
        let pending = new_envelope(
            "rider",
            call_id.as_str(),
            Event::DeliveryCompleted(DeliveryCompleted {
                rider_id: "r-1".into(),
                fee: 3_000,
                settlement_pending: true,
                ..DeliveryCompleted::default()
            }),
        );
        assert_eq!(
            delivery(SUBJECTS[2], pending).unwrap().event,
            DeliveryEvent::CompletedUnsettled { rider: r1.clone() }
        );
        let settled = new_envelope(
            "payment",
            call_id.as_str(),
            Event::PaymentSettled(PaymentSettled {
                payment_id: "p-1".into(),
                rider_id: "r-1".into(),
                fee: 3_000,
                commission: 300,
                rider_payout: 2_700,
            }),
        );
        assert_eq!(
            delivery(SUBJECTS[3], settled).unwrap().event,
            DeliveryEvent::Settled {
                rider: r1,
                rider_payout: 2_700
            }
        );
        assert!(SUBJECTS.contains(&"baemin.events.payment.settled"));
    }

    #[test]
    fn events_that_can_never_apply_are_rejected() {
        let call_id = CallId::generate();
        let foreign = new_envelope("call", call_id.as_str(), Event::CallPlaced(CallPlaced::default()));
        assert!(delivery(SUBJECTS[0], foreign).is_err());
        let mut bad_id = new_envelope(
            "rider",
            call_id.as_str(),
            Event::DeliveryCompleted(DeliveryCompleted::default()),
        );
        assert!(delivery(SUBJECTS[2], bad_id.clone()).is_err(), "empty rider id");
        bad_id.call_id = "nope".into();
        assert!(delivery(SUBJECTS[2], bad_id).is_err());
    }
}
