use baemin_kernel::{CallId, DeliveryStatus, Destination, Fee, RestaurantId, RiderId};

use super::{Change, DeliveryView, Fact, PaymentState, Split, apply};

fn fee(krw: i64) -> Fee {
    Fee::parse(krw, "fee").unwrap()
}

fn rider(id: &str) -> RiderId {
    RiderId::parse(id, "rider_id").unwrap()
}

fn fact(call_id: &CallId, occurred_at: i64, change: Change) -> Fact {
    Fact {
        call_id: call_id.clone(),
        occurred_at,
        change,
    }
}

fn placed(call_id: &CallId, at: i64) -> Fact {
    fact(
        call_id,
        at,
        Change::CallPlaced {
            restaurant_id: RestaurantId::parse("store-1", "restaurant_id").unwrap(),
            destination: Destination::parse("Gangnam-gu 1", "destination").unwrap(),
            fee: fee(3_000),
            payment_pending: false,
        },
    )
}

const SPLIT: Split = Split {
    rider_payout: 2_700,
    commission: 300,
};

/// Every event of a delivery that was completed and settled, as the mesh emits them.
fn completed_delivery(call_id: &CallId) -> Vec<Fact> {
    vec![
        placed(call_id, 100),
        fact(call_id, 110, Change::PaymentRegistered { fee: Some(fee(3_000)) }),
        fact(call_id, 200, Change::CallAccepted { rider_id: rider("r-1") }),
        fact(
            call_id,
            300,
            Change::DeliveryPicked {
                rider_id: Some(rider("r-1")),
            },
        ),
        fact(
            call_id,
            390,
            Change::PaymentSettled {
                rider_id: Some(rider("r-1")),
                fee: Some(fee(3_000)),
                split: SPLIT,
            },
        ),
        fact(
            call_id,
            400,
            Change::DeliveryCompleted {
                rider_id: Some(rider("r-1")),
                fee: Some(fee(3_000)),
                split: Some(SPLIT),
            },
        ),
    ]
}

/// Every event of a delivery cancelled after a rider accepted it.
fn cancelled_delivery(call_id: &CallId) -> Vec<Fact> {
    vec![
        placed(call_id, 100),
        fact(call_id, 110, Change::PaymentRegistered { fee: Some(fee(3_000)) }),
        fact(call_id, 200, Change::CallAccepted { rider_id: rider("r-1") }),
        fact(call_id, 250, Change::CallCancelled),
        fact(call_id, 260, Change::PaymentVoided),
    ]
}

fn project(facts: &[&Fact]) -> DeliveryView {
    facts
        .iter()
        .fold(None, |row, f| Some(apply(row, f)))
        .expect("at least one fact")
}

fn expected_completed(call_id: &CallId) -> DeliveryView {
    DeliveryView {
        call_id: call_id.clone(),
        restaurant_id: Some(RestaurantId::parse("store-1", "restaurant_id").unwrap()),
        destination: Some(Destination::parse("Gangnam-gu 1", "destination").unwrap()),
        fee: Some(fee(3_000)),
        status: Some(DeliveryStatus::Completed),
        rider_id: Some(rider("r-1")),
        payment_state: Some(PaymentState::Settled),
        settled_amount: Some(2_700),
        commission: Some(300),
        called_at: Some(100),
        accepted_at: Some(200),
        picked_at: Some(300),
        completed_at: Some(400),
        cancelled_at: None,
        updated_at: 400,
    }
}

fn expected_cancelled(call_id: &CallId) -> DeliveryView {
    DeliveryView {
        status: Some(DeliveryStatus::Cancelled),
        payment_state: Some(PaymentState::Voided),
        settled_amount: None,
        commission: None,
        picked_at: None,
        completed_at: None,
        cancelled_at: Some(250),
        updated_at: 260,
        ..expected_completed(call_id)
    }
}

/// Calls `visit` with every permutation of `items` (Heap's algorithm).
fn for_each_permutation<T: Clone>(items: &[T], mut visit: impl FnMut(&[T])) {
    let mut items = items.to_vec();
    let n = items.len();
    let mut c = vec![0; n];
    visit(&items);
    let mut i = 0;
    while i < n {
        if c[i] < i {
            items.swap(if i % 2 == 0 { 0 } else { c[i] }, i);
            visit(&items);
            c[i] += 1;
            i = 0;
        } else {
            c[i] = 0;
            i += 1;
        }
    }
}

/// xorshift64*: a fixed-seed generator so shuffles are reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

/// Applies many shuffles of `facts` with random duplicates mixed in and checks each against `expected`.
fn converges_with_duplicates(facts: &[Fact], expected: &DeliveryView) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..2_000 {
        let mut sequence: Vec<&Fact> = facts.iter().collect();
        for _ in 0..=rng.below(facts.len() + 1) {
            sequence.push(&facts[rng.below(facts.len())]);
        }
        for i in (1..sequence.len()).rev() {
            sequence.swap(i, rng.below(i + 1));
        }
        assert_eq!(&project(&sequence), expected, "round {round}: {sequence:?}");
    }
}

#[test]
fn a_completed_delivery_converges_in_every_order() {
    let call_id = CallId::generate();
    let facts = completed_delivery(&call_id);
    let expected = expected_completed(&call_id);
    let mut orders = 0;
    for_each_permutation(&facts, |order| {
        let refs: Vec<&Fact> = order.iter().collect();
        assert_eq!(project(&refs), expected, "order {order:?}");
        orders += 1;
    });
    assert_eq!(orders, 720);
}

#[test]
fn a_completed_delivery_converges_whatever_the_duplicates() {
    let call_id = CallId::generate();
    converges_with_duplicates(&completed_delivery(&call_id), &expected_completed(&call_id));
}

#[test]
fn a_cancelled_delivery_converges_in_every_order_and_with_duplicates() {
    let call_id = CallId::generate();
    let facts = cancelled_delivery(&call_id);
    let expected = expected_cancelled(&call_id);
    for_each_permutation(&facts, |order| {
        let refs: Vec<&Fact> = order.iter().collect();
        assert_eq!(project(&refs), expected, "order {order:?}");
    });
    converges_with_duplicates(&facts, &expected);
}

#[test]
fn an_event_before_the_call_creates_the_row_with_only_what_it_knows() {
    let call_id = CallId::generate();
    let picked = fact(
        &call_id,
        300,
        Change::DeliveryPicked {
            rider_id: Some(rider("r-1")),
        },
    );
    let row = apply(None, &picked);
    assert_eq!(row.status, Some(DeliveryStatus::Picked));
    assert_eq!(row.rider_id, Some(rider("r-1")));
    assert_eq!((row.restaurant_id.as_ref(), row.fee), (None, None));
    assert_eq!(row.updated_at, 300);

    let row = apply(Some(row), &placed(&call_id, 100));
    assert_eq!(
        row.status,
        Some(DeliveryStatus::Picked),
        "a late CallPlaced fills the fee but never moves the status back"
    );
    assert_eq!(row.fee, Some(fee(3_000)));
    assert_eq!((row.called_at, row.updated_at), (Some(100), 300));
}

#[test]
fn cancelled_is_terminal_whatever_arrives_after_it() {
    let call_id = CallId::generate();
    let cancelled = apply(None, &fact(&call_id, 250, Change::CallCancelled));
    let late = fact(&call_id, 200, Change::CallAccepted { rider_id: rider("r-1") });
    let row = apply(Some(cancelled), &late);
    assert_eq!(row.status, Some(DeliveryStatus::Cancelled));
    assert_eq!(row.rider_id, Some(rider("r-1")));
}

#[test]
fn a_call_known_only_from_payment_is_hidden_until_a_delivery_event_arrives() {
    let call_id = CallId::generate();
    let registered = apply(
        None,
        &fact(&call_id, 110, Change::PaymentRegistered { fee: Some(fee(3_000)) }),
    );
    assert!(!registered.is_visible());
    assert_eq!(registered.payment_state, Some(PaymentState::Registered));
    let orphan = apply(Some(registered), &fact(&call_id, 500, Change::PaymentVoided));
    assert!(
        !orphan.is_visible(),
        "an orphan fee voided by the call service never shows as a call"
    );
    let placed = apply(Some(orphan), &placed(&call_id, 100));
    assert!(placed.is_visible());
    assert_eq!(placed.payment_state, Some(PaymentState::Voided));
}

#[test]
fn a_completion_with_deferred_settlement_waits_for_payment_to_settle() {
    let call_id = CallId::generate();
    let completed = apply(
        Some(project(&[&placed(&call_id, 100)])),
        &fact(
            &call_id,
            400,
            Change::DeliveryCompleted {
                rider_id: Some(rider("r-1")),
                fee: None,
                split: None,
            },
        ),
    );
    assert_eq!(completed.status, Some(DeliveryStatus::Completed));
    assert_eq!(completed.payment_state, None);
    assert_eq!(completed.commission, None);
    let settled = apply(
        Some(completed),
        &fact(
            &call_id,
            900,
            Change::PaymentSettled {
                rider_id: Some(rider("r-1")),
                fee: Some(fee(3_000)),
                split: SPLIT,
            },
        ),
    );
    assert_eq!(settled.payment_state, Some(PaymentState::Settled));
    assert_eq!((settled.settled_amount, settled.commission), (Some(2_700), Some(300)));
}

fn placed_pending(call_id: &CallId, at: i64) -> Fact {
    let mut fact = placed(call_id, at);
    if let Change::CallPlaced { payment_pending, .. } = &mut fact.change {
        *payment_pending = true;
    }
    fact
}

#[test]
fn a_call_placed_with_its_fee_pending_shows_pending_until_payment_reports_in_any_order() {
    let call_id = CallId::generate();
    let pending = apply(None, &placed_pending(&call_id, 100));
    assert_eq!(pending.payment_state, Some(PaymentState::Pending));
    assert_eq!(
        apply(Some(pending), &placed_pending(&call_id, 100)).payment_state,
        Some(PaymentState::Pending)
    );

    let settled = Change::PaymentSettled {
        rider_id: Some(rider("r-1")),
        fee: Some(fee(3_000)),
        split: SPLIT,
    };
    for (report, expected) in [
        (
            Change::PaymentRegistered { fee: Some(fee(3_000)) },
            PaymentState::Registered,
        ),
        (settled, PaymentState::Settled),
        (Change::PaymentVoided, PaymentState::Voided),
    ] {
        let facts = [placed_pending(&call_id, 100), fact(&call_id, 5_000, report)];
        for_each_permutation(&facts, |order| {
            let row = project(&order.iter().collect::<Vec<_>>());
            assert_eq!(row.payment_state, Some(expected), "{order:?}");
        });
    }
}

#[test]
fn a_call_placed_with_its_fee_registered_says_nothing_about_payment() {
    let call_id = CallId::generate();
    assert_eq!(apply(None, &placed(&call_id, 100)).payment_state, None);
}

#[test]
fn payment_states_merge_by_rank() {
    use PaymentState::*;
    for a in PaymentState::ALL {
        for b in PaymentState::ALL {
            assert_eq!(a.merge(b), b.merge(a));
        }
        assert_eq!(a.merge(Voided), Voided);
        assert_eq!(PaymentState::from_name(a.as_str()), Some(a));
    }
    assert_eq!(Settled.merge(Registered), Settled);
    assert_eq!(Pending.merge(Registered), Registered);
}
