//! A call and the decisions each command or event makes on it (pure: no I/O).

use baemin_kernel::{
    CallId, CancelReason, DeliveryStatus, Destination, Fee, IllegalTransition, Millis, RequestId, RestaurantId, RiderId,
};

use super::fallback::retry_delay;

/// Where the call's fee is in payment, as the call service knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentState {
    /// Registration deferred (payment was unavailable); retried durably (the `defer` fallback).
    Pending,
    /// The fee is registered.
    Registered,
    /// Paid out to the rider.
    Settled,
    /// Voided: the call was cancelled.
    Voided,
}

impl PaymentState {
    const ALL: [Self; 4] = [Self::Pending, Self::Registered, Self::Settled, Self::Voided];

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
}

/// What a PlaceCall request asks for, as a stable string: a retry must send the same body.
///
/// `restaurant_id|destination|fee` is injective: a restaurant id never contains `|` and a fee is
/// digits, so the first and the last `|` always delimit the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// The fingerprint of a request body.
    pub fn of(restaurant_id: &RestaurantId, destination: &Destination, fee: Fee) -> Self {
        Self(format!("{restaurant_id}|{destination}|{}", fee.krw()))
    }

    /// A fingerprint read back from the database.
    pub fn stored(raw: String) -> Self {
        Self(raw)
    }

    /// The stored form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// PlaceCall's idempotency key. A request id is unique per restaurant only: two restaurants may pick
/// the same one, and neither gets the other's call or an ALREADY_EXISTS for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestKey {
    /// Whose key it is.
    pub restaurant_id: RestaurantId,
    /// The client's key, unique within the restaurant.
    pub request_id: RequestId,
}

impl std::fmt::Display for RequestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.restaurant_id, self.request_id)
    }
}

/// A validated PlaceCall request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCall {
    /// The client's idempotency key.
    pub request_id: RequestId,
    /// Who calls.
    pub restaurant_id: RestaurantId,
    /// Where the food goes.
    pub destination: Destination,
    /// The delivery fee.
    pub fee: Fee,
}

impl NewCall {
    /// What identifies this request's body for idempotency.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.restaurant_id, &self.destination, self.fee)
    }

    /// The idempotency key of this request.
    pub fn key(&self) -> RequestKey {
        RequestKey {
            restaurant_id: self.restaurant_id.clone(),
            request_id: self.request_id.clone(),
        }
    }
}

/// A write-ahead intent of PlaceCall: the call id chosen for an idempotency key before payment is asked.
///
/// It outlives the request only when something failed between registering the fee and storing the
/// call; the repair worker then voids the fee of its call id, so no fee stays without a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The idempotency key it belongs to.
    pub key: RequestKey,
    /// The call id the fee is registered under.
    pub call_id: CallId,
    /// The body of the request that made it.
    pub fingerprint: Fingerprint,
    /// When it was made or last reused, ms.
    pub created_at: Millis,
    /// Set once the repair worker (or a refused registration) took it over to void its fee; from then
    /// on no request may store a call under it.
    pub void_requested_at: Option<Millis>,
}

/// What PlaceCall does with the intent found for its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntentStep {
    /// None yet: make one with a fresh call id.
    Fresh,
    /// An earlier attempt of the same request left one: register the fee under the same call id
    /// (payment's RegisterCost is idempotent per call id and fee).
    Reuse(CallId),
    /// The key was used with another body.
    Conflict,
    /// An earlier attempt is being rolled back (its fee voided); the client must retry later.
    BeingVoided,
}

impl Registration {
    /// A fresh intent for `new`.
    pub fn fresh(new: &NewCall, now: Millis) -> Self {
        Self {
            key: new.key(),
            call_id: CallId::generate(),
            fingerprint: new.fingerprint(),
            created_at: now,
            void_requested_at: None,
        }
    }

    /// What to do with `existing` (the intent stored for the idempotency key, if any).
    pub fn decide(existing: Option<&Self>, fingerprint: &Fingerprint) -> IntentStep {
        match existing {
            None => IntentStep::Fresh,
            Some(r) if &r.fingerprint != fingerprint => IntentStep::Conflict,
            Some(r) if r.void_requested_at.is_some() => IntentStep::BeingVoided,
            Some(r) => IntentStep::Reuse(r.call_id.clone()),
        }
    }
}

/// Something the rider service reported about a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryEvent {
    /// `CallAccepted`.
    Accepted {
        /// Who took the call.
        rider: RiderId,
    },
    /// `DeliveryPicked`.
    Picked {
        /// Who has the food.
        rider: RiderId,
    },
    /// `DeliveryCompleted`: the delivery is done and its fee settled.
    Completed {
        /// Who delivered.
        rider: RiderId,
        /// What the rider was paid, KRW.
        rider_payout: i64,
    },
    /// `DeliveryCompleted` with its settlement pending (payment was unavailable): the delivery is
    /// done; `PaymentSettled` brings the settlement later.
    CompletedUnsettled {
        /// Who delivered.
        rider: RiderId,
    },
    /// `PaymentSettled`: payment settled the fee with the rider. Says nothing about the delivery's
    /// status (the rider service's events do).
    Settled {
        /// Who was paid.
        rider: RiderId,
        /// What the rider was paid, KRW.
        rider_payout: i64,
    },
}

impl DeliveryEvent {
    /// The status this event proves the delivery reached; `None` for a payment event.
    pub fn status(&self) -> Option<DeliveryStatus> {
        match self {
            Self::Accepted { .. } => Some(DeliveryStatus::Accepted),
            Self::Picked { .. } => Some(DeliveryStatus::Picked),
            Self::Completed { .. } | Self::CompletedUnsettled { .. } => Some(DeliveryStatus::Completed),
            Self::Settled { .. } => None,
        }
    }

    /// The rider it names.
    pub fn rider(&self) -> &RiderId {
        match self {
            Self::Accepted { rider }
            | Self::Picked { rider }
            | Self::Completed { rider, .. }
            | Self::CompletedUnsettled { rider }
            | Self::Settled { rider, .. } => rider,
        }
    }
}

/// What CancelCall does after looking at the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelStep {
    /// Cancelled before: answer with the call as it is (idempotent).
    AlreadyCancelled(Call),
    /// Store this call (cancellation marked as requested), then void the fee.
    Void(Call),
    /// A cancellation is marked already (an earlier CancelCall did not learn payment's answer): void
    /// the fee and cancel, whatever status the call reached since; nothing to store first.
    Resume(Call),
}

/// A call as the call service knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The id that correlates the delivery everywhere.
    pub call_id: CallId,
    /// The idempotency key it was placed with.
    pub request_id: RequestId,
    /// The body it was placed with.
    pub fingerprint: Fingerprint,
    /// Who called.
    pub restaurant_id: RestaurantId,
    /// Where the food goes.
    pub destination: Destination,
    /// The registered fee.
    pub fee: Fee,
    /// Where the delivery is.
    pub status: DeliveryStatus,
    /// Set once a rider took the call.
    pub rider_id: Option<RiderId>,
    /// Where the fee is in payment.
    pub payment_state: PaymentState,
    /// The rider's payout once settled, KRW.
    pub settled_amount: Option<i64>,
    /// Why it was cancelled (or is being cancelled).
    pub cancel_reason: Option<CancelReason>,
    /// Set while a cancellation voids the fee (the cancel decision, waiting for payment's): the repair
    /// worker finishes one left behind. A call becomes CANCELLED only once payment voided the fee, and
    /// the mark goes then.
    pub cancel_requested_at: Option<Millis>,
    /// How many times the repair worker tried to register a PENDING fee.
    pub payment_attempts: u32,
    /// When the repair worker tries next to register a PENDING fee, ms; `None` when there is nothing
    /// to retry.
    pub next_attempt_at: Option<Millis>,
    /// When it was placed, ms.
    pub created_at: Millis,
    /// When it last changed visibly, ms.
    pub updated_at: Millis,
    /// Bumped by every stored change: conditional writes detect a concurrent change, watchers order
    /// what they see.
    pub version: i64,
}

impl Call {
    /// A call placed now under `call_id`, its fee registered.
    pub fn placed(call_id: CallId, new: &NewCall, now: Millis) -> Self {
        Self {
            call_id,
            request_id: new.request_id.clone(),
            fingerprint: new.fingerprint(),
            restaurant_id: new.restaurant_id.clone(),
            destination: new.destination.clone(),
            fee: new.fee,
            status: DeliveryStatus::Called,
            rider_id: None,
            payment_state: PaymentState::Registered,
            settled_amount: None,
            cancel_reason: None,
            cancel_requested_at: None,
            payment_attempts: 0,
            next_attempt_at: None,
            created_at: now,
            updated_at: now,
            version: 1,
        }
    }

    /// A call placed now under `call_id` while payment is unavailable (the `defer` fallback): its fee
    /// is PENDING, and the repair worker's next round tries to register it.
    pub fn deferred(call_id: CallId, new: &NewCall, now: Millis) -> Self {
        Self {
            payment_state: PaymentState::Pending,
            next_attempt_at: Some(now),
            ..Self::placed(call_id, new, now)
        }
    }

    /// Whether the repair worker should try to register the fee at `now`: it is PENDING, due, and
    /// no cancellation was decided (a cancelled call's fee is voided, never registered).
    pub fn registration_due(&self, now: Millis) -> bool {
        self.payment_state == PaymentState::Pending
            && self.cancel_requested_at.is_none()
            && self.status != DeliveryStatus::Cancelled
            && self.next_attempt_at.is_some_and(|at| at <= now)
    }

    /// The repair worker is about to send RegisterCost: count the attempt and schedule the next one
    /// first (written ahead, so a crash mid-call still backs off). `None` if the registration is not
    /// due (registered, cancelled or rescheduled meanwhile): then it must not be sent.
    pub fn begin_registration_attempt(&self, now: Millis) -> Option<Self> {
        if !self.registration_due(now) {
            return None;
        }
        let attempts = self.payment_attempts.saturating_add(1);
        Some(Self {
            payment_attempts: attempts,
            next_attempt_at: Some(now.saturating_add(retry_delay(attempts))),
            version: self.version + 1,
            ..self.clone()
        })
    }

    /// Payment registered the deferred fee. `None` if the fee is no longer PENDING or a cancellation
    /// was decided meanwhile: then the cancellation voids the fee, and the call must not say
    /// REGISTERED.
    pub fn confirm_registration(&self, now: Millis) -> Option<Self> {
        if self.payment_state != PaymentState::Pending
            || self.cancel_requested_at.is_some()
            || self.status == DeliveryStatus::Cancelled
        {
            return None;
        }
        Some(Self {
            payment_state: PaymentState::Registered,
            next_attempt_at: None,
            updated_at: now.max(self.updated_at),
            version: self.version + 1,
            ..self.clone()
        })
    }

    /// Payment refused the deferred fee: retrying cannot change its answer, so the retries stop. Only a
    /// cancellation decided meanwhile makes payment refuse (its void owns the fee). `None` if none
    /// were scheduled.
    pub fn stop_registration(&self) -> Option<Self> {
        self.next_attempt_at?;
        Some(Self {
            next_attempt_at: None,
            version: self.version + 1,
            ..self.clone()
        })
    }

    /// Whether a PlaceCall with `fingerprint` is a retry of the request that placed this call.
    pub fn placed_by(&self, fingerprint: &Fingerprint) -> bool {
        &self.fingerprint == fingerprint
    }

    /// CancelCall, first step: answer a repeat, finish a cancellation already under way, refuse after
    /// pick-up, or mark the cancellation.
    ///
    /// A marked call is waiting for payment's decision: an accept or pick-up learned since does not
    /// make the cancellation illegal here; payment decides (a fee held for the rider who picked up
    /// refuses the void, and the cancellation is dropped).
    pub fn request_cancel(&self, reason: &CancelReason, now: Millis) -> Result<CancelStep, IllegalTransition> {
        if self.status == DeliveryStatus::Cancelled {
            return Ok(CancelStep::AlreadyCancelled(self.clone()));
        }
        if self.cancel_requested_at.is_some() {
            return Ok(CancelStep::Resume(self.clone()));
        }
        self.status.cancel()?;
        Ok(CancelStep::Void(Self {
            cancel_reason: Some(reason.clone()),
            cancel_requested_at: Some(now),
            version: self.version + 1,
            ..self.clone()
        }))
    }

    /// CancelCall, last step, once payment voided the fee: the call is CANCELLED whatever it reached
    /// meanwhile (a voided fee can never be held or settled, so no rider picked it up, and CANCELLED
    /// outranks every status), with the reason it was marked with, and its fee VOIDED. `None` if there
    /// is nothing left to do.
    pub fn confirm_cancel(&self, now: Millis) -> Option<Self> {
        if self.status == DeliveryStatus::Cancelled && self.cancel_requested_at.is_none() {
            return None;
        }
        Some(Self {
            status: self.status.merge(DeliveryStatus::Cancelled),
            payment_state: PaymentState::Voided,
            settled_amount: None,
            cancel_requested_at: None,
            next_attempt_at: None,
            updated_at: now.max(self.updated_at),
            version: self.version + 1,
            ..self.clone()
        })
    }

    /// Payment refused to void: the fee is held for the rider who picked the food up, or settled. The
    /// pick-up won, so the cancellation is dropped and the call follows the rider's events. `None` if
    /// there is no cancellation in progress.
    ///
    /// A CANCELLED call still marked (left by a version that cancelled before the void) keeps its
    /// status and reason; only the mark goes, so the void is not retried for ever.
    pub fn abandon_cancel(&self) -> Option<Self> {
        self.cancel_requested_at?;
        let cancelled = self.status == DeliveryStatus::Cancelled;
        Some(Self {
            cancel_reason: if cancelled { self.cancel_reason.clone() } else { None },
            cancel_requested_at: None,
            version: self.version + 1,
            ..self.clone()
        })
    }

    /// Moves the cancellation mark to `now`: the void could not be decided (payment unavailable), so the
    /// repair worker looks again `CALL_REPAIR_AFTER` later, behind older marks. `None` if no
    /// cancellation is marked.
    pub fn postpone_cancel(&self, now: Millis) -> Option<Self> {
        let marked = self.cancel_requested_at?;
        Some(Self {
            cancel_requested_at: Some(now.max(marked)),
            version: self.version + 1,
            ..self.clone()
        })
    }

    /// The call after learning `event`, which happened at `at`; `None` when it changes nothing.
    ///
    /// Converges whatever the order and duplication of events: the status merges by rank, the rider is
    /// kept once known, the settlement is set by a settled completion or by payment's PaymentSettled
    /// (which never moves the status). A cancelled call ignores everything:
    /// the call service is the authority on cancellation, and its fee is voided.
    pub fn apply(&self, event: &DeliveryEvent, at: Millis) -> Option<Self> {
        if self.status == DeliveryStatus::Cancelled {
            return None;
        }
        let mut next = self.clone();
        if let Some(status) = event.status() {
            next.status = self.status.merge(status);
        }
        if next.rider_id.is_none() {
            next.rider_id = Some(event.rider().clone());
        }
        // A completion whose settlement is pending settles nothing; PaymentSettled does.
        if let DeliveryEvent::Completed { rider_payout, .. } | DeliveryEvent::Settled { rider_payout, .. } = event {
            // Settling proves the fee registered: a deferred registration has nothing left to do.
            next.payment_state = PaymentState::Settled;
            next.settled_amount = Some(*rider_payout);
            next.next_attempt_at = None;
        }
        if next == *self {
            return None;
        }
        next.updated_at = at.max(self.updated_at);
        next.version = self.version + 1;
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baemin_kernel::DeliveryStatus::*;

    fn new_call(restaurant: &str, destination: &str, fee: i64) -> NewCall {
        NewCall {
            request_id: RequestId::parse("req-1", "request_id").unwrap(),
            restaurant_id: RestaurantId::parse(restaurant, "restaurant_id").unwrap(),
            destination: Destination::parse(destination, "destination").unwrap(),
            fee: Fee::parse(fee, "fee").unwrap(),
        }
    }

    fn call() -> Call {
        Call::placed(CallId::generate(), &new_call("store-1", "Gangnam 1", 3_000), 10)
    }

    fn rider(id: &str) -> RiderId {
        RiderId::parse(id, "rider_id").unwrap()
    }

    fn reason(text: &str) -> CancelReason {
        CancelReason::parse(text, "reason").unwrap()
    }

    fn accepted(r: &str) -> DeliveryEvent {
        DeliveryEvent::Accepted { rider: rider(r) }
    }

    fn picked(r: &str) -> DeliveryEvent {
        DeliveryEvent::Picked { rider: rider(r) }
    }

    fn completed(r: &str) -> DeliveryEvent {
        DeliveryEvent::Completed {
            rider: rider(r),
            rider_payout: 2_700,
        }
    }

    fn apply_all(call: &Call, events: &[&DeliveryEvent]) -> Call {
        events
            .iter()
            .enumerate()
            .fold(call.clone(), |c, (i, e)| c.apply(e, 100 + i as i64).unwrap_or(c))
    }

    /// The parts of a call that events decide.
    fn outcome(c: &Call) -> (DeliveryStatus, Option<RiderId>, PaymentState, Option<i64>) {
        (c.status, c.rider_id.clone(), c.payment_state, c.settled_amount)
    }

    #[test]
    fn the_same_body_has_the_same_fingerprint_and_any_difference_changes_it() {
        let base = new_call("store-1", "Gangnam 1", 3_000);
        assert_eq!(
            base.fingerprint(),
            new_call("store-1", " Gangnam 1 ", 3_000).fingerprint()
        );
        for other in [
            new_call("store-2", "Gangnam 1", 3_000),
            new_call("store-1", "Gangnam 2", 3_000),
            new_call("store-1", "Gangnam 1", 3_001),
        ] {
            assert_ne!(base.fingerprint(), other.fingerprint());
        }
    }

    #[test]
    fn fingerprints_cannot_be_forged_by_moving_separators() {
        assert_ne!(
            new_call("a", "b|1", 2).fingerprint(),
            new_call("a", "b", 12).fingerprint()
        );
        assert_ne!(
            new_call("a", "x|b", 1).fingerprint(),
            new_call("a", "x", 1).fingerprint()
        );
    }

    #[test]
    fn an_intent_is_reused_only_by_the_same_body_and_never_while_being_voided() {
        let new = new_call("store-1", "Gangnam 1", 3_000);
        let fp = new.fingerprint();
        assert_eq!(Registration::decide(None, &fp), IntentStep::Fresh);
        let mut intent = Registration::fresh(&new, 1);
        assert_eq!(
            Registration::decide(Some(&intent), &fp),
            IntentStep::Reuse(intent.call_id.clone())
        );
        let other = new_call("store-1", "Gangnam 1", 4_000).fingerprint();
        assert_eq!(Registration::decide(Some(&intent), &other), IntentStep::Conflict);
        intent.void_requested_at = Some(2);
        assert_eq!(Registration::decide(Some(&intent), &fp), IntentStep::BeingVoided);
    }

    #[test]
    fn a_retry_is_recognised_by_its_body() {
        let c = call();
        assert!(c.placed_by(&new_call("store-1", "Gangnam 1", 3_000).fingerprint()));
        assert!(!c.placed_by(&new_call("store-1", "Gangnam 1", 3_500).fingerprint()));
    }

    #[test]
    fn cancel_before_pick_up_marks_the_call_and_changes_nothing_visible_yet() {
        for status in [Called, Accepted] {
            let c = Call { status, ..call() };
            let CancelStep::Void(marked) = c.request_cancel(&reason("closed"), 50).unwrap() else {
                panic!("expected a void step from {status}");
            };
            assert_eq!(marked.status, status);
            assert_eq!(marked.cancel_requested_at, Some(50));
            assert_eq!(marked.payment_state, PaymentState::Registered);
            assert_eq!(marked.version, c.version + 1);
        }
    }

    #[test]
    fn cancel_after_pick_up_is_refused_naming_the_status() {
        for status in [Picked, Completed] {
            let err = Call { status, ..call() }.request_cancel(&reason(""), 50).unwrap_err();
            assert_eq!(err.to_string(), format!("cannot cancel a delivery that is {status}"));
        }
    }

    #[test]
    fn a_cancel_retry_resumes_a_marked_cancellation_whatever_status_the_call_reached() {
        let c = call();
        let CancelStep::Void(marked) = c.request_cancel(&reason("closed"), 50).unwrap() else {
            panic!("expected a void step");
        };
        for event in [accepted("r-1"), picked("r-1"), completed("r-1")] {
            let moved = marked.apply(&event, 60).unwrap();
            assert_eq!(moved.cancel_requested_at, Some(50), "the mark survives {event:?}");
            assert_eq!(
                moved.request_cancel(&reason("again"), 70).unwrap(),
                CancelStep::Resume(moved.clone()),
                "after {event:?}"
            );
        }
    }

    #[test]
    fn cancelling_a_cancelled_call_answers_it_as_it_is() {
        let CancelStep::Void(marked) = call().request_cancel(&reason("closed"), 10).unwrap() else {
            panic!("expected a void step");
        };
        let cancelled = marked.confirm_cancel(20).unwrap();
        assert_eq!(cancelled.cancel_reason, Some(reason("closed")));
        assert_eq!(
            cancelled.request_cancel(&reason("other"), 30).unwrap(),
            CancelStep::AlreadyCancelled(cancelled.clone())
        );
        assert_eq!(cancelled.confirm_cancel(40), None);
        assert_eq!(cancelled.abandon_cancel(), None);
    }

    #[test]
    fn a_confirmed_cancel_voids_the_fee_and_clears_the_marker_whatever_the_status_reached() {
        for status in [Called, Accepted, Picked, Completed] {
            let marked = Call {
                status,
                cancel_requested_at: Some(5),
                cancel_reason: Some(reason("closed")),
                ..call()
            };
            let done = marked.confirm_cancel(60).unwrap();
            assert_eq!(done.status, Cancelled);
            assert_eq!(done.payment_state, PaymentState::Voided);
            assert_eq!(done.cancel_requested_at, None);
            assert_eq!(done.cancel_reason, Some(reason("closed")));
            assert_eq!(done.updated_at, 60);
        }
    }

    #[test]
    fn an_abandoned_cancel_restores_the_call_as_it_was() {
        let c = call();
        let CancelStep::Void(marked) = c.request_cancel(&reason("closed"), 50).unwrap() else {
            panic!("expected a void step");
        };
        let restored = marked.abandon_cancel().unwrap();
        assert_eq!(
            Call {
                version: c.version,
                ..restored
            },
            c
        );
        assert_eq!(c.abandon_cancel(), None, "nothing to abandon");
    }

    #[test]
    fn delivery_events_converge_in_every_order() {
        let c = call();
        let (a, p, d) = (accepted("r-1"), picked("r-1"), completed("r-1"));
        let orders: [[&DeliveryEvent; 3]; 6] = [
            [&a, &p, &d],
            [&a, &d, &p],
            [&p, &a, &d],
            [&p, &d, &a],
            [&d, &a, &p],
            [&d, &p, &a],
        ];
        for order in orders {
            let end = apply_all(&c, &order);
            assert_eq!(
                outcome(&end),
                (Completed, Some(rider("r-1")), PaymentState::Settled, Some(2_700)),
                "{order:?}"
            );
        }
    }

    #[test]
    fn pick_up_before_accept_then_accept_leaves_picked_with_the_rider() {
        let end = apply_all(&call(), &[&picked("r-1"), &accepted("r-1")]);
        assert_eq!(end.status, Picked);
        assert_eq!(end.rider_id, Some(rider("r-1")));
        assert_eq!(end.payment_state, PaymentState::Registered);
    }

    #[test]
    fn the_same_event_twice_changes_nothing_the_second_time() {
        for event in [accepted("r-1"), picked("r-1"), completed("r-1")] {
            let once = call().apply(&event, 100).unwrap();
            assert_eq!(once.apply(&event, 200), None, "{event:?}");
        }
    }

    #[test]
    fn events_after_a_cancel_change_nothing() {
        let cancelled = call().confirm_cancel(20).unwrap();
        for event in [accepted("r-1"), picked("r-1"), completed("r-1")] {
            assert_eq!(cancelled.apply(&event, 100), None);
        }
    }

    #[test]
    fn a_late_event_never_moves_updated_at_back() {
        let c = call().apply(&picked("r-1"), 500).unwrap();
        let later = c.apply(&completed("r-1"), 300).unwrap();
        assert_eq!(later.updated_at, 500);
    }

    fn deferred() -> Call {
        Call::deferred(CallId::generate(), &new_call("store-1", "Gangnam 1", 3_000), 10)
    }

    fn marked(c: &Call, at: Millis) -> Call {
        let CancelStep::Void(marked) = c.request_cancel(&reason("closed"), at).unwrap() else {
            panic!("expected a void step");
        };
        marked
    }

    #[test]
    fn a_deferred_call_is_pending_and_due_at_once() {
        let c = deferred();
        assert_eq!(c.status, Called);
        assert_eq!(c.payment_state, PaymentState::Pending);
        assert!(c.registration_due(10));
        assert!(!c.registration_due(9));
        assert!(!call().registration_due(i64::MAX), "a registered fee is never retried");
    }

    #[test]
    fn each_registration_attempt_is_counted_and_backs_off_before_it_is_sent() {
        let first = deferred().begin_registration_attempt(100).unwrap();
        assert_eq!(first.payment_attempts, 1);
        assert_eq!(first.next_attempt_at, Some(1_100));
        assert_eq!(first.begin_registration_attempt(1_099), None, "not due yet");
        let second = first.begin_registration_attempt(1_100).unwrap();
        assert_eq!(second.payment_attempts, 2);
        assert_eq!(second.next_attempt_at, Some(3_100));
        assert_eq!(second.version, first.version + 1);
    }

    #[test]
    fn a_confirmed_registration_stops_the_retries() {
        let attempt = deferred().begin_registration_attempt(100).unwrap();
        let registered = attempt.confirm_registration(200).unwrap();
        assert_eq!(registered.payment_state, PaymentState::Registered);
        assert_eq!(registered.next_attempt_at, None);
        assert!(!registered.registration_due(i64::MAX));
        assert_eq!(registered.confirm_registration(300), None, "once");
    }

    #[test]
    fn a_marked_or_cancelled_call_is_never_registered() {
        let pending = deferred();
        let marked = marked(&pending, 50);
        assert!(!marked.registration_due(i64::MAX));
        assert_eq!(marked.begin_registration_attempt(i64::MAX), None);
        assert_eq!(marked.confirm_registration(60), None);
        let cancelled = marked.confirm_cancel(60).unwrap();
        assert_eq!(cancelled.begin_registration_attempt(i64::MAX), None);
        assert_eq!(cancelled.confirm_registration(70), None);
    }

    #[test]
    fn a_refused_registration_is_not_retried() {
        let stopped = deferred().stop_registration().unwrap();
        assert_eq!(stopped.payment_state, PaymentState::Pending);
        assert!(!stopped.registration_due(i64::MAX));
        assert_eq!(stopped.stop_registration(), None);
    }

    #[test]
    fn a_completion_settles_a_pending_fee_and_ends_its_retries() {
        let done = deferred().apply(&completed("r-1"), 100).unwrap();
        assert_eq!(done.payment_state, PaymentState::Settled);
        assert_eq!(done.next_attempt_at, None);
    }

    #[test]
    fn a_cancellation_payment_refused_is_dropped_and_the_call_follows_the_pick_up() {
        let dropped = marked(&call(), 50).abandon_cancel().unwrap();
        assert_eq!(
            (dropped.cancel_requested_at, dropped.cancel_reason.clone()),
            (None, None)
        );
        assert_eq!(dropped.abandon_cancel(), None, "nothing left to drop");
        let picked_up = dropped.apply(&picked("r-1"), 60).unwrap();
        assert_eq!(picked_up.status, Picked);
    }

    #[test]
    fn an_undecided_cancellation_backs_off_by_moving_its_mark() {
        let c = marked(&call(), 50);
        assert_eq!(c.postpone_cancel(70).unwrap().cancel_requested_at, Some(70));
        assert_eq!(
            c.postpone_cancel(40).unwrap().cancel_requested_at,
            Some(50),
            "never earlier"
        );
        assert_eq!(call().postpone_cancel(70), None);
    }

    fn completed_unsettled(r: &str) -> DeliveryEvent {
        DeliveryEvent::CompletedUnsettled { rider: rider(r) }
    }

    fn settled(r: &str) -> DeliveryEvent {
        DeliveryEvent::Settled {
            rider: rider(r),
            rider_payout: 2_700,
        }
    }

    #[test]
    fn a_completion_with_its_settlement_pending_completes_without_settling() {
        let done = apply_all(
            &call(),
            &[&accepted("r-1"), &picked("r-1"), &completed_unsettled("r-1")],
        );
        assert_eq!(
            outcome(&done),
            (Completed, Some(rider("r-1")), PaymentState::Registered, None)
        );
        let paid = done.apply(&settled("r-1"), 200).unwrap();
        assert_eq!(
            outcome(&paid),
            (Completed, Some(rider("r-1")), PaymentState::Settled, Some(2_700))
        );
        assert_eq!(
            paid.apply(&completed_unsettled("r-1"), 300),
            None,
            "a late pending completion unsettles nothing"
        );
    }

    #[test]
    fn payment_settled_sets_the_amount_and_never_moves_the_status() {
        for status in [Called, Accepted, Picked, Completed] {
            let c = Call { status, ..call() };
            let paid = c.apply(&settled("r-1"), 100).unwrap();
            assert_eq!(paid.status, status);
            assert_eq!(
                (paid.payment_state, paid.settled_amount),
                (PaymentState::Settled, Some(2_700))
            );
            assert_eq!(paid.apply(&settled("r-1"), 200), None, "twice changes nothing");
        }
        let cancelled = call().confirm_cancel(20).unwrap();
        assert_eq!(cancelled.apply(&settled("r-1"), 100), None);
    }

    #[test]
    fn a_deferred_settlement_converges_in_every_order() {
        fn orders(events: Vec<DeliveryEvent>) -> Vec<Vec<DeliveryEvent>> {
            if events.len() <= 1 {
                return vec![events];
            }
            (0..events.len())
                .flat_map(|i| {
                    let mut rest = events.clone();
                    let first = rest.remove(i);
                    orders(rest).into_iter().map(move |mut order| {
                        order.insert(0, first.clone());
                        order
                    })
                })
                .collect()
        }
        let events = vec![
            accepted("r-1"),
            picked("r-1"),
            completed_unsettled("r-1"),
            settled("r-1"),
        ];
        for order in orders(events) {
            let refs: Vec<&DeliveryEvent> = order.iter().chain(order.iter()).collect();
            let end = apply_all(&call(), &refs);
            assert_eq!(
                outcome(&end),
                (Completed, Some(rider("r-1")), PaymentState::Settled, Some(2_700)),
                "{order:?}"
            );
        }
    }

    #[test]
    fn payment_state_names_round_trip() {
        for s in PaymentState::ALL {
            assert_eq!(PaymentState::from_name(s.as_str()), Some(s));
        }
    }
}
