//! Rebuilding the report from the events stream, against a real `nats-server` and a live report
//! service: events out of order and twice, a poison event and garbage in the stream; the rebuilt rows
//! equal what the live ListDeliveryViews answers, field for field; a target that holds anything is
//! refused.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use async_nats::jetstream;
use baemin_kernel::CallId;
use baemin_mesh_events::{EventBus, StreamSettings, new_envelope};
use baemin_mesh_testkit::{DbKind, NatsServer, RunningService, TestDatabases};
use baemin_proto::{
    events::v1::{
        CallAccepted, CallCancelled, CallPlaced, DeliveryCompleted, DeliveryPicked, PaymentRegistered, PaymentSettled,
        PaymentVoided, envelope::Event,
    },
    report::v1::{self as pb, report_service_client::ReportServiceClient},
};
use baemin_report::rebuild::{RebuildError, Rebuilt, live_progress, rebuild, rows};
use prost::Message;
use sea_orm::ConnectionTrait;

const PATIENCE: Duration = Duration::from_secs(20);

fn placed(restaurant: &str, fee: i64, payment_pending: bool) -> Event {
    Event::CallPlaced(CallPlaced {
        restaurant_id: restaurant.into(),
        destination: "Gangnam-gu 1".into(),
        fee,
        payment_pending,
    })
}

/// The envelopes of four deliveries (13 events), each with its own id: completed and settled,
/// cancelled and voided, accepted with payment pending, and a fee payment registered and voided for a
/// call never placed (a hidden row).
fn deliveries() -> Vec<(String, Vec<u8>)> {
    let (done, cancelled, accepted, orphan) = (
        CallId::generate().to_string(),
        CallId::generate().to_string(),
        CallId::generate().to_string(),
        CallId::generate().to_string(),
    );
    let events = [
        (&done, placed("store-1", 3_000, false)),
        (
            &done,
            Event::PaymentRegistered(PaymentRegistered {
                payment_id: "p-1".into(),
                fee: 3_000,
            }),
        ),
        (&done, Event::CallAccepted(CallAccepted { rider_id: "r-1".into() })),
        (&done, Event::DeliveryPicked(DeliveryPicked { rider_id: "r-1".into() })),
        (
            &done,
            Event::DeliveryCompleted(DeliveryCompleted {
                rider_id: "r-1".into(),
                fee: 3_000,
                commission: 0,
                rider_payout: 0,
                settlement_pending: true,
            }),
        ),
        (
            &done,
            Event::PaymentSettled(PaymentSettled {
                payment_id: "p-1".into(),
                rider_id: "r-1".into(),
                fee: 3_000,
                commission: 300,
                rider_payout: 2_700,
            }),
        ),
        (&cancelled, placed("store-2", 5_000, false)),
        (
            &cancelled,
            Event::CallCancelled(CallCancelled {
                reason: "closed".into(),
            }),
        ),
        (
            &cancelled,
            Event::PaymentVoided(PaymentVoided {
                payment_id: "p-2".into(),
            }),
        ),
        (&accepted, placed("store-1", 4_000, true)),
        (&accepted, Event::CallAccepted(CallAccepted { rider_id: "r-2".into() })),
        (
            &orphan,
            Event::PaymentRegistered(PaymentRegistered {
                payment_id: "p-3".into(),
                fee: 1_000,
            }),
        ),
        (
            &orphan,
            Event::PaymentVoided(PaymentVoided {
                payment_id: "p-3".into(),
            }),
        ),
    ];
    events
        .into_iter()
        .map(|(call_id, event)| {
            let subject = baemin_proto::events::subject_of(&event).to_owned();
            (subject, new_envelope("test", call_id, event).encode_to_vec())
        })
        .collect()
}

async fn publish(js: &jetstream::Context, subject: &str, payload: Vec<u8>) {
    js.publish(subject.to_owned(), payload.into())
        .await
        .expect("publish")
        .await
        .expect("ack");
}

/// Waits until the live report's consumer has applied every message of the stream.
async fn wait_caught_up(js: &jetstream::Context) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let last = js
            .get_stream(baemin_mesh_events::STREAM_NAME)
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .last_sequence;
        let live = live_progress(js).await.unwrap().expect("the live report's consumer");
        if live.delivered_sequence == last && live.pending == 0 && live.ack_pending == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "the live report never caught up: {live:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every row the live report lists, page after page.
async fn live_rows(url: String) -> Vec<pb::DeliveryView> {
    let mut client = ReportServiceClient::connect(url).await.expect("connect");
    let (mut views, mut page_token) = (Vec::new(), String::new());
    loop {
        let page = client
            .list_delivery_views(pb::ListDeliveryViewsRequest {
                page_size: 2,
                page_token,
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        views.extend(page.views);
        if page.next_page_token.is_empty() {
            return views;
        }
        page_token = page.next_page_token;
    }
}

async fn rebuilt_equals_live(kind: DbKind) {
    let nats = NatsServer::start().await;
    let mut dbs = TestDatabases::new(kind);
    let live_url = dbs.url_for("report").await;
    let report = RunningService::start::<baemin_report::Application>(&[
        ("NATS_URL", nats.url()),
        ("DATABASE_URL", live_url.clone()),
    ])
    .await;
    let js = jetstream::new(async_nats::connect(nats.url()).await.expect("nats"));

    // Newest first, then everything again oldest first: out of order, and every event twice (no
    // Nats-Msg-Id, so only the inbox can tell). Garbage and a poison event in between.
    let events = deliveries();
    for (subject, payload) in events.iter().rev() {
        publish(&js, subject, payload.clone()).await;
    }
    publish(&js, "baemin.events.call.placed", vec![0xff, 0xff, 0xff]).await;
    let poison = new_envelope("test", "not-a-call-id", Event::CallCancelled(CallCancelled::default()));
    for _ in 0..2 {
        publish(&js, "baemin.events.call.cancelled", poison.encode_to_vec()).await;
    }
    for (subject, payload) in &events {
        publish(&js, subject, payload.clone()).await;
    }
    wait_caught_up(&js).await;
    let live = live_rows(report.url()).await;
    assert_eq!(live.len(), 3, "three deliveries shown, the orphan fee hidden");

    let target = dbs.url_for("rebuilt").await;
    let rebuilt = rebuild(&js, &target).await.unwrap();
    assert_eq!(
        rebuilt,
        Rebuilt {
            events_applied: 13,
            duplicates: 13,
            skipped: 3,
            rows: 3,
            hidden_rows: 1,
            first_sequence: 1,
            last_sequence: 29,
        }
    );
    // Every field, updated_at included: it is the latest occurred_at of the applied events, not the
    // instant of projection, so replaying the same events gives the same value.
    assert_eq!(rows(&target).await.unwrap(), live);
    let done = live
        .iter()
        .find(|v| v.status() == pb::DeliveryStatus::Completed)
        .unwrap();
    assert_eq!((done.settled_amount, done.commission), (2_700, 300));

    for (what, url) in [("the rebuilt", &target), ("the live", &live_url)] {
        let refused = rebuild(&js, url).await.unwrap_err();
        assert!(matches!(refused, RebuildError::NotEmpty(_)), "{what}: {refused:?}");
        assert!(refused.to_string().contains("not empty"), "{what}: {refused}");
    }
    assert_eq!(rows(&target).await.unwrap(), live, "a refused rebuild writes nothing");
    report.stop().await;
}

#[tokio::test]
async fn a_rebuilt_report_equals_the_live_one() {
    rebuilt_equals_live(DbKind::Sqlite).await;
}

#[tokio::test]
async fn a_rebuilt_report_equals_the_live_one_on_postgres() {
    rebuilt_equals_live(DbKind::Postgres).await;
}

#[tokio::test]
async fn an_empty_stream_rebuilds_an_empty_report() {
    let nats = NatsServer::start().await;
    let bus = EventBus::connect(&nats.url(), "test").await.unwrap();
    bus.ensure_stream(&StreamSettings::default()).await.unwrap();
    let mut dbs = TestDatabases::new(DbKind::Sqlite);
    let target = dbs.url_for("rebuilt").await;
    let rebuilt = rebuild(bus.jetstream(), &target).await.unwrap();
    assert_eq!((rebuilt.events_applied, rebuilt.rows, rebuilt.last_sequence), (0, 0, 0));
    assert!(rows(&target).await.unwrap().is_empty());
}

#[tokio::test]
async fn another_services_database_is_refused_and_left_alone() {
    let nats = NatsServer::start().await;
    let bus = EventBus::connect(&nats.url(), "test").await.unwrap();
    bus.ensure_stream(&StreamSettings::default()).await.unwrap();
    let mut dbs = TestDatabases::new(DbKind::Sqlite);
    let url = dbs.url_for("call").await;
    let db = baemin_mesh_store::open(&url, 1).await.unwrap();
    db.execute_unprepared("CREATE TABLE calls (call_id TEXT PRIMARY KEY)")
        .await
        .unwrap();

    let refused = rebuild(bus.jetstream(), &url).await.unwrap_err();
    assert!(refused.to_string().contains("not empty"), "{refused}");
    assert!(refused.to_string().contains("calls"), "{refused}");
    let tables = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT name FROM sqlite_master WHERE type = 'table'",
        ))
        .await
        .unwrap();
    assert_eq!(tables.len(), 1, "no report table was added");
    db.close().await.unwrap();
}

#[tokio::test]
async fn events_deleted_at_the_end_of_the_stream_do_not_stall_the_rebuild() {
    let nats = NatsServer::start().await;
    let bus = EventBus::connect(&nats.url(), "test").await.unwrap();
    bus.ensure_stream(&StreamSettings::default()).await.unwrap();
    let js = bus.jetstream();
    let events = deliveries();
    for (subject, payload) in events.iter().take(3) {
        publish(js, subject, payload.clone()).await;
    }
    let stream = js.get_stream(baemin_mesh_events::STREAM_NAME).await.unwrap();
    assert!(stream.delete_message(3).await.unwrap());

    let mut dbs = TestDatabases::new(DbKind::Sqlite);
    let target = dbs.url_for("rebuilt").await;
    let started = Instant::now();
    let rebuilt = rebuild(js, &target).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!((rebuilt.events_applied, rebuilt.rows, rebuilt.last_sequence), (2, 1, 3));
}
