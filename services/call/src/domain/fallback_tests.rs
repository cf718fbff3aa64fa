//! The `PLACE_CALL_FALLBACK` behaviours against SQLite in memory and a fake payment service: a call
//! placed or cancelled while payment is down, and the repair worker finishing it once payment is back.

use std::{sync::Arc, time::Duration};

use baemin_kernel::{CancelReason, DeliveryStatus};
use baemin_mesh_events::{Event, Outbox};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, sea_query::Expr};

use super::{testing::*, *};
use crate::outbound::{db, migration::Migrator};

const COMPANY: Actor = Actor::Company;
const PLACED: &str = "baemin.events.call.placed";
const CANCELLED: &str = "baemin.events.call.cancelled";

fn reason(text: &str) -> CancelReason {
    CancelReason::parse(text, "reason").unwrap()
}

/// A `defer` app whose repair worker leaves everything alone (default repair age).
async fn defer_app(payments: Arc<FakePayments>) -> (CallApp, DatabaseConnection) {
    app_in(Fallback::Defer, payments, Duration::from_secs(30)).await
}

/// Two `defer` apps on one database: one whose worker waits the default repair age, one whose
/// worker acts at once (as the first would, 30 s later).
async fn patient_and_eager(payments: Arc<FakePayments>) -> (CallApp, CallApp) {
    let db = baemin_mesh_store::connect::<Migrator>("sqlite::memory:", 1)
        .await
        .unwrap();
    let app = |age| CallApp::new(db.clone(), Outbox::new(), payments.clone(), age, Fallback::Defer);
    (app(Duration::from_secs(30)), app(Duration::from_millis(1)))
}

/// Makes every scheduled registration retry due now (instead of waiting out its backoff).
async fn retries_due(db: &DatabaseConnection) {
    db::entity::Entity::update_many()
        .col_expr(db::entity::Column::NextAttemptAt, Expr::value(0_i64))
        .filter(db::entity::Column::NextAttemptAt.is_not_null())
        .exec(db)
        .await
        .unwrap();
}

async fn call_placed_says_pending(db: &DatabaseConnection) -> Vec<bool> {
    envelopes_on(db, PLACED)
        .await
        .into_iter()
        .map(|e| match e.event {
            Some(Event::CallPlaced(placed)) => placed.payment_pending,
            other => panic!("not a CallPlaced: {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn defer_stores_the_call_with_its_fee_pending_and_answers_ok() {
    let payments = FakePayments::new();
    payments.set_mode(Mode::Down);
    let (app, db) = defer_app(payments.clone()).await;

    let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();

    assert_eq!(call.status, DeliveryStatus::Called);
    assert_eq!(call.payment_state, PaymentState::Pending);
    assert_eq!(app.get(&COMPANY, &call.call_id).await.unwrap(), call);
    assert_eq!(calls_stored(&db).await, 1);
    assert_eq!(intents_left(&db).await, 0, "the intent became the call");
    assert_eq!(call_placed_says_pending(&db).await, [true]);
    let retry = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    assert_eq!(retry, call, "a retry finds the stored call");
    assert_eq!(payments.register_calls(), 1);
}

#[tokio::test]
async fn a_call_placed_while_payment_is_up_says_its_fee_is_not_pending() {
    let (app, db) = defer_app(FakePayments::new()).await;
    let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    assert_eq!(call.payment_state, PaymentState::Registered);
    assert_eq!(call_placed_says_pending(&db).await, [false]);
}

#[tokio::test]
async fn reject_answers_unavailable_stores_nothing_and_leaves_the_intent_to_the_worker() {
    let payments = FakePayments::new();
    payments.set_mode(Mode::Down);
    let (app, db) = app_in(Fallback::Reject, payments.clone(), Duration::from_secs(30)).await;

    let err = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap_err();

    assert!(matches!(err, CallError::PaymentUnavailable(_)), "{err:?}");
    assert_eq!(calls_stored(&db).await, 0);
    assert_eq!(events_on(&db, PLACED).await, 0);
    assert_eq!(intents_left(&db).await, 1, "voided by the repair worker once abandoned");
}

#[tokio::test]
async fn the_worker_registers_a_deferred_fee_exactly_once_when_payment_returns() {
    let payments = FakePayments::new();
    payments.set_mode(Mode::Down);
    let (app, db) = eager_defer_app(payments.clone()).await;
    let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    let mut changes = app.subscribe();

    let round = app.repair_once().await.unwrap();
    assert_eq!(round.deferred, 1, "payment is still down");
    assert_eq!(payments.register_calls(), 2);
    assert!(
        app.repair_once().await.unwrap().is_empty(),
        "the next attempt waits out its backoff"
    );
    assert_eq!(payments.register_calls(), 2);
    let waiting = app.get(&COMPANY, &call.call_id).await.unwrap();
    assert_eq!(waiting.payment_state, PaymentState::Pending);
    assert_eq!(waiting.payment_attempts, 1);

    payments.set_mode(Mode::Normal);
    retries_due(&db).await;
    let round = app.repair_once().await.unwrap();

    assert_eq!(round.registrations_completed, 1);
    assert_eq!(payments.register_calls(), 3, "one RegisterCost once payment is back");
    assert_eq!(payments.fee(&call.call_id), Some(Fake::Registered));
    let registered = app.get(&COMPANY, &call.call_id).await.unwrap();
    assert_eq!(registered.payment_state, PaymentState::Registered);
    assert_eq!(registered.next_attempt_at, None);
    assert_eq!(changes.recv().await.unwrap(), registered, "watchers see it registered");

    retries_due(&db).await;
    assert!(app.repair_once().await.unwrap().is_empty());
    assert_eq!(payments.register_calls(), 3, "never again");
    assert_eq!(events_on(&db, PLACED).await, 1);
}

#[tokio::test]
async fn a_pending_call_cancelled_before_payment_returns_is_voided_and_never_registered() {
    let payments = FakePayments::new();
    payments.set_mode(Mode::Down);
    let (app, db) = eager_defer_app(payments.clone()).await;
    let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();

    let cancelled = app
        .cancel(&COMPANY, call.call_id.clone(), reason("closed"))
        .await
        .unwrap();

    assert_eq!(cancelled.status, DeliveryStatus::Cancelled);
    assert_eq!(cancelled.payment_state, PaymentState::Pending);
    assert!(cancelled.cancel_requested_at.is_some(), "the void is owed");
    assert_eq!(events_on(&db, CANCELLED).await, 1);

    payments.set_mode(Mode::Normal);
    after_repair_age().await;
    retries_due(&db).await;
    let round = app.repair_once().await.unwrap();

    assert_eq!(round.cancellations_finished, 1);
    assert_eq!(round.registrations_completed, 0);
    assert_eq!(payments.register_calls(), 1, "only PlaceCall's own attempt");
    assert_eq!(payments.fee(&call.call_id), None, "nothing registered");
    let voided = app.get(&COMPANY, &call.call_id).await.unwrap();
    assert_eq!(voided.status, DeliveryStatus::Cancelled);
    assert_eq!(voided.payment_state, PaymentState::Voided);
    assert_eq!(voided.cancel_requested_at, None);
    assert!(app.repair_once().await.unwrap().is_empty());
    assert_eq!(events_on(&db, CANCELLED).await, 1);
}

#[tokio::test]
async fn a_pending_fee_whose_registration_answer_was_lost_is_voided_when_the_call_is_cancelled() {
    let payments = FakePayments::new();
    payments.set_mode(Mode::LosesAnswers);
    let (app, db) = eager_defer_app(payments.clone()).await;
    let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    assert_eq!(call.payment_state, PaymentState::Pending);
    assert_eq!(
        payments.fee(&call.call_id),
        Some(Fake::Registered),
        "the answer was lost"
    );
    payments.set_mode(Mode::Down);
    app.cancel(&COMPANY, call.call_id.clone(), reason("closed"))
        .await
        .unwrap();

    payments.set_mode(Mode::Normal);
    after_repair_age().await;
    retries_due(&db).await;
    assert_eq!(app.repair_once().await.unwrap().cancellations_finished, 1);

    assert_eq!(payments.fee(&call.call_id), Some(Fake::Voided));
    assert_eq!(payments.register_calls(), 1);
    let voided = app.get(&COMPANY, &call.call_id).await.unwrap();
    assert_eq!(voided.payment_state, PaymentState::Voided);
    assert!(app.repair_once().await.unwrap().is_empty());
    assert_eq!(payments.fee(&call.call_id), Some(Fake::Voided), "never left registered");
}

#[tokio::test]
async fn a_registration_landing_after_a_cancel_found_no_fee_is_voided_by_the_worker() {
    let payments = FakePayments::new();
    payments.set_mode(Mode::Down);
    let (app, worker) = patient_and_eager(payments.clone()).await;
    let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    payments.set_mode(Mode::Normal);

    // Payment has no fee yet, but a registration sent before the cancel may still land.
    let cancelled = app
        .cancel(&COMPANY, call.call_id.clone(), reason("closed"))
        .await
        .unwrap();
    assert_eq!(cancelled.status, DeliveryStatus::Cancelled);
    assert_eq!(cancelled.payment_state, PaymentState::Pending);
    assert!(cancelled.cancel_requested_at.is_some(), "the void is not final yet");
    payments.register_cost(call.call_id.clone(), call.fee).await.unwrap();

    after_repair_age().await;
    assert_eq!(worker.repair_once().await.unwrap().cancellations_finished, 1);

    assert_eq!(payments.fee(&call.call_id), Some(Fake::Voided));
    let voided = worker.get(&COMPANY, &call.call_id).await.unwrap();
    assert_eq!(voided.payment_state, PaymentState::Voided);
    assert_eq!(voided.cancel_requested_at, None);
}

#[tokio::test]
async fn cancel_in_defer_mode_with_payment_down_is_cancelled_at_once_and_the_fee_voided_exactly_once() {
    let payments = FakePayments::new();
    let (app, db) = eager_defer_app(payments.clone()).await;
    let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    payments.set_mode(Mode::Down);
    let mut changes = app.subscribe();

    let cancelled = app
        .cancel(&COMPANY, call.call_id.clone(), reason("closed"))
        .await
        .unwrap();

    assert_eq!(cancelled.status, DeliveryStatus::Cancelled);
    assert_eq!(
        cancelled.payment_state,
        PaymentState::Registered,
        "until the void happens"
    );
    assert_eq!(cancelled.cancel_reason, Some(reason("closed")));
    assert_eq!(changes.recv().await.unwrap(), cancelled);
    assert_eq!(events_on(&db, CANCELLED).await, 1);
    let again = app
        .cancel(&COMPANY, call.call_id.clone(), reason("again"))
        .await
        .unwrap();
    assert_eq!(again, cancelled, "a repeat answers the call as it is");

    after_repair_age().await;
    assert_eq!(app.repair_once().await.unwrap().deferred, 1, "payment is still down");
    assert_eq!(payments.fee(&call.call_id), Some(Fake::Registered));

    payments.set_mode(Mode::Normal);
    let voids_before = payments.void_calls();
    assert_eq!(app.repair_once().await.unwrap().cancellations_finished, 1);

    assert_eq!(payments.void_calls(), voids_before + 1);
    assert_eq!(payments.fee(&call.call_id), Some(Fake::Voided));
    let voided = app.get(&COMPANY, &call.call_id).await.unwrap();
    assert_eq!(voided.status, DeliveryStatus::Cancelled);
    assert_eq!(voided.payment_state, PaymentState::Voided);
    assert_eq!(voided.cancel_requested_at, None);
    assert_eq!(changes.recv().await.unwrap(), voided, "watchers see the void");
    assert!(app.repair_once().await.unwrap().is_empty());
    app.cancel(&COMPANY, call.call_id.clone(), reason("again"))
        .await
        .unwrap();
    assert_eq!(payments.void_calls(), voids_before + 1, "voided exactly once");
    assert_eq!(events_on(&db, CANCELLED).await, 1);
}

#[tokio::test]
async fn cancel_in_reject_mode_with_payment_down_stays_unavailable_with_the_mark_kept() {
    let payments = FakePayments::new();
    let (app, db) = eager_repair_app(payments.clone()).await;
    let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    payments.set_mode(Mode::Down);

    let err = app
        .cancel(&COMPANY, call.call_id.clone(), reason("closed"))
        .await
        .unwrap_err();

    assert!(matches!(err, CallError::PaymentUnavailable(_)), "{err:?}");
    let marked = app.get(&COMPANY, &call.call_id).await.unwrap();
    assert_eq!(marked.status, DeliveryStatus::Called);
    assert!(marked.cancel_requested_at.is_some());
    assert_eq!(events_on(&db, CANCELLED).await, 0);
    payments.set_mode(Mode::Normal);
    after_repair_age().await;
    assert_eq!(app.repair_once().await.unwrap().cancellations_finished, 1);
    assert_eq!(payments.fee(&call.call_id), Some(Fake::Voided));
}

#[tokio::test]
async fn a_deferred_fee_payment_refuses_is_not_retried() {
    let payments = FakePayments::new();
    payments.set_mode(Mode::Down);
    let (app, db) = eager_defer_app(payments.clone()).await;
    let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    payments.set_mode(Mode::Normal);
    // Payment holds a voided fee under this call id: RegisterCost answers FEE_VOIDED.
    payments.register_cost(call.call_id.clone(), call.fee).await.unwrap();
    payments.void_cost(call.call_id.clone()).await.unwrap();
    let registers = payments.register_calls();

    assert_eq!(app.repair_once().await.unwrap().registrations_refused, 1);

    let stopped = app.get(&COMPANY, &call.call_id).await.unwrap();
    assert_eq!(stopped.payment_state, PaymentState::Pending);
    assert_eq!(stopped.next_attempt_at, None);
    retries_due(&db).await;
    assert!(app.repair_once().await.unwrap().is_empty());
    assert_eq!(payments.register_calls(), registers + 1, "asked once");
}

#[tokio::test]
async fn a_void_refused_for_a_call_cancelled_before_it_stops_and_leaves_the_call_cancelled() {
    let payments = FakePayments::new();
    let (app, _db) = eager_defer_app(payments.clone()).await;
    let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    payments.set_mode(Mode::Down);
    app.cancel(&COMPANY, call.call_id.clone(), reason("closed"))
        .await
        .unwrap();
    payments.set_mode(Mode::Normal);
    payments.settle(&call.call_id);
    after_repair_age().await;

    assert_eq!(app.repair_once().await.unwrap().cancellations_dropped, 1);

    let left = app.get(&COMPANY, &call.call_id).await.unwrap();
    assert_eq!(left.status, DeliveryStatus::Cancelled);
    assert_eq!(left.payment_state, PaymentState::Registered, "left for an operator");
    assert_eq!(left.cancel_requested_at, None);
    assert!(app.repair_once().await.unwrap().is_empty(), "no retry loop");
}
