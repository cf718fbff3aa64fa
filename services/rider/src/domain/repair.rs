//! The repair worker: finishes the CompleteDelivery settlements a crash, a lost payment answer or a
//! payment outage left marked, so that no fee stays SETTLED at payment under a delivery that never
//! completes, and every delivery completed while payment was unavailable is settled exactly once.
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
    /// Marked deliveries settled: completed with their split, or their pending settlement recorded.
    pub settled: usize,
    /// Marked deliveries cancelled because payment had voided the fee.
    pub cancelled: usize,
    /// Marks dropped because payment refused for good (logged for an operator).
    pub dropped: usize,
    /// Marks left for a later round: payment unreachable (the delivery completes with its settlement
    /// pending), no fee registered yet, or a completed delivery's Settle answered unexpectedly.
    pub deferred: usize,
}

impl RepairReport {
    /// Whether the round found nothing to do.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl RiderApp {
    /// One round: re-sends Settle for every delivery marked longer ago than `RIDER_REPAIR_AFTER` (PICKED,
    /// or COMPLETED with its settlement pending) and records the outcome, as CompleteDelivery would.
    /// Settle is idempotent at payment, so a settlement that was applied but whose answer was lost is
    /// never paid twice.
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
            // A PICKED or COMPLETED delivery always has its rider; a row without one cannot be settled.
            tracing::error!(%call_id, "marked settlement of a delivery with no rider; skipped");
            return Ok(());
        };
        match self.settle_marked(call_id, rider, mark).await {
            Ok(done) if done.settlement_pending() => {
                tracing::warn!(%call_id, "payment is still unavailable to settle a completed delivery; retrying next round");
                report.deferred += 1;
            }
            Ok(done) if done.status == DeliveryStatus::Completed => {
                if delivery.settlement_pending() {
                    tracing::info!(%call_id, "deferred settlement recorded");
                }
                report.settled += 1;
            }
            Ok(other) => {
                tracing::warn!(%call_id, status = ?other.status, "settlement repair left the delivery as it was")
            }
            Err(RiderError::NothingToSettle(_)) => report.cancelled += 1,
            Err(RiderError::FeeNotRegistered(_)) => {
                tracing::warn!(%call_id, "payment has no fee for a marked delivery yet; retrying next round");
                report.deferred += 1;
            }
            // Logged where they were decided; a completed delivery keeps its mark on an unexpected answer.
            Err(RiderError::PaymentFailed(_)) if delivery.settlement_pending() => report.deferred += 1,
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
