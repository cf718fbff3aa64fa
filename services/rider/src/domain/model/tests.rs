use baemin_kernel::{CallId, DeliveryStatus, Destination, Fee, RestaurantId, RiderId, Settlement};

use super::*;
use crate::domain::RiderError;

fn rider(id: &str) -> RiderId {
    RiderId::parse(id, "rider_id").unwrap()
}

fn placed(fee: i64, at: i64) -> PlacedCall {
    PlacedCall {
        restaurant_id: RestaurantId::parse("store-1", "restaurant_id").unwrap(),
        destination: Destination::parse("Gangnam-gu 1", "destination").unwrap(),
        fee: Fee::parse(fee, "fee").unwrap(),
        called_at: at,
    }
}

fn settlement() -> Settlement {
    Settlement {
        fee: 3_000,
        commission: 300,
        rider_payout: 2_700,
    }
}

fn applied(change: Result<Change, RiderError>) -> Delivery {
    match change {
        Ok(Change::Apply(d)) => d,
        other => panic!("expected a change, got {other:?}"),
    }
}

fn open() -> Delivery {
    Delivery::open(CallId::generate(), &placed(3_000, 1), 1)
}

fn accepted_by(id: &str) -> Delivery {
    applied(open().accept(&rider(id), 2))
}

fn picked_by(id: &str) -> Delivery {
    applied(accepted_by(id).pick_up(&rider(id), 3))
}

fn completed_by(id: &str) -> Delivery {
    applied(picked_by(id).complete(&rider(id), settlement(), 4))
}

fn cancelled(d: Delivery) -> Delivery {
    match d.cancel(9, 9) {
        CancelOutcome::Cancel(d) => d,
        other => panic!("expected a cancel, got {other:?}"),
    }
}

/// One delivery in each status, owned by `me` where a rider is set.
fn every_status(me: &str) -> Vec<Delivery> {
    vec![
        open(),
        accepted_by(me),
        picked_by(me),
        completed_by(me),
        cancelled(accepted_by(me)),
    ]
}

fn is_precondition(err: &RiderError) -> bool {
    matches!(
        err,
        RiderError::Taken(_) | RiderError::Cancelled(_) | RiderError::IllegalState(_)
    )
}

#[test]
fn open_is_the_api_name_of_called_and_labels_round_trip() {
    assert_eq!(status_label(DeliveryStatus::Called), "OPEN");
    for status in DeliveryStatus::ALL {
        assert_eq!(status_from_label(status_label(status)), Some(status));
    }
    assert_eq!(status_from_label("CALLED"), None);
}

#[test]
fn the_happy_path_records_who_and_when() {
    let done = completed_by("r-1");
    assert_eq!(done.status, DeliveryStatus::Completed);
    assert_eq!(done.rider_id, Some(rider("r-1")));
    assert_eq!(
        (done.accepted_at, done.picked_at, done.completed_at),
        (Some(2), Some(3), Some(4))
    );
    assert_eq!(done.settlement, Some(settlement()));
    assert!(!done.is_open());
    assert!(open().is_open());
}

#[test]
fn accept_takes_an_open_call_and_a_retry_by_the_winner_returns_it() {
    let won = accepted_by("r-1");
    assert_eq!(won.status, DeliveryStatus::Accepted);
    assert_eq!(won.accept(&rider("r-1"), 5).unwrap(), Change::AlreadyDone(won.clone()));
}

#[test]
fn second_rider_cannot_accept_taken_call() {
    for taken in [accepted_by("r-1"), picked_by("r-1"), completed_by("r-1")] {
        let err = taken.accept(&rider("r-2"), 5).unwrap_err();
        assert!(matches!(err, RiderError::Taken(_)), "{err:?}");
        assert!(err.to_string().contains("already taken"));
    }
}

#[test]
fn accept_of_a_cancelled_call_or_a_call_already_under_way_is_refused() {
    let err = cancelled(open()).accept(&rider("r-1"), 5).unwrap_err();
    assert!(matches!(err, RiderError::Cancelled(_)));
    let tombstone = Delivery::tombstone(CallId::generate(), 1, 1);
    assert!(matches!(
        tombstone.accept(&rider("r-1"), 5),
        Err(RiderError::Cancelled(_))
    ));
    for mine in [picked_by("r-1"), completed_by("r-1")] {
        let err = mine.accept(&rider("r-1"), 5).unwrap_err();
        assert!(matches!(err, RiderError::IllegalState(_)), "{err:?}");
    }
}

#[test]
fn pick_up_is_legal_only_from_accepted_and_idempotent_once_picked() {
    for d in every_status("r-1") {
        let result = d.pick_up(&rider("r-1"), 7);
        match d.status {
            DeliveryStatus::Accepted => {
                let picked = applied(result);
                assert_eq!((picked.status, picked.picked_at), (DeliveryStatus::Picked, Some(7)));
            }
            DeliveryStatus::Picked => assert_eq!(result.unwrap(), Change::AlreadyDone(d)),
            status => {
                let err = result.unwrap_err();
                assert!(is_precondition(&err), "pick up from {status}: {err:?}");
            }
        }
    }
}

#[test]
fn completion_settles_only_from_picked_and_a_retry_by_the_rider_who_completed_is_answered_as_done() {
    for d in every_status("r-1") {
        let begin = d.begin_completion(&rider("r-1"));
        let result = d.complete(&rider("r-1"), settlement(), 8);
        match d.status {
            DeliveryStatus::Picked => {
                assert_eq!(begin.unwrap(), Completion::Settle);
                assert_eq!(applied(result).status, DeliveryStatus::Completed);
            }
            // A retry after a lost answer is answered with the delivery; a settlement recorded twice (two
            // attempts racing) is one completion.
            DeliveryStatus::Completed => {
                assert_eq!(
                    begin.unwrap(),
                    Completion::Done,
                    "a retry by the rider who completed it"
                );
                assert_eq!(result.unwrap(), Change::AlreadyDone(d.clone()));
                assert!(
                    matches!(d.begin_completion(&rider("r-2")), Err(RiderError::NotYours(_))),
                    "another rider's completion is refused"
                );
            }
            status => {
                assert!(is_precondition(&begin.unwrap_err()), "from {status}");
                assert!(is_precondition(&result.unwrap_err()), "from {status}");
            }
        }
    }
}

#[test]
fn completing_or_cancelling_clears_the_settlement_mark() {
    let marked = Delivery {
        settle_requested_at: Some(7),
        ..picked_by("r-1")
    };
    let done = applied(marked.complete(&rider("r-1"), settlement(), 8));
    assert_eq!(done.settle_requested_at, None);
    match marked.cancel(9, 9) {
        CancelOutcome::Cancel(next) => assert_eq!(next.settle_requested_at, None),
        other => panic!("{other:?}"),
    }
    match marked.cancel_voided(9) {
        Change::Apply(next) => assert_eq!(next.settle_requested_at, None),
        other => panic!("{other:?}"),
    }
}

#[test]
fn only_a_picked_delivery_marked_before_the_cutoff_is_a_stale_settlement() {
    let marked = |at| Delivery {
        settle_requested_at: Some(at),
        ..picked_by("r-1")
    };
    assert!(marked(10).settlement_stale(10));
    assert!(!marked(11).settlement_stale(10), "a live attempt is left alone");
    assert!(!picked_by("r-1").settlement_stale(10), "no mark, nothing sent");
    let gone = Delivery {
        settle_requested_at: Some(1),
        ..cancelled(picked_by("r-1"))
    };
    assert!(!gone.settlement_stale(10), "a cancelled delivery has nothing to settle");
}

fn completed_pending(id: &str) -> Delivery {
    let marked = Delivery {
        settle_requested_at: Some(7),
        ..picked_by(id)
    };
    applied(marked.complete_unsettled(&rider(id), 8))
}

#[test]
fn payment_unavailable_completes_a_picked_delivery_with_its_settlement_pending_and_its_mark_kept() {
    let d = completed_pending("r-1");
    assert_eq!(d.status, DeliveryStatus::Completed);
    assert_eq!((d.settlement, d.completed_at), (None, Some(8)));
    assert_eq!(d.settle_requested_at, Some(7), "the mark of the attempt stays");
    assert!(d.settlement_pending());
    assert!(!completed_by("r-1").settlement_pending());
    assert!(!picked_by("r-1").settlement_pending());
    let unmarked = applied(picked_by("r-1").complete_unsettled(&rider("r-1"), 9));
    assert_eq!(unmarked.settle_requested_at, Some(9), "never pending without a mark");
}

#[test]
fn completing_unsettled_is_legal_only_from_picked_and_done_once_completed() {
    for d in every_status("r-1") {
        let result = d.complete_unsettled(&rider("r-1"), 8);
        match d.status {
            DeliveryStatus::Picked => assert!(applied(result).settlement_pending()),
            DeliveryStatus::Completed => assert_eq!(result.unwrap(), Change::AlreadyDone(d.clone())),
            status => assert!(is_precondition(&result.unwrap_err()), "from {status}"),
        }
    }
    assert!(matches!(
        picked_by("r-1").complete_unsettled(&rider("r-2"), 8),
        Err(RiderError::NotYours(_))
    ));
}

#[test]
fn a_deferred_settlement_is_recorded_on_the_completed_delivery_once() {
    let pending = completed_pending("r-1");
    let settled = applied(pending.complete(&rider("r-1"), settlement(), 20));
    assert_eq!(settled.status, DeliveryStatus::Completed);
    assert_eq!(settled.settlement, Some(settlement()));
    assert_eq!(settled.settle_requested_at, None);
    assert_eq!(settled.completed_at, Some(8), "completed when it was delivered");
    assert_eq!(
        settled.complete(&rider("r-1"), settlement(), 30).unwrap(),
        Change::AlreadyDone(settled.clone())
    );
    assert_eq!(
        pending.begin_completion(&rider("r-1")).unwrap(),
        Completion::Done,
        "completed with its settlement pending: a retry is answered, not sent to payment again"
    );
}

#[test]
fn a_pending_settlement_is_stale_like_a_marked_picked_delivery_and_a_settled_one_is_not() {
    assert!(completed_pending("r-1").settlement_stale(7));
    assert!(!completed_pending("r-1").settlement_stale(6));
    let settled_but_marked = Delivery {
        settle_requested_at: Some(1),
        ..completed_by("r-1")
    };
    assert!(!settled_but_marked.settlement_stale(10));
}

#[test]
fn a_voided_fee_or_a_cancel_cancels_a_completed_delivery_only_while_its_settlement_is_pending() {
    let pending = completed_pending("r-1");
    match pending.cancel_voided(11) {
        Change::Apply(next) => {
            assert_eq!(next.status, DeliveryStatus::Cancelled);
            assert_eq!((next.settle_requested_at, next.cancelled_at), (None, Some(11)));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(pending.cancel(12, 12), CancelOutcome::Cancel(_)));
    assert_eq!(completed_by("r-1").cancel(12, 12), CancelOutcome::CompletedFirst);
}

#[test]
fn a_rider_cannot_act_on_another_riders_delivery() {
    for d in [
        accepted_by("r-1"),
        picked_by("r-1"),
        completed_by("r-1"),
        cancelled(accepted_by("r-1")),
    ] {
        assert!(
            matches!(d.pick_up(&rider("r-2"), 7), Err(RiderError::NotYours(_))),
            "pick up of {}",
            d.status
        );
        assert!(
            matches!(d.begin_completion(&rider("r-2")), Err(RiderError::NotYours(_))),
            "complete of {}",
            d.status
        );
        assert!(matches!(
            d.complete(&rider("r-2"), settlement(), 8),
            Err(RiderError::NotYours(_))
        ));
    }
}

#[test]
fn picking_up_an_open_call_says_accept_first() {
    let err = open().pick_up(&rider("r-1"), 7).unwrap_err();
    assert!(err.to_string().contains("accept it"), "{err}");
}

#[test]
fn cancellation_wins_over_every_status_but_completed() {
    for d in every_status("r-1") {
        match (d.status, d.cancel(9, 10)) {
            (DeliveryStatus::Completed, outcome) => {
                assert_eq!(outcome, CancelOutcome::CompletedFirst)
            }
            (DeliveryStatus::Cancelled, outcome) => assert_eq!(outcome, CancelOutcome::Unchanged),
            (_, CancelOutcome::Cancel(next)) => {
                assert_eq!(next.status, DeliveryStatus::Cancelled);
                assert_eq!(next.cancelled_at, Some(9));
                assert_eq!(next.rider_id, d.rider_id, "the rider still sees its cancelled job");
            }
            (status, outcome) => panic!("cancel from {status}: {outcome:?}"),
        }
    }
}

#[test]
fn a_refused_settlement_cancels_a_picked_delivery() {
    let d = picked_by("r-1");
    let next = match d.cancel_voided(11) {
        Change::Apply(next) => next,
        other => panic!("{other:?}"),
    };
    assert_eq!(next.status, DeliveryStatus::Cancelled);
    let done = completed_by("r-1");
    assert_eq!(done.cancel_voided(11), Change::AlreadyDone(done));
}

/// Applies a CallPlaced / CallCancelled to a one-row store, as the application does.
#[derive(Debug, Clone, Copy)]
enum Event {
    Placed,
    Cancelled,
}

fn apply(store: &mut Option<Delivery>, call_id: &CallId, event: Event) {
    match event {
        Event::Placed => match on_call_placed(store.as_ref(), call_id, &placed(3_000, 1), 50) {
            PlacedOutcome::Open(d) | PlacedOutcome::Fill(d) => *store = Some(d),
            PlacedOutcome::Unchanged => {}
        },
        Event::Cancelled => match on_call_cancelled(store.as_ref(), call_id, 20, 50) {
            CancelOutcome::Tombstone(d) | CancelOutcome::Cancel(d) => *store = Some(d),
            CancelOutcome::Unchanged | CancelOutcome::CompletedFirst => {}
        },
    }
}

#[test]
fn cancel_before_placed_leaves_cancelled_with_the_call_facts_filled() {
    let call_id = CallId::generate();
    let mut store = None;
    apply(&mut store, &call_id, Event::Cancelled);
    let tombstone = store.clone().unwrap();
    assert_eq!(tombstone.status, DeliveryStatus::Cancelled);
    assert_eq!(tombstone.fee, None);
    apply(&mut store, &call_id, Event::Placed);
    let d = store.unwrap();
    assert_eq!(d.status, DeliveryStatus::Cancelled, "a late CallPlaced never reopens");
    assert_eq!(d.fee, Some(Fee::parse(3_000, "fee").unwrap()));
    assert_eq!((d.called_at, d.cancelled_at), (Some(1), Some(20)));
}

#[test]
fn placed_twice_stays_one_open_call() {
    let call_id = CallId::generate();
    let mut store = None;
    apply(&mut store, &call_id, Event::Placed);
    let first = store.clone().unwrap();
    assert!(first.is_open());
    assert_eq!(
        on_call_placed(Some(&first), &call_id, &placed(3_000, 1), 60),
        PlacedOutcome::Unchanged
    );
    apply(&mut store, &call_id, Event::Placed);
    assert_eq!(store, Some(first));
}

#[test]
fn events_converge_whatever_the_order_and_duplication() {
    use Event::{Cancelled, Placed};
    let orders: [&[Event]; 6] = [
        &[Placed, Cancelled],
        &[Cancelled, Placed],
        &[Placed, Placed, Cancelled],
        &[Cancelled, Cancelled, Placed],
        &[Placed, Cancelled, Placed, Cancelled],
        &[Cancelled, Placed, Cancelled, Placed],
    ];
    let call_id = CallId::generate();
    let results: Vec<Delivery> = orders
        .iter()
        .map(|order| {
            let mut store = None;
            for event in *order {
                apply(&mut store, &call_id, *event);
            }
            Delivery {
                updated_at: 0,
                ..store.unwrap()
            }
        })
        .collect();
    for r in &results {
        assert_eq!(r, &results[0]);
    }
    assert_eq!(results[0].status, DeliveryStatus::Cancelled);
    assert_eq!(results[0].restaurant_id.as_ref().map(|r| r.as_str()), Some("store-1"));
}

#[test]
fn a_cancel_after_acceptance_keeps_the_rider_and_a_late_placed_changes_nothing() {
    let call_id = CallId::generate();
    let mut store = None;
    apply(&mut store, &call_id, Event::Placed);
    store = Some(applied(store.unwrap().accept(&rider("r-1"), 5)));
    apply(&mut store, &call_id, Event::Cancelled);
    let cancelled = store.clone().unwrap();
    assert_eq!(cancelled.status, DeliveryStatus::Cancelled);
    assert_eq!(cancelled.rider_id, Some(rider("r-1")));
    apply(&mut store, &call_id, Event::Placed);
    assert_eq!(store, Some(cancelled));
}
