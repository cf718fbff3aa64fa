//! The application against SQLite in memory, with a fake payment port.

use baemin_kernel::{CallId, DeliveryStatus, Fee, PageSize, RestaurantId};
use baemin_mesh_events::{Event, outbox::entity as outbox};
use baemin_proto::events::v1::DeliveryCompleted;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use tonic::Code;

use super::*;
use crate::test_support::{Answer, code, placed_call, receipt, rider, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_riders_race_for_one_call_and_exactly_one_wins() {
    let t = spawn_app().await;
    let call_id = t.place().await;
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let app = t.app.clone();
            let call_id = call_id.clone();
            tokio::spawn(async move { (i, app.accept(call_id, rider(&format!("r-{i}"))).await) })
        })
        .collect();
    let mut winners = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            (i, Ok(_)) => winners.push(format!("r-{i}")),
            (_, Err(err)) => {
                assert_eq!(code(err), Code::FailedPrecondition);
                refused += 1;
            }
        }
    }
    assert_eq!(winners.len(), 1, "exactly one rider wins");
    assert_eq!(refused, 9);
    let stored = t.app.get(&call_id).await.unwrap();
    assert_eq!(stored.status, DeliveryStatus::Accepted);
    assert_eq!(stored.rider_id.map(|r| r.to_string()), Some(winners[0].clone()));
    let accepted = outbox::Entity::find()
        .filter(outbox::Column::Subject.eq("baemin.events.call.accepted"))
        .count(&t.db)
        .await
        .unwrap();
    assert_eq!(accepted, 1, "exactly one CallAccepted in the outbox");
}

#[tokio::test]
async fn the_winner_retrying_accept_gets_its_delivery_and_no_second_event() {
    let t = spawn_app().await;
    let call_id = t.place().await;
    let first = t.app.accept(call_id.clone(), rider("r-1")).await.unwrap();
    let again = t.app.accept(call_id.clone(), rider("r-1")).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(t.events(&call_id).await.len(), 1);
}

#[tokio::test]
async fn accepting_an_unknown_call_is_not_found() {
    let t = spawn_app().await;
    let err = t.app.accept(CallId::generate(), rider("r-1")).await.unwrap_err();
    assert_eq!(code(err), Code::NotFound);
}

#[tokio::test]
async fn another_rider_cannot_pick_up_or_complete_the_delivery() {
    let t = spawn_app().await;
    let call_id = t.place().await;
    t.app.accept(call_id.clone(), rider("r-1")).await.unwrap();
    let err = t.app.pick_up(call_id.clone(), rider("r-2")).await.unwrap_err();
    assert_eq!(code(err), Code::PermissionDenied);
    t.app.pick_up(call_id.clone(), rider("r-1")).await.unwrap();
    let err = t.app.complete(call_id.clone(), rider("r-2")).await.unwrap_err();
    assert_eq!(code(err), Code::PermissionDenied);
    assert_eq!(t.payments.settles(), 0, "nobody settles for someone else");
}

#[tokio::test]
async fn completing_settles_once_emits_the_split_and_a_retry_is_answered_with_the_completed_delivery() {
    let t = spawn_app().await;
    let call_id = t.picked_by("r-1").await;
    let done = t.app.complete(call_id.clone(), rider("r-1")).await.unwrap();
    assert_eq!(done.status, DeliveryStatus::Completed);
    assert_eq!(done.settlement.map(|s| s.rider_payout), Some(2_700));
    let again = t.app.complete(call_id.clone(), rider("r-1")).await.unwrap();
    assert_eq!(again, done, "a retry after a lost answer gets the completion");
    assert_eq!(t.payments.settles(), 1, "the second call settles nothing");
    let events = t.events(&call_id).await;
    assert_eq!(events.len(), 3, "accepted, picked, completed: {events:?}");
    match events.last() {
        Some(Event::DeliveryCompleted(e)) => {
            assert_eq!(
                (
                    e.rider_id.as_str(),
                    e.fee,
                    e.commission,
                    e.rider_payout,
                    e.settlement_pending
                ),
                ("r-1", 3_000, 300, 2_700, false)
            );
        }
        other => panic!("expected DeliveryCompleted, got {other:?}"),
    }
}

/// The settlement mark of `call_id`, as stored.
async fn mark(t: &crate::test_support::TestApp, call_id: &CallId) -> Option<i64> {
    t.app.get(call_id).await.unwrap().settle_requested_at
}

/// The DeliveryCompleted events of `call_id` in the outbox.
async fn completed_events(t: &crate::test_support::TestApp, call_id: &CallId) -> Vec<DeliveryCompleted> {
    t.events(call_id)
        .await
        .into_iter()
        .filter_map(|e| match e {
            Event::DeliveryCompleted(c) => Some(c),
            _ => None,
        })
        .collect()
}

/// What a process that crashed right after sending Settle leaves: the mark on the PICKED delivery.
async fn crash_after_sending_settle(t: &crate::test_support::TestApp, call_id: &CallId) {
    assert!(
        crate::outbound::db::set_mark(&t.db, crate::outbound::db::Mark::Settle, call_id, &rider("r-1"), 1)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn completing_while_payment_is_down_answers_ok_and_completes_with_the_settlement_pending() {
    let t = spawn_app().await;
    let call_id = t.picked_by("r-1").await;
    t.payments.answer(Answer::Unavailable);
    let done = t.app.complete(call_id.clone(), rider("r-1")).await.unwrap();
    assert_eq!(done.status, DeliveryStatus::Completed);
    assert!(done.completed_at.is_some());
    assert_eq!(done.settlement, None, "payout pending");
    assert!(done.settlement_pending());
    assert_eq!(t.app.get(&call_id).await.unwrap(), done, "stored as answered");
    assert!(
        mark(&t, &call_id).await.is_some(),
        "the mark stays for the repair worker"
    );
    let completed = completed_events(&t, &call_id).await;
    assert_eq!(completed.len(), 1, "{completed:?}");
    assert_eq!(
        (
            completed[0].rider_id.as_str(),
            completed[0].fee,
            completed[0].commission,
            completed[0].rider_payout,
            completed[0].settlement_pending
        ),
        ("r-1", 3_000, 0, 0, true)
    );
    assert_eq!(t.payments.payouts(), 0, "nothing paid yet");
}

#[tokio::test]
async fn completing_again_while_the_settlement_is_pending_answers_the_pending_completion() {
    let t = spawn_app().await;
    let call_id = t.picked_by("r-1").await;
    t.payments.answer(Answer::Unavailable);
    t.app.complete(call_id.clone(), rider("r-1")).await.unwrap();
    t.payments.answer(Answer::Settle);
    let again = t.app.complete(call_id.clone(), rider("r-1")).await.unwrap();
    assert!(
        again.settlement_pending(),
        "answered as it is: completed, settlement pending"
    );
    assert_eq!(t.payments.settles(), 1, "the retry does not reach payment");
    assert!(t.app.get(&call_id).await.unwrap().settlement_pending());
    assert_eq!(completed_events(&t, &call_id).await.len(), 1);
}

#[tokio::test]
async fn the_worker_settles_a_deferred_settlement_exactly_once_when_payment_returns() {
    let t = spawn_app().await;
    let call_id = t.picked_by("r-1").await;
    t.payments.answer(Answer::Unavailable);
    t.app.complete(call_id.clone(), rider("r-1")).await.unwrap();

    let report = t.app.repair_once().await.unwrap();
    assert_eq!(report.deferred, 1, "payment still down: {report:?}");
    assert!(t.app.get(&call_id).await.unwrap().settlement_pending());
    assert_eq!(t.payments.settles(), 2);

    t.payments.answer(Answer::Settle);
    let report = t.app.repair_once().await.unwrap();
    assert_eq!(report.settled, 1, "{report:?}");
    assert_eq!(t.payments.settles(), 3);
    assert_eq!(t.payments.payouts(), 1, "paid exactly once");
    let d = t.app.get(&call_id).await.unwrap();
    assert_eq!(d.status, DeliveryStatus::Completed);
    assert_eq!(
        d.settlement.map(|s| (s.commission, s.rider_payout)),
        Some((300, 2_700)),
        "the split is recorded"
    );
    assert_eq!(d.settle_requested_at, None, "the mark is cleared");

    assert!(t.app.repair_once().await.unwrap().is_empty(), "nothing left to settle");
    assert_eq!(t.payments.settles(), 3, "no Settle after the settlement is recorded");
    let completed = completed_events(&t, &call_id).await;
    assert_eq!(completed.len(), 1, "no second DeliveryCompleted: {completed:?}");
    assert!(completed[0].settlement_pending);
    let again = t.app.complete(call_id.clone(), rider("r-1")).await.unwrap();
    assert_eq!(again, d, "a retry is answered with the settled delivery");
}

#[tokio::test]
async fn a_settlement_whose_answer_was_lost_completes_pending_and_is_recorded_by_the_repair_worker() {
    let t = spawn_app().await;
    let call_id = t.picked_by("r-1").await;
    t.payments.answer(Answer::SettleButLoseReply);
    let done = t.app.complete(call_id.clone(), rider("r-1")).await.unwrap();
    assert!(done.settlement_pending());
    assert!(
        t.payments.paid(&call_id),
        "payment settled; the rider service does not know"
    );
    t.payments.answer(Answer::Settle);
    let report = t.app.repair_once().await.unwrap();
    assert_eq!(report.settled, 1, "{report:?}");
    let d = t.app.get(&call_id).await.unwrap();
    assert_eq!((d.status, d.settle_requested_at), (DeliveryStatus::Completed, None));
    assert_eq!(d.settlement.map(|s| s.rider_payout), Some(2_700));
    assert_eq!(t.payments.payouts(), 1, "Settle sent twice, paid once");
    assert_eq!(completed_events(&t, &call_id).await.len(), 1);
    assert!(t.app.repair_once().await.unwrap().is_empty(), "nothing left to repair");
}

#[tokio::test]
async fn fee_voided_during_the_deferred_settlement_cancels_the_completed_delivery() {
    let t = spawn_app().await;
    let call_id = t.picked_by("r-1").await;
    t.payments.answer(Answer::Unavailable);
    t.app.complete(call_id.clone(), rider("r-1")).await.unwrap();
    t.payments.answer(Answer::Voided);
    let report = t.app.repair_once().await.unwrap();
    assert_eq!(report.cancelled, 1, "{report:?}");
    let d = t.app.get(&call_id).await.unwrap();
    assert_eq!(
        (d.status, d.settlement, d.settle_requested_at),
        (DeliveryStatus::Cancelled, None, None)
    );
    assert!(d.cancelled_at.is_some());
    assert_eq!(
        t.events(&call_id).await.len(),
        3,
        "accepted, picked, completed (pending); no event for the cancel: the call service announced it"
    );
    assert!(t.app.repair_once().await.unwrap().is_empty());
    assert_eq!(t.payments.payouts(), 0);
}

#[tokio::test]
async fn a_call_cancelled_while_its_settlement_is_pending_cancels_the_delivery() {
    let t = spawn_app().await;
    let call_id = t.picked_by("r-1").await;
    t.payments.answer(Answer::Unavailable);
    t.app.complete(call_id.clone(), rider("r-1")).await.unwrap();
    // The call service cancels only once payment voided the fee: the settlement can never happen.
    t.app
        .on_call_cancelled(&receipt("baemin.events.call.cancelled"), call_id.clone(), 700)
        .await
        .unwrap();
    let d = t.app.get(&call_id).await.unwrap();
    assert_eq!((d.status, d.settle_requested_at), (DeliveryStatus::Cancelled, None));
    t.payments.answer(Answer::Settle);
    assert!(t.app.repair_once().await.unwrap().is_empty());
    assert_eq!(t.payments.settles(), 1, "nothing settles for a cancelled call");
}

#[tokio::test]
async fn a_definite_refusal_of_a_deferred_settlement_drops_the_mark_and_keeps_it_completed() {
    let t = spawn_app().await;
    let call_id = t.picked_by("r-1").await;
    t.payments.answer(Answer::Unavailable);
    t.app.complete(call_id.clone(), rider("r-1")).await.unwrap();
    t.payments.answer(Answer::Refuse);
    let report = t.app.repair_once().await.unwrap();
    assert_eq!(report.dropped, 1, "{report:?}");
    let d = t.app.get(&call_id).await.unwrap();
    assert_eq!((d.status, d.settle_requested_at), (DeliveryStatus::Completed, None));
    assert!(
        t.app.repair_once().await.unwrap().is_empty(),
        "no retry loop: a refusal no retry can change"
    );
}

#[tokio::test]
async fn an_unexpected_answer_to_a_deferred_settlement_keeps_the_mark() {
    let t = spawn_app().await;
    let call_id = t.picked_by("r-1").await;
    t.payments.answer(Answer::Unavailable);
    t.app.complete(call_id.clone(), rider("r-1")).await.unwrap();
    t.payments.answer(Answer::Unexpected);
    assert_eq!(t.app.repair_once().await.unwrap().deferred, 1);
    assert!(mark(&t, &call_id).await.is_some(), "nobody else could ever settle it");
    t.payments.answer(Answer::Settle);
    assert_eq!(t.app.repair_once().await.unwrap().settled, 1);
    assert_eq!(t.payments.payouts(), 1);
}

#[tokio::test]
async fn an_unexpected_answer_to_complete_drops_the_mark_and_leaves_the_delivery_picked() {
    let t = spawn_app().await;
    let call_id = t.picked_by("r-1").await;
    t.payments.answer(Answer::Unexpected);
    let err = t.app.complete(call_id.clone(), rider("r-1")).await.unwrap_err();
    assert_eq!(code(err), Code::Internal);
    let d = t.app.get(&call_id).await.unwrap();
    assert_eq!((d.status, d.settle_requested_at), (DeliveryStatus::Picked, None));
}

#[tokio::test]
async fn a_retry_after_a_crash_mid_settlement_settles_again_and_completes() {
    let t = spawn_app().await;
    let call_id = t.picked_by("r-1").await;
    crash_after_sending_settle(&t, &call_id).await;
    let done = t.app.complete(call_id.clone(), rider("r-1")).await.unwrap();
    assert_eq!(done.status, DeliveryStatus::Completed);
    assert_eq!(done.settle_requested_at, None, "the completion clears the mark");
    assert_eq!(done.settlement.map(|s| s.rider_payout), Some(2_700));
    let completed = completed_events(&t, &call_id).await;
    assert_eq!(completed.len(), 1);
    assert!(!completed[0].settlement_pending);
    let again = t.app.complete(call_id.clone(), rider("r-1")).await.unwrap();
    assert_eq!(again, done, "a retry is answered with the completion");
    assert_eq!(t.payments.settles(), 1);
}

#[tokio::test]
async fn completing_when_payment_voided_the_fee_cancels_the_delivery() {
    let t = spawn_app().await;
    let call_id = t.picked_by("r-1").await;
    t.payments.answer(Answer::Voided);
    let err = t.app.complete(call_id.clone(), rider("r-1")).await.unwrap_err();
    let status = tonic::Status::from(err);
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("was cancelled; nothing to settle"));
    let d = t.app.get(&call_id).await.unwrap();
    assert_eq!(d.status, DeliveryStatus::Cancelled);
    assert!(d.cancelled_at.is_some());
    assert_eq!(d.settle_requested_at, None);
    assert_eq!(
        t.events(&call_id).await.len(),
        2,
        "no event: the call service announced the cancel"
    );
}

#[tokio::test]
async fn completing_when_payment_refuses_for_another_reason_leaves_the_delivery_picked() {
    let t = spawn_app().await;
    let call_id = t.picked_by("r-1").await;
    let before = t.app.get(&call_id).await.unwrap();
    t.payments.answer(Answer::Refuse);
    let err = t.app.complete(call_id.clone(), rider("r-1")).await.unwrap_err();
    let status = tonic::Status::from(err);
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("settled with another rider"),
        "{}",
        status.message()
    );
    assert_eq!(
        t.app.get(&call_id).await.unwrap(),
        before,
        "not cancelled, not completed"
    );
    assert_eq!(t.events(&call_id).await.len(), 2);
    let report = t.app.repair_once().await.unwrap();
    assert!(report.is_empty(), "a definite refusal is not retried: {report:?}");
    assert_eq!(t.payments.settles(), 1);
}

#[tokio::test]
async fn a_crash_between_the_mark_and_the_completion_is_repaired() {
    let t = spawn_app().await;
    let call_id = t.picked_by("r-1").await;
    crash_after_sending_settle(&t, &call_id).await;
    let report = t.app.repair_once().await.unwrap();
    assert_eq!(report.settled, 1, "{report:?}");
    assert_eq!(t.status(&call_id).await, DeliveryStatus::Completed);
    let completed = completed_events(&t, &call_id).await;
    assert_eq!(completed.len(), 1);
    assert_eq!(
        (completed[0].rider_payout, completed[0].settlement_pending),
        (2_700, false)
    );
}

#[tokio::test]
async fn a_crash_repaired_while_payment_is_down_completes_pending_then_settles() {
    let t = spawn_app().await;
    let call_id = t.picked_by("r-1").await;
    crash_after_sending_settle(&t, &call_id).await;
    t.payments.answer(Answer::Unavailable);
    let report = t.app.repair_once().await.unwrap();
    assert_eq!(report.deferred, 1, "{report:?}");
    let d = t.app.get(&call_id).await.unwrap();
    assert!(
        d.settlement_pending(),
        "the rider asked to complete: the food was delivered"
    );
    assert!(d.settle_requested_at.is_some());
    t.payments.answer(Answer::Settle);
    assert_eq!(t.app.repair_once().await.unwrap().settled, 1);
    let d = t.app.get(&call_id).await.unwrap();
    assert_eq!(d.settlement.map(|s| s.rider_payout), Some(2_700));
    assert_eq!(completed_events(&t, &call_id).await.len(), 1);
    assert_eq!(t.payments.payouts(), 1);
}

#[tokio::test]
async fn the_repair_worker_leaves_settlements_younger_than_repair_after_alone() {
    let db = baemin_mesh_store::connect::<crate::outbound::migration::Migrator>("sqlite::memory:", 1)
        .await
        .unwrap();
    let payments = crate::test_support::FakePayments::new(Answer::Settle);
    let app = std::sync::Arc::new(RiderApp::new(
        db.clone(),
        baemin_mesh_events::Outbox::new(),
        payments.clone(),
        std::time::Duration::from_secs(3_600),
    ));
    let t = crate::test_support::TestApp { app, db, payments };
    let call_id = t.picked_by("r-1").await;
    t.payments.answer(Answer::Unavailable);
    t.app.complete(call_id.clone(), rider("r-1")).await.unwrap();
    t.payments.answer(Answer::Settle);
    assert!(t.app.repair_once().await.unwrap().is_empty());
    assert_eq!(
        t.payments.settles(),
        1,
        "a settlement possibly still in flight is not re-sent"
    );
    assert!(t.app.get(&call_id).await.unwrap().settlement_pending());
}

#[tokio::test]
async fn a_missing_fee_keeps_the_mark_until_payment_has_it() {
    let t = spawn_app().await;
    let call_id = t.picked_by("r-1").await;
    t.payments.answer(Answer::NotFound);
    let err = t.app.complete(call_id.clone(), rider("r-1")).await.unwrap_err();
    assert_eq!(
        code(err),
        Code::Unavailable,
        "transient: retried by the worker and the rider"
    );
    assert!(mark(&t, &call_id).await.is_some());
    assert_eq!(t.status(&call_id).await, DeliveryStatus::Picked);
    assert_eq!(t.app.repair_once().await.unwrap().deferred, 1);
    t.payments.answer(Answer::Settle);
    assert_eq!(t.app.repair_once().await.unwrap().settled, 1);
    assert_eq!(t.status(&call_id).await, DeliveryStatus::Completed);
}

#[tokio::test]
async fn a_cancellation_drops_the_settlement_mark() {
    let t = spawn_app().await;
    let call_id = t.picked_by("r-1").await;
    crash_after_sending_settle(&t, &call_id).await;
    t.app
        .on_call_cancelled(&receipt("baemin.events.call.cancelled"), call_id.clone(), 700)
        .await
        .unwrap();
    let d = t.app.get(&call_id).await.unwrap();
    assert_eq!((d.status, d.settle_requested_at), (DeliveryStatus::Cancelled, None));
    assert!(t.app.repair_once().await.unwrap().is_empty());
    assert_eq!(t.payments.settles(), 0, "nothing settles for a cancelled call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_racing_the_repair_worker_completes_once() {
    for _ in 0..10 {
        let t = spawn_app().await;
        let call_id = t.picked_by("r-1").await;
        crash_after_sending_settle(&t, &call_id).await;
        let retry = {
            let (app, call_id) = (t.app.clone(), call_id.clone());
            tokio::spawn(async move { app.complete(call_id, rider("r-1")).await })
        };
        let repair = {
            let app = t.app.clone();
            tokio::spawn(async move { app.repair_once().await })
        };
        repair.await.unwrap().unwrap();
        match retry.await.unwrap() {
            Ok(d) => assert_eq!(d.status, DeliveryStatus::Completed),
            // The repair recorded the completion before the retry read the delivery: completing twice.
            Err(err) => assert_eq!(code(err), Code::FailedPrecondition),
        }
        let d = t.app.get(&call_id).await.unwrap();
        assert_eq!((d.status, d.settle_requested_at), (DeliveryStatus::Completed, None));
        assert_eq!(completed_events(&t, &call_id).await.len(), 1, "one DeliveryCompleted");
        assert_eq!(t.payments.payouts(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_repair_rounds_racing_record_a_deferred_settlement_once() {
    for _ in 0..10 {
        let t = spawn_app().await;
        let call_id = t.picked_by("r-1").await;
        t.payments.answer(Answer::Unavailable);
        t.app.complete(call_id.clone(), rider("r-1")).await.unwrap();
        t.payments.answer(Answer::Settle);
        // Two replicas of the rider service, each running its repair worker.
        let rounds: Vec<_> = (0..2)
            .map(|_| {
                let app = t.app.clone();
                tokio::spawn(async move { app.repair_once().await })
            })
            .collect();
        for round in rounds {
            round.await.unwrap().unwrap();
        }
        let d = t.app.get(&call_id).await.unwrap();
        assert_eq!(d.settlement.map(|s| s.rider_payout), Some(2_700));
        assert_eq!(d.settle_requested_at, None);
        assert_eq!(t.payments.payouts(), 1, "Settle is idempotent at payment");
        assert_eq!(completed_events(&t, &call_id).await.len(), 1);
    }
}

#[tokio::test]
async fn pick_up_before_accept_and_complete_before_pick_up_are_refused() {
    let t = spawn_app().await;
    let call_id = t.place().await;
    let err = t.app.pick_up(call_id.clone(), rider("r-1")).await.unwrap_err();
    assert_eq!(code(err), Code::FailedPrecondition);
    t.app.accept(call_id.clone(), rider("r-1")).await.unwrap();
    let err = t.app.complete(call_id.clone(), rider("r-1")).await.unwrap_err();
    assert_eq!(code(err), Code::FailedPrecondition);
    assert_eq!(t.payments.settles(), 0);
}

#[tokio::test]
async fn a_cancel_before_the_call_leaves_a_tombstone_that_a_late_call_does_not_reopen() {
    let t = spawn_app().await;
    let call_id = CallId::generate();
    t.app
        .on_call_cancelled(&receipt("baemin.events.call.cancelled"), call_id.clone(), 500)
        .await
        .unwrap();
    t.app
        .on_call_placed(&receipt("baemin.events.call.placed"), call_id.clone(), placed_call())
        .await
        .unwrap();
    let d = t.app.get(&call_id).await.unwrap();
    assert_eq!(d.status, DeliveryStatus::Cancelled);
    assert_eq!(d.fee.map(Fee::krw), Some(3_000), "the call's facts are filled in");
    assert!(t.app.open_calls_now().await.unwrap().is_empty());
    let err = t.app.accept(call_id, rider("r-1")).await.unwrap_err();
    assert_eq!(code(err), Code::FailedPrecondition);
}

#[tokio::test]
async fn a_cancel_takes_an_accepted_delivery_away_from_its_rider() {
    let t = spawn_app().await;
    let call_id = t.place().await;
    t.app.accept(call_id.clone(), rider("r-1")).await.unwrap();
    t.app
        .on_call_cancelled(&receipt("baemin.events.call.cancelled"), call_id.clone(), 700)
        .await
        .unwrap();
    let d = t.app.get(&call_id).await.unwrap();
    assert_eq!((d.status, d.cancelled_at), (DeliveryStatus::Cancelled, Some(700)));
    let err = t.app.pick_up(call_id, rider("r-1")).await.unwrap_err();
    assert!(err.to_string().contains("was cancelled"), "{err}");
}

#[tokio::test]
async fn a_call_placed_opens_its_delivery_without_reading_first() {
    let t = spawn_app().await;
    let statements = baemin_mesh_testkit::record_statements(&t.db);
    t.app
        .on_call_placed(&receipt("baemin.events.call.placed"), CallId::generate(), placed_call())
        .await
        .unwrap();
    let run = statements.take();
    assert_eq!(run.count("SELECT"), 0, "{run:?}");
    assert_eq!(run.count("INSERT"), 2, "inbox, delivery: {run:?}");
}

fn call_event(receipt: &Receipt, call_id: &CallId, fact: CallFact) -> CallEvent {
    CallEvent {
        receipt: receipt.clone(),
        call_id: call_id.clone(),
        fact,
    }
}

fn board_change(change: BoardChange) -> (&'static str, CallId) {
    match change {
        BoardChange::Opened(d) => ("opened", d.call_id),
        BoardChange::Closed(d) => ("closed", d.call_id),
        BoardChange::Resync => ("resync", CallId::generate()),
    }
}

#[tokio::test]
async fn a_batch_of_call_events_applies_each_once_in_order_and_tells_the_board_after_its_commit() {
    let t = spawn_app().await;
    let mut calls = [CallId::generate(), CallId::generate()];
    calls.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    let [first, second] = calls;
    let placed = receipt("baemin.events.call.placed");
    let mut board = t.app.watch_board();
    let statements = baemin_mesh_testkit::record_statements(&t.db);
    t.app
        .apply_call_events(&[
            call_event(&placed, &first, CallFact::Placed(placed_call())),
            call_event(
                &receipt("baemin.events.call.placed"),
                &second,
                CallFact::Placed(placed_call()),
            ),
            call_event(
                &receipt("baemin.events.call.cancelled"),
                &first,
                CallFact::Cancelled(900),
            ),
            // The first event's id again (a redelivery inside the batch): recognised by the inbox alone —
            // carrying a cancellation of the second call, it would cancel it if it were applied.
            call_event(&placed, &second, CallFact::Cancelled(950)),
        ])
        .await
        .unwrap();
    let run = statements.take();
    assert_eq!(run.count("BEGIN"), 1, "one transaction: {run:?}");
    assert_eq!(t.status(&first).await, DeliveryStatus::Cancelled);
    assert_eq!(t.status(&second).await, DeliveryStatus::Called);
    let told: Vec<_> = std::iter::from_fn(|| board.try_recv().ok()).map(board_change).collect();
    assert_eq!(
        told,
        [("opened", first.clone()), ("closed", first), ("opened", second)],
        "each once; each call's changes in order, the calls in call-id order"
    );
}

#[tokio::test]
async fn a_redelivered_event_applies_nothing_twice() {
    let t = spawn_app().await;
    let call_id = CallId::generate();
    let placed = receipt("baemin.events.call.placed");
    t.app
        .on_call_placed(&placed, call_id.clone(), placed_call())
        .await
        .unwrap();
    t.app.accept(call_id.clone(), rider("r-1")).await.unwrap();
    let mut board = t.app.watch_board();
    t.app
        .on_call_placed(&placed, call_id.clone(), placed_call())
        .await
        .unwrap();
    assert_eq!(t.status(&call_id).await, DeliveryStatus::Accepted);
    assert!(board.try_recv().is_err(), "nothing reopened on the board");
    // Only the inbox can tell this one apart: the same event id carrying a cancellation would cancel
    // the delivery if it were applied.
    t.app.on_call_cancelled(&placed, call_id.clone(), 900).await.unwrap();
    assert_eq!(
        t.status(&call_id).await,
        DeliveryStatus::Accepted,
        "an event id seen before is not applied again, whatever it carries"
    );
}

#[tokio::test]
async fn the_board_hears_calls_open_and_close() {
    let t = spawn_app().await;
    let mut board = t.app.watch_board();
    let call_id = t.place().await;
    match board.recv().await.unwrap() {
        BoardChange::Opened(d) => assert_eq!(d.call_id, call_id),
        other => panic!("{other:?}"),
    }
    t.app.accept(call_id.clone(), rider("r-1")).await.unwrap();
    match board.recv().await.unwrap() {
        BoardChange::Closed(d) => assert_eq!(d.status, DeliveryStatus::Accepted),
        other => panic!("{other:?}"),
    }
    let cancelled = t.place().await;
    let _opened = board.recv().await.unwrap();
    t.app
        .on_call_cancelled(&receipt("baemin.events.call.cancelled"), cancelled.clone(), 9)
        .await
        .unwrap();
    match board.recv().await.unwrap() {
        BoardChange::Closed(d) => assert_eq!(d.call_id, cancelled),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn lists_page_by_call_id_open_calls_oldest_first_deliveries_newest_first() {
    let t = spawn_app().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(t.place().await);
    }
    t.app.accept(ids[1].clone(), rider("r-1")).await.unwrap();
    let page = |size: i32, after| Page {
        size: PageSize::parse(size, "page_size").unwrap(),
        after,
    };

    let first = t.app.list_open(page(2, None)).await.unwrap();
    let ids_of = |l: &Listed| l.items.iter().map(|d| d.call_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids_of(&first), [ids[0].clone(), ids[2].clone()]);
    let second = t.app.list_open(page(2, first.next)).await.unwrap();
    assert_eq!(ids_of(&second), [ids[3].clone(), ids[4].clone()]);
    assert_eq!(second.next, None, "the last page has no token");

    let all = t.app.list(DeliveryFilter::default(), page(3, None)).await.unwrap();
    assert_eq!(ids_of(&all), [ids[4].clone(), ids[3].clone(), ids[2].clone()]);
    let rest = t.app.list(DeliveryFilter::default(), page(3, all.next)).await.unwrap();
    assert_eq!(ids_of(&rest), [ids[1].clone(), ids[0].clone()]);

    let mine = DeliveryFilter {
        rider_id: Some(rider("r-1")),
        ..DeliveryFilter::default()
    };
    assert_eq!(
        ids_of(&t.app.list(mine, page(0, None)).await.unwrap()),
        [ids[1].clone()]
    );
    let accepted = DeliveryFilter {
        status: Some(DeliveryStatus::Accepted),
        restaurant_id: Some(RestaurantId::parse("store-1", "restaurant_id").unwrap()),
        ..DeliveryFilter::default()
    };
    assert_eq!(
        ids_of(&t.app.list(accepted, page(0, None)).await.unwrap()),
        [ids[1].clone()]
    );
    let elsewhere = DeliveryFilter {
        restaurant_id: Some(RestaurantId::parse("store-2", "restaurant_id").unwrap()),
        ..DeliveryFilter::default()
    };
    assert!(t.app.list(elsewhere, page(0, None)).await.unwrap().items.is_empty());
}

/// The DeliveryPicked events of `call_id` in the outbox.
async fn picked_events(t: &crate::test_support::TestApp, call_id: &CallId) -> usize {
    t.events(call_id)
        .await
        .into_iter()
        .filter(|e| matches!(e, Event::DeliveryPicked(_)))
        .count()
}

#[tokio::test]
async fn a_pick_up_payment_cannot_decide_is_never_answered_ok_and_the_repair_worker_records_the_hold() {
    let t = spawn_app().await;
    let call_id = t.accepted_by("r-1").await;
    t.payments.answer(Answer::Unavailable);
    let err = t.app.pick_up(call_id.clone(), rider("r-1")).await.unwrap_err();
    assert_eq!(code(err), Code::Unavailable, "a cancel may still win: not OK");
    let d = t.app.get(&call_id).await.unwrap();
    assert_eq!(d.status, DeliveryStatus::Accepted);
    assert!(
        d.hold_requested_at.is_some(),
        "the pick-up is marked for the repair worker"
    );
    assert_eq!(picked_events(&t, &call_id).await, 0);

    let report = t.app.repair_once().await.unwrap();
    assert_eq!((report.deferred, report.picked_up), (1, 0));
    t.payments.answer(Answer::Settle);
    assert_eq!(t.app.repair_once().await.unwrap().picked_up, 1);
    let d = t.app.get(&call_id).await.unwrap();
    assert_eq!((d.status, d.hold_requested_at), (DeliveryStatus::Picked, None));
    assert!(t.payments.held(&call_id));
    assert_eq!(picked_events(&t, &call_id).await, 1);

    // The rider's retry is answered with the pick-up, without asking payment again.
    let holds = t.payments.holds();
    let again = t.app.pick_up(call_id.clone(), rider("r-1")).await.unwrap();
    assert_eq!(again.status, DeliveryStatus::Picked);
    assert_eq!(t.payments.holds(), holds);
    assert!(t.app.repair_once().await.unwrap().is_empty(), "nothing left to repair");
}

#[tokio::test]
async fn a_pick_up_loses_to_a_cancel_payment_applied_first_and_the_delivery_is_cancelled() {
    let t = spawn_app().await;
    let call_id = t.accepted_by("r-1").await;
    t.payments.answer(Answer::Voided);
    let err = t.app.pick_up(call_id.clone(), rider("r-1")).await.unwrap_err();
    assert_eq!(code(err), Code::FailedPrecondition);
    let d = t.app.get(&call_id).await.unwrap();
    assert_eq!((d.status, d.hold_requested_at), (DeliveryStatus::Cancelled, None));
    assert_eq!(picked_events(&t, &call_id).await, 0);

    // The same decided by the repair worker for a pick-up payment could not decide at first.
    let undecided = t.accepted_by("r-2").await;
    t.payments.answer(Answer::Unavailable);
    t.app.pick_up(undecided.clone(), rider("r-2")).await.unwrap_err();
    t.payments.answer(Answer::Voided);
    assert_eq!(t.app.repair_once().await.unwrap().cancelled, 1);
    assert_eq!(t.status(&undecided).await, DeliveryStatus::Cancelled);
}

#[tokio::test]
async fn a_call_cancelled_while_its_pick_up_is_undecided_drops_the_mark() {
    let t = spawn_app().await;
    let call_id = t.accepted_by("r-1").await;
    t.payments.answer(Answer::Unavailable);
    t.app.pick_up(call_id.clone(), rider("r-1")).await.unwrap_err();
    // The cancel won at payment, and CallCancelled arrives.
    t.app
        .on_call_cancelled(&receipt("baemin.events.call.cancelled"), call_id.clone(), 5)
        .await
        .unwrap();
    let d = t.app.get(&call_id).await.unwrap();
    assert_eq!((d.status, d.hold_requested_at), (DeliveryStatus::Cancelled, None));
    t.payments.answer(Answer::Settle);
    assert!(t.app.repair_once().await.unwrap().is_empty());
}

#[tokio::test]
async fn marks_payment_keeps_failing_back_off_and_never_starve_newer_ones() {
    let t = spawn_app().await;
    // More stuck pick-ups than a round looks at, all older than one that payment can decide.
    let mut stuck = Vec::new();
    for _ in 0..101 {
        let call_id = t.accepted_by("r-1").await;
        t.payments.unreachable_for(&call_id);
        t.app.pick_up(call_id.clone(), rider("r-1")).await.unwrap_err();
        stuck.push(call_id);
    }
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let decidable = t.accepted_by("r-2").await;
    t.payments.answer(Answer::Unavailable);
    t.app.pick_up(decidable.clone(), rider("r-2")).await.unwrap_err();
    t.payments.answer(Answer::Settle);

    let first = t.app.repair_once().await.unwrap();
    assert_eq!(
        (first.deferred, first.picked_up),
        (100, 0),
        "a round looks at the 100 oldest"
    );
    // Each of them backed off behind the newer mark, which the next round reaches.
    let second = t.app.repair_once().await.unwrap();
    assert_eq!(second.picked_up, 1, "{second:?}");
    assert_eq!(t.status(&decidable).await, DeliveryStatus::Picked);
    for call_id in &stuck {
        assert_eq!(t.status(call_id).await, DeliveryStatus::Accepted);
    }
}

#[tokio::test]
async fn deliveries_picked_up_before_fees_were_held_get_their_fees_held_by_the_repair_worker() {
    use sea_orm::ConnectionTrait;
    let t = spawn_app().await;
    let picked = t.picked_by("r-1").await;
    let pending = t.picked_by("r-2").await;
    t.payments.answer(Answer::Unavailable);
    t.app.complete(pending.clone(), rider("r-2")).await.unwrap();
    t.payments.answer(Answer::Settle);
    // What the upgrade's migration does to deliveries picked up by the previous version.
    t.db.execute_unprepared(crate::outbound::migration::MARK_PICKED_BEFORE_HOLDS)
        .await
        .unwrap();
    let holds = t.payments.holds();

    let report = t.app.repair_once().await.unwrap();

    assert_eq!(report.picked_up, 2, "{report:?}");
    assert_eq!(t.payments.holds(), holds + 2);
    let d = t.app.get(&picked).await.unwrap();
    assert_eq!((d.status, d.hold_requested_at), (DeliveryStatus::Picked, None));
    assert_eq!(picked_events(&t, &picked).await, 1, "no second DeliveryPicked");
    let d = t.app.get(&pending).await.unwrap();
    assert_eq!((d.status, d.hold_requested_at), (DeliveryStatus::Completed, None));
    assert_eq!(t.app.repair_once().await.unwrap().picked_up, 0);
}
