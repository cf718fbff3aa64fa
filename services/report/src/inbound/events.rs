//! The consumer of every event (`baemin.events.>`): each envelope becomes a domain fact and is
//! projected onto its call's row. Protobuf types stop here.

use std::sync::Arc;

use baemin_kernel::{CallId, Destination, Fee, FieldViolation, RestaurantId, RiderId};
use baemin_mesh_events::{Envelope, Event, EventHandler, HandleError};

use crate::domain::{Change, Fact, ReportApp, ReportError, Split};

/// Projects every event of the mesh into the deliverylist.
pub struct Projector {
    app: Arc<ReportApp>,
}

impl Projector {
    /// Feeds `app`.
    pub fn new(app: Arc<ReportApp>) -> Self {
        Self { app }
    }
}

impl EventHandler for Projector {
    const HANDLES_ALL: bool = true;

    async fn handle(&self, subject: &str, envelope: Envelope) -> Result<(), HandleError> {
        // An event that cannot be read now never will be: reject it (dead-letter) instead of looping.
        let fact =
            fact_of(&envelope).map_err(|v| HandleError::Rejected(format!("event {}: {v}", envelope.event_id)))?;
        self.app
            .project(subject, &envelope.event_id, &fact)
            .await
            .map(drop)
            .map_err(handle_error)
    }

    /// A lane's queued events in one transaction (one commit): the deliverylist is where every event
    /// of the mesh lands, so this is the consumer that most needs to keep up.
    async fn handle_all(&self, events: &[(String, Envelope)]) -> Result<(), HandleError> {
        let mut facts = Vec::with_capacity(events.len());
        for (subject, envelope) in events {
            let fact =
                fact_of(envelope).map_err(|v| HandleError::Rejected(format!("event {}: {v}", envelope.event_id)))?;
            facts.push((subject.as_str(), envelope.event_id.as_str(), fact));
        }
        self.app.project_all(&facts).await.map(drop).map_err(handle_error)
    }
}

/// A storage failure is the consumer's to retry; anything else can never apply.
fn handle_error(err: ReportError) -> HandleError {
    match err {
        ReportError::Db(err) => HandleError::from(err),
        err => HandleError::Rejected(err.to_string()),
    }
}

/// What `envelope` says, in domain terms.
pub fn fact_of(envelope: &Envelope) -> Result<Fact, FieldViolation> {
    let call_id = CallId::parse(&envelope.call_id, "call_id")?;
    let occurred_at = envelope
        .occurred_at
        .as_ref()
        .map(baemin_proto::time::to_millis)
        .ok_or_else(|| FieldViolation::new("occurred_at", "is required"))?;
    let event = envelope
        .event
        .as_ref()
        .ok_or_else(|| FieldViolation::new("event", "is required"))?;
    let change = match event {
        Event::CallPlaced(e) => Change::CallPlaced {
            restaurant_id: RestaurantId::parse(&e.restaurant_id, "call_placed.restaurant_id")?,
            destination: Destination::parse(&e.destination, "call_placed.destination")?,
            fee: Fee::parse(e.fee, "call_placed.fee")?,
            payment_pending: e.payment_pending,
        },
        Event::CallCancelled(_) => Change::CallCancelled,
        Event::CallAccepted(e) => Change::CallAccepted {
            rider_id: RiderId::parse(&e.rider_id, "call_accepted.rider_id")?,
        },
        Event::DeliveryPicked(e) => Change::DeliveryPicked {
            rider_id: optional_rider(&e.rider_id, "delivery_picked.rider_id")?,
        },
        Event::DeliveryCompleted(e) => Change::DeliveryCompleted {
            rider_id: optional_rider(&e.rider_id, "delivery_completed.rider_id")?,
            fee: optional_fee(e.fee, "delivery_completed.fee")?,
            split: completed_split(e.fee, e.commission, e.rider_payout),
        },
        Event::PaymentRegistered(e) => Change::PaymentRegistered {
            fee: optional_fee(e.fee, "payment_registered.fee")?,
        },
        Event::PaymentSettled(e) => {
            if e.commission < 0 || e.rider_payout < 0 {
                return Err(FieldViolation::new(
                    "payment_settled",
                    "commission and rider_payout must not be negative",
                ));
            }
            Change::PaymentSettled {
                rider_id: optional_rider(&e.rider_id, "payment_settled.rider_id")?,
                fee: optional_fee(e.fee, "payment_settled.fee")?,
                split: Split {
                    rider_payout: e.rider_payout,
                    commission: e.commission,
                },
            }
        }
        Event::PaymentVoided(_) => Change::PaymentVoided,
    };
    Ok(Fact {
        call_id,
        occurred_at,
        change,
    })
}

/// The split a `DeliveryCompleted` reports, if it reports one: a completion whose settlement was
/// deferred (payment down) carries zeros, and `PaymentSettled` brings the split later.
fn completed_split(fee: i64, commission: i64, rider_payout: i64) -> Option<Split> {
    let total = commission.checked_add(rider_payout)?;
    (commission >= 0 && rider_payout >= 0 && total > 0 && (fee == 0 || total == fee)).then_some(Split {
        rider_payout,
        commission,
    })
}

/// Empty means the producer did not say.
fn optional_rider(raw: &str, field: &str) -> Result<Option<RiderId>, FieldViolation> {
    if raw.is_empty() {
        Ok(None)
    } else {
        RiderId::parse(raw, field).map(Some)
    }
}

/// Zero means the producer did not say.
fn optional_fee(krw: i64, field: &str) -> Result<Option<Fee>, FieldViolation> {
    if krw == 0 {
        Ok(None)
    } else {
        Fee::parse(krw, field).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use baemin_mesh_events::new_envelope;
    use baemin_proto::events::v1::{CallAccepted, CallPlaced, DeliveryCompleted};

    use super::*;

    #[test]
    fn a_placed_call_becomes_a_fact_with_its_fields() {
        let call_id = CallId::generate();
        let envelope = new_envelope(
            "call",
            call_id.as_str(),
            Event::CallPlaced(CallPlaced {
                restaurant_id: "store-1".into(),
                destination: "Gangnam-gu 1".into(),
                fee: 3_000,
                payment_pending: false,
            }),
        );
        let fact = fact_of(&envelope).unwrap();
        assert_eq!(fact.call_id, call_id);
        assert!(matches!(fact.change, Change::CallPlaced { fee, .. } if fee.krw() == 3_000));
    }

    #[test]
    fn an_envelope_that_can_never_apply_names_what_is_wrong() {
        let bad_call = new_envelope("call", "nope", Event::CallCancelled(Default::default()));
        assert_eq!(fact_of(&bad_call).unwrap_err().field, "call_id");
        let no_rider = new_envelope(
            "rider",
            CallId::generate().as_str(),
            Event::CallAccepted(CallAccepted::default()),
        );
        assert_eq!(fact_of(&no_rider).unwrap_err().field, "call_accepted.rider_id");
    }

    #[test]
    fn a_completion_without_settlement_carries_no_split() {
        let envelope = new_envelope(
            "rider",
            CallId::generate().as_str(),
            Event::DeliveryCompleted(DeliveryCompleted {
                rider_id: "r-1".into(),
                fee: 3_000,
                commission: 0,
                rider_payout: 0,
                settlement_pending: true,
            }),
        );
        let Change::DeliveryCompleted { split, .. } = fact_of(&envelope).unwrap().change else {
            panic!("expected a completion");
        };
        assert_eq!(split, None);
        assert_eq!(
            completed_split(3_000, 300, 2_700),
            Some(Split {
                rider_payout: 2_700,
                commission: 300
            })
        );
        assert_eq!(completed_split(3_000, 300, 2_000), None, "does not add up");
    }
}
