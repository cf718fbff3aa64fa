//! The call application: each use case reads the call, lets the model decide, and stores the change
//! with its event in one transaction (outbox). Payment is called with no transaction open.
//!
//! # Cancel against pick-up: payment is the arbiter
//!
//! A call can be cancelled only before pick-up. CancelCall (here) and PickUp (rider service) race
//! across services, so payment decides: CancelCall voids the fee, PickUp holds it for the rider
//! (`HoldCost`), and whichever payment applies first wins — a held (or settled) fee cannot be voided,
//! a voided fee cannot be held or settled. Every interleaving converges to that one decision, and no
//! OK answer is reversed: a pick-up the rider service answered OK was held first, so the cancel
//! loses; a cancel answered OK was voided first, so no pick-up or completion can follow.
//!
//! 1. CancelCall refuses a call the call service already knows PICKED or COMPLETED, and marks the call
//!    `cancel_requested_at` before anything else: the cancel request, waiting for payment's decision.
//! 2. It voids the fee with payment. If payment voided it (or had voided it), the cancel won: the
//!    call becomes CANCELLED whatever it reached meanwhile, `CallCancelled` goes out, the answer is OK.
//!    Payment had no fee (a `defer` call whose registration has not landed): the fee is registered
//!    and voided at once, so payment records the void and refuses a registration or a hold that lands
//!    later; "no fee" is never taken as final on its own.
//! 3. If payment refuses (the fee is held for the rider who picked up, or settled), the pick-up won:
//!    the mark is dropped, the answer is FAILED_PRECONDITION, and the call follows the rider's events.
//! 4. If payment cannot be reached, the void's outcome is unknown (it may have been applied and its
//!    answer lost): the answer is UNAVAILABLE — never OK, whatever `PLACE_CALL_FALLBACK` says, since
//!    the pick-up may still win — and the mark stays. The repair worker finishes it (step 2 or 3) once
//!    payment answers, backing off per call; a client retrying CancelCall does the same at once.
//!
//! PlaceCall keeps the other invariant, "no fee without a call", with a write-ahead intent: the call
//! id is chosen and stored before the fee is registered, and an intent that no call replaced within
//! `CALL_REPAIR_AFTER` has its fee voided by the repair worker (`repair.rs`).
//!
//! # When payment is unavailable: `PLACE_CALL_FALLBACK`
//!
//! - `reject` (default): PlaceCall answers UNAVAILABLE and stores no call (its intent is left for the
//!   repair worker to void, as above).
//! - `defer`: PlaceCall stores the call with its fee PENDING in the transaction that replaces the
//!   intent and enqueues `CallPlaced { payment_pending: true }`, and answers OK. The repair worker
//!   retries RegisterCost with a per-call backoff until payment accepts it (the call then says
//!   REGISTERED; payment announces `PaymentRegistered` itself) or refuses it (retries stop).
//!
//! CancelCall is the same under both (step 4). A call with a cancellation marked is never
//! registered by the worker: it re-checks the mark in a conditional write right before it sends
//! RegisterCost, and a registration already in flight lands on a fee the cancellation registered and
//! voided (refused), or before it (and is voided with it).

use baemin_mesh_store::{Db, Txn};
use std::{sync::Arc, time::Duration};

use baemin_kernel::{
    CallId, CancelReason, DeliveryStatus, Millis, PageSize, PageToken, RestaurantId, RiderId, now_millis,
};
use baemin_mesh_events::{ChangeFeed, Envelope, Outbox};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::{
    Actor, Call, CallError, CancelStep, DeliveryEvent, Fallback, Fingerprint, IntentStep, NewCall, PaymentCallError,
    Payments, Registration,
};
use crate::outbound::{db, events, intents};

/// How often a command re-reads after losing a race before giving up (a lost race re-decides on the
/// winner's state, so one retry is normally enough).
pub(super) const RACE_RETRIES: usize = 3;

/// Changes kept for slow watchers before they lag (and re-read the call).
const WATCH_BUFFER: usize = 1024;

/// Which calls ListCalls returns; `None` matches any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallFilter {
    /// Only calls in this status.
    pub status: Option<DeliveryStatus>,
    /// Only calls of this restaurant.
    pub restaurant_id: Option<RestaurantId>,
    /// Only calls taken by this rider.
    pub rider_id: Option<RiderId>,
}

/// One page of ListCalls, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallPage {
    /// The calls.
    pub calls: Vec<Call>,
    /// Where the next page starts; `None` on the last page.
    pub next_page: Option<PageToken>,
}

/// An event of the rider service about one call, as delivered by the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The envelope's event id (inbox key).
    pub event_id: String,
    /// The subject it came on.
    pub subject: String,
    /// The call it is about.
    pub call_id: CallId,
    /// What happened.
    pub event: DeliveryEvent,
    /// When it happened, ms.
    pub occurred_at: Millis,
}

/// What PlaceCall found for its idempotency key before calling payment.
enum Reserved {
    /// The call was stored before: a retry.
    Placed(Box<Call>),
    /// Register the fee under this call id.
    Intent(CallId),
}

/// How voiding the fee of a call marked for cancellation ended.
#[derive(Debug)]
pub(super) enum VoidOutcome {
    /// Payment voided the fee: the call is CANCELLED.
    Done(Call),
    /// Payment refused: the fee is held for the rider who picked up, or settled. The cancellation was
    /// dropped (here or by a concurrent attempt).
    Kept(Call),
    /// Payment could not be reached: nothing decided, the mark stays.
    Unavailable(String),
}

/// A change decided on the current call.
/// What [`CallApp::step`] did inside its transaction.
pub(super) enum Step {
    /// The change was written (with its event): commit, then tell watchers.
    Stored(Change),
    /// Nothing to write: the call as it stands (nothing decided, or the event was applied before).
    Unchanged(Call),
    /// Another change committed between the read and the write: decide again on it.
    Raced,
}

pub(super) struct Change {
    next: Call,
    event: Option<Envelope>,
    /// Whether watchers see it (a cancellation mark alone is internal).
    visible: bool,
}

impl Change {
    fn internal(next: Call) -> Self {
        Self {
            next,
            event: None,
            visible: false,
        }
    }

    pub(super) fn visible(next: Call) -> Self {
        Self {
            next,
            event: None,
            visible: true,
        }
    }

    fn announced(next: Call, event: Envelope) -> Self {
        Self {
            next,
            event: Some(event),
            visible: true,
        }
    }
}

/// What a watcher of calls listens to (see [`CallApp::watch`]).
pub struct Subscription {
    /// Every visible change of any call from the subscription on, in commit order (per call, `version`
    /// grows).
    pub changes: broadcast::Receiver<Call>,
    /// Changes when changes may have been missed: read the call again.
    pub resyncs: tokio::sync::watch::Receiver<u64>,
}
/// The call service's use cases.
pub struct CallApp {
    pub(super) db: Db,
    outbox: Outbox,
    pub(super) payments: Arc<dyn Payments>,
    changes: broadcast::Sender<Call>,
    /// Bumped whenever changes may have been missed: every WatchCall reads its call again.
    resyncs: tokio::sync::watch::Sender<u64>,
    /// Where changes are announced to every replica (see [`Self::follow_changes`]); without it (a single
    /// process, tests) they go to this process's watchers directly.
    feed: Option<ChangeFeed>,
    pub(super) repair_after: Duration,
    fallback: Fallback,
}

impl CallApp {
    /// The application over its database, outbox and payment port. `repair_after` is how old an
    /// unfinished PlaceCall or CancelCall must be before the repair worker finishes it; `fallback` is
    /// what PlaceCall and CancelCall do when payment is unavailable.
    pub fn new(
        db: Db,
        outbox: Outbox,
        payments: Arc<dyn Payments>,
        repair_after: Duration,
        fallback: Fallback,
    ) -> Self {
        Self {
            db,
            outbox,
            payments,
            changes: broadcast::channel(WATCH_BUFFER).0,
            resyncs: tokio::sync::watch::channel(0).0,
            feed: None,
            repair_after,
            fallback,
        }
    }

    /// Places a call and registers its fee. A retry with the same request id (of the same restaurant)
    /// returns the same call; the same key with another body is refused. When payment is unavailable,
    /// the fallback decides: UNAVAILABLE, or the call stored with its fee PENDING.
    pub async fn place(&self, actor: &Actor, new: NewCall) -> Result<Call, CallError> {
        actor.ensure_may_place(&new)?;
        let fingerprint = new.fingerprint();
        let call_id = match self.reserve(&new, &fingerprint).await? {
            Reserved::Placed(call) => return Ok(*call),
            Reserved::Intent(call_id) => call_id,
        };
        let payment_pending = match self.payments.register_cost(call_id.clone(), new.fee).await {
            Ok(()) => false,
            // The fee may be registered all the same (a lost answer): the intent stays, and either a
            // retry stores the call under it or the repair worker voids the fee.
            Err(PaymentCallError::Unavailable(detail)) if self.fallback == Fallback::Reject => {
                return Err(CallError::PaymentUnavailable(detail));
            }
            // Stored PENDING; the repair worker registers the fee (idempotent if it was registered).
            Err(PaymentCallError::Unavailable(detail)) => {
                tracing::warn!(%call_id, %detail, "payment is unavailable; the call is stored with its fee pending");
                true
            }
            Err(refused) => {
                // The call id is dead at payment (its fee voided, or registered differently). Take the
                // intent over, so no attempt stores a call under it, void what may stand there and drop
                // it: a retry starts over with a fresh call id. If the void cannot be done now, the
                // repair worker does it later.
                intents::claim(&self.db, &new.key(), &call_id, None, now_millis()).await?;
                if let Ok(()) | Err(PaymentCallError::NotFound) = self.payments.void_cost(call_id.clone()).await {
                    intents::delete(&self.db, &new.key(), &call_id).await?;
                }
                let detail = match refused {
                    PaymentCallError::Refused(detail) => detail,
                    other => other.to_string(),
                };
                return Err(CallError::PaymentRefused(detail));
            }
        };
        self.store(&new, &fingerprint, call_id, payment_pending).await
    }

    /// The call `call_id`, if `actor` may see it (an unknown call is NOT_FOUND for anyone).
    pub async fn get(&self, actor: &Actor, call_id: &CallId) -> Result<Call, CallError> {
        let call = db::find(&self.db, call_id)
            .await?
            .ok_or_else(|| CallError::NotFound(call_id.to_string()))?;
        actor.ensure_may_see(&call)?;
        Ok(call)
    }

    /// One page of the calls matching `filter` (narrowed to what `actor` may list), newest first,
    /// after `token`.
    pub async fn list(
        &self,
        actor: &Actor,
        filter: CallFilter,
        size: PageSize,
        token: Option<&PageToken>,
    ) -> Result<CallPage, CallError> {
        let filter = actor.scope(filter)?;
        let limit = size.get();
        let mut calls = db::list(&self.db, &filter, token.map(PageToken::last_key), limit + 1).await?;
        let next_page = if calls.len() as u64 > limit {
            calls.truncate(limit as usize);
            calls.last().map(|c| PageToken::after(c.call_id.as_str()))
        } else {
            None
        };
        Ok(CallPage { calls, next_page })
    }

    /// Cancels the call before pick-up and voids its fee; see the module documentation for the rule
    /// against a concurrent completion. Cancelling a cancelled call returns it; a retry of a
    /// cancellation left under way finishes it, keeping the reason it was marked with.
    pub async fn cancel(&self, actor: &Actor, call_id: CallId, reason: CancelReason) -> Result<Call, CallError> {
        actor.ensure_may_cancel()?;
        let now = now_millis();
        let marked = self
            .transition(&call_id, None, |call| {
                actor.ensure_may_cancel_call(call)?;
                match call.request_cancel(&reason, now)? {
                    CancelStep::AlreadyCancelled(_) | CancelStep::Resume(_) => Ok(None),
                    CancelStep::Void(next) => Ok(Some(Change::internal(next))),
                }
            })
            .await?;
        if marked.status == DeliveryStatus::Cancelled {
            return Ok(marked);
        }
        // The marked call carries the reason: ours, or the first attempt's when this is a retry.
        match self.void_and_cancel(&call_id).await? {
            VoidOutcome::Done(call) => Ok(call),
            // Cancelled before this version decided by payment alone: answered as it is.
            VoidOutcome::Kept(call) if call.status == DeliveryStatus::Cancelled => Ok(call),
            VoidOutcome::Kept(_) => Err(CallError::PickedUpFirst),
            VoidOutcome::Unavailable(detail) => Err(CallError::PaymentUnavailable(detail)),
        }
    }

    /// A watcher's subscription, taken before it reads the call: the changes from then on, and the signal
    /// to read the call again when some may have been missed (announcements lost) — both at once, so a
    /// resync cannot fall between the read and the subscription.
    pub fn watch(&self) -> Subscription {
        Subscription {
            changes: self.changes.subscribe(),
            resyncs: self.resyncs.subscribe(),
        }
    }

    /// Tells every watcher of this replica to read its call again.
    pub(crate) fn resync_watchers(&self) {
        self.resyncs.send_modify(|generation| *generation += 1);
    }

    /// Announces committed changes on `feed`, for the watchers of every replica.
    pub fn announcing(mut self, feed: ChangeFeed) -> Self {
        self.feed = Some(feed);
        self
    }

    /// Feeds this replica's watchers from the announcements of every replica (its own included) until
    /// `stop`: each announced call is read again from the shared database; after announcements may have
    /// been lost, every watcher reads its call again.
    pub async fn follow_changes(self: Arc<Self>, stop: CancellationToken) {
        let Some(feed) = self.feed.clone() else {
            return;
        };
        let resync = || self.resync_watchers();
        let watched = || self.changes.receiver_count() > 0;
        feed.run(stop, watched, |key| self.read_again(key), resync).await;
    }

    /// Tells this replica's watchers the call `key` as the database has it now.
    async fn read_again(&self, key: String) {
        let Ok(call_id) = CallId::parse(&key, "call_id") else {
            tracing::warn!(key, "a change announced for a key that is no call id");
            return;
        };
        match db::find(&self.db, &call_id).await {
            Ok(Some(call)) => {
                let _unwatched = self.changes.send(call);
            }
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(error = %err, "cannot read an announced change; watchers read again");
                self.resync_watchers();
            }
        }
    }

    /// Voids the fee of a call marked for cancellation, then cancels it (or drops the mark when payment
    /// refuses: the pick-up won). Shared by CancelCall and the repair worker.
    pub(super) async fn void_and_cancel(&self, call_id: &CallId) -> Result<VoidOutcome, CallError> {
        let mut answer = self.payments.void_cost(call_id.clone()).await;
        if answer == Err(PaymentCallError::NotFound) {
            // No fee yet (a `defer` call whose registration has not landed): register it and void it, so
            // that payment holds the void and refuses whatever registration or hold lands later.
            let fee = db::find(&self.db, call_id)
                .await?
                .ok_or_else(|| CallError::NotFound(call_id.to_string()))?
                .fee;
            answer = match self.payments.register_cost(call_id.clone(), fee).await {
                // Refused: voided already (a concurrent cancellation), which the void answers.
                Ok(()) | Err(PaymentCallError::Refused(_)) => self.payments.void_cost(call_id.clone()).await,
                Err(err) => Err(err),
            };
        }
        match answer {
            Ok(()) => {
                let now = now_millis();
                let call = self
                    .transition(call_id, None, |call| {
                        Ok(call.confirm_cancel(now).map(|next| cancelling(call, next)))
                    })
                    .await?;
                Ok(if call.status == DeliveryStatus::Cancelled {
                    VoidOutcome::Done(call)
                } else {
                    // The mark was dropped meanwhile: a concurrent void learned the fee is kept.
                    VoidOutcome::Kept(call)
                })
            }
            Err(PaymentCallError::Refused(detail)) => {
                let (call, dropped) = self.change_quietly(call_id, Call::abandon_cancel).await?;
                if dropped {
                    tracing::info!(%call_id, %detail, "payment kept the fee (picked up or settled first); the cancellation is dropped");
                }
                Ok(VoidOutcome::Kept(call))
            }
            Err(PaymentCallError::Unavailable(detail)) => Ok(VoidOutcome::Unavailable(detail)),
            Err(PaymentCallError::NotFound) => Ok(VoidOutcome::Unavailable(
                "payment has no fee for the call even after registering it".into(),
            )),
        }
    }

    /// Work left unfinished at or before this instant is abandoned: `now` minus `CALL_REPAIR_AFTER`.
    pub(super) fn repair_cutoff(&self, now: Millis) -> Millis {
        let age = i64::try_from(self.repair_after.as_millis()).unwrap_or(i64::MAX);
        now.saturating_sub(age)
    }

    /// PlaceCall before payment: return a stored call, or choose (or reuse) the call id of an intent.
    async fn reserve(&self, new: &NewCall, fingerprint: &Fingerprint) -> Result<Reserved, CallError> {
        let key = &new.key();
        for _ in 0..RACE_RETRIES {
            let now = now_millis();
            let txn = baemin_mesh_store::begin_write(&self.db).await?;
            // Most requests are new: claim the key with a fresh intent, and read the one standing only if
            // that fails (a retry of this request, or a different request under the same id).
            let intent = Registration::fresh(new, now);
            let reserved = if intents::insert(&txn, &intent).await? {
                // The key was free of intents — but a call may stand under it: an earlier attempt of this
                // request stored its call (dropping its intent), maybe while this insert waited for it.
                // Looked up after the claim (a new statement sees that commit): a claim that stood then
                // would register a second fee under a call id that never exists.
                if let Some(call) = db::find_by_request(&txn, key).await? {
                    txn.rollback().await?;
                    return placed_under(call, new, fingerprint);
                }
                Some(intent.call_id)
            } else {
                // An intent holds the key: an attempt of this request under way, or another request
                // under the same id — or one left beside the call its request stored (the repair worker
                // allows for that): a stored call answers first, as it did before any claim.
                if let Some(call) = db::find_by_request(&txn, key).await? {
                    txn.commit().await?;
                    return placed_under(call, new, fingerprint);
                }
                let existing = intents::find(&txn, key).await?;
                match Registration::decide(existing.as_ref(), fingerprint) {
                    IntentStep::Conflict => {
                        return Err(CallError::RequestIdReused(new.request_id.to_string()));
                    }
                    IntentStep::BeingVoided => return Err(being_rolled_back()),
                    IntentStep::Reuse(call_id) => intents::touch(&txn, key, &call_id, now).await?.then_some(call_id),
                    // Gone between the two statements (stored by a concurrent attempt): decide again.
                    IntentStep::Fresh => None,
                }
            };
            if let Some(call_id) = reserved {
                txn.commit().await?;
                return Ok(Reserved::Intent(call_id));
            }
            // A concurrent attempt of the same request changed the intent; decide again.
        }
        Err(CallError::Contended(format!(
            "request_id {} is being placed concurrently; retry",
            new.request_id
        )))
    }

    /// PlaceCall after payment registered the fee (or, with `payment_pending`, could not be reached
    /// under the `defer` fallback): the call replaces its intent, with `CallPlaced`.
    async fn store(
        &self,
        new: &NewCall,
        fingerprint: &Fingerprint,
        call_id: CallId,
        payment_pending: bool,
    ) -> Result<Call, CallError> {
        let key = &new.key();
        let call = if payment_pending {
            Call::deferred(call_id, new, now_millis())
        } else {
            Call::placed(call_id, new, now_millis())
        };
        let txn = baemin_mesh_store::begin_write(&self.db).await?;
        if intents::take(&txn, key, &call.call_id).await? && db::insert(&txn, &call).await? {
            self.outbox.enqueue(&txn, &events::placed(&call)).await?;
            self.outbox.commit(txn).await?;
            self.publish(&call).await;
            return Ok(call);
        }
        // Another attempt of the same request stored its call first, or the repair worker took the
        // intent over. Rolling back keeps our intent if it is still there; the repair worker voids its
        // fee, since no call stands under its call id.
        txn.rollback().await?;
        match db::find_by_request(&self.db, key).await? {
            Some(stored) if stored.placed_by(fingerprint) => Ok(stored),
            Some(_) => Err(CallError::RequestIdReused(new.request_id.to_string())),
            None => Err(being_rolled_back()),
        }
    }

    /// Reads the call, lets `decide` choose a change, and stores it with its event if the call did
    /// not change meanwhile (else decides again). With `inbox`, the change is applied once per event.
    async fn transition<F>(&self, call_id: &CallId, inbox: Option<(&str, &str)>, decide: F) -> Result<Call, CallError>
    where
        F: Fn(&Call) -> Result<Option<Change>, CallError>,
    {
        self.decide_and_store(call_id, inbox, decide)
            .await
            .map(|(call, _)| call)
    }

    /// An internal change of the call decided by `decide` (no event, not shown to watchers); the call
    /// after it and whether `decide` changed it.
    pub(super) async fn change_quietly<F>(&self, call_id: &CallId, decide: F) -> Result<(Call, bool), CallError>
    where
        F: Fn(&Call) -> Option<Call>,
    {
        self.decide_and_store(call_id, None, |call| Ok(decide(call).map(Change::internal)))
            .await
    }

    /// A visible change of the call decided by `decide` (no event); the call after it and whether
    /// `decide` changed it.
    pub(super) async fn change_visibly<F>(&self, call_id: &CallId, decide: F) -> Result<(Call, bool), CallError>
    where
        F: Fn(&Call) -> Option<Call>,
    {
        self.decide_and_store(call_id, None, |call| Ok(decide(call).map(Change::visible)))
            .await
    }

    /// [`Self::transition`], also telling whether a change was stored.
    async fn decide_and_store<F>(
        &self,
        call_id: &CallId,
        inbox: Option<(&str, &str)>,
        decide: F,
    ) -> Result<(Call, bool), CallError>
    where
        F: Fn(&Call) -> Result<Option<Change>, CallError>,
    {
        for _ in 0..RACE_RETRIES {
            let txn = baemin_mesh_store::begin_write(&self.db).await?;
            let step = match self.step(&txn, call_id, inbox, &decide).await {
                Ok(step) => step,
                Err(err) => {
                    // Ended, not dropped: what was read here (on SQLite maybe not yet durable) was acted on.
                    let _ = txn.rollback().await;
                    return Err(err);
                }
            };
            match step {
                Step::Unchanged(current) => {
                    txn.commit().await?;
                    return Ok((current, false));
                }
                Step::Stored(change) => {
                    self.finish(txn, std::slice::from_ref(&change)).await?;
                    return Ok((change.next, true));
                }
                // Another change committed first; decide again on it.
                Step::Raced => txn.rollback().await?,
            }
        }
        Err(CallError::Contended(format!(
            "call {call_id} is changing concurrently; retry"
        )))
    }

    /// Inside `txn`: records the event `inbox` names (if any) and, the first time, reads the call, lets
    /// `decide` choose a change and writes it with its event if the call did not change since the read.
    pub(super) async fn step<F>(
        &self,
        txn: &Txn,
        call_id: &CallId,
        inbox: Option<(&str, &str)>,
        decide: F,
    ) -> Result<Step, CallError>
    where
        F: Fn(&Call) -> Result<Option<Change>, CallError>,
    {
        let not_found = || CallError::NotFound(call_id.to_string());
        if let Some((subject, event_id)) = inbox
            && !baemin_mesh_events::inbox::first_delivery(txn, subject, event_id).await?
        {
            return db::find(txn, call_id).await?.map(Step::Unchanged).ok_or_else(not_found);
        }
        let current = db::find(txn, call_id).await?.ok_or_else(not_found)?;
        let Some(change) = decide(&current)? else {
            return Ok(Step::Unchanged(current));
        };
        if !db::update(txn, &change.next, current.version).await? {
            return Ok(Step::Raced);
        }
        if let Some(event) = &change.event {
            self.outbox.enqueue(txn, event).await?;
        }
        Ok(Step::Stored(change))
    }

    /// Commits `txn`, holding `changes` (waking the relay if one carries an event), then tells watchers
    /// the visible ones.
    pub(super) async fn finish(&self, txn: Txn, changes: &[Change]) -> Result<(), CallError> {
        let committed = if changes.iter().any(|c| c.event.is_some()) {
            self.outbox.commit(txn).await
        } else {
            txn.commit().await
        };
        let visible = changes.iter().filter(|c| c.visible);
        if let Err(err) = committed {
            // It may have committed all the same (its answer lost), and a retry will find every event
            // in the inbox and tell nobody: watchers read their calls again now.
            match &self.feed {
                Some(feed) => {
                    for change in visible {
                        feed.announce(change.next.call_id.as_str()).await;
                    }
                }
                None => self.resync_watchers(),
            }
            return Err(err.into());
        }
        for change in visible {
            self.publish(&change.next).await;
        }
        Ok(())
    }

    /// Tells the watchers of every replica about a committed change; nobody watching is fine.
    async fn publish(&self, call: &Call) {
        match &self.feed {
            Some(feed) => feed.announce(call.call_id.as_str()).await,
            None => {
                let _unwatched = self.changes.send(call.clone());
            }
        }
    }
}

/// A cancellation's change: announced with `CallCancelled` when the call becomes CANCELLED, only
/// shown when a call cancelled before its void learns that the void happened.
fn cancelling(current: &Call, next: Call) -> Change {
    if current.status == DeliveryStatus::Cancelled {
        Change::visible(next)
    } else {
        let event = events::cancelled(&next);
        Change::announced(next, event)
    }
}

fn being_rolled_back() -> CallError {
    CallError::Contended(
        "an earlier attempt with this request_id failed and is being rolled back; retry in a few seconds".into(),
    )
}

/// The answer to a PlaceCall whose key already holds `call`: that call when this request placed it (a
/// retry), else the key was reused for a different request.
fn placed_under(call: Call, new: &NewCall, fingerprint: &Fingerprint) -> Result<Reserved, CallError> {
    if call.placed_by(fingerprint) {
        Ok(Reserved::Placed(Box::new(call)))
    } else {
        Err(CallError::RequestIdReused(new.request_id.to_string()))
    }
}
