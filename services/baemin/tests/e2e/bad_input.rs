//! One test per row of DESIGN.md's error table that applies to the services, checking the status code
//! (and the field violations for INVALID_ARGUMENT).

use baemin_mesh_testkit::DbKind;
use baemin_proto::{call::v1 as call, payment::v1 as payment, report::v1 as report, rider::v1 as rider};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::{
    flows::place,
    support::{PATIENCE, TestMesh, request_id},
};

fn violated_fields(status: &Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let bad = status.get_details_bad_request().expect("google.rpc.BadRequest detail");
    bad.field_violations.into_iter().map(|v| v.field).collect()
}

fn unknown_call_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_out_of_range_fields_are_invalid_argument_with_field_violations() {
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let mut c = mesh.clients.call.clone();
    let place = |fee: i64, destination: String| call::PlaceCallRequest {
        request_id: request_id(),
        restaurant_id: "store-1".into(),
        destination,
        fee,
    };
    let zero_fee = c.place_call(place(0, "Seoul".into())).await.unwrap_err();
    assert_eq!(violated_fields(&zero_fee), ["fee"]);
    let too_much = c.place_call(place(1_000_001, "Seoul".into())).await.unwrap_err();
    assert_eq!(violated_fields(&too_much), ["fee"]);
    let everything_wrong = c
        .place_call(call::PlaceCallRequest {
            request_id: String::new(),
            restaurant_id: "a b".into(),
            destination: " ".into(),
            fee: -1,
        })
        .await
        .unwrap_err();
    let mut fields = violated_fields(&everything_wrong);
    fields.sort();
    assert_eq!(
        fields,
        ["destination", "fee", "request_id", "restaurant_id"],
        "every violation at once"
    );
    let oversized = c.place_call(place(1_000, "x".repeat(201))).await.unwrap_err();
    assert_eq!(violated_fields(&oversized), ["destination"]);
    let bad_id = c
        .get_call(call::GetCallRequest {
            call_id: "not-a-call".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad_id), ["call_id"]);
    let bad_page = c
        .list_calls(call::ListCallsRequest {
            page_size: -1,
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let mut fields = violated_fields(&bad_page);
    fields.sort();
    assert_eq!(fields, ["page_size", "page_token"]);
    let mut r = mesh.clients.rider.clone();
    let no_rider = r
        .accept_call(rider::AcceptCallRequest {
            call_id: unknown_call_id(),
            rider_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&no_rider), ["rider_id"]);
    let mut p = mesh.clients.payment.clone();
    let bad_fee = p
        .register_cost(payment::RegisterCostRequest {
            call_id: unknown_call_id(),
            fee: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad_fee), ["fee"]);
    let mut rep = mesh.clients.report.clone();
    let bad_view = rep
        .get_delivery_view(report::GetDeliveryViewRequest { call_id: "x".into() })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad_view), ["call_id"]);
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_calls_deliveries_payments_and_rows_are_not_found() {
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let id = unknown_call_id();
    let mut c = mesh.clients.call.clone();
    assert_eq!(
        c.get_call(call::GetCallRequest { call_id: id.clone() })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(
        c.cancel_call(call::CancelCallRequest {
            call_id: id.clone(),
            reason: String::new()
        })
        .await
        .unwrap_err()
        .code(),
        Code::NotFound
    );
    let mut r = mesh.clients.rider.clone();
    assert_eq!(
        r.get_delivery(rider::GetDeliveryRequest { call_id: id.clone() })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(
        r.accept_call(rider::AcceptCallRequest {
            call_id: id.clone(),
            rider_id: "r-1".into()
        })
        .await
        .unwrap_err()
        .code(),
        Code::NotFound
    );
    let mut p = mesh.clients.payment.clone();
    assert_eq!(
        p.get_payment(payment::GetPaymentRequest { call_id: id.clone() })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(
        p.settle(payment::SettleRequest {
            call_id: id.clone(),
            rider_id: "r-1".into()
        })
        .await
        .unwrap_err()
        .code(),
        Code::NotFound
    );
    let mut rep = mesh.clients.report.clone();
    assert_eq!(
        rep.get_delivery_view(report::GetDeliveryViewRequest { call_id: id })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn illegal_transitions_are_failed_precondition_and_change_nothing() {
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let call_id = place(&mesh, "store-7", 2_500).await.call_id;
    let clients = mesh.clients.clone();
    baemin::scenario::eventually(PATIENCE, "the open call", || {
        let mut r = clients.rider.clone();
        let call_id = call_id.clone();
        async move { Ok(r.get_delivery(rider::GetDeliveryRequest { call_id }).await.ok()) }
    })
    .await
    .unwrap();
    let mut r = mesh.clients.rider.clone();
    let who = |rider_id: &str| (call_id.clone(), rider_id.to_owned());
    let (id, rid) = who("r-1");
    // Pick up before accept.
    let early = r
        .pick_up(rider::PickUpRequest {
            call_id: id.clone(),
            rider_id: rid.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(early.code(), Code::FailedPrecondition);
    // Complete before pick-up.
    let early = r
        .complete_delivery(rider::CompleteDeliveryRequest {
            call_id: id.clone(),
            rider_id: rid.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(early.code(), Code::FailedPrecondition);
    r.accept_call(rider::AcceptCallRequest {
        call_id: id.clone(),
        rider_id: rid.clone(),
    })
    .await
    .unwrap();
    // Another rider acting on r-1's delivery.
    let bola = r
        .pick_up(rider::PickUpRequest {
            call_id: id.clone(),
            rider_id: "r-2".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bola.code(), Code::PermissionDenied);
    r.pick_up(rider::PickUpRequest {
        call_id: id.clone(),
        rider_id: rid.clone(),
    })
    .await
    .unwrap();
    // Cancel after pick-up, once the call service knows of it.
    baemin::scenario::wait_call(&mesh.clients, &id, PATIENCE, |c| c.status() == call::CallStatus::Picked)
        .await
        .unwrap();
    let mut c = mesh.clients.call.clone();
    let late = c
        .cancel_call(call::CancelCallRequest {
            call_id: id.clone(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);
    r.complete_delivery(rider::CompleteDeliveryRequest {
        call_id: id.clone(),
        rider_id: rid.clone(),
    })
    .await
    .unwrap();
    // Completed twice by its rider (a retry after a lost answer): answered with the completed delivery,
    // settled once; by another rider: refused.
    let twice = r
        .complete_delivery(rider::CompleteDeliveryRequest {
            call_id: id.clone(),
            rider_id: rid,
        })
        .await
        .unwrap()
        .into_inner()
        .delivery
        .unwrap();
    assert_eq!(twice.status(), rider::DeliveryStatus::Completed);
    let other = r
        .complete_delivery(rider::CompleteDeliveryRequest {
            call_id: id.clone(),
            rider_id: "someone-else".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::PermissionDenied);
    let mut p = mesh.clients.payment.clone();
    let paid = p
        .get_payment(payment::GetPaymentRequest { call_id: id.clone() })
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(
        (paid.status(), paid.rider_payout),
        (payment::PaymentStatus::Settled, 2_250)
    );
    // A settled fee cannot be voided.
    assert_eq!(
        p.void_cost(payment::VoidCostRequest { call_id: id })
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition
    );
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reusing_a_request_id_with_another_body_is_already_exists() {
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let mut c = mesh.clients.call.clone();
    let key = request_id();
    let first = call::PlaceCallRequest {
        request_id: key.clone(),
        restaurant_id: "store-8".into(),
        destination: "Daegu".into(),
        fee: 1_000,
    };
    c.place_call(first.clone()).await.unwrap();
    let other = c
        .place_call(call::PlaceCallRequest { fee: 2_000, ..first })
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::AlreadyExists);
    let mut p = mesh.clients.payment.clone();
    let listed = c
        .list_calls(call::ListCallsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .calls;
    assert_eq!(listed.len(), 1);
    let conflict = p
        .register_cost(payment::RegisterCostRequest {
            call_id: listed[0].call_id.clone(),
            fee: 9_999,
        })
        .await
        .unwrap_err();
    assert_eq!(conflict.code(), Code::AlreadyExists);
    mesh.stop().await;
}

use baemin_mesh_testkit::as_caller;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restaurant_reading_another_restaurants_call_is_permission_denied() {
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let theirs = place(&mesh, "store-b", 1_000).await.call_id;
    let mut c = mesh.clients.call.clone();
    let get = |call_id: &str| call::GetCallRequest {
        call_id: call_id.to_owned(),
    };
    let denied = c
        .get_call(as_caller("restaurant", "store-a", get(&theirs)))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let own = c
        .get_call(as_caller("restaurant", "store-b", get(&theirs)))
        .await
        .unwrap();
    assert_eq!(own.into_inner().call.unwrap().restaurant_id, "store-b");
    let cancel = call::CancelCallRequest {
        call_id: theirs.clone(),
        reason: String::new(),
    };
    assert_eq!(
        c.cancel_call(as_caller("restaurant", "store-a", cancel))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let placing_for_another = call::PlaceCallRequest {
        request_id: request_id(),
        restaurant_id: "store-b".into(),
        destination: "Seoul".into(),
        fee: 1_000,
    };
    let denied = c
        .place_call(as_caller("restaurant", "store-a", placing_for_another))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    baemin::scenario::wait_view(&mesh.clients, &theirs, PATIENCE, |_| true)
        .await
        .unwrap();
    let mut rep = mesh.clients.report.clone();
    let view = report::GetDeliveryViewRequest { call_id: theirs };
    let denied = rep
        .get_delivery_view(as_caller("restaurant", "store-a", view))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_identity_required_an_anonymous_call_is_unauthenticated_but_probes_still_work() {
    use baemin_mesh_testkit::{NatsServer, RunningService, TestDatabases};
    use baemin_proto::payment::v1::payment_service_client::PaymentServiceClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

    let nats = NatsServer::start().await;
    let mut dbs = TestDatabases::new(DbKind::Sqlite);
    let env = [
        ("NATS_URL", nats.url()),
        ("DATABASE_URL", dbs.url_for("payment").await),
        ("BAEMIN_REQUIRE_IDENTITY", "true".to_owned()),
    ];
    let payment = RunningService::start::<baemin_payment::Application>(&env).await;
    let channel = baemin::clients::channel(&payment.url()).unwrap();
    let mut client = PaymentServiceClient::new(channel.clone());
    let get = || payment::GetPaymentRequest {
        call_id: unknown_call_id(),
    };
    assert_eq!(
        client.get_payment(get()).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_eq!(
        client
            .get_payment(as_caller("admin", "ops", get()))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let health = HealthClient::new(channel)
        .check(HealthCheckRequest { service: String::new() })
        .await
        .unwrap();
    assert_eq!(health.into_inner().status(), ServingStatus::Serving);
    payment.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_outliving_the_callers_deadline_is_deadline_exceeded_and_stores_nothing() {
    use baemin_mesh_testkit::{NatsServer, RunningService, TestDatabases};
    use baemin_proto::call::v1::call_service_client::CallServiceClient;

    // A payment that accepts connections and never answers.
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let payment_url = format!("http://{}", black_hole.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = black_hole.accept().await {
            open.push(socket);
        }
    });
    let nats = NatsServer::start().await;
    let mut dbs = TestDatabases::new(DbKind::Sqlite);
    let env = [
        ("NATS_URL", nats.url()),
        ("DATABASE_URL", dbs.url_for("call").await),
        ("PAYMENT_URL", payment_url),
        ("PAYMENT_DEADLINE", "10s".to_owned()),
        ("CALL_REPAIR_AFTER", "20s".to_owned()),
    ];
    let call_service = RunningService::start::<baemin_call::Application>(&env).await;
    let mut client = CallServiceClient::new(baemin::clients::channel(&call_service.url()).unwrap());
    let mut request = tonic::Request::new(call::PlaceCallRequest {
        request_id: request_id(),
        restaurant_id: "store-11".into(),
        destination: "Ulsan".into(),
        fee: 2_000,
    });
    request.set_timeout(std::time::Duration::from_millis(300));
    let status = client.place_call(request).await.unwrap_err();
    // The server answers DEADLINE_EXCEEDED a little before the deadline it was sent (mesh/server's
    // deadline tests show that on a paused clock); tonic's client times the same deadline itself, and on a
    // busy machine its own timer can fire first (CANCELLED, "Timeout expired"). Either way the caller
    // is told in time, and what matters here is that nothing was stored.
    let client_timer = status.code() == Code::Cancelled && status.message() == "Timeout expired";
    assert!(status.code() == Code::DeadlineExceeded || client_timer, "{status:?}");
    let listed = client
        .list_calls(call::ListCallsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.calls.is_empty(), "nothing stored");
    call_service.stop().await;
    held.abort();
}
