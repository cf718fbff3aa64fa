//! The call events the rider service applies — CallPlaced opens a call on the board, CallCancelled
//! closes it — one at a time or a consumer's queued batch in one transaction, each with its inbox
//! record, the board told after the commit.

use baemin_kernel::{CallId, Millis, now_millis};
use baemin_mesh_store::Txn;

use super::{
    BoardChange, CancelOutcome, Delivery, PlacedCall, PlacedOutcome, Receipt, RiderApp, RiderError, on_call_cancelled,
    on_call_placed, service::RACE_RETRIES,
};
use crate::outbound::db;

/// A call event as the rider service takes it.
#[derive(Debug, Clone)]
pub struct CallEvent {
    /// Which event it is (its inbox record).
    pub receipt: Receipt,
    /// The call it is about.
    pub call_id: CallId,
    /// What happened.
    pub fact: CallFact,
}

/// What a call event says.
#[derive(Debug, Clone)]
pub enum CallFact {
    /// The call was placed, with these facts.
    Placed(PlacedCall),
    /// The call was cancelled at this instant.
    Cancelled(Millis),
}

/// One event applied inside the batch's transaction.
enum Step {
    /// Applied (or a redelivery, recognised); the board change to announce after the commit, if any.
    Done(Option<Box<BoardChange>>),
    /// A concurrent writer of the delivery got there between our read and our write: apply again.
    Raced,
}

/// One event at a time, as the tests apply them.
#[cfg(test)]
impl RiderApp {
    /// Applies CallPlaced: the call opens on the board, unless a row for it exists already.
    pub async fn on_call_placed(
        &self,
        receipt: &Receipt,
        call_id: CallId,
        placed: PlacedCall,
    ) -> Result<(), RiderError> {
        self.apply_call_events(&[CallEvent {
            receipt: receipt.clone(),
            call_id,
            fact: CallFact::Placed(placed),
        }])
        .await
    }

    /// Applies CallCancelled (which happened at `at`): the call service is the authority, so the
    /// delivery becomes CANCELLED whatever its status short of COMPLETED.
    pub async fn on_call_cancelled(&self, receipt: &Receipt, call_id: CallId, at: Millis) -> Result<(), RiderError> {
        self.apply_call_events(&[CallEvent {
            receipt: receipt.clone(),
            call_id,
            fact: CallFact::Cancelled(at),
        }])
        .await
    }
}

impl RiderApp {
    /// Applies `events` in one transaction, each once (a redelivered one, recognised by its inbox record,
    /// applies nothing), and announces the board changes after the commit. A lost race with a rider
    /// command on one of the deliveries applies the whole batch again (up to `RACE_RETRIES` times, then
    /// `Contention`).
    ///
    /// Each call's events apply in the order given. Locks are taken in one order in every replica — the
    /// inbox records by event id, then the deliveries by call id — so two replicas applying batches
    /// about the same calls or events cannot deadlock (PostgreSQL would fail one of them after a second).
    pub async fn apply_call_events(&self, events: &[CallEvent]) -> Result<(), RiderError> {
        let mut lost = 0;
        loop {
            let txn = baemin_mesh_store::begin_write(&self.db).await?;
            let changes = match apply_in(&txn, events).await {
                Ok(Ok(changes)) => changes,
                // A rider command changed one of the deliveries between our read and our write.
                Ok(Err(call_id)) => {
                    txn.rollback().await?;
                    lost += 1;
                    if lost == RACE_RETRIES {
                        return Err(RiderError::Contention(call_id));
                    }
                    continue;
                }
                Err(err) => {
                    // Ended, not dropped: what was read here (on SQLite maybe not yet durable) was acted on.
                    let _ = txn.rollback().await;
                    return Err(err);
                }
            };
            if let Err(err) = txn.commit().await {
                // It may have committed all the same (its answer lost), and a retry will find every event
                // in the inbox and tell nobody: watchers read the board again now.
                self.announce_in_doubt(changes).await;
                return Err(err.into());
            }
            for change in changes {
                self.announce(change).await;
            }
            return Ok(());
        }
    }
}

/// The batch inside `txn`: the board changes to announce after the commit, or the call whose delivery
/// changed between our read and our write (a race lost).
async fn apply_in(txn: &Txn, events: &[CallEvent]) -> Result<Result<Vec<BoardChange>, CallId>, RiderError> {
    let mut fresh: Vec<(&CallEvent, bool)> = events.iter().map(|e| (e, false)).collect();
    let mut by_event: Vec<&mut (&CallEvent, bool)> = fresh.iter_mut().collect();
    by_event.sort_by(|a, b| a.0.receipt.event_id.cmp(&b.0.receipt.event_id));
    for (event, first) in by_event {
        *first =
            baemin_mesh_events::inbox::first_delivery(txn, &event.receipt.subject, &event.receipt.event_id).await?;
    }
    let mut by_call: Vec<&(&CallEvent, bool)> = fresh.iter().filter(|(_, first)| *first).collect();
    by_call.sort_by(|a, b| a.0.call_id.as_str().cmp(b.0.call_id.as_str())); // stable: per call as given
    let mut changes = Vec::new();
    for (event, _) in by_call {
        let step = match &event.fact {
            CallFact::Placed(placed) => open(txn, &event.call_id, placed).await?,
            CallFact::Cancelled(at) => close(txn, &event.call_id, *at).await?,
        };
        match step {
            Step::Done(change) => changes.extend(change.map(|c| *c)),
            Step::Raced => return Ok(Err(event.call_id.clone())),
        }
    }
    Ok(Ok(changes))
}

/// CallPlaced inside `txn`. Most calls are new here: the call opens with an insert, and the row
/// standing is read only if there is one (the cancellation's consumer stored it first) — no read
/// before the write.
async fn open(txn: &Txn, call_id: &CallId, placed: &PlacedCall) -> Result<Step, RiderError> {
    let now = now_millis();
    Ok(match on_call_placed(None, call_id, placed, now) {
        PlacedOutcome::Open(d) if db::insert(txn, &d).await? => Step::Done(Some(Box::new(BoardChange::Opened(d)))),
        _ => match on_call_placed(db::find(txn, call_id).await?.as_ref(), call_id, placed, now) {
            // Not there after all (removed since the insert found it): decide again.
            PlacedOutcome::Open(_) => Step::Raced,
            PlacedOutcome::Fill(d) => {
                db::fill_call(txn, &d).await?;
                Step::Done(None)
            }
            PlacedOutcome::Unchanged => Step::Done(None),
        },
    })
}

/// CallCancelled (which happened at `at`) inside `txn`.
async fn close(txn: &Txn, call_id: &CallId, at: Millis) -> Result<Step, RiderError> {
    let current = db::find(txn, call_id).await?;
    Ok(match on_call_cancelled(current.as_ref(), call_id, at, now_millis()) {
        CancelOutcome::Tombstone(d) => {
            if db::insert(txn, &d).await? {
                Step::Done(None)
            } else {
                Step::Raced
            }
        }
        CancelOutcome::Cancel(d) => {
            let from = current.as_ref().map_or(d.status, |c| c.status);
            // A rider command moved the delivery meanwhile: cancel what it left.
            if !db::update_from(txn, &d, from).await? {
                return Ok(Step::Raced);
            }
            Step::Done(
                current
                    .filter(Delivery::is_open)
                    .map(|_| Box::new(BoardChange::Closed(d))),
            )
        }
        CancelOutcome::Unchanged => Step::Done(None),
        CancelOutcome::CompletedFirst => {
            // Cannot happen while payment arbitrates (the cancel voids the fee first, so Settle is
            // refused); a completed delivery stays completed.
            tracing::warn!(call_id = %call_id, "CallCancelled for a completed delivery; kept COMPLETED");
            Step::Done(None)
        }
    })
}
