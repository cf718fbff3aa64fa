//! Two replicas of the report on one database, as the chart runs them: the durable consumer hands each
//! event to either, yet a watch on one replica streams every change, whichever replica projected it.

#![allow(clippy::unwrap_used)]

use std::{collections::HashSet, time::Duration};

use baemin_mesh_testkit::{DbKind, NatsServer, RunningService, TestDatabases, events::place_calls};
use baemin_proto::report::v1::{self as pb, report_service_client::ReportServiceClient};
use futures::StreamExt;

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

    let placed: HashSet<String> = place_calls(&nats.url(), CALLS).await.into_iter().collect();

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
