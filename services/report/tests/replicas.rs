//! Two replicas of the report on one database, as the chart runs them: the durable consumer hands each
//! event to either, yet a watch on one replica streams every change, whichever replica projected it.

#![allow(clippy::unwrap_used)]

use std::{collections::HashSet, time::Duration};

use async_nats::jetstream;
use baemin_mesh_events::{Event, new_envelope};
use baemin_mesh_testkit::{DbKind, NatsServer, RunningService, TestDatabases};
use baemin_proto::{
    events::v1::CallPlaced,
    report::v1::{self as pb, report_service_client::ReportServiceClient},
};
use futures::StreamExt;
use prost::Message;

const CALLS: usize = 30;

async fn a_watch_on_one_replica_sees_what_the_other_projected(kind: DbKind) {
    let nats = NatsServer::start().await;
    let mut dbs = TestDatabases::new(kind);
    let env = [("NATS_URL", nats.url()), ("DATABASE_URL", dbs.url_for("report").await)];
    let a = RunningService::start::<baemin_report::Application>(&env).await;
    let b = RunningService::start::<baemin_report::Application>(&env).await;
    let mut watch = ReportServiceClient::connect(a.url())
        .await
        .unwrap()
        .watch_delivery_views(pb::WatchDeliveryViewsRequest::default())
        .await
        .unwrap()
        .into_inner();

    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let mut placed = HashSet::new();
    for i in 0..CALLS {
        let call_id = baemin_kernel::CallId::generate().to_string();
        let event = Event::CallPlaced(CallPlaced {
            restaurant_id: format!("store-{i}"),
            destination: "Gangnam-gu 1".into(),
            fee: 3_000,
            payment_pending: false,
        });
        let envelope = new_envelope("test", &call_id, event.clone());
        let subject = baemin_proto::events::subject_of(&event);
        js.publish(subject, envelope.encode_to_vec().into())
            .await
            .unwrap()
            .await
            .unwrap();
        placed.insert(call_id);
    }

    let mut seen = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while seen.len() < CALLS {
        let next = tokio::time::timeout_at(deadline, watch.next()).await;
        let Ok(Some(Ok(item))) = next else {
            panic!("the watch on replica A saw {} of {CALLS} calls", seen.len());
        };
        seen.insert(item.view.unwrap().call_id);
    }
    assert_eq!(seen, placed);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_watch_on_one_replica_sees_what_the_other_projected() {
    a_watch_on_one_replica_sees_what_the_other_projected(DbKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_watch_on_one_replica_sees_what_the_other_projected() {
    a_watch_on_one_replica_sees_what_the_other_projected(DbKind::Postgres).await;
}
