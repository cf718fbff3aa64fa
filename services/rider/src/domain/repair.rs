//! The repair worker: finishes the PickUp holds and CompleteDelivery settlements that a crash, a lost
//! payment answer or a payment outage left marked, so that every pick-up payment decided is recorded
//! (PICKED, or CANCELLED when the cancellation won), no fee stays SETTLED at payment under a delivery
//! that never completes, and every delivery completed while payment was unavailable is settled
//! exactly once.
//!
//! Each item backs off on its own: a mark payment could not decide yet is moved to the time of this
//! attempt, so it is looked at again `RIDER_REPAIR_AFTER` later, behind every older mark, and marks
//! that keep failing never starve newer ones. A round goes on past an item that fails (a database
//! error included): one bad row never stops the others.
//!
//! One round is [`RiderApp::repair_once`]; the runtime's `run_every` repeats it until shutdown. Tests drive rounds
//! one by one.

use baemin_kernel::{DeliveryStatus, Millis, now_millis};

use super::{Delivery, RiderApp, RiderError};
use crate::outbound::db::{self, Mark};

/// Marks looked at per kind and round; the rest waits for the next round.
const BATCH: u64 = 100;

/// What one repair round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Marked pick-ups payment held the fee for: the deliveries are PICKED.
    pub picked_up: usize,
    /// Marked deliveries settled: completed with their split, or their pending settlement recorded.
    pub settled: usize,
    /// Marked deliveries cancelled because payment had voided the fee.
    pub cancelled: usize,
    /// Marks dropped because payment refused for good (logged as errors).
    pub dropped: usize,
    /// Marks postponed: payment unreachable or undecided, no fee registered yet, or a completed
    /// delivery's Settle answered unexpectedly.
    pub deferred: usize,
    /// Items that failed here (the database): left as they were for the next round.
    pub failed: usize,
}

impl RepairReport {
    /// Whether the round found nothing to do.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// How one item ended.
enum Outcome {
    PickedUp,
    Settled,
    Cancelled,
    Dropped,
    /// Not decided: look again later.
    Deferred,
    /// Nothing for this round (changed concurrently, or already finished).
    Nothing,
}

impl RiderApp {
    /// One round: re-sends HoldCost for every ACCEPTED delivery whose pick-up was marked longer ago than
    /// `RIDER_REPAIR_AFTER`, and Settle for every delivery whose settlement was (PICKED, or COMPLETED
    /// with its settlement pending), and records the outcome as PickUp and CompleteDelivery would. Both
    /// are idempotent at payment, so one applied but whose answer was lost is never applied twice.
    pub async fn repair_once(&self) -> Result<RepairReport, RiderError> {
        let age = i64::try_from(self.repair_after.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now_millis().saturating_sub(age);
        let mut report = RepairReport::default();
        for mark in [Mark::Hold, Mark::Settle] {
            for delivery in db::stale_marks(&self.db, mark, cutoff, BATCH).await? {
                let outcome = match mark {
                    Mark::Hold if delivery.hold_stale(cutoff) => self.repair_hold(&delivery).await,
                    Mark::Settle if delivery.settlement_stale(cutoff) => self.repair_settlement(&delivery).await,
                    _ => Ok(Outcome::Nothing),
                };
                let outcome = match outcome {
                    Ok(Outcome::Deferred) => self.postpone(mark, &delivery).await,
                    other => other,
                };
                match outcome {
                    Ok(Outcome::PickedUp) => report.picked_up += 1,
                    Ok(Outcome::Settled) => report.settled += 1,
                    Ok(Outcome::Cancelled) => report.cancelled += 1,
                    Ok(Outcome::Dropped) => report.dropped += 1,
                    Ok(Outcome::Deferred) => report.deferred += 1,
                    Ok(Outcome::Nothing) => {}
                    Err(err) => {
                        tracing::warn!(call_id = %delivery.call_id, error = %err, "repair of a marked delivery failed; retrying next round");
                        report.failed += 1;
                    }
                }
            }
        }
        Ok(report)
    }

    /// Moves the mark of a delivery payment could not decide to now: it comes up again after
    /// `RIDER_REPAIR_AFTER`, behind the older marks.
    async fn postpone(&self, mark: Mark, delivery: &Delivery) -> Result<Outcome, RiderError> {
        let at = match mark {
            Mark::Hold => delivery.hold_requested_at,
            Mark::Settle => delivery.settle_requested_at,
        };
        if let Some(at) = at {
            db::move_mark(&self.db, mark, &delivery.call_id, at, Some(now_millis().max(at))).await?;
        }
        Ok(Outcome::Deferred)
    }

    async fn repair_hold(&self, delivery: &Delivery) -> Result<Outcome, RiderError> {
        let call_id = &delivery.call_id;
        let Some((rider, mark)) = marked_by(delivery, delivery.hold_requested_at) else {
            return Ok(Outcome::Nothing);
        };
        match self.hold_marked(call_id, rider, mark).await {
            Ok(_) => {
                tracing::info!(%call_id, "payment holds the fee of a pick-up left undecided (or made before fees were held)");
                Ok(Outcome::PickedUp)
            }
            Err(RiderError::Cancelled(_)) => Ok(Outcome::Cancelled),
            Err(err @ (RiderError::PaymentUnavailable(..) | RiderError::FeeNotRegistered(_))) => {
                tracing::warn!(%call_id, error = %err, "a pick-up is still undecided; retrying later");
                Ok(Outcome::Deferred)
            }
            Err(RiderError::PaymentRefused(..) | RiderError::PaymentFailed(_)) => Ok(Outcome::Dropped),
            Err(RiderError::Contention(_) | RiderError::NotFound(_)) => Ok(Outcome::Nothing),
            Err(err) => Err(err),
        }
    }

    async fn repair_settlement(&self, delivery: &Delivery) -> Result<Outcome, RiderError> {
        let call_id = &delivery.call_id;
        let Some((rider, mark)) = marked_by(delivery, delivery.settle_requested_at) else {
            return Ok(Outcome::Nothing);
        };
        match self.settle_marked(call_id, rider, mark).await {
            Ok(done) if done.settlement_pending() => {
                tracing::warn!(%call_id, "payment is still unavailable to settle a completed delivery; retrying later");
                Ok(Outcome::Deferred)
            }
            Ok(done) if done.status == DeliveryStatus::Completed => {
                if delivery.settlement_pending() {
                    tracing::info!(%call_id, "deferred settlement recorded");
                }
                Ok(Outcome::Settled)
            }
            Ok(other) => {
                tracing::warn!(%call_id, status = ?other.status, "settlement repair left the delivery as it was");
                Ok(Outcome::Nothing)
            }
            Err(RiderError::NothingToSettle(_)) => Ok(Outcome::Cancelled),
            Err(RiderError::FeeNotRegistered(_)) => {
                tracing::warn!(%call_id, "payment has no fee for a marked delivery yet; retrying later");
                Ok(Outcome::Deferred)
            }
            // Logged where they were decided; a completed delivery keeps its mark on an unexpected answer.
            Err(RiderError::PaymentFailed(_)) if delivery.settlement_pending() => Ok(Outcome::Deferred),
            Err(RiderError::PaymentRefused(..) | RiderError::PaymentFailed(_)) => Ok(Outcome::Dropped),
            // Cancelled or changed concurrently: the delivery is no longer this round's business, and
            // the next round looks again if it still is.
            Err(RiderError::Cancelled(_) | RiderError::Contention(_) | RiderError::NotFound(_)) => Ok(Outcome::Nothing),
            Err(err) => Err(err),
        }
    }
}

/// The rider and mark of a marked delivery; `None` (logged) for a row without a rider, which an
/// ACCEPTED, PICKED or COMPLETED delivery always has.
fn marked_by(delivery: &Delivery, mark: Option<Millis>) -> Option<(&baemin_kernel::RiderId, Millis)> {
    match (&delivery.rider_id, mark) {
        (Some(rider), Some(mark)) => Some((rider, mark)),
        _ => {
            tracing::error!(call_id = %delivery.call_id, "marked delivery with no rider; skipped");
            None
        }
    }
}
