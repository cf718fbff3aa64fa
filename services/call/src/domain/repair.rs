//! The repair worker: finishes what a crash or a lost payment answer left half done, so that no fee
//! stays registered without a call and every cancellation request gets payment's decision, and
//! registers the fees the `defer` fallback left PENDING.
//!
//! Each item backs off on its own: an abandoned intent or a cancellation payment could not decide is
//! looked at again `CALL_REPAIR_AFTER` after this attempt, behind older ones (a deferred registration
//! has its own per-call backoff), so items that keep failing never starve newer ones. A round goes on
//! past an item that fails (a database error included).
//!
//! One round is [`CallApp::repair_once`]; the runtime's `run_every` repeats it until shutdown. Tests drive rounds
//! one by one.

use baemin_kernel::{DeliveryStatus, now_millis};

use super::{Call, CallApp, CallError, PaymentCallError, Registration, service::VoidOutcome};
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
    /// Marked cancellations dropped because payment kept the fee (held for the rider who picked up,
    /// or settled).
    pub cancellations_dropped: usize,
    /// Deferred registrations payment accepted (the call now says REGISTERED).
    pub registrations_completed: usize,
    /// Deferred registrations payment refused (retries stopped).
    pub registrations_refused: usize,
    /// Items left for a later round because payment could not be reached.
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

impl CallApp {
    /// One round: voids the fee of every PlaceCall intent older than `CALL_REPAIR_AFTER` that no call
    /// replaced, finishes every cancellation marked longer ago than that, and retries every due
    /// registration of a PENDING fee. Payment being unreachable defers an item (see the module
    /// documentation).
    pub async fn repair_once(&self) -> Result<RepairReport, CallError> {
        let now = now_millis();
        let cutoff = self.repair_cutoff(now);
        let mut report = RepairReport::default();
        for intent in intents::due(&self.db, cutoff, BATCH).await? {
            let done = self.repair_intent(&intent, cutoff, &mut report).await;
            failed(done, &mut report, intent.call_id.as_str());
        }
        for call in db::stale_cancellations(&self.db, cutoff, BATCH).await? {
            let done = self.repair_cancellation(&call, &mut report).await;
            failed(done, &mut report, call.call_id.as_str());
        }
        for call in db::due_registrations(&self.db, now, BATCH).await? {
            let done = self.retry_registration(&call, &mut report).await;
            failed(done, &mut report, call.call_id.as_str());
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
        let txn = baemin_mesh_store::begin_write(&self.db).await?;
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
                // Payment refuses a void only for a fee held by a rider or settled, and no rider can
                // see a call that was never stored: a bug on one side. Nothing is owed here either
                // way, so the intent goes.
                tracing::error!(%call_id, request = %key, %detail, "payment refused to void the fee of a call that does not exist");
            }
            Err(PaymentCallError::Unavailable(detail)) => {
                tracing::warn!(%call_id, request = %key, %detail, "cannot void an abandoned fee yet; retrying later");
                intents::postpone_void(&self.db, key, call_id, now_millis()).await?;
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
            Ok(VoidOutcome::Done(_)) => report.cancellations_finished += 1,
            Ok(VoidOutcome::Kept(_)) => report.cancellations_dropped += 1,
            Ok(VoidOutcome::Unavailable(why)) => {
                tracing::warn!(call_id = %call.call_id, %why, "payment cannot decide a cancellation yet; retrying later");
                let now = now_millis();
                match self.change_quietly(&call.call_id, |c| c.postpone_cancel(now)).await {
                    Ok(_) | Err(CallError::Contended(_)) => {}
                    Err(err) => return Err(err),
                }
                report.deferred += 1;
            }
            // Changed concurrently: the next round looks again if still needed.
            Err(CallError::Contended(_)) => {}
            Err(err) => return Err(err),
        }
        Ok(())
    }

    /// Tries once to register the PENDING fee of `call`, backing off per call when payment is still
    /// unavailable.
    async fn retry_registration(&self, call: &Call, report: &mut RepairReport) -> Result<(), CallError> {
        let call_id = &call.call_id;
        // Written ahead, conditionally on the call still wanting it: a cancellation decided since
        // (the mark) stops the attempt here, so no RegisterCost is sent after the mark is stored.
        let attempt = match self
            .change_quietly(call_id, |c| c.begin_registration_attempt(now_millis()))
            .await
        {
            Ok((attempt, true)) => attempt,
            Ok((_, false)) | Err(CallError::Contended(_)) => return Ok(()),
            Err(err) => return Err(err),
        };
        match self.payments.register_cost(call_id.clone(), attempt.fee).await {
            Ok(()) => {
                // A cancellation decided meanwhile leaves the call as it is: its void covers the fee
                // just registered (it voids what it finds, or registers and voids it).
                match self
                    .change_visibly(call_id, |c| c.confirm_registration(now_millis()))
                    .await
                {
                    Ok((_, true)) => {
                        tracing::info!(%call_id, attempts = attempt.payment_attempts, "registered a deferred fee");
                        report.registrations_completed += 1;
                    }
                    Ok(_) | Err(CallError::Contended(_)) => {}
                    Err(err) => return Err(err),
                }
            }
            Err(PaymentCallError::Refused(detail)) => {
                // Payment's answer will not change: stop retrying.
                let after = match self.change_quietly(call_id, Call::stop_registration).await {
                    Ok((after, _)) => Some(after),
                    Err(CallError::Contended(_)) => None,
                    Err(err) => return Err(err),
                };
                if after.is_some_and(|c| c.cancel_requested_at.is_some() || c.status == DeliveryStatus::Cancelled) {
                    // Cancelled since the attempt began: its void owns the fee (FEE_VOIDED is expected).
                    tracing::info!(%call_id, %detail, "payment refused the fee of a call cancelled meanwhile");
                } else {
                    // Only a cancellation voids the fee of a stored call, and the fee is always the
                    // call's: a bug on one side, which retrying would only repeat.
                    tracing::error!(%call_id, %detail, "payment refused a deferred fee of a live call; no more retries");
                }
                report.registrations_refused += 1;
            }
            // RegisterCost never answers NOT_FOUND; whatever it means, a later attempt may succeed.
            Err(err @ (PaymentCallError::Unavailable(_) | PaymentCallError::NotFound)) => {
                tracing::warn!(%call_id, attempts = attempt.payment_attempts, next_attempt_at = ?attempt.next_attempt_at,
                    %err, "cannot register a deferred fee yet; retrying later");
                report.deferred += 1;
            }
        }
        Ok(())
    }
}

/// Counts an item that failed here and logs it; the round goes on.
fn failed(done: Result<(), CallError>, report: &mut RepairReport, call_id: &str) {
    if let Err(err) = done {
        tracing::warn!(call_id, error = %err, "repair of an item failed; retrying next round");
        report.failed += 1;
    }
}
