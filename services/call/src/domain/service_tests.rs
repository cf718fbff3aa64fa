//! The call application against SQLite in memory and a fake payment service.

use baemin_kernel::{CallId, CancelReason, DeliveryStatus, PageSize, RestaurantId, RiderId};

use super::{testing::*, *};
use crate::outbound::intents;

const COMPANY: Actor = Actor::Company;

fn reason(text: &str) -> CancelReason {
    CancelReason::parse(text, "reason").unwrap()
}

fn rider(id: &str) -> RiderId {
    RiderId::parse(id, "rider_id").unwrap()
}

fn delivery(call_id: &CallId, event: DeliveryEvent, event_id: &str) -> Delivery {
    Delivery {
        event_id: event_id.to_owned(),
        subject: "baemin.events.test".to_owned(),
        call_id: call_id.clone(),
        event,
        occurred_at: 1_000,
    }
}

#[tokio::test]
async fn a_new_call_is_claimed_and_stored_with_one_read_only() {
    let (app, db) = app(FakePayments::new()).await;
    let statements = baemin_mesh_testkit::record_statements(&db);
    app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    let run = statements.take();
    let reads = run.count("SELECT");
    // The look-up after the claim (a call stored meanwhile under the key); nothing read before a write.
    assert_eq!(reads, 1, "{run:?}");
    assert_eq!(run.count("INSERT"), 3, "intent, call, event: {run:?}");
}

#[tokio::test]
async fn a_retry_finds_its_stored_call_even_beside_a_leftover_intent() {
    let payments = FakePayments::new();
    let (app, db) = app(payments.clone()).await;
    let first = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    let leftover = Registration::fresh(&new_call("req-1", 3_000), 1_000);
    assert!(
        intents::insert(&db, &leftover).await.unwrap(),
        "an intent beside the stored call"
    );
    let again = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(
        payments.register_calls(),
        1,
        "no second fee under the leftover's call id"
    );
}

#[tokio::test]
async fn a_batch_of_delivery_events_applies_each_once_in_order_in_one_transaction() {
    let (app, db) = app(FakePayments::new()).await;
    let mut calls = [
        app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap().call_id,
        app.place(&COMPANY, new_call("req-2", 3_000)).await.unwrap().call_id,
    ];
    calls.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    let [first, second] = calls;
    let accepted = || DeliveryEvent::Accepted { rider: rider("r-1") };
    let picked = || DeliveryEvent::Picked { rider: rider("r-1") };
    let mut changes = app.watch().changes;
    let statements = baemin_mesh_testkit::record_statements(&db);
    app.follow_all(&[
        delivery(&first, accepted(), "e-1"),
        delivery(&second, accepted(), "e-2"),
        delivery(&first, picked(), "e-3"),
        // The first event's id again (a redelivery inside the batch): recognised by the inbox alone —
        // carrying the second call's pick-up, it would move it if it were applied.
        delivery(&second, picked(), "e-1"),
    ])
    .await
    .unwrap();
    let run = statements.take();
    assert_eq!(run.count("BEGIN"), 1, "one transaction: {run:?}");
    assert_eq!(app.get(&COMPANY, &first).await.unwrap().status, DeliveryStatus::Picked);
    assert_eq!(
        app.get(&COMPANY, &second).await.unwrap().status,
        DeliveryStatus::Accepted
    );
    let told: Vec<_> = std::iter::from_fn(|| changes.try_recv().ok())
        .map(|call| (call.call_id, call.status))
        .collect();
    assert_eq!(
        told,
        [
            (first.clone(), DeliveryStatus::Accepted),
            (first, DeliveryStatus::Picked),
            (second, DeliveryStatus::Accepted),
        ],
        "watchers told each change once after the commit: each call's in order, the calls in call-id order"
    );
}

#[tokio::test]
async fn placing_twice_with_the_same_request_id_stores_one_call_and_registers_once() {
    let payments = FakePayments::new();
    let (app, db) = app(payments.clone()).await;
    let first = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    let again = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(first.status, DeliveryStatus::Called);
    assert_eq!(first.payment_state, PaymentState::Registered);
    assert_eq!(payments.register_calls(), 1);
    assert_eq!(calls_stored(&db).await, 1);
    assert_eq!(events_on(&db, "baemin.events.call.placed").await, 1);
    assert_eq!(intents_left(&db).await, 0, "the intent is replaced by the call");
}

#[tokio::test]
async fn the_same_request_id_with_another_body_is_already_exists() {
    let payments = FakePayments::new();
    let (app, db) = app(payments.clone()).await;
    app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    let err = app.place(&COMPANY, new_call("req-1", 4_000)).await.unwrap_err();
    assert!(matches!(err, CallError::RequestIdReused(_)), "{err:?}");
    assert_eq!(payments.register_calls(), 1);
    assert_eq!(calls_stored(&db).await, 1);
}

#[tokio::test]
async fn payment_unavailable_answers_unavailable_and_stores_no_call() {
    let payments = FakePayments::new();
    payments.set_mode(Mode::Down);
    let (app, db) = app(payments.clone()).await;
    let err = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap_err();
    assert!(matches!(err, CallError::PaymentUnavailable(_)), "{err:?}");
    assert_eq!(calls_stored(&db).await, 0);
    assert_eq!(events_on(&db, "baemin.events.call.placed").await, 0);
}

#[tokio::test]
async fn a_retry_after_payment_returns_reuses_the_call_id_of_the_first_attempt() {
    let payments = FakePayments::new();
    payments.set_mode(Mode::LosesAnswers);
    let (app, db) = app(payments.clone()).await;
    app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap_err();
    payments.set_mode(Mode::Normal);
    let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    assert_eq!(payments.fee(&call.call_id), Some(Fake::Registered));
    assert_eq!(payments.registered(), 1, "one fee, under the call's id");
    assert_eq!(intents_left(&db).await, 0);
}

#[tokio::test]
async fn repair_once_voids_an_orphan_intent() {
    let payments = FakePayments::new();
    payments.set_mode(Mode::LosesAnswers);
    let (app, db) = eager_repair_app(payments.clone()).await;
    app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap_err();
    assert_eq!(
        payments.registered(),
        1,
        "payment registered the fee; its answer was lost"
    );
    payments.set_mode(Mode::Normal);
    after_repair_age().await;

    let report = app.repair_once().await.unwrap();

    assert_eq!(report.intents_voided, 1);
    assert_eq!(payments.registered(), 0, "no fee stays without a call");
    assert_eq!(intents_left(&db).await, 0);
    assert_eq!(calls_stored(&db).await, 0);
    let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    assert_eq!(
        payments.fee(&call.call_id),
        Some(Fake::Registered),
        "a retry starts over"
    );
}

#[tokio::test]
async fn repair_waits_while_payment_is_down_and_leaves_young_intents_alone() {
    let payments = FakePayments::new();
    payments.set_mode(Mode::LosesAnswers);
    let (young, _) = app(payments.clone()).await;
    young.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap_err();
    payments.set_mode(Mode::Normal);
    assert!(young.repair_once().await.unwrap().is_empty());

    let (app, db) = eager_repair_app(payments.clone()).await;
    payments.set_mode(Mode::LosesAnswers);
    app.place(&COMPANY, new_call("req-2", 3_000)).await.unwrap_err();
    payments.set_mode(Mode::Down);
    after_repair_age().await;
    assert_eq!(app.repair_once().await.unwrap().deferred, 1);
    assert_eq!(intents_left(&db).await, 1);
    payments.set_mode(Mode::Normal);
    after_repair_age().await;
    assert_eq!(app.repair_once().await.unwrap().intents_voided, 1);
    assert_eq!(intents_left(&db).await, 0);
}

#[tokio::test]
async fn a_stored_call_is_never_voided_by_the_repair_worker() {
    let payments = FakePayments::new();
    let (app, _db) = eager_repair_app(payments.clone()).await;
    let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    after_repair_age().await;
    assert!(app.repair_once().await.unwrap().is_empty());
    assert_eq!(payments.fee(&call.call_id), Some(Fake::Registered));
}

#[tokio::test]
async fn cancel_voids_the_fee_once_and_a_second_cancel_returns_the_same_call() {
    let payments = FakePayments::new();
    let (app, db) = app(payments.clone()).await;
    let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    let cancelled = app
        .cancel(&COMPANY, call.call_id.clone(), reason("closed"))
        .await
        .unwrap();
    assert_eq!(cancelled.status, DeliveryStatus::Cancelled);
    assert_eq!(cancelled.payment_state, PaymentState::Voided);
    assert_eq!(cancelled.cancel_requested_at, None);
    assert_eq!(payments.fee(&call.call_id), Some(Fake::Voided));
    let again = app
        .cancel(&COMPANY, call.call_id.clone(), reason("other"))
        .await
        .unwrap();
    assert_eq!(again, cancelled);
    assert_eq!(events_on(&db, "baemin.events.call.cancelled").await, 1);
}

#[tokio::test]
async fn cancel_when_payment_refuses_is_failed_precondition_and_the_call_is_unchanged() {
    let payments = FakePayments::new();
    let (app, db) = app(payments.clone()).await;
    let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    payments.settle(&call.call_id);

    let err = app
        .cancel(&COMPANY, call.call_id.clone(), reason("closed"))
        .await
        .unwrap_err();

    assert!(matches!(err, CallError::PickedUpFirst), "{err:?}");
    let after = app.get(&COMPANY, &call.call_id).await.unwrap();
    assert_eq!(
        Call {
            version: call.version,
            ..after
        },
        call
    );
    assert_eq!(events_on(&db, "baemin.events.call.cancelled").await, 0);
}

#[tokio::test]
async fn cancel_after_pick_up_is_refused_without_asking_payment() {
    let payments = FakePayments::new();
    let (app, _db) = app(payments.clone()).await;
    let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    let picked = DeliveryEvent::Picked { rider: rider("r-1") };
    app.follow(delivery(&call.call_id, picked, "e-1")).await.unwrap();
    let err = app
        .cancel(&COMPANY, call.call_id.clone(), reason(""))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "cannot cancel a delivery that is PICKED");
    assert_eq!(payments.fee(&call.call_id), Some(Fake::Registered));
}

#[tokio::test]
async fn an_unknown_call_is_not_found() {
    let (app, _db) = app(FakePayments::new()).await;
    let unknown = CallId::generate();
    assert!(matches!(app.get(&COMPANY, &unknown).await, Err(CallError::NotFound(_))));
    assert!(matches!(
        app.cancel(&COMPANY, unknown.clone(), reason("")).await,
        Err(CallError::NotFound(_))
    ));
    let accepted = DeliveryEvent::Accepted { rider: rider("r-1") };
    assert!(matches!(
        app.follow(delivery(&unknown, accepted, "e-1")).await,
        Err(CallError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_cancel_whose_void_answer_was_lost_is_finished_by_the_repair_worker() {
    let payments = FakePayments::new();
    let (app, db) = eager_repair_app(payments.clone()).await;
    let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    payments.set_mode(Mode::LosesAnswers);
    let err = app
        .cancel(&COMPANY, call.call_id.clone(), reason("closed"))
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::PaymentUnavailable(_)), "{err:?}");
    assert_eq!(payments.fee(&call.call_id), Some(Fake::Voided));
    assert_eq!(
        app.get(&COMPANY, &call.call_id).await.unwrap().status,
        DeliveryStatus::Called
    );

    payments.set_mode(Mode::Normal);
    after_repair_age().await;
    let report = app.repair_once().await.unwrap();

    assert_eq!(report.cancellations_finished, 1);
    let repaired = app.get(&COMPANY, &call.call_id).await.unwrap();
    assert_eq!(repaired.status, DeliveryStatus::Cancelled);
    assert_eq!(repaired.cancel_reason, Some(reason("closed")));
    assert_eq!(events_on(&db, "baemin.events.call.cancelled").await, 1);
}

#[tokio::test]
async fn a_marked_cancel_loses_to_a_settlement_and_the_mark_is_dropped() {
    let payments = FakePayments::new();
    let (app, _db) = eager_repair_app(payments.clone()).await;
    let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    payments.set_mode(Mode::Down);
    app.cancel(&COMPANY, call.call_id.clone(), reason("closed"))
        .await
        .unwrap_err();
    payments.set_mode(Mode::Normal);
    payments.settle(&call.call_id);
    after_repair_age().await;

    let report = app.repair_once().await.unwrap();

    assert_eq!(report.cancellations_dropped, 1);
    let after = app.get(&COMPANY, &call.call_id).await.unwrap();
    assert_eq!(after.status, DeliveryStatus::Called);
    assert_eq!(after.cancel_requested_at, None);
    assert!(app.repair_once().await.unwrap().is_empty());
}

#[tokio::test]
async fn delivery_events_converge_and_a_redelivered_event_applies_once() {
    let (app, _db) = app(FakePayments::new()).await;
    let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    let id = &call.call_id;
    let completed = DeliveryEvent::Completed {
        rider: rider("r-1"),
        rider_payout: 2_700,
    };
    app.follow(delivery(id, completed.clone(), "e-3")).await.unwrap();
    app.follow(delivery(id, DeliveryEvent::Picked { rider: rider("r-1") }, "e-2"))
        .await
        .unwrap();
    let before_redelivery = app.get(&COMPANY, id).await.unwrap();
    app.follow(delivery(id, completed, "e-3")).await.unwrap();
    app.follow(delivery(id, DeliveryEvent::Accepted { rider: rider("r-1") }, "e-1"))
        .await
        .unwrap();

    let end = app.get(&COMPANY, id).await.unwrap();
    assert_eq!(end, before_redelivery, "late and repeated events change nothing");
    assert_eq!(end.status, DeliveryStatus::Completed);
    assert_eq!(end.rider_id, Some(rider("r-1")));
    assert_eq!(end.payment_state, PaymentState::Settled);
    assert_eq!(end.settled_amount, Some(2_700));
    // Only the inbox can tell this one apart: the same event id with another payout would change the
    // settled amount if it were applied.
    let tampered = DeliveryEvent::Completed {
        rider: rider("r-1"),
        rider_payout: 1,
    };
    app.follow(delivery(id, tampered, "e-3")).await.unwrap();
    assert_eq!(app.get(&COMPANY, id).await.unwrap().settled_amount, Some(2_700));
}

#[tokio::test]
async fn an_accept_after_a_cancel_changes_nothing() {
    let (app, _db) = app(FakePayments::new()).await;
    let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    let cancelled = app.cancel(&COMPANY, call.call_id.clone(), reason("")).await.unwrap();
    let accepted = DeliveryEvent::Accepted { rider: rider("r-1") };
    app.follow(delivery(&call.call_id, accepted, "e-1")).await.unwrap();
    assert_eq!(app.get(&COMPANY, &call.call_id).await.unwrap(), cancelled);
}

#[tokio::test]
async fn watchers_are_told_each_visible_change_after_commit() {
    let (app, _db) = app(FakePayments::new()).await;
    let mut changes = app.watch().changes;
    let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    assert_eq!(changes.recv().await.unwrap(), call);
    let cancelled = app.cancel(&COMPANY, call.call_id.clone(), reason("")).await.unwrap();
    assert_eq!(
        changes.recv().await.unwrap(),
        cancelled,
        "the cancellation mark alone is not announced"
    );
}

#[tokio::test]
async fn lists_page_newest_first_and_filter() {
    let (app, _db) = app(FakePayments::new()).await;
    let mut placed = Vec::new();
    for i in 0..5 {
        placed.push(
            app.place(&COMPANY, new_call(&format!("req-{i}"), 1_000 + i))
                .await
                .unwrap(),
        );
    }
    let accepted = DeliveryEvent::Accepted { rider: rider("r-9") };
    app.follow(delivery(&placed[1].call_id, accepted, "e-1")).await.unwrap();

    let size = PageSize::parse(2, "page_size").unwrap();
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let page = app
            .list(&COMPANY, CallFilter::default(), size, token.as_ref())
            .await
            .unwrap();
        seen.extend(page.calls.iter().map(|c| c.call_id.clone()));
        match page.next_page {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    let newest_first: Vec<_> = placed.iter().rev().map(|c| c.call_id.clone()).collect();
    assert_eq!(seen, newest_first);

    let by_rider = CallFilter {
        rider_id: Some(rider("r-9")),
        ..CallFilter::default()
    };
    let page = app.list(&COMPANY, by_rider, size, None).await.unwrap();
    assert_eq!(page.calls.len(), 1);
    assert_eq!(page.calls[0].call_id, placed[1].call_id);
    assert_eq!(page.next_page, None);
    let by_status = CallFilter {
        status: Some(DeliveryStatus::Called),
        restaurant_id: Some(RestaurantId::parse("store-1", "restaurant_id").unwrap()),
        ..CallFilter::default()
    };
    let all = PageSize::parse(0, "page_size").unwrap();
    assert_eq!(app.list(&COMPANY, by_status, all, None).await.unwrap().calls.len(), 4);
}

#[tokio::test]
async fn a_refused_registration_is_rolled_back_at_once_and_a_retry_starts_over() {
    let payments = FakePayments::new();
    let (app, db) = app(payments.clone()).await;
    // The first attempt's fee is registered (answer lost), then voided by someone: its call id is dead.
    payments.set_mode(Mode::LosesAnswers);
    app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap_err();
    payments.set_mode(Mode::Normal);
    let dead = intents::find(&db, &new_call("req-1", 3_000).key())
        .await
        .unwrap()
        .unwrap()
        .call_id;
    payments.void_cost(dead.clone()).await.unwrap();

    let err = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap_err();
    assert!(matches!(err, CallError::PaymentRefused(_)), "{err:?}");

    // The refused intent is rolled back at once: the retry starts over under a fresh call id.
    let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    assert!(app.repair_once().await.unwrap().is_empty());
    assert_ne!(call.call_id, dead);
    assert_eq!(payments.fee(&call.call_id), Some(Fake::Registered));
}

#[tokio::test]
async fn two_restaurants_may_use_the_same_request_id_and_each_gets_its_own_call() {
    let payments = FakePayments::new();
    let (app, db) = app(payments.clone()).await;
    let a = app
        .place(&COMPANY, new_call_of("store-1", "req-1", 3_000))
        .await
        .unwrap();
    let b = app
        .place(&COMPANY, new_call_of("store-2", "req-1", 4_000))
        .await
        .unwrap();
    assert_ne!(a.call_id, b.call_id);
    assert_eq!(b.restaurant_id.as_str(), "store-2");
    assert_eq!(payments.registered(), 2);
    assert_eq!(calls_stored(&db).await, 2);
    let retry = app
        .place(&COMPANY, new_call_of("store-2", "req-1", 4_000))
        .await
        .unwrap();
    assert_eq!(retry, b, "each restaurant's retry finds its own call");
}

#[tokio::test]
async fn an_intent_of_one_restaurant_does_not_block_another_using_the_same_request_id() {
    let payments = FakePayments::new();
    let (app, db) = app(payments.clone()).await;
    payments.set_mode(Mode::LosesAnswers);
    app.place(&COMPANY, new_call_of("store-1", "req-1", 3_000))
        .await
        .unwrap_err();
    payments.set_mode(Mode::Normal);
    let left = intents::find(&db, &new_call_of("store-1", "req-1", 3_000).key())
        .await
        .unwrap()
        .unwrap();

    let other = app
        .place(&COMPANY, new_call_of("store-2", "req-1", 9_000))
        .await
        .unwrap();
    assert_ne!(other.call_id, left.call_id);
    let retry = app
        .place(&COMPANY, new_call_of("store-1", "req-1", 3_000))
        .await
        .unwrap();
    assert_eq!(retry.call_id, left.call_id, "store-1's retry reuses its own intent");
    assert_eq!(intents_left(&db).await, 0);
}

#[tokio::test]
async fn a_cancel_retry_finishes_a_cancellation_under_way_even_after_a_pick_up() {
    let payments = FakePayments::new();
    let (app, db) = app(payments.clone()).await;
    let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    payments.set_mode(Mode::LosesAnswers);
    let err = app
        .cancel(&COMPANY, call.call_id.clone(), reason("closed"))
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::PaymentUnavailable(_)), "{err:?}");
    let picked = DeliveryEvent::Picked { rider: rider("r-1") };
    app.follow(delivery(&call.call_id, picked, "e-1")).await.unwrap();
    assert_eq!(
        app.get(&COMPANY, &call.call_id).await.unwrap().status,
        DeliveryStatus::Picked
    );
    payments.set_mode(Mode::Normal);

    let cancelled = app
        .cancel(&COMPANY, call.call_id.clone(), reason("retry"))
        .await
        .unwrap();

    assert_eq!(cancelled.status, DeliveryStatus::Cancelled);
    assert_eq!(cancelled.payment_state, PaymentState::Voided);
    assert_eq!(cancelled.cancel_requested_at, None);
    assert_eq!(
        cancelled.cancel_reason,
        Some(reason("closed")),
        "the first attempt's reason"
    );
    assert_eq!(payments.fee(&call.call_id), Some(Fake::Voided));
    assert_eq!(events_on(&db, "baemin.events.call.cancelled").await, 1);
}

#[tokio::test]
async fn a_cancel_retry_while_payment_is_still_down_is_unavailable_and_keeps_the_mark() {
    let payments = FakePayments::new();
    let (app, _db) = app(payments.clone()).await;
    let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    payments.set_mode(Mode::Down);
    app.cancel(&COMPANY, call.call_id.clone(), reason("closed"))
        .await
        .unwrap_err();
    let accepted = DeliveryEvent::Accepted { rider: rider("r-1") };
    app.follow(delivery(&call.call_id, accepted, "e-1")).await.unwrap();

    let err = app
        .cancel(&COMPANY, call.call_id.clone(), reason("closed"))
        .await
        .unwrap_err();

    assert!(matches!(err, CallError::PaymentUnavailable(_)), "{err:?}");
    let after = app.get(&COMPANY, &call.call_id).await.unwrap();
    assert_eq!(after.status, DeliveryStatus::Accepted);
    assert!(
        after.cancel_requested_at.is_some(),
        "the repair worker still finishes it"
    );
}

#[tokio::test]
async fn a_cancel_retry_loses_to_a_settlement_with_failed_precondition_and_drops_the_mark() {
    let payments = FakePayments::new();
    let (app, _db) = app(payments.clone()).await;
    let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    payments.set_mode(Mode::Down);
    app.cancel(&COMPANY, call.call_id.clone(), reason("closed"))
        .await
        .unwrap_err();
    payments.set_mode(Mode::Normal);
    payments.settle(&call.call_id);
    let completed = DeliveryEvent::Completed {
        rider: rider("r-1"),
        rider_payout: 2_700,
    };
    app.follow(delivery(&call.call_id, completed, "e-1")).await.unwrap();

    let err = app
        .cancel(&COMPANY, call.call_id.clone(), reason("closed"))
        .await
        .unwrap_err();

    assert!(matches!(err, CallError::PickedUpFirst), "{err:?}");
    let after = app.get(&COMPANY, &call.call_id).await.unwrap();
    assert_eq!(after.status, DeliveryStatus::Completed);
    assert_eq!(after.cancel_requested_at, None);
    let err = app
        .cancel(&COMPANY, call.call_id.clone(), reason("closed"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, CallError::Illegal(_)),
        "a completed call is not cancelled: {err:?}"
    );
}

fn restaurant(id: &str) -> Actor {
    Actor::Restaurant(RestaurantId::parse(id, "restaurant_id").unwrap())
}

#[tokio::test]
async fn a_restaurant_cannot_place_read_cancel_or_list_another_restaurants_calls() {
    let payments = FakePayments::new();
    let (app, db) = app(payments.clone()).await;
    let (me, other) = (restaurant("store-1"), restaurant("store-2"));
    let call = app.place(&me, new_call("req-1", 3_000)).await.unwrap();
    let theirs = app.place(&other, new_call_of("store-2", "req-1", 3_000)).await.unwrap();

    let forbidden = |result: Result<_, CallError>| matches!(result, Err(CallError::Forbidden(_)));
    assert!(forbidden(app.place(&other, new_call("req-2", 3_000)).await.map(drop)));
    assert!(forbidden(app.get(&other, &call.call_id).await.map(drop)));
    assert!(forbidden(
        app.cancel(&other, call.call_id.clone(), reason("")).await.map(drop)
    ));
    let naming_me = CallFilter {
        restaurant_id: Some(RestaurantId::parse("store-1", "restaurant_id").unwrap()),
        ..CallFilter::default()
    };
    let all = PageSize::parse(0, "page_size").unwrap();
    assert!(forbidden(app.list(&other, naming_me, all, None).await.map(drop)));

    let own = app.list(&other, CallFilter::default(), all, None).await.unwrap();
    assert_eq!(own.calls, [theirs], "no filter means its own calls");
    assert_eq!(app.get(&me, &call.call_id).await.unwrap(), call);
    assert_eq!(payments.registered(), 2, "the refused PlaceCall registered nothing");
    assert_eq!(calls_stored(&db).await, 2);
    let cancelled = app.cancel(&me, call.call_id.clone(), reason("")).await.unwrap();
    assert_eq!(cancelled.status, DeliveryStatus::Cancelled);
}

#[tokio::test]
async fn an_unknown_call_is_not_found_for_a_restaurant_too() {
    let (app, _db) = app(FakePayments::new()).await;
    let unknown = CallId::generate();
    let me = restaurant("store-1");
    assert!(matches!(app.get(&me, &unknown).await, Err(CallError::NotFound(_))));
    assert!(matches!(
        app.cancel(&me, unknown, reason("")).await,
        Err(CallError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_rider_reads_only_the_call_it_took_and_may_not_place_cancel_or_list() {
    let (app, _db) = app(FakePayments::new()).await;
    let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    let taker = Actor::Rider(rider("r-1"));
    let forbidden = |result: Result<_, CallError>| matches!(result, Err(CallError::Forbidden(_)));
    assert!(
        forbidden(app.get(&taker, &call.call_id).await.map(drop)),
        "not taken yet"
    );
    let accepted = DeliveryEvent::Accepted { rider: rider("r-1") };
    app.follow(delivery(&call.call_id, accepted, "e-1")).await.unwrap();

    assert_eq!(
        app.get(&taker, &call.call_id).await.unwrap().rider_id,
        Some(rider("r-1"))
    );
    assert!(forbidden(
        app.get(&Actor::Rider(rider("r-2")), &call.call_id).await.map(drop)
    ));
    assert!(forbidden(app.place(&taker, new_call("req-2", 3_000)).await.map(drop)));
    assert!(forbidden(
        app.cancel(&taker, call.call_id.clone(), reason("")).await.map(drop)
    ));
    assert!(
        forbidden(app.cancel(&taker, CallId::generate(), reason("")).await.map(drop)),
        "refused before the call is looked up"
    );
    let all = PageSize::parse(0, "page_size").unwrap();
    assert!(forbidden(
        app.list(&taker, CallFilter::default(), all, None).await.map(drop)
    ));
}

#[tokio::test]
async fn work_payment_cannot_decide_backs_off_per_item_behind_newer_work() {
    let payments = FakePayments::new();
    let (app, db) = app(payments.clone()).await;
    let call = app.place(&COMPANY, new_call("req-1", 3_000)).await.unwrap();
    payments.set_mode(Mode::LosesAnswers);
    app.place(&COMPANY, new_call("req-2", 3_000)).await.unwrap_err();
    payments.set_mode(Mode::Down);
    app.cancel(&COMPANY, call.call_id.clone(), reason("closed"))
        .await
        .unwrap_err();
    let marked_at = app
        .get(&COMPANY, &call.call_id)
        .await
        .unwrap()
        .cancel_requested_at
        .unwrap();
    // Both are due for a worker that looks from a little later (the default age has passed).
    let worker = CallApp::new(
        db.clone(),
        baemin_mesh_events::Outbox::new(),
        payments.clone(),
        std::time::Duration::ZERO,
        Fallback::Reject,
    );
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let round = worker.repair_once().await.unwrap();
    assert_eq!(round.deferred, 2, "{round:?}");

    // Each moved to the time of its attempt: a worker waiting the default age leaves both alone now,
    // so they wait behind anything older instead of being retried first every round.
    let postponed = app
        .get(&COMPANY, &call.call_id)
        .await
        .unwrap()
        .cancel_requested_at
        .unwrap();
    assert!(postponed > marked_at, "{postponed} > {marked_at}");
    let intent = intents::find(&db, &new_call("req-2", 3_000).key())
        .await
        .unwrap()
        .unwrap();
    assert!(intent.void_requested_at.is_some_and(|at| at >= postponed - 1_000));
    payments.set_mode(Mode::Normal);
    assert!(app.repair_once().await.unwrap().is_empty(), "backed off");
}
