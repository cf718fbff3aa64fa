//! The `PLACE_CALL_FALLBACK` behaviours against SQLite in memory and a fake payment service: a call
//! placed or cancelled while payment is down, and the repair worker finishing it once payment is back
//! with payment's decision.

use baemin_mesh_store::Db;
use std::{sync::Arc, time::Duration};

use baemin_kernel::{CancelReason, DeliveryStatus};
use baemin_mesh_events::{Event, Outbox};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};

use super::{testing::*, *};
use crate::outbound::{db, migration::Migrator};

const COMPANY: Actor = Actor::Company;
const PLACED: &str = "baemin.events.call.placed";
const CANCELLED: &str = "baemin.events.call.cancelled";

fn reason(text: &str) -> CancelReason {
    CancelReason::parse(text, "reason").unwrap()
}

/// A `defer` app whose repair worker leaves everything alone (default repair age).
async fn defer_app(payments: Arc<FakePayments>) -> (CallApp, Db) {
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
async fn retries_due(db: &Db) {
    db::entity::Entity::update_many()
        .col_expr(db::entity::Column::NextAttemptAt, Expr::value(0_i64))
        .filter(db::entity::Column::NextAttemptAt.is_not_null())
        .exec(db)
        .await
        .unwrap();
}

async fn call_placed_says_pending(db: &Db) -> Vec<bool> {
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
    let mut changes = app.watch().changes;

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
async fn a_pending_call_cancelled_while_payment_is_down_waits_for_payment_and_its_fee_is_registered_and_voided() {
    let payments = FakePayments::new();
    payments.set_mode(Mode::Down);
    let (app, db) = eager_defer_app(payments.clone()).await;
    let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();

    let err = app
        .cancel(&COMPANY, call.call_id.clone(), reason("closed"))
        .await
        .unwrap_err();

    assert!(
        matches!(err, CallError::PaymentUnavailable(_)),
        "never OK before payment decides: {err:?}"
    );
    let marked = app.get(&COMPANY, &call.call_id).await.unwrap();
    assert_eq!(
        (marked.status, marked.payment_state),
        (DeliveryStatus::Called, PaymentState::Pending)
    );
    assert!(marked.cancel_requested_at.is_some());
    assert_eq!(events_on(&db, CANCELLED).await, 0);

    payments.set_mode(Mode::Normal);
    after_repair_age().await;
    retries_due(&db).await;
    let round = app.repair_once().await.unwrap();

    assert_eq!(round.cancellations_finished, 1);
    assert_eq!(
        round.registrations_completed, 0,
        "a marked call is not registered by the worker"
    );
    // Payment had no fee: the cancellation registered and voided it, so payment refuses anything that
    // lands later.
    assert_eq!(payments.fee(&call.call_id), Some(Fake::Voided));
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
        .unwrap_err();

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
async fn a_registration_landing_after_a_cancel_is_refused_because_the_cancel_registered_and_voided_the_fee() {
    let payments = FakePayments::new();
    payments.set_mode(Mode::Down);
    let (app, worker) = patient_and_eager(payments.clone()).await;
    let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    payments.set_mode(Mode::Normal);

    // Payment has no fee yet, and a registration sent before the cancel may still land.
    let cancelled = app
        .cancel(&COMPANY, call.call_id.clone(), reason("closed"))
        .await
        .unwrap();
    assert_eq!(cancelled.status, DeliveryStatus::Cancelled);
    assert_eq!(cancelled.payment_state, PaymentState::Voided);
    assert_eq!(cancelled.cancel_requested_at, None, "final at once");
    assert_eq!(payments.fee(&call.call_id), Some(Fake::Voided));

    let late = payments.register_cost(call.call_id.clone(), call.fee).await;
    assert!(matches!(late, Err(PaymentCallError::Refused(_))), "{late:?}");
    assert_eq!(payments.fee(&call.call_id), Some(Fake::Voided));
    after_repair_age().await;
    assert!(worker.repair_once().await.unwrap().is_empty());
}
#[tokio::test]
async fn cancel_in_defer_mode_with_payment_down_is_unavailable_as_in_reject_and_the_fee_is_voided_exactly_once() {
    let payments = FakePayments::new();
    let (app, db) = eager_defer_app(payments.clone()).await;
    let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    payments.set_mode(Mode::Down);
    let mut changes = app.watch().changes;

    let err = app
        .cancel(&COMPANY, call.call_id.clone(), reason("closed"))
        .await
        .unwrap_err();

    assert!(matches!(err, CallError::PaymentUnavailable(_)), "{err:?}");
    let marked = app.get(&COMPANY, &call.call_id).await.unwrap();
    assert_eq!(marked.status, DeliveryStatus::Called, "a pick-up may still win");
    assert!(marked.cancel_requested_at.is_some());
    assert!(changes.try_recv().is_err(), "the mark is not shown");
    assert_eq!(events_on(&db, CANCELLED).await, 0);
    let again = app.cancel(&COMPANY, call.call_id.clone(), reason("again")).await;
    assert!(matches!(again, Err(CallError::PaymentUnavailable(_))), "{again:?}");

    after_repair_age().await;
    assert_eq!(app.repair_once().await.unwrap().deferred, 1, "payment is still down");
    assert_eq!(payments.fee(&call.call_id), Some(Fake::Registered));

    payments.set_mode(Mode::Normal);
    after_repair_age().await;
    let voids_before = payments.void_calls();
    assert_eq!(app.repair_once().await.unwrap().cancellations_finished, 1);

    assert_eq!(payments.void_calls(), voids_before + 1);
    assert_eq!(payments.fee(&call.call_id), Some(Fake::Voided));
    let voided = app.get(&COMPANY, &call.call_id).await.unwrap();
    assert_eq!(voided.status, DeliveryStatus::Cancelled);
    assert_eq!(voided.payment_state, PaymentState::Voided);
    assert_eq!(
        voided.cancel_reason,
        Some(reason("closed")),
        "the first request's reason"
    );
    assert_eq!(voided.cancel_requested_at, None);
    assert_eq!(changes.recv().await.unwrap(), voided, "watchers see the cancellation");
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
async fn a_cancel_left_undecided_by_a_payment_outage_loses_to_a_pick_up_and_the_call_is_never_cancelled() {
    for fallback in [Fallback::Defer, Fallback::Reject] {
        let payments = FakePayments::new();
        let (app, db) = app_in(fallback, payments.clone(), Duration::from_millis(1)).await;
        let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
        payments.set_mode(Mode::Down);
        app.cancel(&COMPANY, call.call_id.clone(), reason("closed"))
            .await
            .unwrap_err();
        // Payment returns and the rider's pick-up reaches it first.
        payments.set_mode(Mode::Normal);
        payments.hold(&call.call_id);
        after_repair_age().await;

        assert_eq!(app.repair_once().await.unwrap().cancellations_dropped, 1);

        let kept = app.get(&COMPANY, &call.call_id).await.unwrap();
        assert_eq!(kept.status, DeliveryStatus::Called, "follows the rider's events");
        assert_eq!((kept.cancel_requested_at, kept.cancel_reason), (None, None));
        assert_eq!(payments.fee(&call.call_id), Some(Fake::Held), "never voided");
        assert_eq!(events_on(&db, CANCELLED).await, 0);
        assert!(
            app.repair_once().await.unwrap().is_empty(),
            "nothing left, no retry loop"
        );
        let err = app
            .cancel(&COMPANY, call.call_id.clone(), reason("again"))
            .await
            .unwrap_err();
        assert!(matches!(err, CallError::PickedUpFirst), "{fallback:?}: {err:?}");
    }
}
