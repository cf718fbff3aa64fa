//! Test doubles shared by the application and adapter tests: a fake payment service and an app on
//! SQLite in memory.

use baemin_mesh_store::Db;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use baemin_kernel::{CallId, Destination, Fee, RequestId, RestaurantId};
use baemin_mesh_events::Envelope;
use baemin_mesh_events::Outbox;
use futures::future::BoxFuture;
use prost::Message;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};

use super::{CallApp, Fallback, NewCall, PaymentCallError, Payments};
use crate::outbound::{db, intents, migration::Migrator};

/// What the fake payment holds for one call id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fake {
    Registered,
    /// Held for the rider who picked the food up (HoldCost).
    Held,
    Settled,
    Voided,
}

/// How the fake answers the next calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Like payment.
    Normal,
    /// Does nothing and answers UNAVAILABLE.
    Down,
    /// Applies the call but the answer is lost (UNAVAILABLE).
    LosesAnswers,
}

#[derive(Debug)]
pub(crate) struct FakePayments {
    fees: Mutex<HashMap<String, Fake>>,
    mode: Mutex<Mode>,
    register_calls: Mutex<usize>,
    void_calls: Mutex<usize>,
}

impl FakePayments {
    /// A payment that answers normally and holds no fee.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            fees: Mutex::new(HashMap::new()),
            mode: Mutex::new(Mode::Normal),
            register_calls: Mutex::new(0),
            void_calls: Mutex::new(0),
        })
    }

    /// How the next calls are answered.
    pub(crate) fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// What payment holds for `call_id`.
    pub(crate) fn fee(&self, call_id: &CallId) -> Option<Fake> {
        self.fees.lock().unwrap().get(call_id.as_str()).copied()
    }

    /// Holds the fee of `call_id`, as a rider's PickUp would.
    pub(crate) fn hold(&self, call_id: &CallId) {
        self.fees.lock().unwrap().insert(call_id.to_string(), Fake::Held);
    }

    /// Settles the fee of `call_id`, as a rider's CompleteDelivery would.
    pub(crate) fn settle(&self, call_id: &CallId) {
        self.fees.lock().unwrap().insert(call_id.to_string(), Fake::Settled);
    }

    /// How many RegisterCost calls were made.
    pub(crate) fn register_calls(&self) -> usize {
        *self.register_calls.lock().unwrap()
    }

    /// How many VoidCost calls were made.
    pub(crate) fn void_calls(&self) -> usize {
        *self.void_calls.lock().unwrap()
    }

    /// How many fees are registered (neither settled nor voided).
    pub(crate) fn registered(&self) -> usize {
        let fees = self.fees.lock().unwrap();
        fees.values().filter(|f| **f == Fake::Registered).count()
    }

    /// Runs `apply` on the fees unless payment is down; loses the answer if told to.
    fn answer(
        &self,
        apply: impl FnOnce(&mut HashMap<String, Fake>) -> Result<(), PaymentCallError>,
    ) -> Result<(), PaymentCallError> {
        let mode = *self.mode.lock().unwrap();
        if mode == Mode::Down {
            return Err(PaymentCallError::Unavailable("connection refused".into()));
        }
        let result = apply(&mut self.fees.lock().unwrap());
        match mode {
            Mode::LosesAnswers => Err(PaymentCallError::Unavailable("deadline exceeded".into())),
            _ => result,
        }
    }
}

impl Payments for FakePayments {
    fn register_cost(&self, call_id: CallId, _fee: Fee) -> BoxFuture<'_, Result<(), PaymentCallError>> {
        *self.register_calls.lock().unwrap() += 1;
        let result = self.answer(|fees| match fees.get(call_id.as_str()) {
            None => {
                fees.insert(call_id.to_string(), Fake::Registered);
                Ok(())
            }
            Some(Fake::Voided) => Err(PaymentCallError::Refused("voided".into())),
            Some(_) => Ok(()),
        });
        Box::pin(async move { result })
    }

    fn void_cost(&self, call_id: CallId) -> BoxFuture<'_, Result<(), PaymentCallError>> {
        *self.void_calls.lock().unwrap() += 1;
        let result = self.answer(|fees| match fees.get(call_id.as_str()) {
            None => Err(PaymentCallError::NotFound),
            Some(Fake::Held) => Err(PaymentCallError::Refused("held for the rider who picked up".into())),
            Some(Fake::Settled) => Err(PaymentCallError::Refused("settled".into())),
            Some(_) => {
                fees.insert(call_id.to_string(), Fake::Voided);
                Ok(())
            }
        });
        Box::pin(async move { result })
    }
}

/// An app on a fresh in-memory database whose repair worker acts after `repair_after`, with the
/// `reject` fallback.
pub(crate) async fn app_with(payments: Arc<FakePayments>, repair_after: Duration) -> (CallApp, Db) {
    app_in(Fallback::Reject, payments, repair_after).await
}

/// An app with `fallback` on a fresh in-memory database whose repair worker acts after `repair_after`.
pub(crate) async fn app_in(fallback: Fallback, payments: Arc<FakePayments>, repair_after: Duration) -> (CallApp, Db) {
    let db = baemin_mesh_store::connect::<Migrator>("sqlite::memory:", 1)
        .await
        .unwrap();
    let app = CallApp::new(db.clone(), Outbox::new(), payments, repair_after, fallback);
    (app, db)
}

/// An app with the `defer` fallback whose repair worker acts on anything older than a millisecond.
pub(crate) async fn eager_defer_app(payments: Arc<FakePayments>) -> (CallApp, Db) {
    app_in(Fallback::Defer, payments, Duration::from_millis(1)).await
}

/// An app with the default repair age (30 s): the repair worker leaves everything alone.
pub(crate) async fn app(payments: Arc<FakePayments>) -> (CallApp, Db) {
    app_with(payments, Duration::from_secs(30)).await
}

/// An app whose repair worker acts on anything older than a millisecond.
pub(crate) async fn eager_repair_app(payments: Arc<FakePayments>) -> (CallApp, Db) {
    app_with(payments, Duration::from_millis(1)).await
}

/// Waits until what was just written is old enough for an eager repair app.
pub(crate) async fn after_repair_age() {
    tokio::time::sleep(Duration::from_millis(5)).await;
}

/// A PlaceCall of restaurant `store-1` to `Gangnam-gu 1`.
pub(crate) fn new_call(request_id: &str, fee: i64) -> NewCall {
    new_call_of("store-1", request_id, fee)
}

/// A PlaceCall of `restaurant` to `Gangnam-gu 1`.
pub(crate) fn new_call_of(restaurant: &str, request_id: &str, fee: i64) -> NewCall {
    NewCall {
        request_id: RequestId::parse(request_id, "request_id").unwrap(),
        restaurant_id: RestaurantId::parse(restaurant, "restaurant_id").unwrap(),
        destination: Destination::parse("Gangnam-gu 1", "destination").unwrap(),
        fee: Fee::parse(fee, "fee").unwrap(),
    }
}

/// How many calls are stored.
pub(crate) async fn calls_stored(db: &Db) -> u64 {
    db::entity::Entity::find().count(db).await.unwrap()
}

/// How many events on `subject` are in the outbox.
pub(crate) async fn events_on(db: &Db, subject: &str) -> u64 {
    use baemin_mesh_events::outbox::entity;
    entity::Entity::find()
        .filter(entity::Column::Subject.eq(subject))
        .count(db)
        .await
        .unwrap()
}

/// The envelopes on `subject` in the outbox, oldest first.
pub(crate) async fn envelopes_on(db: &Db, subject: &str) -> Vec<Envelope> {
    use baemin_mesh_events::outbox::entity;
    entity::Entity::find()
        .filter(entity::Column::Subject.eq(subject))
        .order_by_asc(entity::Column::Id)
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|row| Envelope::decode(row.payload.as_slice()).unwrap())
        .collect()
}

/// How many PlaceCall intents are left.
pub(crate) async fn intents_left(db: &Db) -> u64 {
    intents::entity::Entity::find().count(db).await.unwrap()
}
