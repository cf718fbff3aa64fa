//! A delivery as the rider service knows it, and the decisions each command and event make on it (pure:
//! no I/O). The application stores what these decide; the tests below pin every transition.

use baemin_kernel::{
    CallId, DeliveryStatus, Destination, Fee, Millis, PageSize, PageToken, RestaurantId, RiderId, Settlement,
};

use super::RiderError;

/// The name of a status in this service's API and table: a CALLED delivery is OPEN on the board.
pub fn status_label(status: DeliveryStatus) -> &'static str {
    match status {
        DeliveryStatus::Called => "OPEN",
        other => other.as_str(),
    }
}

/// Parses a name written by [`status_label`].
pub fn status_from_label(label: &str) -> Option<DeliveryStatus> {
    DeliveryStatus::ALL.into_iter().find(|s| status_label(*s) == label)
}

/// What a CallPlaced event tells the rider service about a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedCall {
    /// Who placed it.
    pub restaurant_id: RestaurantId,
    /// Where the food goes.
    pub destination: Destination,
    /// What the delivery pays.
    pub fee: Fee,
    /// When the call was placed (the event's `occurred_at`).
    pub called_at: Millis,
}

/// One delivery: a call on the board, then a rider's job.
///
/// The call's facts are optional only for a tombstone: a CANCELLED row written when the cancellation
/// arrived before the call itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The call id, shared by every context.
    pub call_id: CallId,
    /// Who placed the call.
    pub restaurant_id: Option<RestaurantId>,
    /// Where the food goes.
    pub destination: Option<Destination>,
    /// What the delivery pays.
    pub fee: Option<Fee>,
    /// Where the delivery is (CALLED is shown as OPEN).
    pub status: DeliveryStatus,
    /// The rider who took the call.
    pub rider_id: Option<RiderId>,
    /// How payment split the fee, once settled. `None` on a COMPLETED delivery while its settlement
    /// is pending (payment was unavailable when it completed; the repair worker settles it).
    pub settlement: Option<Settlement>,
    /// When the call was placed.
    pub called_at: Option<Millis>,
    /// When the rider took it.
    pub accepted_at: Option<Millis>,
    /// When the rider picked the food up.
    pub picked_at: Option<Millis>,
    /// When it was delivered.
    pub completed_at: Option<Millis>,
    /// When the call service cancelled it.
    pub cancelled_at: Option<Millis>,
    /// Write-ahead mark of CompleteDelivery: when Settle was last sent for this PICKED delivery (or
    /// this COMPLETED one whose settlement is pending) and its outcome not yet recorded. Cleared by
    /// the settlement or cancellation that records it; a mark left behind (a crash, a lost answer,
    /// payment down) is finished by the repair worker.
    pub settle_requested_at: Option<Millis>,
    /// Write-ahead mark of PickUp: when HoldCost was last sent for this ACCEPTED delivery and its
    /// outcome not yet recorded. Cleared by the pick-up or cancellation that records it; a mark left
    /// behind (a crash, a lost answer, payment down) is finished by the repair worker.
    pub hold_requested_at: Option<Millis>,
    /// Last write to the row.
    pub updated_at: Millis,
}

/// What a command decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The delivery moves to this state (store it conditionally on the old status, emit its event).
    Apply(Delivery),
    /// The command was done before (an idempotent retry): answer with the delivery as it is.
    AlreadyDone(Delivery),
}

/// What a CallPlaced event does to the stored delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlacedOutcome {
    /// No row yet: insert this OPEN delivery and put it on the board.
    Open(Delivery),
    /// A row exists without the call's facts (a tombstone): fill them in, keep its status.
    Fill(Delivery),
    /// Nothing to do (a repeat).
    Unchanged,
}

/// What a CallCancelled event (or a voided fee) does to the stored delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// No row yet: insert this CANCELLED tombstone so a late CallPlaced does not reopen the call.
    Tombstone(Delivery),
    /// The delivery becomes CANCELLED (store conditionally on its old status).
    Cancel(Delivery),
    /// Already cancelled.
    Unchanged,
    /// Already completed (and settled, or at least not known unsettleable); kept COMPLETED.
    CompletedFirst,
}

/// A change of the open-call board, broadcast to WatchOpenCalls after it is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoardChange {
    /// A call opened.
    Opened(Delivery),
    /// A call left the board: taken or cancelled.
    Closed(Delivery),
    /// Changes may have been missed (announcements lost with a connection): send the board again.
    Resync,
}

/// Which event a consumer is applying: recorded in the inbox with the change it causes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The envelope's event id.
    pub event_id: String,
    /// The subject it arrived on.
    pub subject: String,
}

/// Filters of ListDeliveries; `None` means any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    /// Only deliveries in this status.
    pub status: Option<DeliveryStatus>,
    /// Only this rider's deliveries.
    pub rider_id: Option<RiderId>,
    /// Only this restaurant's deliveries.
    pub restaurant_id: Option<RestaurantId>,
}

/// One page request: its size and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// How many items at most.
    pub size: PageSize,
    /// Resume after this key; `None` for the first page.
    pub after: Option<PageToken>,
}

/// One page of deliveries and where the next one starts (`None` on the last page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The page.
    pub items: Vec<Delivery>,
    /// Token of the next page.
    pub next: Option<PageToken>,
}

/// Applies CallPlaced to what is stored for `call_id` (converges in any order, any number of times).
pub fn on_call_placed(current: Option<&Delivery>, call_id: &CallId, placed: &PlacedCall, now: Millis) -> PlacedOutcome {
    match current {
        None => PlacedOutcome::Open(Delivery::open(call_id.clone(), placed, now)),
        Some(delivery) => delivery
            .fill(placed, now)
            .map_or(PlacedOutcome::Unchanged, PlacedOutcome::Fill),
    }
}

/// Applies CallCancelled, which happened at `at`, to what is stored for `call_id`.
///
/// The call service is the authority on cancellation: whatever the local status, short of COMPLETED,
/// the delivery becomes CANCELLED.
pub fn on_call_cancelled(current: Option<&Delivery>, call_id: &CallId, at: Millis, now: Millis) -> CancelOutcome {
    match current {
        None => CancelOutcome::Tombstone(Delivery::tombstone(call_id.clone(), at, now)),
        Some(delivery) => delivery.cancel(at, now),
    }
}

impl Delivery {
    /// A call newly on the board.
    pub fn open(call_id: CallId, placed: &PlacedCall, now: Millis) -> Self {
        Self {
            call_id,
            restaurant_id: Some(placed.restaurant_id.clone()),
            destination: Some(placed.destination.clone()),
            fee: Some(placed.fee),
            status: DeliveryStatus::Called,
            rider_id: None,
            settlement: None,
            called_at: Some(placed.called_at),
            accepted_at: None,
            picked_at: None,
            completed_at: None,
            cancelled_at: None,
            settle_requested_at: None,
            hold_requested_at: None,
            updated_at: now,
        }
    }

    /// A cancelled call whose CallPlaced has not arrived yet.
    pub fn tombstone(call_id: CallId, cancelled_at: Millis, now: Millis) -> Self {
        Self {
            call_id,
            restaurant_id: None,
            destination: None,
            fee: None,
            status: DeliveryStatus::Cancelled,
            rider_id: None,
            settlement: None,
            called_at: None,
            accepted_at: None,
            picked_at: None,
            completed_at: None,
            cancelled_at: Some(cancelled_at),
            settle_requested_at: None,
            hold_requested_at: None,
            updated_at: now,
        }
    }

    /// Whether the call is on the open-call board.
    pub fn is_open(&self) -> bool {
        self.status == DeliveryStatus::Called
    }

    /// The call's facts filled in where missing; `None` if nothing was missing.
    pub fn fill(&self, placed: &PlacedCall, now: Millis) -> Option<Self> {
        let complete = self.restaurant_id.is_some()
            && self.destination.is_some()
            && self.fee.is_some()
            && self.called_at.is_some();
        (!complete).then(|| Self {
            restaurant_id: self
                .restaurant_id
                .clone()
                .or_else(|| Some(placed.restaurant_id.clone())),
            destination: self.destination.clone().or_else(|| Some(placed.destination.clone())),
            fee: self.fee.or(Some(placed.fee)),
            called_at: self.called_at.or(Some(placed.called_at)),
            updated_at: now,
            ..self.clone()
        })
    }

    /// The call was cancelled at `at` (by the call service, or as payment says by voiding the fee).
    ///
    /// A COMPLETED delivery whose settlement is pending is cancelled too: the call service cancels
    /// only once payment voided the fee, so that settlement can never happen (payment arbitrates).
    pub fn cancel(&self, at: Millis, now: Millis) -> CancelOutcome {
        match self.status {
            DeliveryStatus::Completed if !self.settlement_pending() => CancelOutcome::CompletedFirst,
            DeliveryStatus::Cancelled => CancelOutcome::Unchanged,
            status => CancelOutcome::Cancel(Self {
                status: status.merge(DeliveryStatus::Cancelled),
                cancelled_at: Some(at),
                // Nothing is left to hold or settle: a cancelled call's fee is voided.
                settle_requested_at: None,
                hold_requested_at: None,
                updated_at: now,
                ..self.clone()
            }),
        }
    }

    /// AcceptCall by `rider`: of riders racing for an open call, the first stored wins.
    pub fn accept(&self, rider: &RiderId, now: Millis) -> Result<Change, RiderError> {
        if let Ok(next) = self.status.accept() {
            return Ok(Change::Apply(Self {
                status: next,
                rider_id: Some(rider.clone()),
                accepted_at: Some(now),
                updated_at: now,
                ..self.clone()
            }));
        }
        match self.status {
            DeliveryStatus::Accepted if self.belongs_to(rider) => Ok(Change::AlreadyDone(self.clone())),
            DeliveryStatus::Cancelled => Err(RiderError::Cancelled(self.call_id.clone())),
            status if self.belongs_to(rider) => Err(RiderError::IllegalState(format!(
                "call {} is already {}; it cannot be accepted again",
                self.call_id,
                status_label(status)
            ))),
            _ => Err(RiderError::Taken(self.call_id.clone())),
        }
    }

    /// PickUp by `rider`, before holding the fee: must it hold, or was it done before? Only the rider who
    /// accepted, only once accepted; picked up by this rider already is a retry, answered as it is.
    pub fn begin_pick_up(&self, rider: &RiderId) -> Result<PickUp, RiderError> {
        self.ensure_owned_by(rider)?;
        match self.status {
            DeliveryStatus::Accepted => Ok(PickUp::Hold),
            DeliveryStatus::Picked => Ok(PickUp::Done),
            _ => Err(self.refusal("picked up")),
        }
    }

    /// Payment held the fee for `rider`: the delivery is PICKED and its hold mark cleared. Picked up
    /// already is another attempt's pick-up (a retry, or the repair worker racing): done.
    pub fn pick_up(&self, rider: &RiderId, now: Millis) -> Result<Change, RiderError> {
        if self.begin_pick_up(rider)? == PickUp::Done {
            return Ok(Change::AlreadyDone(self.clone()));
        }
        let next = self
            .status
            .pick_up()
            .map_err(|e| RiderError::IllegalState(e.to_string()))?;
        Ok(Change::Apply(Self {
            status: next,
            picked_at: Some(now),
            hold_requested_at: None,
            updated_at: now,
            ..self.clone()
        }))
    }

    /// Payment held the fee for `rider`: an ACCEPTED delivery is picked up ([`Delivery::pick_up`]). A
    /// delivery picked up before payment held fees (PICKED, or COMPLETED with its settlement pending,
    /// marked by the upgrade's migration) only has its hold mark cleared.
    pub fn held(&self, rider: &RiderId, now: Millis) -> Result<Change, RiderError> {
        let picked_before_holds = matches!(self.status, DeliveryStatus::Picked | DeliveryStatus::Completed);
        if picked_before_holds && self.hold_requested_at.is_some() {
            self.ensure_owned_by(rider)?;
            return Ok(Change::Apply(Self {
                hold_requested_at: None,
                updated_at: now,
                ..self.clone()
            }));
        }
        self.pick_up(rider, now)
    }

    /// Whether HoldCost was sent for this delivery longer ago than `cutoff` and its outcome never
    /// recorded: the repair worker's to-do (an ACCEPTED delivery being picked up, or one picked up
    /// before payment held fees).
    pub fn hold_stale(&self, cutoff: Millis) -> bool {
        matches!(
            self.status,
            DeliveryStatus::Accepted | DeliveryStatus::Picked | DeliveryStatus::Completed
        ) && self.hold_requested_at.is_some_and(|at| at <= cutoff)
    }

    /// CompleteDelivery by `rider`, before settling: must it settle, or was it done before?
    ///
    /// Only a PICKED delivery of this rider settles. Completed by this same rider already is a retry whose
    /// answer was lost (as AcceptCall and PickUp answer theirs): it is answered with the delivery as it is
    /// (settled, or its settlement pending and finished by the repair worker) and never reaches payment
    /// again. Completing from any other status is FAILED_PRECONDITION (DESIGN.md's error table).
    pub fn begin_completion(&self, rider: &RiderId) -> Result<Completion, RiderError> {
        self.ensure_owned_by(rider)?;
        match self.status {
            DeliveryStatus::Picked => Ok(Completion::Settle),
            DeliveryStatus::Completed if self.belongs_to(rider) => Ok(Completion::Done),
            _ => Err(self.refusal("completed")),
        }
    }

    /// Payment settled the fee of `rider`'s delivery as `settlement`: the delivery completes (or, when
    /// it completed with its settlement pending, records it) and its settlement mark is cleared.
    ///
    /// Already COMPLETED and settled is the same settlement recorded by another attempt (a retried
    /// CompleteDelivery or the repair worker, racing; Settle is idempotent), so it is done, not refused.
    pub fn complete(&self, rider: &RiderId, settlement: Settlement, now: Millis) -> Result<Change, RiderError> {
        self.ensure_owned_by(rider)?;
        if self.status == DeliveryStatus::Completed && self.belongs_to(rider) {
            if self.settlement.is_some() {
                return Ok(Change::AlreadyDone(self.clone()));
            }
            return Ok(Change::Apply(Self {
                settlement: Some(settlement),
                settle_requested_at: None,
                updated_at: now,
                ..self.clone()
            }));
        }
        self.begin_completion(rider)?;
        let next = self
            .status
            .complete()
            .map_err(|e| RiderError::IllegalState(e.to_string()))?;
        Ok(Change::Apply(Self {
            status: next,
            settlement: Some(settlement),
            completed_at: Some(now),
            settle_requested_at: None,
            updated_at: now,
            ..self.clone()
        }))
    }

    /// Payment could not be reached to settle `rider`'s delivery: the food was delivered, so the
    /// delivery completes at once with its settlement pending, and the settlement mark stays for the
    /// repair worker (set to `now` should a concurrent attempt have dropped it).
    ///
    /// Already COMPLETED by this rider is another attempt's completion (settled or pending): done.
    pub fn complete_unsettled(&self, rider: &RiderId, now: Millis) -> Result<Change, RiderError> {
        self.ensure_owned_by(rider)?;
        if self.status == DeliveryStatus::Completed && self.belongs_to(rider) {
            return Ok(Change::AlreadyDone(self.clone()));
        }
        self.begin_completion(rider)?;
        let next = self
            .status
            .complete()
            .map_err(|e| RiderError::IllegalState(e.to_string()))?;
        Ok(Change::Apply(Self {
            status: next,
            settlement: None,
            completed_at: Some(now),
            settle_requested_at: Some(self.settle_requested_at.unwrap_or(now)),
            updated_at: now,
            ..self.clone()
        }))
    }

    /// Whether the delivery completed while payment was unavailable and is not settled yet.
    pub fn settlement_pending(&self) -> bool {
        self.status == DeliveryStatus::Completed && self.settlement.is_none()
    }

    /// Whether Settle was sent for this delivery longer ago than `cutoff` and its outcome never
    /// recorded: the repair worker's to-do (a PICKED delivery, or a COMPLETED one whose settlement is
    /// pending).
    pub fn settlement_stale(&self, cutoff: Millis) -> bool {
        (self.status == DeliveryStatus::Picked || self.settlement_pending())
            && self.settle_requested_at.is_some_and(|at| at <= cutoff)
    }

    /// Payment refused to hold or settle because the fee was voided: the call was cancelled, so the
    /// delivery is CANCELLED, even when it completed with its settlement pending.
    pub fn cancel_voided(&self, now: Millis) -> Change {
        match self.cancel(now, now) {
            CancelOutcome::Cancel(next) | CancelOutcome::Tombstone(next) => Change::Apply(next),
            CancelOutcome::Unchanged | CancelOutcome::CompletedFirst => Change::AlreadyDone(self.clone()),
        }
    }

    fn belongs_to(&self, rider: &RiderId) -> bool {
        self.rider_id.as_ref() == Some(rider)
    }

    /// A rider acts only on its own deliveries (BOLA); an open call or a tombstone has no owner yet.
    fn ensure_owned_by(&self, rider: &RiderId) -> Result<(), RiderError> {
        match &self.rider_id {
            Some(owner) if owner != rider => Err(RiderError::NotYours(self.call_id.clone())),
            _ => Ok(()),
        }
    }

    /// Why this delivery cannot be `what` (picked up, completed) in its status.
    fn refusal(&self, what: &str) -> RiderError {
        let id = &self.call_id;
        match self.status {
            DeliveryStatus::Cancelled => RiderError::Cancelled(id.clone()),
            DeliveryStatus::Called => {
                RiderError::IllegalState(format!("call {id} is open: accept it before it can be {what}"))
            }
            DeliveryStatus::Accepted => {
                RiderError::IllegalState(format!("call {id} has not been picked up yet, so it cannot be {what}"))
            }
            status => RiderError::IllegalState(format!(
                "call {id} is already {}, so it cannot be {what}",
                status_label(status)
            )),
        }
    }
}

/// What a PickUp asks of a delivery ([`Delivery::begin_pick_up`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickUp {
    /// ACCEPTED: hold the fee with payment, then pick up.
    Hold,
    /// Picked up by this rider already: answer with it as it is.
    Done,
}

/// What a CompleteDelivery asks of a delivery ([`Delivery::begin_completion`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// PICKED: settle it with payment, then complete it.
    Settle,
    /// Completed by this rider already: answer with it as it is.
    Done,
}

#[cfg(test)]
mod tests;
