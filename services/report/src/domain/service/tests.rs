use std::{sync::Arc, time::Duration};

use baemin_kernel::{CallId, DeliveryStatus, PageSize, PageToken, RestaurantId, RiderId};
use baemin_mesh_events::{Envelope, Event, EventHandler, new_envelope};
use baemin_proto::events::{
    subject_of,
    v1::{
        CallAccepted, CallCancelled, CallPlaced, DeliveryCompleted, DeliveryPicked, PaymentRegistered, PaymentSettled,
        PaymentVoided,
    },
};
use futures::StreamExt;

use super::{ListQuery, ReportApp};
use crate::{
    domain::{Filter, PaymentState, ReportError, Stats, Viewer},
    inbound::events::Projector,
    outbound::migration::Migrator,
};

/// A fresh in-memory SQLite database (PostgreSQL is covered by `tests/grpc.rs` through the testkit).
async fn app() -> Arc<ReportApp> {
    Arc::new(ReportApp::new(database().await))
}

async fn database() -> baemin_mesh_store::Db {
    baemin_mesh_store::connect::<Migrator>("sqlite::memory:", 1)
        .await
        .expect("in-memory database")
}

fn envelope(call_id: &CallId, at: i64, event: Event) -> Envelope {
    let mut envelope = new_envelope("test", call_id.as_str(), event);
    envelope.occurred_at = Some(baemin_proto::time::from_millis(at));
    envelope
}

async fn deliver(app: &Arc<ReportApp>, envelope: Envelope) {
    let event = envelope.event.as_ref().expect("an event");
    let subject = subject_of(event);
    Projector::new(app.clone())
        .handle(subject, envelope)
        .await
        .expect("applied");
}

fn placed(restaurant: &str, fee: i64) -> Event {
    Event::CallPlaced(CallPlaced {
        restaurant_id: restaurant.into(),
        destination: "Gangnam-gu 1".into(),
        fee,
        payment_pending: false,
    })
}

fn accepted(rider: &str) -> Event {
    Event::CallAccepted(CallAccepted { rider_id: rider.into() })
}

fn picked(rider: &str) -> Event {
    Event::DeliveryPicked(DeliveryPicked { rider_id: rider.into() })
}

fn completed(rider: &str, fee: i64, commission: i64) -> Event {
    Event::DeliveryCompleted(DeliveryCompleted {
        rider_id: rider.into(),
        fee,
        commission,
        rider_payout: fee - commission,
        settlement_pending: false,
    })
}

fn settled(rider: &str, fee: i64, commission: i64) -> Event {
    Event::PaymentSettled(PaymentSettled {
        payment_id: "p".into(),
        rider_id: rider.into(),
        fee,
        commission,
        rider_payout: fee - commission,
    })
}

fn registered(fee: i64) -> Event {
    Event::PaymentRegistered(PaymentRegistered {
        payment_id: "p".into(),
        fee,
    })
}

fn query() -> ListQuery {
    ListQuery {
        page_size: PageSize::parse(0, "page_size").unwrap(),
        page_token: None,
        filter: Filter::default(),
    }
}

#[tokio::test]
async fn stats_count_a_duplicate_event_once_and_revenue_only_from_settled_rows() {
    let app = app().await;
    // Completed and settled: 3,000 KRW, 300 commission; pick-up after 3 s, completion after 4 s.
    let a = CallId::generate();
    for (at, event) in [
        (1_000, placed("store-1", 3_000)),
        (2_000, accepted("r-1")),
        (4_000, picked("r-1")),
        (4_900, settled("r-1", 3_000, 300)),
        (5_000, completed("r-1", 3_000, 300)),
    ] {
        deliver(&app, envelope(&a, at, event)).await;
    }
    // Picked up after 2 s, not delivered yet.
    let b = CallId::generate();
    for (at, event) in [(1_000, placed("store-1", 5_000)), (3_000, picked("r-2"))] {
        deliver(&app, envelope(&b, at, event)).await;
    }
    // Cancelled: its fee is not counted.
    let c = CallId::generate();
    deliver(&app, envelope(&c, 1_000, placed("store-2", 7_000))).await;
    deliver(
        &app,
        envelope(&c, 1_500, Event::CallCancelled(CallCancelled::default())),
    )
    .await;
    // Placed, and the very same event delivered twice.
    let d = CallId::generate();
    let twice = envelope(&d, 1_000, placed("store-2", 2_000));
    deliver(&app, twice.clone()).await;
    deliver(&app, twice).await;
    // Completed with a split but its fee voided: the commission is not revenue.
    let f = CallId::generate();
    for (at, event) in [
        (1_000, placed("store-3", 4_000)),
        (7_000, completed("r-3", 4_000, 400)),
        (7_500, Event::PaymentVoided(PaymentVoided::default())),
    ] {
        deliver(&app, envelope(&f, at, event)).await;
    }
    // Known only from payment (an orphan fee): not a call anyone can see.
    let orphan = CallId::generate();
    deliver(&app, envelope(&orphan, 1_000, registered(9_000))).await;

    assert_eq!(
        app.stats(&Viewer::Company).await.unwrap(),
        Stats {
            called: 1,
            accepted: 0,
            picked: 1,
            completed: 2,
            cancelled: 1,
            total_fees: 3_000 + 5_000 + 2_000 + 4_000,
            revenue: 300,
            settled_count: 1,
            total_payouts: 2_700,
            mean_millis_to_pick_up: (3_000 + 2_000) / 2,
            mean_millis_to_complete: (4_000 + 6_000) / 2,
        }
    );
    let voided = app.get(&Viewer::Company, &f).await.unwrap();
    assert_eq!(voided.payment_state, Some(PaymentState::Voided));
}

#[tokio::test]
async fn stats_of_an_empty_report_are_zero() {
    assert_eq!(app().await.stats(&Viewer::Company).await.unwrap(), Stats::default());
}

#[tokio::test]
async fn a_redelivered_event_changes_nothing_the_second_time() {
    let app = app().await;
    let call_id = CallId::generate();
    let envelope = envelope(&call_id, 1_000, placed("store-1", 3_000));
    let fact = crate::inbound::events::fact_of(&envelope).unwrap();
    let subject = "baemin.events.call.placed";
    assert!(app.project(subject, &envelope.event_id, &fact).await.unwrap());
    assert!(!app.project(subject, &envelope.event_id, &fact).await.unwrap());
    // Only the inbox can tell this one apart: the same event id with another fee would change the row.
    let tampered = Envelope {
        event: Some(placed("store-1", 9_999)),
        ..envelope.clone()
    };
    let tampered = crate::inbound::events::fact_of(&tampered).unwrap();
    assert!(!app.project(subject, &envelope.event_id, &tampered).await.unwrap());
    assert_eq!(
        app.get(&Viewer::Company, &call_id).await.unwrap().fee.map(|f| f.krw()),
        Some(3_000)
    );
}

#[tokio::test]
async fn unknown_calls_and_calls_known_only_from_payment_are_not_found() {
    let app = app().await;
    let unknown = CallId::generate();
    assert!(matches!(
        app.get(&Viewer::Company, &unknown).await,
        Err(ReportError::NotFound(_))
    ));
    deliver(&app, envelope(&unknown, 1_000, registered(3_000))).await;
    assert!(matches!(
        app.get(&Viewer::Company, &unknown).await,
        Err(ReportError::NotFound(_))
    ));
    deliver(&app, envelope(&unknown, 900, placed("store-1", 3_000))).await;
    let view = app.get(&Viewer::Company, &unknown).await.unwrap();
    assert_eq!(view.status, Some(DeliveryStatus::Called));
    assert_eq!(view.payment_state, Some(PaymentState::Registered));
    assert_eq!((view.called_at, view.updated_at), (Some(900), 1_000));
}

#[tokio::test]
async fn lists_page_newest_first_and_filter() {
    let app = app().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let call_id = CallId::generate();
        let restaurant = if i % 2 == 0 { "store-even" } else { "store-odd" };
        deliver(&app, envelope(&call_id, 1_000, placed(restaurant, 1_000))).await;
        ids.push(call_id);
    }
    deliver(&app, envelope(&ids[1], 2_000, accepted("r-9"))).await;

    let mut seen = Vec::new();
    let mut q = ListQuery {
        page_size: PageSize::parse(2, "page_size").unwrap(),
        ..query()
    };
    loop {
        let page = app.list(&Viewer::Company, &q).await.unwrap();
        seen.extend(page.views.iter().map(|v| v.call_id.clone()));
        match page.next_page_token {
            Some(token) => {
                let encoded = token.encode();
                q.page_token = PageToken::parse(&encoded, "page_token").unwrap();
            }
            None => break,
        }
    }
    let newest_first: Vec<_> = ids.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    let by_restaurant = app
        .list(
            &Viewer::Company,
            &ListQuery {
                filter: Filter {
                    restaurant_id: Some(RestaurantId::parse("store-even", "restaurant_id").unwrap()),
                    ..Filter::default()
                },
                ..query()
            },
        )
        .await
        .unwrap();
    assert_eq!(by_restaurant.views.len(), 3);
    assert!(by_restaurant.next_page_token.is_none());

    let by_rider = app
        .list(
            &Viewer::Company,
            &ListQuery {
                filter: Filter {
                    rider_id: Some(RiderId::parse("r-9", "rider_id").unwrap()),
                    status: Some(DeliveryStatus::Accepted),
                    ..Filter::default()
                },
                ..query()
            },
        )
        .await
        .unwrap();
    let only: Vec<_> = by_rider.views.iter().map(|v| &v.call_id).collect();
    assert_eq!(only, [&ids[1]]);
}

#[tokio::test]
async fn a_watcher_gets_the_snapshot_then_each_committed_change_of_its_call() {
    let app = app().await;
    let mine = CallId::generate();
    let other = CallId::generate();
    deliver(&app, envelope(&mine, 1_000, placed("store-1", 3_000))).await;
    deliver(&app, envelope(&other, 1_000, placed("store-1", 3_000))).await;

    let mut stream = Box::pin(app.watch(Viewer::Company, Some(mine.clone()), true));
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(
        (first.call_id.clone(), first.status),
        (mine.clone(), Some(DeliveryStatus::Called))
    );

    deliver(&app, envelope(&other, 2_000, accepted("r-1"))).await;
    let again = envelope(&mine, 2_000, accepted("r-1"));
    deliver(&app, again.clone()).await;
    deliver(&app, again).await;
    deliver(&app, envelope(&mine, 3_000, picked("r-1"))).await;

    let accepted = stream.next().await.unwrap().unwrap();
    assert_eq!(
        (accepted.call_id.clone(), accepted.status),
        (mine.clone(), Some(DeliveryStatus::Accepted))
    );
    let picked = stream.next().await.unwrap().unwrap();
    assert_eq!(
        picked.status,
        Some(DeliveryStatus::Picked),
        "the duplicate was not announced"
    );

    app.close_watches();
    assert!(matches!(stream.next().await, Some(Err(ReportError::ShuttingDown))));
    assert!(stream.next().await.is_none());
}

#[tokio::test]
async fn a_watcher_without_snapshot_sees_only_new_changes_of_every_call() {
    let app = app().await;
    let old = CallId::generate();
    deliver(&app, envelope(&old, 1_000, placed("store-1", 3_000))).await;
    let mut stream = Box::pin(app.watch(Viewer::Company, None, false));
    let new = CallId::generate();
    deliver(&app, envelope(&new, 2_000, placed("store-1", 3_000))).await;
    let next = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("a change")
        .unwrap()
        .unwrap();
    assert_eq!(next.call_id, new);
}

/// On PostgreSQL with a real pool, so the events truly race (SQLite's single connection would serialise
/// them and the test could not fail without the row lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_events_of_one_call_lose_no_field() {
    let mut databases = baemin_mesh_testkit::TestDatabases::new(baemin_mesh_testkit::DbKind::Postgres);
    let url = databases.url_for("report").await;
    let db = baemin_mesh_store::connect::<Migrator>(&url, 8)
        .await
        .expect("PostgreSQL test database");
    let app = Arc::new(ReportApp::new(db));
    let call_id = CallId::generate();
    let events = [
        (1_000, placed("store-1", 3_000)),
        (1_100, registered(3_000)),
        (2_000, accepted("r-1")),
        (3_000, picked("r-1")),
        (4_900, settled("r-1", 3_000, 300)),
        (5_000, completed("r-1", 3_000, 300)),
    ];
    let tasks: Vec<_> = events
        .into_iter()
        .rev()
        .map(|(at, event)| {
            let app = app.clone();
            let envelope = envelope(&call_id, at, event);
            tokio::spawn(async move { deliver(&app, envelope).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let view = app.get(&Viewer::Company, &call_id).await.unwrap();
    assert_eq!(view.status, Some(DeliveryStatus::Completed));
    assert_eq!(view.payment_state, Some(PaymentState::Settled));
    assert_eq!(view.restaurant_id.unwrap().as_str(), "store-1");
    assert_eq!(view.rider_id.unwrap().as_str(), "r-1");
    assert_eq!((view.settled_amount, view.commission), (Some(2_700), Some(300)));
    assert_eq!(
        (view.called_at, view.accepted_at, view.picked_at, view.completed_at),
        (Some(1_000), Some(2_000), Some(3_000), Some(5_000))
    );
}

#[tokio::test]
async fn a_watcher_that_falls_behind_is_sent_the_current_rows_again() {
    let app = Arc::new(ReportApp::with_watch_buffer(database().await, 2));
    let mine = CallId::generate();
    let mut stream = Box::pin(app.watch(Viewer::Company, Some(mine.clone()), false));
    deliver(&app, envelope(&mine, 1_000, placed("store-1", 3_000))).await;
    for _ in 0..3 {
        let other = CallId::generate();
        deliver(&app, envelope(&other, 1_000, placed("store-1", 3_000))).await;
    }
    deliver(&app, envelope(&mine, 2_000, accepted("r-1"))).await;
    // The CallPlaced of `mine` was pushed out of the buffer: the current row comes instead.
    let resent = stream.next().await.unwrap().unwrap();
    assert_eq!(
        (resent.call_id.clone(), resent.status),
        (mine.clone(), Some(DeliveryStatus::Accepted))
    );
}

#[tokio::test]
async fn a_restaurant_reads_only_its_own_calls_and_not_the_stats() {
    let app = app().await;
    let mine = CallId::generate();
    let theirs = CallId::generate();
    deliver(&app, envelope(&mine, 1_000, placed("store-1", 3_000))).await;
    deliver(&app, envelope(&theirs, 1_000, placed("store-2", 3_000))).await;
    let me = Viewer::Restaurant(RestaurantId::parse("store-1", "restaurant_id").unwrap());

    assert_eq!(app.get(&me, &mine).await.unwrap().call_id, mine);
    assert!(matches!(
        app.get(&me, &theirs).await,
        Err(ReportError::PermissionDenied(_))
    ));
    let listed = app.list(&me, &query()).await.unwrap();
    let ids: Vec<_> = listed.views.iter().map(|v| &v.call_id).collect();
    assert_eq!(ids, [&mine]);
    assert!(matches!(app.stats(&me).await, Err(ReportError::PermissionDenied(_))));

    let mut stream = Box::pin(app.watch(me, None, true));
    assert_eq!(stream.next().await.unwrap().unwrap().call_id, mine);
    deliver(&app, envelope(&theirs, 2_000, accepted("r-1"))).await;
    deliver(&app, envelope(&mine, 2_000, accepted("r-1"))).await;
    let next = stream.next().await.unwrap().unwrap();
    assert_eq!(
        (next.call_id, next.status),
        (mine, Some(DeliveryStatus::Accepted)),
        "another restaurant's change is not sent"
    );
}

#[tokio::test]
async fn events_applied_together_give_the_rows_one_by_one_gives_and_a_redelivered_one_applies_nothing() {
    let (together, one_by_one) = (app().await, app().await);
    let call_id = CallId::generate();
    let events = [
        envelope(&call_id, 1_000, placed("store-1", 3_000)),
        envelope(&call_id, 1_001, registered(3_000)),
        envelope(&call_id, 2_000, accepted("rider-1")),
    ];
    let batch: Vec<(String, Envelope)> = events
        .iter()
        .map(|e| (subject_of(e.event.as_ref().unwrap()).to_owned(), e.clone()))
        .collect();
    // The first again at the end: a redelivery inside the batch.
    let mut with_repeat = batch.clone();
    with_repeat.push(batch[0].clone());
    Projector::new(together.clone()).handle_all(&with_repeat).await.unwrap();
    for event in &events {
        deliver(&one_by_one, event.clone()).await;
    }
    assert_eq!(
        together.get(&Viewer::Company, &call_id).await.unwrap(),
        one_by_one.get(&Viewer::Company, &call_id).await.unwrap()
    );
    // The whole batch again: all recognised, nothing changes.
    Projector::new(together.clone()).handle_all(&batch).await.unwrap();
    assert_eq!(
        together.get(&Viewer::Company, &call_id).await.unwrap(),
        one_by_one.get(&Viewer::Company, &call_id).await.unwrap()
    );
}

/// Two replicas on one PostgreSQL database applying batches that hold the same calls in opposite
/// orders: each takes the calls' locks in one order, so neither deadlocks (PostgreSQL would abort one
/// with 40P01 after its `deadlock_timeout`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_applying_batches_of_the_same_calls_in_opposite_orders_do_not_deadlock() {
    let mut databases = baemin_mesh_testkit::TestDatabases::new(baemin_mesh_testkit::DbKind::Postgres);
    let url = databases.url_for("report").await;
    let replica = || async {
        let db = baemin_mesh_store::connect::<Migrator>(&url, 4)
            .await
            .expect("PostgreSQL test database");
        Projector::new(Arc::new(ReportApp::new(db)))
    };
    let (first, second) = (Arc::new(replica().await), Arc::new(replica().await));
    let batch = |events: Vec<Envelope>| -> Vec<(String, Envelope)> {
        events
            .into_iter()
            .map(|e| (subject_of(e.event.as_ref().unwrap()).to_owned(), e))
            .collect()
    };
    for _ in 0..20 {
        let (a, b) = (CallId::generate(), CallId::generate());
        let forward = batch(vec![
            envelope(&a, 1_000, placed("store-1", 3_000)),
            envelope(&b, 1_000, placed("store-1", 3_000)),
        ]);
        let backward = batch(vec![
            envelope(&b, 1_100, registered(3_000)),
            envelope(&a, 1_100, registered(3_000)),
        ]);
        let (one, two) = (first.clone(), second.clone());
        let (x, y) = tokio::join!(
            tokio::spawn(async move { one.handle_all(&forward).await }),
            tokio::spawn(async move { two.handle_all(&backward).await }),
        );
        x.unwrap().expect("the first replica's batch");
        y.unwrap().expect("the second replica's batch");
    }
}
