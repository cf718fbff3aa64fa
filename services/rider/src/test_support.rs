//! Test helpers shared by the application and adapter tests: the application on SQLite in memory with a
//! fake payment port.

use baemin_mesh_store::Db;
use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use baemin_kernel::{CallId, DeliveryStatus, Destination, Fee, RestaurantId, RiderId, Settlement};
use baemin_mesh_events::{Envelope, Event, Outbox, outbox::entity as outbox};
use futures::future::BoxFuture;
use prost::Message;
use sea_orm::EntityTrait;
use tonic::Code;

use crate::{
    domain::{PaymentCallError, Payments, PlacedCall, Receipt, RiderApp, RiderError},
    outbound::migration::Migrator,
};

/// How the fake payment answers HoldCost and Settle.
#[derive(Debug, Clone)]
pub enum Answer {
    /// Holds / settles (idempotently) and says so.
    Settle,
    /// Holds / settles, but the answer is lost on the way back (looks unavailable).
    SettleButLoseReply,
    /// Cannot be reached; nothing settles.
    Unavailable,
    /// The fee was voided (`FEE_VOIDED`).
    Voided,
    /// Any other refusal (e.g. `SETTLED_WITH_ANOTHER_RIDER`).
    Refuse,
    /// No fee registered.
    NotFound,
    /// An answer payment should never give (a bug on one side).
    Unexpected,
}

pub struct FakePayments {
    answer: Mutex<Answer>,
    /// HoldCost requests received, whatever the answer.
    holds: AtomicUsize,
    /// Calls whose fee the fake holds.
    held: Mutex<HashSet<CallId>>,
    /// Calls for which payment is unavailable whatever `answer` says.
    unreachable: Mutex<HashSet<CallId>>,
    settles: AtomicUsize,
    /// Settles that paid a rider (the first Settle of each call that reached a working payment).
    payouts: AtomicUsize,
    /// Calls settled at the fake payment: paid once each, however often Settle comes.
    paid: Mutex<HashSet<CallId>>,
}

impl FakePayments {
    pub fn new(answer: Answer) -> Arc<Self> {
        Arc::new(Self {
            answer: Mutex::new(answer),
            holds: AtomicUsize::new(0),
            held: Mutex::new(HashSet::new()),
            unreachable: Mutex::new(HashSet::new()),
            settles: AtomicUsize::new(0),
            payouts: AtomicUsize::new(0),
            paid: Mutex::new(HashSet::new()),
        })
    }

    /// Whether payment holds `call_id` as settled.
    pub fn paid(&self, call_id: &CallId) -> bool {
        self.paid.lock().unwrap().contains(call_id)
    }

    pub fn answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    /// Makes payment unavailable for `call_id` alone.
    pub fn unreachable_for(&self, call_id: &CallId) {
        self.unreachable.lock().unwrap().insert(call_id.clone());
    }

    /// HoldCost requests received, whatever the answer.
    pub fn holds(&self) -> usize {
        self.holds.load(Ordering::SeqCst)
    }

    /// Whether payment holds the fee of `call_id` for a rider.
    pub fn held(&self, call_id: &CallId) -> bool {
        self.held.lock().unwrap().contains(call_id)
    }

    /// Settle requests received, whatever the answer.
    pub fn settles(&self) -> usize {
        self.settles.load(Ordering::SeqCst)
    }

    /// Riders paid: Settle is idempotent, so this counts each settled call once.
    pub fn payouts(&self) -> usize {
        self.payouts.load(Ordering::SeqCst)
    }
}

impl Payments for FakePayments {
    fn hold<'a>(&'a self, call_id: &'a CallId, _rider: &'a RiderId) -> BoxFuture<'a, Result<(), PaymentCallError>> {
        self.holds.fetch_add(1, Ordering::SeqCst);
        let answer = self.answer_for(call_id);
        if matches!(answer, Answer::Settle | Answer::SettleButLoseReply) {
            self.held.lock().unwrap().insert(call_id.clone());
        }
        Box::pin(async move { answer.outcome().map(drop) })
    }

    fn settle<'a>(
        &'a self,
        call_id: &'a CallId,
        _rider: &'a RiderId,
    ) -> BoxFuture<'a, Result<Settlement, PaymentCallError>> {
        self.settles.fetch_add(1, Ordering::SeqCst);
        let answer = self.answer_for(call_id);
        if matches!(answer, Answer::Settle | Answer::SettleButLoseReply)
            && self.paid.lock().unwrap().insert(call_id.clone())
        {
            self.payouts.fetch_add(1, Ordering::SeqCst);
        }
        Box::pin(async move { answer.outcome() })
    }
}

impl FakePayments {
    fn answer_for(&self, call_id: &CallId) -> Answer {
        if self.unreachable.lock().unwrap().contains(call_id) {
            Answer::Unavailable
        } else {
            self.answer.lock().unwrap().clone()
        }
    }
}

impl Answer {
    fn outcome(self) -> Result<Settlement, PaymentCallError> {
        match self {
            Self::Settle => Ok(Settlement {
                fee: 3_000,
                commission: 300,
                rider_payout: 2_700,
            }),
            Self::SettleButLoseReply => Err(PaymentCallError::Unavailable("deadline exceeded".into())),
            Self::Unavailable => Err(PaymentCallError::Unavailable("connection refused".into())),
            Self::Voided => Err(PaymentCallError::Voided(
                "the fee was voided (the call was cancelled); nothing to settle".into(),
            )),
            Self::Refuse => Err(PaymentCallError::Refused(
                "call was already settled with another rider".into(),
            )),
            Self::NotFound => Err(PaymentCallError::NotFound("no payment".into())),
            Self::Unexpected => Err(PaymentCallError::Unexpected("payment answered UNIMPLEMENTED".into())),
        }
    }
}

pub struct TestApp {
    pub app: Arc<RiderApp>,
    pub db: Db,
    pub payments: Arc<FakePayments>,
}

pub async fn spawn_app() -> TestApp {
    let db = baemin_mesh_store::connect::<Migrator>("sqlite::memory:", 1)
        .await
        .unwrap();
    let payments = FakePayments::new(Answer::Settle);
    // Zero: every mark is due at the next repair round, so tests drive rounds without waiting.
    let app = Arc::new(RiderApp::new(
        db.clone(),
        Outbox::new(),
        payments.clone(),
        Duration::ZERO,
    ));
    TestApp { app, db, payments }
}

pub fn rider(id: &str) -> RiderId {
    RiderId::parse(id, "rider_id").unwrap()
}

pub fn receipt(subject: &str) -> Receipt {
    Receipt {
        event_id: uuid::Uuid::now_v7().to_string(),
        subject: subject.to_owned(),
    }
}

pub fn placed_call() -> PlacedCall {
    PlacedCall {
        restaurant_id: RestaurantId::parse("store-1", "restaurant_id").unwrap(),
        destination: Destination::parse("Gangnam-gu 1", "destination").unwrap(),
        fee: Fee::parse(3_000, "fee").unwrap(),
        called_at: 1_000,
    }
}

pub fn code(err: RiderError) -> Code {
    tonic::Status::from(err).code()
}

impl TestApp {
    pub async fn place(&self) -> CallId {
        let call_id = CallId::generate();
        self.app
            .on_call_placed(&receipt("baemin.events.call.placed"), call_id.clone(), placed_call())
            .await
            .unwrap();
        call_id
    }

    pub async fn accepted_by(&self, id: &str) -> CallId {
        let call_id = self.place().await;
        self.app.accept(call_id.clone(), rider(id)).await.unwrap();
        call_id
    }

    pub async fn picked_by(&self, id: &str) -> CallId {
        let call_id = self.place().await;
        self.app.accept(call_id.clone(), rider(id)).await.unwrap();
        self.app.pick_up(call_id.clone(), rider(id)).await.unwrap();
        call_id
    }

    pub async fn status(&self, call_id: &CallId) -> DeliveryStatus {
        self.app.get(call_id).await.unwrap().status
    }

    /// The events in the outbox for `call_id`, in order.
    pub async fn events(&self, call_id: &CallId) -> Vec<Event> {
        outbox::Entity::find()
            .all(&self.db)
            .await
            .unwrap()
            .into_iter()
            .map(|row| Envelope::decode(row.payload.as_slice()).unwrap())
            .filter(|e| e.call_id == call_id.as_str())
            .filter_map(|e| e.event)
            .collect()
    }
}
