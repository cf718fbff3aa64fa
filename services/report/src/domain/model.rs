//! One row of the deliverylist and the pure projection of events onto it.
//!
//! Each field is set by the event that knows it, statuses only move forward by rank, and where two
//! events carry the same fact the authoritative one overwrites and the others only fill a gap. So the
//! row converges to the same value whatever the order or duplication of the events.

use baemin_kernel::{CallId, DeliveryStatus, Destination, Fee, Millis, RestaurantId, RiderId};

/// Where the fee of a delivery is, as payment reported it. Ordered by rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PaymentState {
    /// The call service placed the call before payment registered the fee (its `defer` fallback);
    /// anything payment reports outranks it.
    Pending,
    /// The fee is registered.
    Registered,
    /// The fee was split between the rider and the company.
    Settled,
    /// The fee was voided (the call was cancelled, or never existed); terminal.
    Voided,
}

impl PaymentState {
    /// Every state, in rank order.
    pub const ALL: [Self; 4] = [Self::Pending, Self::Registered, Self::Settled, Self::Voided];

    /// The stable name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Registered => "REGISTERED",
            Self::Settled => "SETTLED",
            Self::Voided => "VOIDED",
        }
    }

    /// Parses the stored name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The state after also learning `other`: the higher rank wins (payment never both settles and
    /// voids a fee, so the order only matters for REGISTERED, which both outrank).
    pub fn merge(self, other: Self) -> Self {
        self.max(other)
    }
}

/// How a settled fee was split, as reported by the event that settled it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    /// What the rider was paid, KRW.
    pub rider_payout: i64,
    /// The company's commission, KRW.
    pub commission: i64,
}

/// What one event says about a delivery (the domain's reading of an envelope).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    /// The delivery it is about.
    pub call_id: CallId,
    /// When it happened at its producer, ms since the epoch.
    pub occurred_at: Millis,
    /// What happened.
    pub change: Change,
}

/// The events the report projects, with the fields it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A restaurant placed the call.
    CallPlaced {
        /// Who placed it.
        restaurant_id: RestaurantId,
        /// Where the food goes.
        destination: Destination,
        /// The fee.
        fee: Fee,
        /// The fee was not registered yet when the call was placed.
        payment_pending: bool,
    },
    /// A rider took the call.
    CallAccepted {
        /// The rider.
        rider_id: RiderId,
    },
    /// The rider has the food.
    DeliveryPicked {
        /// The rider, when the event names one.
        rider_id: Option<RiderId>,
    },
    /// The food was delivered.
    DeliveryCompleted {
        /// The rider, when the event names one.
        rider_id: Option<RiderId>,
        /// The fee, when the event carries one.
        fee: Option<Fee>,
        /// The split, when settlement happened before completion was announced (absent when it was
        /// deferred because payment was down; `PaymentSettled` brings it later).
        split: Option<Split>,
    },
    /// The call was cancelled.
    CallCancelled,
    /// Payment registered the fee.
    PaymentRegistered {
        /// The registered fee.
        fee: Option<Fee>,
    },
    /// Payment settled the fee.
    PaymentSettled {
        /// The rider paid.
        rider_id: Option<RiderId>,
        /// The settled fee.
        fee: Option<Fee>,
        /// The split.
        split: Split,
    },
    /// Payment voided the fee.
    PaymentVoided,
}

/// One row of the deliverylist: everything the company sees about a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryView {
    /// The delivery.
    pub call_id: CallId,
    /// Who placed the call (known from `CallPlaced`).
    pub restaurant_id: Option<RestaurantId>,
    /// Where the food goes (known from `CallPlaced`).
    pub destination: Option<Destination>,
    /// The fee.
    pub fee: Option<Fee>,
    /// Where the delivery is; `None` while only payment has spoken about the call. Such a row is kept
    /// so that it converges, but it is not shown: the call may never exist (an orphan fee voided by
    /// the call service), and the report must not show calls the call service does not know.
    pub status: Option<DeliveryStatus>,
    /// The rider, once known.
    pub rider_id: Option<RiderId>,
    /// Where the fee is in payment.
    pub payment_state: Option<PaymentState>,
    /// The rider's payout once settled, KRW.
    pub settled_amount: Option<i64>,
    /// The company's commission once settled, KRW.
    pub commission: Option<i64>,
    /// When the call was placed.
    pub called_at: Option<Millis>,
    /// When a rider accepted it.
    pub accepted_at: Option<Millis>,
    /// When the food was picked up.
    pub picked_at: Option<Millis>,
    /// When it was delivered.
    pub completed_at: Option<Millis>,
    /// When it was cancelled.
    pub cancelled_at: Option<Millis>,
    /// The latest instant any applied event happened (0 before the first).
    pub updated_at: Millis,
}

impl DeliveryView {
    /// A row that no event has touched yet.
    pub fn unseen(call_id: CallId) -> Self {
        Self {
            call_id,
            restaurant_id: None,
            destination: None,
            fee: None,
            status: None,
            rider_id: None,
            payment_state: None,
            settled_amount: None,
            commission: None,
            called_at: None,
            accepted_at: None,
            picked_at: None,
            completed_at: None,
            cancelled_at: None,
            updated_at: 0,
        }
    }

    /// Whether the row is shown: some call or rider event has been seen for it.
    pub fn is_visible(&self) -> bool {
        self.status.is_some()
    }

    fn reach(&mut self, status: DeliveryStatus) {
        self.status = Some(self.status.map_or(status, |s| s.merge(status)));
    }

    fn reach_payment(&mut self, state: PaymentState) {
        self.payment_state = Some(self.payment_state.map_or(state, |s| s.merge(state)));
    }

    fn fill_rider(&mut self, rider_id: &Option<RiderId>) {
        if self.rider_id.is_none() {
            self.rider_id.clone_from(rider_id);
        }
    }

    fn fill_fee(&mut self, fee: Option<Fee>) {
        self.fee = self.fee.or(fee);
    }

    fn fill_split(&mut self, split: Split) {
        if self.settled_amount.is_none() && self.commission.is_none() {
            self.set_split(split);
        }
    }

    fn set_split(&mut self, split: Split) {
        self.settled_amount = Some(split.rider_payout);
        self.commission = Some(split.commission);
    }
}

/// The earliest of the instants known for one step: an instant is set once, and a repeated event for
/// the same step (replayed by its producer with a new id) cannot move it.
fn earliest(known: Option<Millis>, at: Millis) -> Option<Millis> {
    Some(known.map_or(at, |k| k.min(at)))
}

/// Projects `fact` onto `row` (or onto a fresh row when the call has none yet).
///
/// Commutative and idempotent over the events of one delivery: applying them in any order, any number
/// of times, gives the same row. Where two events carry the same field the authority overwrites
/// (`CallPlaced` for the fee, `CallAccepted` for the rider, `PaymentSettled` for the split) and the
/// others only fill a gap, so a late event never overwrites what the authority said.
pub fn apply(row: Option<DeliveryView>, fact: &Fact) -> DeliveryView {
    let mut view = row.unwrap_or_else(|| DeliveryView::unseen(fact.call_id.clone()));
    let at = fact.occurred_at;
    match &fact.change {
        Change::CallPlaced {
            restaurant_id,
            destination,
            fee,
            payment_pending,
        } => {
            view.restaurant_id = Some(restaurant_id.clone());
            view.destination = Some(destination.clone());
            view.fee = Some(*fee);
            view.called_at = earliest(view.called_at, at);
            view.reach(DeliveryStatus::Called);
            if *payment_pending {
                view.reach_payment(PaymentState::Pending);
            }
        }
        Change::CallAccepted { rider_id } => {
            view.rider_id = Some(rider_id.clone());
            view.accepted_at = earliest(view.accepted_at, at);
            view.reach(DeliveryStatus::Accepted);
        }
        Change::DeliveryPicked { rider_id } => {
            view.fill_rider(rider_id);
            view.picked_at = earliest(view.picked_at, at);
            view.reach(DeliveryStatus::Picked);
        }
        Change::DeliveryCompleted { rider_id, fee, split } => {
            view.fill_rider(rider_id);
            view.fill_fee(*fee);
            view.completed_at = earliest(view.completed_at, at);
            view.reach(DeliveryStatus::Completed);
            if let Some(split) = split {
                view.fill_split(*split);
                view.reach_payment(PaymentState::Settled);
            }
        }
        Change::CallCancelled => {
            view.cancelled_at = earliest(view.cancelled_at, at);
            view.reach(DeliveryStatus::Cancelled);
        }
        Change::PaymentRegistered { fee } => {
            view.fill_fee(*fee);
            view.reach_payment(PaymentState::Registered);
        }
        Change::PaymentSettled { rider_id, fee, split } => {
            view.fill_rider(rider_id);
            view.fill_fee(*fee);
            view.set_split(*split);
            view.reach_payment(PaymentState::Settled);
        }
        Change::PaymentVoided => view.reach_payment(PaymentState::Voided),
    }
    view.updated_at = view.updated_at.max(at);
    view
}

#[cfg(test)]
mod tests;
