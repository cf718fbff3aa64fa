//! The rider application: each command reads the delivery, lets the model decide, and stores the change
//! with its event in one transaction (outbox). Races are settled by conditional writes on the status:
//! a writer that finds the status moved re-reads and decides again on what the winner left.
//!
//! # PickUp: payment decides between a pick-up and a cancellation
//!
//! A call can be cancelled only before pick-up, and the call service's cancellation and this service's
//! pick-up race across services. Payment decides: the call service's CancelCall voids the fee, PickUp
//! holds it for the rider (HoldCost), and whichever payment applies first wins — a held fee cannot be
//! voided, a voided fee cannot be held. So a pick-up answered OK is never undone by a cancel that was
//! still pending, and a cancellation the call service confirmed (the void applied) can no longer be
//! picked up:
//!
//! 1. The ACCEPTED delivery of the rider is marked `hold_requested_at` (a conditional write).
//! 2. HoldCost is sent, with no transaction open (idempotent at payment for the same rider).
//! 3. Held: one transaction makes the delivery PICKED, clears the mark and emits DeliveryPicked; the
//!    answer is OK. Refused with `FEE_VOIDED`: the cancel won; the delivery is CANCELLED and the answer
//!    FAILED_PRECONDITION.
//! 4. Payment unavailable, or no fee registered yet (the call service's `defer` fallback): the outcome
//!    is not decided, so the answer is UNAVAILABLE and never OK. The
//!    mark stays: the repair worker re-sends HoldCost for every mark older than `RIDER_REPAIR_AFTER`
//!    and records what payment decides (PICKED, or CANCELLED); a rider retrying does the same.
//!
//! # CompleteDelivery: a write-ahead mark before Settle
//!
//! Settle (payment) and the completion (here) cannot share a transaction, so a crash or a lost answer
//! between the two would leave payment SETTLED under a delivery PICKED forever. Hence:
//!
//! 1. The PICKED delivery of the rider is marked `settle_requested_at` (a conditional write) before
//!    anything else.
//! 2. Settle is sent, with no transaction open. It is idempotent at payment: sending it again never
//!    pays twice.
//! 3. Settled: one transaction completes the delivery, clears the mark and emits DeliveryCompleted.
//!    Refused with `FEE_VOIDED`: the call was cancelled, so is the delivery (mark cleared); this only
//!    happens to a delivery picked up before payment held fees. Refused otherwise (settled with
//!    another rider, which the one-rider-per-call accept race rules out): the mark is dropped and the
//!    delivery left as it is, logged as an error.
//! 4. Payment unavailable (down, slow, its circuit open): Settle may or may not have been applied.
//!    The food was delivered, so the delivery completes anyway (the fallback): one transaction moves
//!    it to COMPLETED with its settlement pending, keeps the mark and emits DeliveryCompleted with
//!    `settlement_pending`; the answer is OK. The repair worker (`repair.rs`) re-sends Settle for
//!    every mark older than `RIDER_REPAIR_AFTER` until payment answers, then records the split on
//!    the delivery (no second DeliveryCompleted: payment's PaymentSettled tells the others). The fee
//!    is held for this rider since the pick-up, so no cancellation can void it meanwhile: a
//!    CompleteDelivery answered OK ends COMPLETED and SETTLED. A retry by the same rider is answered
//!    with the delivery as it is.
//! 5. No fee registered yet (the call service's `defer` fallback): the mark stays, the delivery stays
//!    PICKED and the answer is UNAVAILABLE; the repair worker settles once the fee exists.

use baemin_mesh_store::Db;
use std::{sync::Arc, time::Duration};

use baemin_kernel::{CallId, DeliveryStatus, Millis, RiderId, Settlement, now_millis};
use baemin_mesh_events::{ChangeFeed, Envelope, Outbox};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::{
    BoardChange, Change, Completion, Delivery, DeliveryFilter, Listed, Page, PaymentCallError, Payments, PickUp,
    RiderError,
};
use crate::outbound::{
    db::{self, Mark},
    events,
};

/// How often a writer re-reads after losing a race before giving up. A lost race re-decides on the
/// winner's state, which is normally final, so one retry is enough in practice.
pub(super) const RACE_RETRIES: usize = 5;

/// Board changes a slow watcher may fall behind by before it is told to re-read the board.
const BOARD_BACKLOG: usize = 1024;

/// The rider service's use cases.
pub struct RiderApp {
    pub(super) db: Db,
    outbox: Outbox,
    payments: Arc<dyn Payments>,
    board: broadcast::Sender<BoardChange>,
    /// Age after which the repair worker takes over a settlement mark.
    pub(super) repair_after: Duration,
    /// Where board changes are announced to every replica (see [`Self::follow_changes`]); without it (a
    /// single process, tests) they go to this process's watchers directly.
    feed: Option<ChangeFeed>,
}

impl RiderApp {
    /// The application over its database, outbox and payment port; settlements whose outcome is still
    /// unknown after `repair_after` are finished by the repair worker.
    pub fn new(db: Db, outbox: Outbox, payments: Arc<dyn Payments>, repair_after: Duration) -> Self {
        Self {
            db,
            outbox,
            payments,
            board: broadcast::channel(BOARD_BACKLOG).0,
            repair_after,
            feed: None,
        }
    }

    /// Announces board changes on `feed`, for the watchers of every replica.
    pub fn announcing(mut self, feed: ChangeFeed) -> Self {
        self.feed = Some(feed);
        self
    }

    /// Feeds this replica's board watchers from the announcements of every replica (its own included)
    /// until `stop`: each announced call is read again from the shared database, opened or closed as it
    /// is now; after announcements may have been lost, every watcher is sent the board again.
    pub async fn follow_changes(self: Arc<Self>, stop: CancellationToken) {
        let Some(feed) = self.feed.clone() else {
            return;
        };
        let resync = || {
            let _ = self.board.send(BoardChange::Resync);
        };
        let watched = || self.board.receiver_count() > 0;
        feed.run(stop, watched, |key| self.read_again(key), resync).await;
    }

    /// Tells this replica's watchers the call `key` as the board has it now.
    async fn read_again(&self, key: String) {
        let Ok(call_id) = CallId::parse(&key, "call_id") else {
            tracing::warn!(key, "a board change announced for a key that is no call id");
            return;
        };
        let change = match db::find(&self.db, &call_id).await {
            Ok(Some(d)) if d.is_open() => BoardChange::Opened(d),
            Ok(Some(d)) => BoardChange::Closed(d),
            Ok(None) => return,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read an announced board change; watchers resync");
                BoardChange::Resync
            }
        };
        let _ = self.board.send(change);
    }

    /// Changes of the open-call board from now on (subscribe before reading the board, so nothing
    /// falls between the two).
    pub fn watch_board(&self) -> broadcast::Receiver<BoardChange> {
        self.board.subscribe()
    }

    /// Most open calls a watch is sent at its start (see [`RiderApp::open_calls_now`]).
    pub const BOARD_SNAPSHOT: u64 = 100;

    /// The board as WatchOpenCalls starts it (and resends it to a watcher that fell behind): the
    /// [`Self::BOARD_SNAPSHOT`] oldest open calls. A bound, so that one watch cannot make the service read
    /// and send an unbounded board; calls beyond it are paged with ListOpenCalls, and every call that
    /// opens later is streamed as it opens.
    pub async fn open_calls_now(&self) -> Result<Vec<Delivery>, RiderError> {
        Ok(db::oldest_open(&self.db, Self::BOARD_SNAPSHOT).await?)
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
            .transition(
                &call_id,
                |d| d.accept(&rider, now),
                |_, d| Some(events::call_accepted(d)),
            )
            .await?;
        Ok(match change {
            Change::Apply(d) => {
                self.announce(BoardChange::Closed(d.clone())).await;
                d
            }
            Change::AlreadyDone(d) => d,
        })
    }

    /// PickUp: marks the delivery, holds the fee with payment for the rider, then records the pick-up
    /// (see the module header). A delivery this rider already picked up is answered as it is (a retry
    /// whose answer was lost) without reaching payment.
    pub async fn pick_up(&self, call_id: CallId, rider: RiderId) -> Result<Delivery, RiderError> {
        let done = |d: &Delivery| Ok(d.begin_pick_up(&rider)? == PickUp::Done);
        match self.mark(Mark::Hold, &call_id, &rider, done).await? {
            Marked::At(mark) => self.hold_marked(&call_id, &rider, mark).await,
            Marked::Done(delivery) => Ok(*delivery),
        }
    }

    /// CompleteDelivery: marks the delivery, settles the fee with payment, then records the outcome
    /// (see the module header). A delivery this rider already COMPLETED is answered as it is (a retry
    /// whose answer was lost), settled or not, without reaching payment; one still PICKED and marked by
    /// an earlier attempt is settled again (idempotent).
    pub async fn complete(&self, call_id: CallId, rider: RiderId) -> Result<Delivery, RiderError> {
        let done = |d: &Delivery| Ok(d.begin_completion(&rider)? == Completion::Done);
        match self.mark(Mark::Settle, &call_id, &rider, done).await? {
            Marked::At(mark) => self.settle_marked(&call_id, &rider, mark).await,
            Marked::Done(delivery) => Ok(*delivery),
        }
    }

    /// Step 1 of PickUp and CompleteDelivery: the write-ahead `mark` on the delivery of `rider`, unless
    /// `done` says the command was done before (or refuses it).
    async fn mark(
        &self,
        mark: Mark,
        call_id: &CallId,
        rider: &RiderId,
        done: impl Fn(&Delivery) -> Result<bool, RiderError>,
    ) -> Result<Marked, RiderError> {
        for _ in 0..RACE_RETRIES {
            let current = self.get(call_id).await?;
            if done(&current)? {
                return Ok(Marked::Done(Box::new(current)));
            }
            let now = now_millis();
            if db::set_mark(&self.db, mark, call_id, rider, now).await? {
                return Ok(Marked::At(now));
            }
            // The delivery moved since it was read (cancelled, picked up, completed): decide again on it.
        }
        Err(RiderError::Contention(call_id.clone()))
    }

    /// Steps 2 and 3 of PickUp, shared with the repair worker: sends HoldCost for the delivery marked at
    /// `mark` and records what payment decided.
    pub(super) async fn hold_marked(
        &self,
        call_id: &CallId,
        rider: &RiderId,
        mark: Millis,
    ) -> Result<Delivery, RiderError> {
        match self.payments.hold(call_id, rider).await {
            Ok(()) => {
                let now = now_millis();
                let change = self
                    .transition(
                        call_id,
                        |d| d.held(rider, now),
                        |from, d| (from.status == DeliveryStatus::Accepted).then(|| events::delivery_picked(d)),
                    )
                    .await?;
                Ok(into_delivery(change))
            }
            // The cancellation won at payment: CallCancelled is on its way; cancel now.
            Err(PaymentCallError::Voided(reason)) => {
                self.cancel_voided(call_id.clone(), &reason).await?;
                Err(RiderError::Cancelled(call_id.clone()))
            }
            // Undecided: the mark stays for the repair worker (or the rider's retry).
            Err(PaymentCallError::Unavailable(reason)) => Err(RiderError::PaymentUnavailable(call_id.clone(), reason)),
            Err(PaymentCallError::NotFound(_)) => Err(RiderError::FeeNotRegistered(call_id.clone())),
            Err(PaymentCallError::Refused(reason)) => {
                // Held for or settled with another rider: the accept race gives a call one rider, so
                // this is a bug on one side; retrying cannot change it.
                tracing::error!(call_id = %call_id, rider = %rider, %reason, "payment refused to hold the fee; pick-up not recorded");
                db::move_mark(&self.db, Mark::Hold, call_id, mark, None).await?;
                Err(RiderError::PaymentRefused(call_id.clone(), reason))
            }
            Err(PaymentCallError::Unexpected(reason)) => {
                tracing::error!(call_id = %call_id, rider = %rider, %reason, "payment answered HoldCost unexpectedly");
                db::move_mark(&self.db, Mark::Hold, call_id, mark, None).await?;
                Err(RiderError::PaymentFailed(reason))
            }
        }
    }

    /// Steps 2 and 3 of CompleteDelivery, shared with the repair worker: sends Settle for the delivery
    /// marked at `mark` and records what payment answered.
    pub(super) async fn settle_marked(
        &self,
        call_id: &CallId,
        rider: &RiderId,
        mark: Millis,
    ) -> Result<Delivery, RiderError> {
        match self.payments.settle(call_id, rider).await {
            Ok(settlement) => self.record_settlement(call_id.clone(), rider.clone(), settlement).await,
            Err(PaymentCallError::Voided(reason)) => match self.cancel_voided(call_id.clone(), &reason).await? {
                completed if completed.status == DeliveryStatus::Completed => Ok(completed),
                _ => Err(RiderError::NothingToSettle(call_id.clone())),
            },
            // Settle may have been applied and its answer lost: the mark stays for the repair worker,
            // and the delivery completes now with its settlement pending.
            Err(PaymentCallError::Unavailable(reason)) => {
                self.complete_unsettled(call_id.clone(), rider.clone(), &reason).await
            }
            // The fee may still be pending registration (the call service's `defer` fallback): the
            // mark stays, so the settlement goes through once it is registered.
            Err(PaymentCallError::NotFound(_)) => Err(RiderError::FeeNotRegistered(call_id.clone())),
            Err(PaymentCallError::Refused(reason)) => {
                // Held for or settled with another rider: the accept race gives a call one rider, so
                // this is a bug on one side, and no retry changes it. The delivery is left as it is.
                tracing::error!(call_id = %call_id, rider = %rider, %reason, "payment refused to settle; delivery left PICKED");
                db::move_mark(&self.db, Mark::Settle, call_id, mark, None).await?;
                Err(RiderError::PaymentRefused(call_id.clone(), reason))
            }
            Err(PaymentCallError::Unexpected(reason)) => {
                // A bug on one side: retrying would repeat it. The rider may retry a PICKED delivery
                // once it is fixed; a completed one cannot be retried by anyone but the repair
                // worker, so its mark stays (logged every round until the bug is fixed).
                tracing::error!(call_id = %call_id, rider = %rider, %reason, "payment answered Settle unexpectedly");
                if !self.get(call_id).await?.settlement_pending() {
                    db::move_mark(&self.db, Mark::Settle, call_id, mark, None).await?;
                }
                Err(RiderError::PaymentFailed(reason))
            }
        }
    }

    /// Payment settled: one transaction completes the delivery (emitting DeliveryCompleted) or, when
    /// it completed with its settlement pending, records the split (no event: payment's
    /// PaymentSettled announces it); either way the mark is cleared.
    async fn record_settlement(
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
                |from, d| (from.status != DeliveryStatus::Completed).then(|| events::delivery_completed(d)),
            )
            .await;
        if let Err(RiderError::Cancelled(_)) = change {
            // Payment settled, yet the call was cancelled meanwhile: cannot happen while payment
            // arbitrates (a cancellation is applied only once payment voided the fee).
            tracing::error!(call_id = %call_id, rider = %rider, "fee settled for a delivery cancelled meanwhile");
        }
        Ok(into_delivery(change?))
    }

    /// Payment unavailable: one transaction completes the PICKED delivery with its settlement pending,
    /// keeps its mark and emits DeliveryCompleted marked `settlement_pending`. A delivery completed
    /// already (by a racing attempt) is answered as it is.
    async fn complete_unsettled(&self, call_id: CallId, rider: RiderId, reason: &str) -> Result<Delivery, RiderError> {
        let now = now_millis();
        let change = self
            .transition(
                &call_id,
                |d| d.complete_unsettled(&rider, now),
                |_, d| Some(events::delivery_completed(d)),
            )
            .await?;
        if let Change::Apply(_) = change {
            tracing::warn!(call_id = %call_id, rider = %rider, reason, "payment is unavailable; delivery completed, settlement deferred");
        }
        Ok(into_delivery(change))
    }

    /// Payment refused because the fee was voided: the call was cancelled, so is the delivery (even one
    /// completed with its settlement pending), as the delivery is now. No event: the call service emits
    /// CallCancelled.
    async fn cancel_voided(&self, call_id: CallId, reason: &str) -> Result<Delivery, RiderError> {
        tracing::info!(call_id = %call_id, reason, "payment says the fee was voided; cancelling the delivery");
        let now = now_millis();
        let change = self
            .transition(&call_id, |d| Ok(d.cancel_voided(now)), |_, _| None)
            .await?;
        Ok(into_delivery(change))
    }

    /// Reads the delivery, lets `decide` choose, and stores an applied change with its event (`event`
    /// sees the delivery decided from and the next one) conditionally on the status it was decided
    /// from; a lost race re-reads and decides again.
    ///
    /// The read happens before the transaction opens: SQLite has one connection (taken in turns), and the
    /// conditional write is what guards against a concurrent change.
    async fn transition(
        &self,
        call_id: &CallId,
        decide: impl Fn(&Delivery) -> Result<Change, RiderError>,
        event: impl Fn(&Delivery, &Delivery) -> Option<Envelope>,
    ) -> Result<Change, RiderError> {
        for _ in 0..RACE_RETRIES {
            let current = self.get(call_id).await?;
            let next = match decide(&current)? {
                Change::Apply(next) => next,
                done @ Change::AlreadyDone(_) => return Ok(done),
            };
            let txn = baemin_mesh_store::begin_write(&self.db).await?;
            if db::update_from(&txn, &next, current.status).await? {
                if let Some(envelope) = event(&current, &next) {
                    self.outbox.enqueue(&txn, &envelope).await?;
                }
                self.outbox.commit(txn).await?;
                return Ok(Change::Apply(next));
            }
            txn.rollback().await?;
        }
        Err(RiderError::Contention(call_id.clone()))
    }

    /// After a COMMIT that failed but may have happened: the watchers of every replica read the rows of
    /// `changes` again (announced on the feed, which re-reads), or this replica's board watchers read
    /// the board again (no feed: what `changes` say may not have been stored).
    pub(super) async fn announce_in_doubt(&self, changes: Vec<BoardChange>) {
        if changes.is_empty() {
            return;
        }
        match &self.feed {
            Some(_) => {
                for change in changes {
                    self.announce(change).await;
                }
            }
            None => {
                let _ = self.board.send(BoardChange::Resync);
            }
        }
    }

    /// Tells the watchers of every replica (committed changes only); nobody watching is fine.
    pub(super) async fn announce(&self, change: BoardChange) {
        match (&self.feed, change) {
            (Some(feed), BoardChange::Opened(d) | BoardChange::Closed(d)) => feed.announce(d.call_id.as_str()).await,
            (_, change) => {
                let _ = self.board.send(change);
            }
        }
    }
}

fn into_delivery(change: Change) -> Delivery {
    match change {
        Change::Apply(d) | Change::AlreadyDone(d) => d,
    }
}

/// Step 1 of PickUp and CompleteDelivery: the delivery marked at this instant, or the command done
/// before by this rider (a retry whose answer was lost).
enum Marked {
    At(Millis),
    Done(Box<Delivery>),
}
