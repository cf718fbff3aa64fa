//! Two replicas of the rider service on one database, as the chart runs them: the durable consumer
//! hands each CallPlaced to either, yet the open-call board watched on one replica shows every call.

#![allow(clippy::unwrap_used)]

use std::{collections::HashSet, time::Duration};

use async_nats::jetstream;
use baemin_mesh_events::{Event, new_envelope};
use baemin_mesh_testkit::{DbKind, NatsServer, RunningService, TestDatabases};
use baemin_proto::{
    events::v1::CallPlaced,
    rider::v1::{self as pb, rider_service_client::RiderServiceClient},
};
use futures::StreamExt;
use prost::Message;

const CALLS: usize = 30;

async fn the_board_on_one_replica_shows_calls_the_other_applied(kind: DbKind) {
    let nats = NatsServer::start().await;
    let mut dbs = TestDatabases::new(kind);
    let env = [("NATS_URL", nats.url()), ("DATABASE_URL", dbs.url_for("rider").await)];
    let a = RunningService::start::<baemin_rider::Application>(&env).await;
    let b = RunningService::start::<baemin_rider::Application>(&env).await;
    let mut board = RiderServiceClient::connect(a.url())
        .await
        .unwrap()
        .watch_open_calls(pb::WatchOpenCallsRequest {})
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

    let mut opened = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while opened.len() < CALLS {
        let Ok(Some(Ok(item))) = tokio::time::timeout_at(deadline, board.next()).await else {
            panic!("the board on replica A showed {} of {CALLS} calls", opened.len());
        };
        if item.change() == pb::watch_open_calls_response::Change::Opened {
            opened.insert(item.call.unwrap().call_id);
        }
    }
    assert_eq!(opened, placed);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_the_board_on_one_replica_shows_calls_the_other_applied() {
    the_board_on_one_replica_shows_calls_the_other_applied(DbKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_board_on_one_replica_shows_calls_the_other_applied() {
    the_board_on_one_replica_shows_calls_the_other_applied(DbKind::Postgres).await;
}
