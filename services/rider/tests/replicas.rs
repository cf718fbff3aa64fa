//! Two replicas of the rider service on one database, as the chart runs them: the durable consumer
//! hands each CallPlaced to either, yet the open-call board watched on one replica shows every call; and
//! riders racing for one call through different replicas: exactly one wins.

#![allow(clippy::unwrap_used)]

use std::{collections::HashSet, time::Duration};

use baemin_mesh_testkit::{DbKind, NatsServer, RunningService, TestDatabases, events::place_calls};
use baemin_proto::rider::v1::{self as pb, rider_service_client::RiderServiceClient};
use futures::StreamExt;

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

    let placed: HashSet<String> = place_calls(&nats.url(), CALLS).await.into_iter().collect();

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

async fn riders_racing_through_both_replicas_for_one_call_one_wins(kind: DbKind) {
    const RIDERS: usize = 8;
    let nats = NatsServer::start().await;
    let mut dbs = TestDatabases::new(kind);
    let env = [("NATS_URL", nats.url()), ("DATABASE_URL", dbs.url_for("rider").await)];
    let replicas = [
        RunningService::start::<baemin_rider::Application>(&env).await,
        RunningService::start::<baemin_rider::Application>(&env).await,
    ];
    let call_id = place_calls(&nats.url(), 1).await.remove(0);
    // The call is open once either replica applied CallPlaced (both read the one database).
    let mut client = RiderServiceClient::connect(replicas[0].url()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let open = client
            .list_open_calls(pb::ListOpenCallsRequest::default())
            .await
            .unwrap()
            .into_inner();
        if open.calls.iter().any(|c| c.call_id == call_id) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the call never opened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let attempts = (0..RIDERS).map(|i| {
        let url = replicas[i % 2].url();
        let call_id = call_id.clone();
        async move {
            let mut client = RiderServiceClient::connect(url).await.unwrap();
            let request = pb::AcceptCallRequest {
                call_id,
                rider_id: format!("rider-{i}"),
            };
            client
                .accept_call(request)
                .await
                .map(|r| r.into_inner().delivery.unwrap().rider_id)
        }
    });
    let outcomes = futures::future::join_all(attempts).await;
    let winners: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one rider wins: {outcomes:?}");
    for lost in outcomes.iter().filter_map(|o| o.as_ref().err()) {
        assert!(
            matches!(lost.code(), tonic::Code::FailedPrecondition | tonic::Code::Aborted),
            "a loser is told it lost: {lost:?}"
        );
    }
    let delivery = client
        .get_delivery(pb::GetDeliveryRequest { call_id })
        .await
        .unwrap()
        .into_inner()
        .delivery
        .unwrap();
    assert_eq!(&delivery.rider_id, winners[0], "the stored delivery is the winner's");
    for replica in replicas {
        replica.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_riders_racing_through_both_replicas_for_one_call_one_wins() {
    riders_racing_through_both_replicas_for_one_call_one_wins(DbKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_riders_racing_through_both_replicas_for_one_call_one_wins() {
    riders_racing_through_both_replicas_for_one_call_one_wins(DbKind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_the_board_on_one_replica_shows_calls_the_other_applied() {
    the_board_on_one_replica_shows_calls_the_other_applied(DbKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_board_on_one_replica_shows_calls_the_other_applied() {
    the_board_on_one_replica_shows_calls_the_other_applied(DbKind::Postgres).await;
}
