//! The rider application: each command reads the delivery, lets the model decide, and stores the change
//! with its event in one transaction (outbox). Races are settled by conditional writes on the status:
//! a writer that finds the status moved re-reads and decides again on what the winner left.

use std::sync::Arc;

use baemin_kernel::{CallId, Millis, RiderId, Settlement, now_millis};
use baemin_mesh_events::{Envelope, Outbox};
use sea_orm::{DatabaseConnection, TransactionTrait};
use tokio::sync::broadcast;

use super::{
    BoardChange, CancelOutcome, Change, Delivery, DeliveryFilter, Listed, Page, PaymentCallError, Payments, PlacedCall,
    PlacedOutcome, Receipt, RiderError, on_call_cancelled, on_call_placed,
};
use crate::outbound::{db, events};

/// How often a writer re-reads after losing a race before giving up. A lost race re-decides on the
/// winner's state, which is normally final, so one retry is enough in practice.
const RACE_RETRIES: usize = 5;

/// Board changes a slow watcher may fall behind by before it is told to re-read the board.
const BOARD_BACKLOG: usize = 1024;

/// The rider service's use cases.
pub struct RiderApp {
    db: DatabaseConnection,
    outbox: Outbox,
    payments: Arc<dyn Payments>,
    board: broadcast::Sender<BoardChange>,
}

impl RiderApp {
    /// The application over its database, outbox and payment port.
    pub fn new(db: DatabaseConnection, outbox: Outbox, payments: Arc<dyn Payments>) -> Self {
        Self {
            db,
            outbox,
            payments,
            board: broadcast::channel(BOARD_BACKLOG).0,
        }
    }

    /// Changes of the open-call board from now on (subscribe before reading the board, so nothing
    /// falls between the two).
    pub fn watch_board(&self) -> broadcast::Receiver<BoardChange> {
        self.board.subscribe()
    }

    /// Every open call now, oldest first.
    pub async fn open_calls_now(&self) -> Result<Vec<Delivery>, RiderError> {
        Ok(db::all_open(&self.db).await?)
    }

    /// One page of open calls, oldest first.
    pub async fn list_open(&self, page: Page) -> Result<Listed, RiderError> {
        Ok(db::list_open(&self.db, &page).await?)
    }

    /// One page of deliveries matching `filter`, newest first.
    pub async fn list(&self, filter: DeliveryFilter, page: Page) -> Result<Listed, RiderError> {
        Ok(db::list(&self.db, &filter, &page).await?)
    }

    /// The delivery of `call_id`.
    pub async fn get(&self, call_id: &CallId) -> Result<Delivery, RiderError> {
        db::find(&self.db, call_id)
            .await?
            .ok_or_else(|| RiderError::NotFound(call_id.clone()))
    }

    /// AcceptCall: of riders racing for one open call, exactly one wins (the conditional update
    /// `… WHERE status = 'OPEN'` that affects a row); the others are refused and change nothing.
    pub async fn accept(&self, call_id: CallId, rider: RiderId) -> Result<Delivery, RiderError> {
        let now = now_millis();
        let change = self
            .transition(&call_id, |d| d.accept(&rider, now), |d| Some(events::call_accepted(d)))
            .await?;
        Ok(match change {
            Change::Apply(d) => {
                self.announce(BoardChange::Closed(d.clone()));
                d
            }
            Change::AlreadyDone(d) => d,
        })
    }

    /// PickUp: the rider who accepted has the food.
    pub async fn pick_up(&self, call_id: CallId, rider: RiderId) -> Result<Delivery, RiderError> {
        let now = now_millis();
        let change = self
            .transition(
                &call_id,
                |d| d.pick_up(&rider, now),
                |d| Some(events::delivery_picked(d)),
            )
            .await?;
        Ok(into_delivery(change))
    }

    /// CompleteDelivery: settles the fee with payment, then completes the delivery.
    ///
    /// Settle runs with no transaction open. It is idempotent at payment, so a crash after it (or a
    /// lost answer) is repaired by the client retrying CompleteDelivery.
    pub async fn complete(&self, call_id: CallId, rider: RiderId) -> Result<Delivery, RiderError> {
        let current = self.get(&call_id).await?;
        current.begin_completion(&rider)?;
        match self.payments.settle(&call_id, &rider).await {
            Ok(settlement) => self.record_completion(call_id, rider, settlement).await,
            Err(PaymentCallError::Refused(reason)) => self.cancel_unsettleable(call_id, &reason).await,
            Err(PaymentCallError::Unavailable(reason)) => self.settlement_unavailable(call_id, reason),
            Err(PaymentCallError::NotFound(_)) => Err(RiderError::FeeNotRegistered(call_id)),
            Err(PaymentCallError::Unexpected(reason)) => Err(RiderError::PaymentFailed(reason)),
        }
    }

    /// Applies CallPlaced: the call opens on the board, unless a row for it exists already.
    pub async fn on_call_placed(
        &self,
        receipt: &Receipt,
        call_id: CallId,
        placed: PlacedCall,
    ) -> Result<(), RiderError> {
        for _ in 0..RACE_RETRIES {
            let txn = self.db.begin().await?;
            if !events::first_delivery(&txn, receipt).await? {
                txn.commit().await?;
                return Ok(());
            }
            let current = db::find(&txn, &call_id).await?;
            let opened = match on_call_placed(current.as_ref(), &call_id, &placed, now_millis()) {
                PlacedOutcome::Open(d) => {
                    if !db::insert(&txn, &d).await? {
                        // The cancellation's consumer inserted the row meanwhile: decide again on it.
                        txn.rollback().await?;
                        continue;
                    }
                    Some(d)
                }
                PlacedOutcome::Fill(d) => {
                    db::fill_call(&txn, &d).await?;
                    None
                }
                PlacedOutcome::Unchanged => None,
            };
            txn.commit().await?;
            if let Some(d) = opened {
                self.announce(BoardChange::Opened(d));
            }
            return Ok(());
        }
        Err(RiderError::Contention(call_id))
    }

    /// Applies CallCancelled (which happened at `at`): the call service is the authority, so the
    /// delivery becomes CANCELLED whatever its status short of COMPLETED.
    pub async fn on_call_cancelled(&self, receipt: &Receipt, call_id: CallId, at: Millis) -> Result<(), RiderError> {
        for _ in 0..RACE_RETRIES {
            let txn = self.db.begin().await?;
            if !events::first_delivery(&txn, receipt).await? {
                txn.commit().await?;
                return Ok(());
            }
            let current = db::find(&txn, &call_id).await?;
            let closed = match on_call_cancelled(current.as_ref(), &call_id, at, now_millis()) {
                CancelOutcome::Tombstone(d) => {
                    if !db::insert(&txn, &d).await? {
                        txn.rollback().await?;
                        continue;
                    }
                    None
                }
                CancelOutcome::Cancel(d) => {
                    let from = current.as_ref().map_or(d.status, |c| c.status);
                    if !db::update_from(&txn, &d, from).await? {
                        // A rider command moved the delivery meanwhile: cancel what it left.
                        txn.rollback().await?;
                        continue;
                    }
                    current.filter(Delivery::is_open).map(|_| d)
                }
                CancelOutcome::Unchanged => None,
                CancelOutcome::CompletedFirst => {
                    // Cannot happen while payment arbitrates (the cancel voids the fee first, so
                    // Settle is refused); a completed delivery stays completed.
                    tracing::warn!(call_id = %call_id, "CallCancelled for a completed delivery; kept COMPLETED");
                    None
                }
            };
            txn.commit().await?;
            if let Some(d) = closed {
                self.announce(BoardChange::Closed(d));
            }
            return Ok(());
        }
        Err(RiderError::Contention(call_id))
    }

    /// Payment settled: one transaction completes the delivery and emits DeliveryCompleted.
    async fn record_completion(
        &self,
        call_id: CallId,
        rider: RiderId,
        settlement: Settlement,
    ) -> Result<Delivery, RiderError> {
        let now = now_millis();
        let change = self
            .transition(
                &call_id,
                |d| d.complete(&rider, settlement, now),
                |d| Some(events::delivery_completed(d)),
            )
            .await;
        if let Err(RiderError::Cancelled(_)) = change {
            // Payment settled, yet the call was cancelled meanwhile: the cancel should have voided the
            // fee first (payment arbitrates), so this breaks an invariant an operator must look at.
            tracing::error!(call_id = %call_id, rider = %rider, "fee settled for a delivery cancelled meanwhile");
        }
        Ok(into_delivery(change?))
    }

    /// Payment refused because the fee was voided: the call was cancelled, so is the delivery. No
    /// event: the call service already emitted CallCancelled.
    async fn cancel_unsettleable(&self, call_id: CallId, reason: &str) -> Result<Delivery, RiderError> {
        tracing::info!(call_id = %call_id, reason, "payment refused to settle; cancelling the delivery");
        let now = now_millis();
        let change = self
            .transition(&call_id, |d| Ok(d.cancel_unsettleable(now)), |_| None)
            .await?;
        match into_delivery(change) {
            completed if completed.status == baemin_kernel::DeliveryStatus::Completed => Ok(completed),
            _ => Err(RiderError::NothingToSettle(call_id)),
        }
    }

    /// Payment could not be reached: nothing changes and the rider retries. The deferred-settlement
    /// fallback (complete now, settle durably later) replaces this step.
    fn settlement_unavailable(&self, _call_id: CallId, reason: String) -> Result<Delivery, RiderError> {
        Err(RiderError::PaymentUnavailable(reason))
    }

    /// Reads the delivery, lets `decide` choose, and stores an applied change with its event
    /// conditionally on the status it was decided from; a lost race re-reads and decides again.
    ///
    /// The read happens before the transaction opens: SQLite has one pooled connection, and the
    /// conditional write is what guards against a concurrent change.
    async fn transition(
        &self,
        call_id: &CallId,
        decide: impl Fn(&Delivery) -> Result<Change, RiderError>,
        event: impl Fn(&Delivery) -> Option<Envelope>,
    ) -> Result<Change, RiderError> {
        for _ in 0..RACE_RETRIES {
            let current = self.get(call_id).await?;
            let next = match decide(&current)? {
                Change::Apply(next) => next,
                done @ Change::AlreadyDone(_) => return Ok(done),
            };
            let txn = self.db.begin().await?;
            if db::update_from(&txn, &next, current.status).await? {
                if let Some(envelope) = event(&next) {
                    self.outbox.enqueue(&txn, &envelope).await?;
                }
                self.outbox.commit(txn).await?;
                return Ok(Change::Apply(next));
            }
            txn.rollback().await?;
        }
        Err(RiderError::Contention(call_id.clone()))
    }

    /// Tells the watchers; nobody watching is fine.
    fn announce(&self, change: BoardChange) {
        let _ = self.board.send(change);
    }
}

fn into_delivery(change: Change) -> Delivery {
    match change {
        Change::Apply(d) | Change::AlreadyDone(d) => d,
    }
}
