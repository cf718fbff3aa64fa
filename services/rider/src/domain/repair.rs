//! The repair worker: finishes the CompleteDelivery settlements a crash or a lost payment answer left
//! marked, so that no fee stays SETTLED at payment under a delivery that never completes.
//!
//! One round is [`RiderApp::repair_once`]; the runtime's `run_every` repeats it until shutdown. Tests drive rounds
//! one by one.

use baemin_kernel::{DeliveryStatus, now_millis};

use super::{Delivery, RiderApp, RiderError};

/// Settlements looked at per round; the rest waits for the next round.
const BATCH: u64 = 100;

/// What one repair round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Marked deliveries settled and completed.
    pub completed: usize,
    /// Marked deliveries cancelled because payment had voided the fee.
    pub cancelled: usize,
    /// Marks dropped because payment refused for good (logged for an operator).
    pub dropped: usize,
    /// Marks left for a later round: payment unreachable, or no fee registered yet.
    pub deferred: usize,
}

impl RepairReport {
    /// Whether the round found nothing to do.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl RiderApp {
    /// One round: re-sends Settle for every delivery marked longer ago than `RIDER_REPAIR_AFTER` and
    /// records the outcome, as CompleteDelivery would. Settle is idempotent at payment, so a settlement
    /// that was applied but whose answer was lost is never paid twice.
    pub async fn repair_once(&self) -> Result<RepairReport, RiderError> {
        let age = i64::try_from(self.repair_after.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now_millis().saturating_sub(age);
        let mut report = RepairReport::default();
        for delivery in crate::outbound::db::stale_settlements(&self.db, cutoff, BATCH).await? {
            if delivery.settlement_stale(cutoff) {
                self.repair_settlement(&delivery, &mut report).await?;
            }
        }
        Ok(report)
    }

    async fn repair_settlement(&self, delivery: &Delivery, report: &mut RepairReport) -> Result<(), RiderError> {
        let call_id = &delivery.call_id;
        let (Some(rider), Some(mark)) = (&delivery.rider_id, delivery.settle_requested_at) else {
            // A PICKED delivery always has its rider; a row without one cannot be settled by anyone.
            tracing::error!(%call_id, "marked settlement of a delivery with no rider; skipped");
            return Ok(());
        };
        match self.settle_marked(call_id, rider, mark).await {
            Ok(done) if done.status == DeliveryStatus::Completed => report.completed += 1,
            Ok(other) => {
                tracing::warn!(%call_id, status = ?other.status, "settlement repair left the delivery as it was")
            }
            Err(RiderError::NothingToSettle(_)) => report.cancelled += 1,
            Err(RiderError::SettlementDeferred(detail)) => {
                tracing::warn!(%call_id, %detail, "cannot settle a marked delivery yet; retrying next round");
                report.deferred += 1;
            }
            Err(RiderError::FeeNotRegistered(_)) => {
                tracing::warn!(%call_id, "payment has no fee for a marked delivery yet; retrying next round");
                report.deferred += 1;
            }
            // Logged where they were decided.
            Err(RiderError::SettlementRefused(..) | RiderError::PaymentFailed(_)) => report.dropped += 1,
            // Cancelled or changed concurrently: the delivery is no longer this round's business, and
            // the next round looks again if it still is.
            Err(RiderError::Cancelled(_) | RiderError::Contention(_) | RiderError::NotFound(_)) => {}
            Err(err @ RiderError::Db(_)) => return Err(err),
            Err(err) => tracing::warn!(%call_id, error = %err, "settlement repair refused; retrying next round"),
        }
        Ok(())
    }
}
