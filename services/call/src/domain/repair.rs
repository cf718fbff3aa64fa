//! The repair worker: finishes what a crash or a lost payment answer left half done, so that no fee
//! stays registered without a call and no cancellation stays half applied.
//!
//! One round is [`CallApp::repair_once`]; the runtime's `run_every` repeats it until shutdown. Tests drive rounds
//! one by one.

use baemin_kernel::now_millis;
use sea_orm::TransactionTrait;

use super::{Call, CallApp, CallError, PaymentCallError, Registration};
use crate::outbound::{db, intents};

/// Items looked at per kind and round; the rest waits for the next round.
const BATCH: u64 = 100;

/// What one repair round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// PlaceCall intents with no call whose fee was voided and which were removed.
    pub intents_voided: usize,
    /// Marked cancellations completed (fee voided, call CANCELLED).
    pub cancellations_finished: usize,
    /// Marked cancellations dropped because payment had settled the fee.
    pub cancellations_dropped: usize,
    /// Items left for a later round because payment could not be reached.
    pub deferred: usize,
}

impl RepairReport {
    /// Whether the round found nothing to do.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl CallApp {
    /// One round: voids the fee of every PlaceCall intent older than `CALL_REPAIR_AFTER` (or handed
    /// over after a refusal) that no call replaced, and finishes every cancellation marked longer ago
    /// than that. Payment being unreachable defers an item to the next round.
    pub async fn repair_once(&self) -> Result<RepairReport, CallError> {
        let age = i64::try_from(self.repair_after.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now_millis().saturating_sub(age);
        let mut report = RepairReport::default();
        for intent in intents::due(&self.db, cutoff, BATCH).await? {
            self.repair_intent(&intent, cutoff, &mut report).await?;
        }
        for call in db::stale_cancellations(&self.db, cutoff, BATCH).await? {
            self.repair_cancellation(&call, &mut report).await?;
        }
        Ok(report)
    }

    async fn repair_intent(
        &self,
        intent: &Registration,
        cutoff: i64,
        report: &mut RepairReport,
    ) -> Result<(), CallError> {
        let (key, call_id) = (&intent.key, &intent.call_id);
        let txn = self.db.begin().await?;
        if db::find(&txn, call_id).await?.is_some() {
            // A call stands under this id, so its fee is wanted (storing a call removes its intent,
            // so this is only a leftover).
            intents::delete(&txn, key, call_id).await?;
            txn.commit().await?;
            return Ok(());
        }
        if intent.void_requested_at.is_none() && !intents::claim(&txn, key, call_id, Some(cutoff), now_millis()).await?
        {
            // A retry reused the intent or stored its call meanwhile; it is not abandoned.
            txn.commit().await?;
            return Ok(());
        }
        txn.commit().await?;
        match self.payments.void_cost(call_id.clone()).await {
            Ok(()) | Err(PaymentCallError::NotFound) => {}
            Err(PaymentCallError::Refused(detail)) => {
                // Only a settled fee refuses a void, and nothing settles a fee without a call: log it
                // for an operator rather than retry forever.
                tracing::error!(%call_id, request = %key, %detail, "payment refused to void the fee of a call that does not exist");
            }
            Err(PaymentCallError::Unavailable(detail)) => {
                tracing::warn!(%call_id, request = %key, %detail, "cannot void an abandoned fee yet; retrying next round");
                report.deferred += 1;
                return Ok(());
            }
        }
        intents::delete(&self.db, key, call_id).await?;
        report.intents_voided += 1;
        Ok(())
    }

    async fn repair_cancellation(&self, call: &Call, report: &mut RepairReport) -> Result<(), CallError> {
        match self.void_and_cancel(&call.call_id).await {
            Ok(_) => report.cancellations_finished += 1,
            Err(CallError::AlreadySettled) => report.cancellations_dropped += 1,
            Err(CallError::PaymentUnavailable(detail)) => {
                tracing::warn!(call_id = %call.call_id, %detail, "cannot finish a cancellation yet; retrying next round");
                report.deferred += 1;
            }
            // Changed concurrently: the next round looks again if still needed.
            Err(CallError::Contended(_)) => {}
            Err(err) => return Err(err),
        }
        Ok(())
    }
}
