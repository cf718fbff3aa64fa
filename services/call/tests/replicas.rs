//! Two replicas of the call service on one database, as the chart runs them: a WatchCall on one replica
//! sees a cancellation made through the other and ends on it.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use baemin_mesh_testkit::{DbKind, NatsServer, RunningService, TestDatabases};
use baemin_proto::call::v1::{self as pb, call_service_client::CallServiceClient};
use futures::StreamExt;

async fn a_watch_on_one_replica_sees_a_cancel_made_through_the_other(kind: DbKind) {
    let nats = NatsServer::start().await;
    let mut dbs = TestDatabases::new(kind);
    let payment = RunningService::start::<baemin_payment::Application>(&[
        ("NATS_URL", nats.url()),
        ("DATABASE_URL", dbs.url_for("payment").await),
    ])
    .await;
    let env = [
        ("NATS_URL", nats.url()),
        ("DATABASE_URL", dbs.url_for("call").await),
        ("PAYMENT_URL", payment.url()),
    ];
    let a = RunningService::start::<baemin_call::Application>(&env).await;
    let b = RunningService::start::<baemin_call::Application>(&env).await;
    let mut through_a = CallServiceClient::connect(a.url()).await.unwrap();
    let mut through_b = CallServiceClient::connect(b.url()).await.unwrap();
    let call = through_a
        .place_call(pb::PlaceCallRequest {
            request_id: "req-1".into(),
            restaurant_id: "store-1".into(),
            destination: "Gangnam-gu 1".into(),
            fee: 3_000,
        })
        .await
        .unwrap()
        .into_inner()
        .call
        .unwrap();
    let mut watch = through_a
        .watch_call(pb::WatchCallRequest {
            call_id: call.call_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap().call.unwrap();
    assert_eq!(first.status(), pb::CallStatus::Called);

    through_b
        .cancel_call(pb::CancelCallRequest {
            call_id: call.call_id.clone(),
            reason: "changed my mind".into(),
        })
        .await
        .unwrap();
    // The cancel may pass through a visible intermediate state (its mark) before CANCELLED.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let next = tokio::time::timeout_at(deadline, watch.next()).await;
        let Ok(Some(Ok(item))) = next else {
            panic!("the watch on replica A never saw the cancel made through B: {next:?}");
        };
        if item.call.unwrap().status() == pb::CallStatus::Cancelled {
            break;
        }
    }
    assert!(
        tokio::time::timeout(Duration::from_secs(5), watch.next())
            .await
            .unwrap()
            .is_none(),
        "the watch ends on the terminal status"
    );
    a.stop().await;
    b.stop().await;
    payment.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_watch_on_one_replica_sees_a_cancel_made_through_the_other() {
    a_watch_on_one_replica_sees_a_cancel_made_through_the_other(DbKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_watch_on_one_replica_sees_a_cancel_made_through_the_other() {
    a_watch_on_one_replica_sees_a_cancel_made_through_the_other(DbKind::Postgres).await;
}
