//! The events payment emits: one per change of a payment.

use baemin_mesh_events::{Envelope, Event, new_envelope};
use baemin_proto::events::v1::{PaymentRegistered, PaymentSettled, PaymentVoided};

use crate::domain::{Payment, PaymentStatus};

/// The event announcing that `payment` reached its current status.
pub fn announce(payment: &Payment) -> Envelope {
    let event = match payment.status {
        PaymentStatus::Registered => Event::PaymentRegistered(PaymentRegistered {
            payment_id: payment.payment_id.clone(),
            fee: payment.fee.krw(),
        }),
        PaymentStatus::Settled => {
            let s = payment.settlement.unwrap_or(baemin_kernel::Settlement {
                fee: payment.fee.krw(),
                commission: 0,
                rider_payout: payment.fee.krw(),
            });
            Event::PaymentSettled(PaymentSettled {
                payment_id: payment.payment_id.clone(),
                rider_id: payment.rider_id.as_ref().map(ToString::to_string).unwrap_or_default(),
                fee: s.fee,
                commission: s.commission,
                rider_payout: s.rider_payout,
            })
        }
        PaymentStatus::Voided => Event::PaymentVoided(PaymentVoided {
            payment_id: payment.payment_id.clone(),
        }),
    };
    new_envelope("payment", payment.call_id.as_str(), event)
}
