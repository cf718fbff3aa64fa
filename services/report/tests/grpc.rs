//! The report service over gRPC, fed by a real `nats-server`: events in any order and twice become
//! one row, stats, a live watch, errors per AIP-193, and a shutdown that ends open watch streams.

#![allow(clippy::unwrap_used)]

use baemin_mesh_testkit::as_caller;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use baemin_mesh_events::{Event, new_envelope};
use baemin_mesh_testkit::{DbKind, NatsServer, RunningService, TestDatabases};
use baemin_proto::{
    events::v1::{
        CallAccepted, CallCancelled, CallPlaced, DeliveryCompleted, DeliveryPicked, PaymentRegistered, PaymentSettled,
    },
    report::v1::{self as pb, report_service_client::ReportServiceClient},
};
use prost::Message;
use tonic::{Code, transport::Channel};

const PATIENCE: Duration = Duration::from_secs(20);

async fn publish_all(js: &jetstream::Context, call_id: &str, events: Vec<Event>) {
    for event in events {
        // No Nats-Msg-Id and each sent twice: only the report's inbox can dedupe.
        let envelope = new_envelope("test", call_id, event.clone());
        let subject = baemin_proto::events::subject_of(&event);
        for _ in 0..2 {
            js.publish(subject, envelope.encode_to_vec().into())
                .await
                .expect("publish")
                .await
                .expect("ack");
        }
    }
}

async fn wait_view(
    client: &mut ReportServiceClient<Channel>,
    call_id: &str,
    done: impl Fn(&pb::DeliveryView) -> bool,
) -> pb::DeliveryView {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let view = client
            .get_delivery_view(pb::GetDeliveryViewRequest {
                call_id: call_id.into(),
            })
            .await
            .ok()
            .and_then(|r| r.into_inner().view);
        if let Some(view) = view.filter(|v| done(v)) {
            return view;
        }
        assert!(Instant::now() < deadline, "row of {call_id} never got there");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn projects_serves_and_stops(kind: DbKind) {
    let nats = NatsServer::start().await;
    let mut dbs = TestDatabases::new(kind);
    let report = RunningService::start::<baemin_report::Application>(&[
        ("NATS_URL", nats.url()),
        ("DATABASE_URL", dbs.url_for("report").await),
    ])
    .await;
    let mut client = ReportServiceClient::connect(report.url()).await.expect("connect");
    let mut watch = client
        .watch_delivery_views(pb::WatchDeliveryViewsRequest {
            call_id: String::new(),
            include_snapshot: true,
        })
        .await
        .expect("watch")
        .into_inner();

    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("nats"));
    let done = baemin_kernel::CallId::generate().to_string();
    let cancelled = baemin_kernel::CallId::generate().to_string();
    // Newest first: the row is created by the completion and filled in by the rest.
    publish_all(
        &js,
        &done,
        vec![
            Event::DeliveryCompleted(DeliveryCompleted {
                rider_id: "r-1".into(),
                fee: 3_000,
                commission: 300,
                rider_payout: 2_700,
                settlement_pending: false,
            }),
            Event::PaymentSettled(PaymentSettled {
                payment_id: "p-1".into(),
                rider_id: "r-1".into(),
                fee: 3_000,
                commission: 300,
                rider_payout: 2_700,
            }),
            Event::DeliveryPicked(DeliveryPicked { rider_id: "r-1".into() }),
            Event::CallAccepted(CallAccepted { rider_id: "r-1".into() }),
            Event::PaymentRegistered(PaymentRegistered {
                payment_id: "p-1".into(),
                fee: 3_000,
            }),
            Event::CallPlaced(CallPlaced {
                restaurant_id: "store-1".into(),
                destination: "Gangnam-gu 1".into(),
                fee: 3_000,
                payment_pending: false,
            }),
        ],
    )
    .await;
    // A poison event is dead-lettered; the consumer carries on.
    publish_all(
        &js,
        "not-a-call-id",
        vec![Event::CallCancelled(CallCancelled::default())],
    )
    .await;
    publish_all(
        &js,
        &cancelled,
        vec![
            Event::CallPlaced(CallPlaced {
                restaurant_id: "store-2".into(),
                destination: "Mapo-gu 2".into(),
                fee: 5_000,
                payment_pending: false,
            }),
            Event::CallCancelled(CallCancelled {
                reason: "closed".into(),
            }),
        ],
    )
    .await;

    let view = wait_view(&mut client, &done, |v| {
        v.status() == pb::DeliveryStatus::Completed && v.restaurant_id == "store-1"
    })
    .await;
    assert_eq!(view.payment_state(), pb::PaymentState::Settled);
    assert_eq!((view.fee, view.settled_amount, view.commission), (3_000, 2_700, 300));
    assert_eq!(view.rider_id, "r-1");
    assert!(view.called_at.is_some() && view.picked_at.is_some() && view.completed_at.is_some());
    wait_view(&mut client, &cancelled, |v| v.status() == pb::DeliveryStatus::Cancelled).await;

    let stats = client
        .get_stats(pb::GetStatsRequest {})
        .await
        .expect("stats")
        .into_inner();
    assert_eq!((stats.completed, stats.cancelled, stats.settled_count), (1, 1, 1));
    assert_eq!(
        (stats.total_fees, stats.revenue, stats.total_payouts),
        (3_000, 300, 2_700)
    );

    let list = client
        .list_delivery_views(pb::ListDeliveryViewsRequest {
            status: pb::DeliveryStatus::Cancelled as i32,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner();
    let ids: Vec<_> = list.views.iter().map(|v| v.call_id.as_str()).collect();
    assert_eq!(ids, [cancelled.as_str()]);

    // The watcher saw the completed row go by.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let next = tokio::time::timeout(PATIENCE, watch.message())
            .await
            .expect("a change")
            .expect("stream ok")
            .expect("stream open");
        let v = next.view.expect("a view");
        if v.call_id == done && v.status() == pb::DeliveryStatus::Completed {
            break;
        }
        assert!(Instant::now() < deadline, "the watcher never saw the completion");
    }

    let bad = client
        .get_delivery_view(pb::GetDeliveryViewRequest { call_id: "x".into() })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let unknown = client
        .get_delivery_view(pb::GetDeliveryViewRequest {
            call_id: baemin_kernel::CallId::generate().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    // The gateway's identity: another restaurant may not read the call, a rider not the stats.
    let as_other = as_caller(
        "restaurant",
        "store-2",
        pb::GetDeliveryViewRequest { call_id: done.clone() },
    );
    let denied = client.get_delivery_view(as_other).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let as_rider = as_caller("rider", "r-1", pb::GetStatsRequest {});
    assert_eq!(
        client.get_stats(as_rider).await.unwrap_err().code(),
        Code::PermissionDenied
    );

    // Stopping with a watch stream still open: the stream ends, the drain does not hang.
    tokio::time::timeout(Duration::from_secs(15), report.stop())
        .await
        .expect("stopped while a watch stream was open");
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        // Changes sent before the stop may still be buffered; the end comes after them.
        loop {
            match watch.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the watch stream ended");
    let status = ended.expect_err("the stream ends with a status telling the client to reconnect");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_projects_serves_and_stops_on_sqlite() {
    projects_serves_and_stops(DbKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_projects_serves_and_stops_on_postgres() {
    projects_serves_and_stops(DbKind::Postgres).await;
}
