//! Events on the wire: duplicates and out-of-order deliveries converge; health and reflection are served.

use async_nats::jetstream;
use baemin_mesh_events::{Event, new_envelope};
use baemin_mesh_testkit::DbKind;
use baemin_proto::{
    call::v1 as call,
    events::v1::{CallAccepted, CallPlaced, DeliveryCompleted, DeliveryPicked, PaymentSettled},
    report::v1 as report,
};
use prost::Message;

use crate::{
    flows::place,
    support::{PATIENCE, TestMesh},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_and_out_of_order_events_leave_call_and_report_in_the_right_final_state() {
    let mesh = TestMesh::processes(DbKind::Sqlite, &[]).await;
    let placed = place(&mesh, "store-9", 5_000).await;
    let id = placed.call_id.clone();
    // The rider side's events, as if another rider service produced them: newest first, each twice.
    // No Nats-Msg-Id, so the broker does not dedupe: the consumers must (inbox first; the merges are
    // idempotent too, and mesh/events has the unit test that shows the inbox alone recognises a repeat).
    let events = [
        Event::DeliveryCompleted(DeliveryCompleted {
            rider_id: "r-5".into(),
            fee: 5_000,
            commission: 500,
            rider_payout: 4_500,
            ..Default::default()
        }),
        Event::PaymentSettled(PaymentSettled {
            payment_id: "p".into(),
            rider_id: "r-5".into(),
            fee: 5_000,
            commission: 500,
            rider_payout: 4_500,
        }),
        Event::DeliveryPicked(DeliveryPicked { rider_id: "r-5".into() }),
        Event::CallAccepted(CallAccepted { rider_id: "r-5".into() }),
    ];
    let client = async_nats::connect(mesh.nats.url()).await.unwrap();
    let js = jetstream::new(client);
    for event in events {
        let envelope = new_envelope("test", &id, event.clone());
        let subject = baemin_proto::events::subject_of(&event);
        for _ in 0..2 {
            js.publish(subject, envelope.encode_to_vec().into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    }
    let call = baemin::scenario::wait_call(&mesh.clients, &id, PATIENCE, |c| {
        c.status() == call::CallStatus::Completed
    })
    .await
    .unwrap();
    assert_eq!(
        (call.rider_id.as_str(), call.settled_amount, call.fee),
        ("r-5", 4_500, 5_000)
    );
    // A marker published last: once its row shows, the report has reached the end of the stream (the
    // call's own events, applied in order in their lane, are waited for below).
    let marker = uuid::Uuid::now_v7().to_string();
    let placed = Event::CallPlaced(CallPlaced {
        restaurant_id: "marker".into(),
        destination: "x".into(),
        fee: 1,
        ..Default::default()
    });
    let envelope = new_envelope("test", &marker, placed.clone());
    js.publish(
        baemin_proto::events::subject_of(&placed),
        envelope.encode_to_vec().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    baemin::scenario::wait_view(&mesh.clients, &marker, PATIENCE, |_| true)
        .await
        .unwrap();
    // The marker's lane may run ahead of this call's (events apply in order per call id): wait for
    // every fact of the call, the oldest events of which were published last.
    let view = baemin::scenario::wait_view(&mesh.clients, &id, PATIENCE, |v| {
        v.status() == report::DeliveryStatus::Completed
            && v.fee == 5_000
            && v.called_at.is_some()
            && v.accepted_at.is_some()
            && v.picked_at.is_some()
    })
    .await
    .unwrap();
    assert_eq!(
        (view.rider_id.as_str(), view.settled_amount, view.commission),
        ("r-5", 4_500, 500)
    );
    assert_eq!(view.payment_state(), report::PaymentState::Settled);
    assert!(view.called_at.is_some() && view.accepted_at.is_some() && view.picked_at.is_some());
    // Counted once, although every event arrived twice.
    let mut r = mesh.clients.report.clone();
    let stats = r.get_stats(report::GetStatsRequest {}).await.unwrap().into_inner();
    assert_eq!(
        (stats.completed, stats.settled_count, stats.revenue, stats.total_payouts),
        (1, 1, 500, 4_500)
    );
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_accept_never_moves_a_cancelled_call_back() {
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let id = place(&mesh, "store-10", 1_200).await.call_id;
    let mut c = mesh.clients.call.clone();
    c.cancel_call(call::CancelCallRequest {
        call_id: id.clone(),
        reason: "closed".into(),
    })
    .await
    .unwrap();
    let client = async_nats::connect(mesh.nats.url()).await.unwrap();
    let js = jetstream::new(client);
    let late = Event::CallAccepted(CallAccepted {
        rider_id: "r-late".into(),
    });
    let envelope = new_envelope("test", &id, late.clone());
    js.publish(baemin_proto::events::subject_of(&late), envelope.encode_to_vec().into())
        .await
        .unwrap()
        .await
        .unwrap();
    // A marker accepted after it on the same subject: once the call service shows the marker ACCEPTED,
    // its in-order durable consumer has applied the late accept too.
    let marker = place(&mesh, "store-10", 1_300).await.call_id;
    let accepted = Event::CallAccepted(CallAccepted {
        rider_id: "r-marker".into(),
    });
    let envelope = new_envelope("test", &marker, accepted.clone());
    js.publish(
        baemin_proto::events::subject_of(&accepted),
        envelope.encode_to_vec().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    baemin::scenario::wait_call(&mesh.clients, &marker, PATIENCE, |c| {
        c.status() == call::CallStatus::Accepted
    })
    .await
    .unwrap();
    let call = c
        .get_call(call::GetCallRequest { call_id: id.clone() })
        .await
        .unwrap()
        .into_inner()
        .call
        .unwrap();
    assert_eq!(
        call.status(),
        call::CallStatus::Cancelled,
        "a late accept never moves a cancelled call"
    );
    let view = baemin::scenario::wait_view(&mesh.clients, &id, PATIENCE, |v| v.rider_id == "r-late")
        .await
        .unwrap();
    assert_eq!(view.status(), report::DeliveryStatus::Cancelled);
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_reports_serving_and_answers_reflection_v1_and_v1alpha() {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let services = [
        (mesh.call.as_ref().unwrap().url(), "baemin.call.v1.CallService"),
        (mesh.rider.as_ref().unwrap().url(), "baemin.rider.v1.RiderService"),
        (mesh.payment.as_ref().unwrap().url(), "baemin.payment.v1.PaymentService"),
        (mesh.report.as_ref().unwrap().url(), "baemin.report.v1.ReportService"),
    ];
    for (url, name) in services {
        let channel = baemin::clients::channel(&url).unwrap();
        let mut health = HealthClient::new(channel.clone());
        for service in ["", name] {
            let status = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(status.status(), ServingStatus::Serving, "{name} health of {service:?}");
        }
        assert!(
            reflection::lists_v1(channel.clone()).await.contains(&name.to_owned()),
            "{name} in v1 reflection"
        );
        assert!(
            reflection::lists_v1alpha(channel).await.contains(&name.to_owned()),
            "{name} in v1alpha reflection"
        );
    }
    mesh.stop().await;
}

pub(crate) mod reflection {
    use futures::StreamExt;
    use tonic::transport::Channel;

    pub async fn lists_v1(channel: Channel) -> Vec<String> {
        use tonic_reflection::pb::v1::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut client = ServerReflectionClient::new(channel);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = client
            .server_reflection_info(tokio_stream::once(request))
            .await
            .unwrap()
            .into_inner();
        match responses.next().await.unwrap().unwrap().message_response {
            Some(MessageResponse::ListServicesResponse(list)) => list.service.into_iter().map(|s| s.name).collect(),
            other => panic!("unexpected reflection answer {other:?}"),
        }
    }

    pub async fn lists_v1alpha(channel: Channel) -> Vec<String> {
        use tonic_reflection::pb::v1alpha::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut client = ServerReflectionClient::new(channel);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = client
            .server_reflection_info(tokio_stream::once(request))
            .await
            .unwrap()
            .into_inner();
        match responses.next().await.unwrap().unwrap().message_response {
            Some(MessageResponse::ListServicesResponse(list)) => list.service.into_iter().map(|s| s.name).collect(),
            other => panic!("unexpected reflection answer {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_event_is_dead_lettered_with_its_reason_consumers_go_on_and_it_can_be_redriven() {
    use baemin_mesh_events::deadletter;
    let mesh = TestMesh::start(DbKind::Sqlite).await;
    let client = async_nats::connect(mesh.nats.url()).await.unwrap();
    let js = jetstream::new(client);
    js.publish(
        "baemin.events.call.placed",
        bytes::Bytes::from_static(b"\xff\xffnot protobuf"),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    // The rider service and the report both consume call.placed: each keeps its own dead letter.
    let letters = baemin::scenario::eventually(PATIENCE, "two dead letters", || {
        let js = js.clone();
        async move {
            let letters = deadletter::list(&js).await?;
            Ok((letters.len() == 2).then_some(letters))
        }
    })
    .await
    .unwrap();
    let mut consumers: Vec<_> = letters.iter().map(|l| l.consumer.as_str()).collect();
    consumers.sort();
    assert_eq!(
        consumers,
        ["report__baemin_events_all", "rider__baemin_events_call_placed"]
    );
    for letter in &letters {
        assert_eq!(letter.original_subject, "baemin.events.call.placed");
        assert!(letter.reason.contains("undecodable"), "{}", letter.reason);
        assert_eq!(&letter.payload[..], b"\xff\xffnot protobuf");
    }
    // The consumers went on: a real call placed afterwards reaches the rider and the report.
    let call_id = place(&mesh, "store-12", 1_000).await.call_id;
    baemin::scenario::wait_view(&mesh.clients, &call_id, PATIENCE, |_| true)
        .await
        .unwrap();
    // Re-driving puts it back on its subject (both consumers see it again and, still poison, keep it).
    let redriven = deadletter::redrive(&js, letters[0].sequence).await.unwrap();
    assert_eq!(redriven.sequence, letters[0].sequence);
    let after = baemin::scenario::eventually(PATIENCE, "the re-driven letter dead again", || {
        let js = js.clone();
        async move {
            let letters = deadletter::list(&js).await?;
            Ok((letters.len() == 3).then_some(letters))
        }
    })
    .await
    .unwrap();
    assert!(
        after.iter().all(|l| l.sequence != letters[0].sequence),
        "the re-driven letter left the list"
    );
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_starting_without_nats_waits_for_it_and_is_not_serving_until_it_is_there() {
    let mut nats = baemin_mesh_testkit::NatsServer::start().await;
    nats.stop();
    let mut dbs = baemin_mesh_testkit::TestDatabases::new(DbKind::Sqlite);
    let addr = format!("127.0.0.1:{}", baemin_mesh_testkit::free_port());
    let env = vec![
        ("NATS_URL", nats.url()),
        ("DATABASE_URL", dbs.url_for("report").await),
        ("GRPC_ADDR", addr.clone()),
        ("STARTUP_TIMEOUT", "60s".to_owned()),
    ];
    let starting =
        tokio::spawn(
            async move { baemin_mesh_testkit::RunningService::start::<baemin_report::Application>(&env).await },
        );
    // Start-up keeps retrying NATS; meanwhile the port is bound but nothing reports SERVING, so a
    // readiness probe keeps the instance out of rotation.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(!starting.is_finished(), "start-up waits for NATS");
    assert!(!baemin_mesh_server::probe::is_serving(&format!("http://{addr}")).await);
    nats.restart().await;
    let running = tokio::time::timeout(PATIENCE, starting)
        .await
        .expect("start-up finishes once NATS is there")
        .unwrap();
    assert!(baemin_mesh_server::probe::is_serving(&running.url()).await);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_the_shutdown_delay_health_says_not_serving_but_calls_are_still_answered() {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let mut mesh =
        crate::support::TestMesh::start_with(baemin_mesh_testkit::DbKind::Sqlite, &[("SHUTDOWN_DELAY", "2s")]).await;
    let Some(crate::support::Running::InProcess(payment)) = mesh.payment.take() else {
        panic!("payment runs in process");
    };
    payment.begin_shutdown();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let channel = baemin::clients::channel(&payment.url()).unwrap();
    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest { service: String::new() })
        .await
        .expect("still answering")
        .into_inner();
    assert_eq!(
        health.status(),
        ServingStatus::NotServing,
        "load balancers are told to stop"
    );
    let admin: std::net::SocketAddr = payment.admin_url().trim_start_matches("http://").parse().unwrap();
    let (ready, _, _) = crate::gateway::http1(admin, "GET", "/readyz", &[], &[]).await;
    assert!(ready.contains("503"), "so are HTTP probes: {ready}");
    let status = baemin_proto::payment::v1::payment_service_client::PaymentServiceClient::new(channel)
        .get_payment(baemin_proto::payment::v1::GetPaymentRequest {
            call_id: "0190c3c8-0000-7000-8000-000000000000".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        tonic::Code::NotFound,
        "a call sent meanwhile is answered: {status:?}"
    );
    payment.stop().await;
    mesh.stop().await;
}
