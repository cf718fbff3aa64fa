//! The payment application: each command reads the payment, lets the model decide, and stores the
//! change with its event in one transaction (outbox). Races are settled by conditional writes.

use baemin_kernel::{CallId, CommissionRate, Fee, RiderId, now_millis};
use baemin_mesh_events::Outbox;
use baemin_mesh_store::Db;

use super::{Change, Payment, PaymentError, PaymentMetrics};
use crate::outbound::{db, events};

/// How often a command re-reads after losing a race before giving up (a lost race re-decides on the
/// winner's state, so one retry is normally enough).
const RACE_RETRIES: usize = 3;

/// The payment service's use cases.
pub struct PaymentApp {
    db: Db,
    outbox: Outbox,
    commission: CommissionRate,
    metrics: PaymentMetrics,
}

impl PaymentApp {
    /// The application over its database and outbox.
    pub fn new(db: Db, outbox: Outbox, commission: CommissionRate) -> Self {
        Self {
            db,
            outbox,
            commission,
            metrics: PaymentMetrics::default(),
        }
    }

    /// The same, counting the money that moves into `metrics`.
    pub fn with_metrics(self, metrics: PaymentMetrics) -> Self {
        Self { metrics, ..self }
    }

    /// Registers `fee` for `call_id`; the same fee again returns the existing payment.
    pub async fn register(&self, call_id: CallId, fee: Fee) -> Result<Payment, PaymentError> {
        for _ in 0..RACE_RETRIES {
            let txn = baemin_mesh_store::begin_write(&self.db).await?;
            // Most registrations are new: insert first, and read the standing payment only if there is
            // one (a retry, or a concurrent registration of the same call that won).
            let payment = Payment::register(call_id.clone(), fee, now_millis());
            if db::insert(&txn, &payment).await? {
                self.outbox.enqueue(&txn, &events::announce(&payment)).await?;
                self.outbox.commit(txn).await?;
                self.metrics.stored(&payment);
                return Ok(payment);
            }
            if let Some(existing) = db::find(&txn, &call_id).await? {
                txn.commit().await?;
                return match existing.register_again(fee)? {
                    Change::Apply(p) | Change::AlreadyDone(p) => Ok(p),
                };
            }
            // The conflicting row is not visible to us yet (a concurrent registration still
            // committing): decide again.
        }
        Err(PaymentError::Contention(format!(
            "call {call_id} is being registered concurrently; retry"
        )))
    }

    /// Settles the fee of `call_id` with `rider`. Settling twice never pays twice.
    pub async fn settle(&self, call_id: CallId, rider: RiderId) -> Result<Payment, PaymentError> {
        let commission = self.commission;
        self.change(call_id, |p| p.settle(&rider, commission, now_millis()))
            .await
    }

    /// Holds the fee of `call_id` for `rider`, who is picking the food up: from then on it cannot be
    /// voided. Holding twice for the same rider is a no-op.
    pub async fn hold(&self, call_id: CallId, rider: RiderId) -> Result<Payment, PaymentError> {
        self.change(call_id, |p| p.hold(&rider, now_millis())).await
    }

    /// Voids the fee of `call_id`. Voiding twice is a no-op.
    pub async fn void(&self, call_id: CallId) -> Result<Payment, PaymentError> {
        self.change(call_id, |p| p.void(now_millis())).await
    }

    /// The payment of `call_id`.
    pub async fn get(&self, call_id: CallId) -> Result<Payment, PaymentError> {
        db::find(&self.db, &call_id)
            .await?
            .ok_or_else(|| PaymentError::NotFound(call_id.to_string()))
    }

    async fn change(
        &self,
        call_id: CallId,
        decide: impl Fn(&Payment) -> Result<Change, PaymentError>,
    ) -> Result<Payment, PaymentError> {
        for _ in 0..RACE_RETRIES {
            let txn = baemin_mesh_store::begin_write(&self.db).await?;
            let current = db::find(&txn, &call_id)
                .await?
                .ok_or_else(|| PaymentError::NotFound(call_id.to_string()))?;
            match decide(&current)? {
                Change::AlreadyDone(p) => {
                    txn.commit().await?;
                    return Ok(p);
                }
                Change::Apply(next) => {
                    if db::update_from(&txn, &next, &current).await? {
                        // One event per status; a hold changes who may be paid, not the status.
                        if next.status == current.status {
                            txn.commit().await?;
                        } else {
                            self.outbox.enqueue(&txn, &events::announce(&next)).await?;
                            self.outbox.commit(txn).await?;
                            self.metrics.stored(&next);
                        }
                        return Ok(next);
                    }
                    // Another command changed the payment meanwhile; decide again on what it did.
                }
            }
        }
        Err(PaymentError::Contention(format!(
            "payment of call {call_id} is changing concurrently; retry"
        )))
    }
}
