//! The money, as the company counts it: `baemin_payment_fees_registered_won_total`,
//! `baemin_payment_fees_voided_won_total`, `baemin_payment_revenue_won_total` (commission) and
//! `baemin_payment_rider_payouts_won_total`, counted once per change actually stored (an idempotent
//! repeat counts nothing).

use baemin_mesh_runtime::Counter;
use baemin_mesh_runtime::Metrics;

use super::{Payment, PaymentStatus};

/// Counters of the money that moved.
#[derive(Clone, Default)]
pub struct PaymentMetrics {
    registered: Counter,
    voided: Counter,
    revenue: Counter,
    payouts: Counter,
}

impl PaymentMetrics {
    /// Counters registered in `metrics`.
    pub fn new(metrics: &Metrics) -> Self {
        Self {
            registered: metrics.counter("payment_fees_registered_won", "Fees registered, KRW"),
            voided: metrics.counter("payment_fees_voided_won", "Fees voided (cancelled calls), KRW"),
            revenue: metrics.counter("payment_revenue_won", "Commission kept on settled deliveries, KRW"),
            payouts: metrics.counter("payment_rider_payouts_won", "Paid to riders on settled deliveries, KRW"),
        }
    }

    /// `payment` was just stored in its new state.
    pub(crate) fn stored(&self, payment: &Payment) {
        let won = |v: i64| u64::try_from(v).unwrap_or(0);
        match payment.status {
            PaymentStatus::Registered => {
                self.registered.inc_by(won(payment.fee.krw()));
            }
            PaymentStatus::Voided => {
                self.voided.inc_by(won(payment.fee.krw()));
            }
            PaymentStatus::Settled => {
                if let Some(s) = &payment.settlement {
                    self.revenue.inc_by(won(s.commission));
                    self.payouts.inc_by(won(s.rider_payout));
                }
            }
        }
    }
}
