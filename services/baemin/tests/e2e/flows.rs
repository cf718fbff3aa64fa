//! The delivery flows across services: the seed's scenario, fault isolation, the accept race,
//! idempotency and cancellation.

use baemin::scenario::{self, Script, eventually, wait_call, wait_view};
use baemin_mesh_testkit::DbKind;
use baemin_proto::{call::v1 as call, payment::v1 as payment, report::v1 as report, rider::v1 as rider};
use tonic::Code;

use crate::support::{PATIENCE, TestMesh, request_id};

async fn seed_scenario_completes_and_settles(kind: DbKind) {
    let mesh = TestMesh::start(kind).await;
    let mut lines = Vec::new();
    let script = Script {
        patience: PATIENCE,
        ..Script::default()
    };
    let outcome = scenario::play(&mesh.clients, &script, &mut |l| lines.push(l.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("scenario failed: {e:#}\n{}", lines.join("\n")));
    // 3,000 KRW at the default 10 % commission.
    assert_eq!(outcome.payment.status(), payment::PaymentStatus::Settled);
    assert_eq!((outcome.payment.commission, outcome.payment.rider_payout), (300, 2_700));
    assert_eq!(outcome.call.status(), call::CallStatus::Completed);
    assert_eq!(outcome.call.rider_id, "rider-7");
    assert_eq!(outcome.delivery.status(), rider::DeliveryStatus::Completed);
    assert_eq!(outcome.delivery.payout, 2_700);
    assert_eq!(outcome.view.status(), report::DeliveryStatus::Completed);
    assert_eq!(
        (outcome.view.settled_amount, outcome.view.commission, outcome.view.fee),
        (2_700, 300, 3_000)
    );
    assert_eq!(outcome.view.rider_id, "rider-7");
    let mut report = mesh.clients.report.clone();
    let stats = report.get_stats(report::GetStatsRequest {}).await.unwrap().into_inner();
    assert_eq!(
        (stats.completed, stats.settled_count, stats.revenue, stats.total_fees),
        (1, 1, 300, 3_000)
    );
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_scenario_on_sqlite() {
    seed_scenario_completes_and_settles(DbKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_scenario_on_postgres() {
    seed_scenario_completes_and_settles(DbKind::Postgres).await;
}

pub async fn place(mesh: &TestMesh, restaurant: &str, fee: i64) -> call::Call {
    let mut c = mesh.clients.call.clone();
    c.place_call(call::PlaceCallRequest {
        request_id: request_id(),
        restaurant_id: restaurant.into(),
        destination: "Seoul".into(),
        fee,
    })
    .await
    .expect("PlaceCall")
    .into_inner()
    .call
    .expect("call")
}

async fn rider_sees(mesh: &TestMesh, call_id: &str) -> rider::Delivery {
    let clients = mesh.clients.clone();
    eventually(PATIENCE, "the rider service to see the call", || {
        let mut r = clients.rider.clone();
        let call_id = call_id.to_owned();
        async move {
            Ok(r.get_delivery(rider::GetDeliveryRequest { call_id })
                .await
                .ok()
                .and_then(|d| d.into_inner().delivery))
        }
    })
    .await
    .expect("rider sees the call")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_service_keeps_taking_calls_while_rider_is_down_and_rider_catches_up() {
    let mut mesh = TestMesh::start(DbKind::Sqlite).await;
    mesh.stop_rider().await;
    let mut placed = Vec::new();
    for i in 0..5 {
        placed.push(place(&mesh, "store-2", 1_000 + i).await.call_id);
    }
    mesh.start_rider().await;
    for call_id in &placed {
        let delivery = rider_sees(&mesh, call_id).await;
        assert_eq!(delivery.status(), rider::DeliveryStatus::Open);
    }
    let mut r = mesh.clients.rider.clone();
    let open = r
        .list_open_calls(rider::ListOpenCallsRequest {
            page_size: 100,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let open_ids: Vec<_> = open.calls.iter().map(|d| d.call_id.clone()).collect();
    assert_eq!(
        open_ids, placed,
        "every call placed meanwhile is on the board, oldest first"
    );
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_ten_riders_racing_for_one_call_exactly_one_wins() {
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let call_id = place(&mesh, "store-3", 5_000).await.call_id;
    rider_sees(&mesh, &call_id).await;
    let attempts = (0..10).map(|i| {
        let mut r = mesh.clients.rider.clone();
        let call_id = call_id.clone();
        tokio::spawn(async move {
            let rider_id = format!("racer-{i}");
            (
                rider_id.clone(),
                r.accept_call(rider::AcceptCallRequest { call_id, rider_id }).await,
            )
        })
    });
    let results = futures::future::join_all(attempts).await;
    let mut winners = Vec::new();
    for result in results {
        let (rider_id, outcome) = result.expect("task");
        match outcome {
            Ok(_) => winners.push(rider_id),
            Err(status) => assert!(
                matches!(status.code(), Code::FailedPrecondition | Code::Aborted),
                "a loser gets FAILED_PRECONDITION or ABORTED, not {status:?}"
            ),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one winner: {winners:?}");
    let winner = &winners[0];
    let c = wait_call(&mesh.clients, &call_id, PATIENCE, |c| {
        c.status() == call::CallStatus::Accepted
    })
    .await
    .unwrap();
    assert_eq!(&c.rider_id, winner);
    let v = wait_view(&mesh.clients, &call_id, PATIENCE, |v| {
        v.status() == report::DeliveryStatus::Accepted
    })
    .await
    .unwrap();
    assert_eq!(&v.rider_id, winner);
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placing_twice_with_one_request_id_gives_one_call_and_settling_twice_pays_once() {
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let mut c = mesh.clients.call.clone();
    let request = call::PlaceCallRequest {
        request_id: request_id(),
        restaurant_id: "store-4".into(),
        destination: "Busan".into(),
        fee: 4_000,
    };
    let first = c.place_call(request.clone()).await.unwrap().into_inner().call.unwrap();
    let second = c.place_call(request.clone()).await.unwrap().into_inner().call.unwrap();
    assert_eq!(first.call_id, second.call_id);
    let listed = c
        .list_calls(call::ListCallsRequest {
            restaurant_id: "store-4".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.calls.len(), 1, "one call");

    let mut p = mesh.clients.payment.clone();
    let registered = p
        .get_payment(payment::GetPaymentRequest {
            call_id: first.call_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(
        (registered.status(), registered.fee),
        (payment::PaymentStatus::Registered, 4_000)
    );
    // Registering the same fee again is the same payment, not a second one.
    let again = p
        .register_cost(payment::RegisterCostRequest {
            call_id: first.call_id.clone(),
            fee: 4_000,
        })
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(again.payment_id, registered.payment_id);

    let settle = payment::SettleRequest {
        call_id: first.call_id.clone(),
        rider_id: "r-1".into(),
    };
    let s1 = p.settle(settle.clone()).await.unwrap().into_inner().payment.unwrap();
    let s2 = p.settle(settle).await.unwrap().into_inner().payment.unwrap();
    assert_eq!(s1, s2, "the second settle changes nothing");
    assert_eq!((s1.commission, s1.rider_payout), (400, 3_600));
    let v = wait_view(&mesh.clients, &first.call_id, PATIENCE, |v| {
        v.payment_state() == report::PaymentState::Settled
    })
    .await
    .unwrap();
    assert_eq!(v.settled_amount, 3_600);
    let mut r = mesh.clients.report.clone();
    let stats = r.get_stats(report::GetStatsRequest {}).await.unwrap().into_inner();
    assert_eq!((stats.settled_count, stats.revenue), (1, 400), "paid once");
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_an_accepted_call_voids_the_fee_and_the_rider_cannot_complete_it() {
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let call_id = place(&mesh, "store-5", 2_000).await.call_id;
    rider_sees(&mesh, &call_id).await;
    let mut r = mesh.clients.rider.clone();
    r.accept_call(rider::AcceptCallRequest {
        call_id: call_id.clone(),
        rider_id: "r-9".into(),
    })
    .await
    .unwrap();

    let mut c = mesh.clients.call.clone();
    let cancelled = c
        .cancel_call(call::CancelCallRequest {
            call_id: call_id.clone(),
            reason: "customer left".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .call
        .unwrap();
    assert_eq!(cancelled.status(), call::CallStatus::Cancelled);
    let mut p = mesh.clients.payment.clone();
    let voided = p
        .get_payment(payment::GetPaymentRequest {
            call_id: call_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(voided.status(), payment::PaymentStatus::Voided);

    // The rider service learns of the cancel asynchronously; pick-up and completion are refused.
    let clients = mesh.clients.clone();
    eventually(PATIENCE, "the rider service to drop the delivery", || {
        let mut r = clients.rider.clone();
        let call_id = call_id.clone();
        async move {
            let d = r
                .get_delivery(rider::GetDeliveryRequest { call_id })
                .await?
                .into_inner()
                .delivery;
            Ok(d.filter(|d| d.status() == rider::DeliveryStatus::Cancelled))
        }
    })
    .await
    .unwrap();
    let pick = r
        .pick_up(rider::PickUpRequest {
            call_id: call_id.clone(),
            rider_id: "r-9".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(pick.code(), Code::FailedPrecondition);
    let v = wait_view(&mesh.clients, &call_id, PATIENCE, |v| {
        v.status() == report::DeliveryStatus::Cancelled && v.payment_state() == report::PaymentState::Voided
    })
    .await
    .unwrap();
    assert_eq!(v.fee, 2_000);
    // Cancelling again changes nothing; the fee stays voided once.
    let again = c
        .cancel_call(call::CancelCallRequest {
            call_id: call_id.clone(),
            reason: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .call
        .unwrap();
    assert_eq!(again.status(), call::CallStatus::Cancelled);
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn place_call_is_unavailable_naming_payment_when_payment_is_down_and_nothing_is_stored() {
    let mut mesh = TestMesh::start(DbKind::Sqlite).await;
    if let Some(payment) = mesh.payment.take() {
        payment.stop().await;
    }
    let mut c = mesh.clients.call.clone();
    let status = c
        .place_call(call::PlaceCallRequest {
            request_id: request_id(),
            restaurant_id: "store-6".into(),
            destination: "Incheon".into(),
            fee: 1_500,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.message().contains("payment"), "{}", status.message());
    let listed = c
        .list_calls(call::ListCallsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.calls.is_empty(), "nothing stored");
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_newest_first_and_filter_by_restaurant_and_status() {
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            place(&mesh, if i % 2 == 0 { "even" } else { "odd" }, 100 + i)
                .await
                .call_id,
        );
    }
    let mut c = mesh.clients.call.clone();
    let page1 = c
        .list_calls(call::ListCallsRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        page1.calls.iter().map(|x| x.call_id.clone()).collect::<Vec<_>>(),
        vec![ids[4].clone(), ids[3].clone()]
    );
    let page2 = c
        .list_calls(call::ListCallsRequest {
            page_size: 2,
            page_token: page1.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        page2.calls.iter().map(|x| x.call_id.clone()).collect::<Vec<_>>(),
        vec![ids[2].clone(), ids[1].clone()]
    );
    let page3 = c
        .list_calls(call::ListCallsRequest {
            page_size: 2,
            page_token: page2.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page3.calls.len(), 1);
    assert!(page3.next_page_token.is_empty(), "last page has no token");
    let even = c
        .list_calls(call::ListCallsRequest {
            restaurant_id: "even".into(),
            status: call::CallStatus::Called as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(even.calls.len(), 3);
    let completed = c
        .list_calls(call::ListCallsRequest {
            status: call::CallStatus::Completed as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(completed.calls.is_empty());
    // The report pages the same way once the events arrived.
    // The newest call is the last event on the stream: once it shows, every row does.
    wait_view(&mesh.clients, &ids[4], PATIENCE, |_| true).await.unwrap();
    let mut r = mesh.clients.report.clone();
    let odd = eventually(PATIENCE, "both odd rows in the report", || {
        let mut r = r.clone();
        async move {
            let rows = r
                .list_delivery_views(report::ListDeliveryViewsRequest {
                    restaurant_id: "odd".into(),
                    ..Default::default()
                })
                .await?
                .into_inner()
                .views;
            Ok((rows.len() == 2).then_some(rows))
        }
    })
    .await
    .unwrap();
    assert_eq!(odd[0].call_id, ids[3]);
    let stats = r.get_stats(report::GetStatsRequest {}).await.unwrap().into_inner();
    assert_eq!(stats.total_fees, 100 + 101 + 102 + 103 + 104);
    mesh.stop().await;
}
