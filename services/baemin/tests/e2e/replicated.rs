//! The production topology end to end (two replicas of every service on PostgreSQL, each service behind
//! its balancer, a three-node JetStream cluster with the stream R3): every watch on one replica sees the
//! changes made through the others; riders racing through different replicas, one wins; a NATS node and
//! replicas SIGKILLed under load lose nothing; a rolling restart of every service under load fails no call.
//! Each ends with the chaos ledger (placed, in report, settled once, lost 0, duplicated 0).

use std::{collections::HashSet, future::Future, time::Duration};

use baemin::clients::Clients;
use baemin_proto::{call::v1 as call, report::v1 as report, rider::v1 as rider};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::Code;

use crate::{
    ledger::Ledger,
    replicated_mesh::ReplicatedMesh,
    support::{PATIENCE, Svc, request_id},
};

/// The next item of `stream` within the test's patience.
async fn next<T>(stream: &mut tonic::Streaming<T>, what: &str) -> T {
    match tokio::time::timeout(PATIENCE, stream.next()).await {
        Ok(Some(Ok(item))) => item,
        other => panic!("{what}: {:?}", other.map(|o| o.map(|r| r.map(|_| ()))).ok()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_watches_on_one_replica_see_every_change_made_through_the_others() {
    const CALLS: usize = 20;
    let mesh = ReplicatedMesh::start(2).await;
    let (a, b) = (mesh.replica_clients(0), mesh.replica_clients(1));
    let mut views = a
        .report
        .clone()
        .watch_delivery_views(report::WatchDeliveryViewsRequest::default())
        .await
        .expect("WatchDeliveryViews on report replica 0")
        .into_inner();
    let mut board = b
        .rider
        .clone()
        .watch_open_calls(rider::WatchOpenCallsRequest {})
        .await
        .expect("WatchOpenCalls on rider replica 1")
        .into_inner();

    // Placed alternately through both call replicas; applied by whichever replica each consumer hands
    // them to. More are placed until the replicas not watched have applied some: the watches must show
    // changes made elsewhere.
    let mut ledger = Ledger::default();
    for round in 0.. {
        for i in 0..CALLS {
            ledger
                .try_place(if i % 2 == 0 { &a } else { &b })
                .await
                .expect("PlaceCall");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let elsewhere = (mesh.applied(Svc::Report, 1).await, mesh.applied(Svc::Rider, 0).await);
        if elsewhere.0 > 0 && elsewhere.1 > 0 {
            println!("events applied by the unwatched replicas (report 1, rider 0): {elsewhere:?}");
            break;
        }
        assert!(
            round < 5,
            "the durable consumers never handed an event to the other replica: {elsewhere:?}"
        );
    }
    let placed: HashSet<String> = ledger.placed.keys().cloned().collect();
    let calls = placed.len();
    let mut seen = HashSet::new();
    while seen.len() < calls {
        let view = next(
            &mut views,
            &format!("report replica 0 streamed {} of {calls}", seen.len()),
        )
        .await
        .view
        .expect("view");
        if view.status() == report::DeliveryStatus::Called {
            seen.insert(view.call_id);
        }
    }
    assert_eq!(seen, placed, "the report's watch on replica 0 saw every call");
    let mut opened = HashSet::new();
    while opened.len() < calls {
        let item = next(
            &mut board,
            &format!("the board on rider replica 1 showed {} of {calls}", opened.len()),
        )
        .await;
        if item.change() == rider::watch_open_calls_response::Change::Opened {
            opened.insert(item.call.expect("call").call_id);
        }
    }
    assert_eq!(opened, placed, "the board on rider replica 1 showed every call");

    // Riders race for one call through both rider replicas: one wins; the board on replica 1 closes it
    // whichever replica took it.
    let mut ids: Vec<String> = placed.iter().cloned().collect();
    ids.sort();
    let raced = ids[0].clone();
    let attempts = (0..6).map(|i| {
        let mut client = if i % 2 == 0 { a.rider.clone() } else { b.rider.clone() };
        let call_id = raced.clone();
        async move {
            client
                .accept_call(rider::AcceptCallRequest {
                    call_id,
                    rider_id: format!("racer-{i}"),
                })
                .await
                .map(|r| r.into_inner().delivery.expect("delivery").rider_id)
        }
    });
    let outcomes = futures::future::join_all(attempts).await;
    let winners: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one rider wins: {outcomes:?}");
    for lost in outcomes.iter().filter_map(|o| o.as_ref().err()) {
        assert!(
            matches!(lost.code(), Code::FailedPrecondition | Code::Aborted),
            "a loser is told it lost: {lost:?}"
        );
    }
    loop {
        let item = next(&mut board, "the board on rider replica 1 to close the raced call").await;
        if item.change() == rider::watch_open_calls_response::Change::Closed
            && item.call.is_some_and(|c| c.call_id == raced)
        {
            break;
        }
    }

    // A call watched on call replica 0 and cancelled through call replica 1: the watch ends CANCELLED.
    let cancelled = ids[1].clone();
    let mut watch = a
        .call
        .clone()
        .watch_call(call::WatchCallRequest {
            call_id: cancelled.clone(),
        })
        .await
        .expect("WatchCall on call replica 0")
        .into_inner();
    let first = next(&mut watch, "WatchCall's snapshot").await.call.expect("call");
    assert_eq!(first.status(), call::CallStatus::Called);
    b.call
        .clone()
        .cancel_call(call::CancelCallRequest {
            call_id: cancelled.clone(),
            reason: "changed my mind".into(),
        })
        .await
        .expect("CancelCall on call replica 1");
    let last = loop {
        match tokio::time::timeout(PATIENCE, watch.next()).await {
            Ok(Some(Ok(item))) => {
                let c = item.call.expect("call");
                if c.status() == call::CallStatus::Cancelled {
                    break c;
                }
            }
            other => panic!("WatchCall on replica 0 never saw the cancel made on replica 1: {other:?}"),
        }
    };
    assert_eq!(last.call_id, cancelled);
    let end = tokio::time::timeout(PATIENCE, watch.next()).await;
    assert!(
        matches!(end, Ok(None)),
        "the watch ends after the terminal status: {end:?}"
    );
    mesh.stop().await;
}

/// A client of the mesh placing and delivering calls until stopped, as the restaurants' and riders'
/// apps do: each step that fails is retried with the same request (PlaceCall with its idempotency key;
/// accept, pick-up and completion are answered as done to a retry by the rider who holds the call). Every
/// failed attempt is recorded.
struct Load {
    stop: CancellationToken,
    workers: Vec<tokio::task::JoinHandle<(Ledger, Vec<String>)>>,
}

impl Load {
    fn start(clients: &Clients, workers: usize) -> Self {
        let stop = CancellationToken::new();
        let workers = (0..workers)
            .map(|w| tokio::spawn(load_worker(clients.clone(), w, stop.clone())))
            .collect();
        Self { stop, workers }
    }

    /// Stops the workers after their current call: what they were told, and every failed attempt.
    async fn finish(self) -> (Ledger, Vec<String>) {
        self.stop.cancel();
        let mut ledger = Ledger::default();
        let mut failures = Vec::new();
        for worker in self.workers {
            let (l, f) = worker.await.expect("load worker");
            ledger.placed.extend(l.placed);
            failures.extend(f);
        }
        (ledger, failures)
    }
}

async fn load_worker(clients: Clients, worker: usize, stop: CancellationToken) -> (Ledger, Vec<String>) {
    let mut ledger = Ledger::default();
    let mut failures = Vec::new();
    let mut n = 0_usize;
    while !stop.is_cancelled() {
        let fee = 1_000 + 10 * i64::try_from(n).expect("small");
        let key = request_id();
        let call_id = persist(&mut failures, "PlaceCall", || {
            let mut c = clients.call.clone();
            let request_id = key.clone();
            async move {
                let placed = c
                    .place_call(call::PlaceCallRequest {
                        request_id,
                        restaurant_id: "chaos".into(),
                        destination: "Seoul".into(),
                        fee,
                    })
                    .await?;
                Ok(placed.into_inner().call.expect("call").call_id)
            }
        })
        .await;
        ledger.placed.insert(call_id.clone(), (fee, None));
        // Every other call is delivered through to settlement.
        if n.is_multiple_of(2) {
            let rider_id = format!("w{worker}-r{}", n % 3);
            // The rider service learns of the call from its event: NOT_FOUND until then; any other
            // error is a failed call.
            persist(&mut failures, "GetDelivery", || {
                let mut r = clients.rider.clone();
                let call_id = call_id.clone();
                async move {
                    let deadline = tokio::time::Instant::now() + PATIENCE;
                    loop {
                        let asked = r
                            .get_delivery(rider::GetDeliveryRequest {
                                call_id: call_id.clone(),
                            })
                            .await;
                        match asked {
                            Err(status)
                                if status.code() == Code::NotFound && tokio::time::Instant::now() < deadline =>
                            {
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            outcome => return outcome.map(drop),
                        }
                    }
                }
            })
            .await;
            let step = |what: &'static str| {
                let mut r = clients.rider.clone();
                let (call_id, rider_id) = (call_id.clone(), rider_id.clone());
                async move {
                    match what {
                        "AcceptCall" => r
                            .accept_call(rider::AcceptCallRequest { call_id, rider_id })
                            .await
                            .map(drop),
                        "PickUp" => r.pick_up(rider::PickUpRequest { call_id, rider_id }).await.map(drop),
                        _ => r
                            .complete_delivery(rider::CompleteDeliveryRequest { call_id, rider_id })
                            .await
                            .map(drop),
                    }
                }
            };
            persist(&mut failures, "AcceptCall", || step("AcceptCall")).await;
            persist(&mut failures, "PickUp", || step("PickUp")).await;
            persist(&mut failures, "CompleteDelivery", || step("CompleteDelivery")).await;
            if let Some(entry) = ledger.placed.get_mut(&call_id) {
                entry.1 = Some(rider_id);
            }
        }
        n += 1;
    }
    (ledger, failures)
}

/// Runs `attempt` until it succeeds (within the test's patience), recording each failure.
async fn persist<T, F, Fut>(failures: &mut Vec<String>, what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(status) => {
                failures.push(format!("{what}: {:?} {}", status.code(), status.message()));
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{what} kept failing: {failures:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Lets the load run for `d`.
async fn under_load(d: Duration) {
    tokio::time::sleep(d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_a_nats_node_and_a_replica_of_each_service_sigkilled_under_load_lose_nothing() {
    let mut mesh = ReplicatedMesh::start(2).await;
    let load = Load::start(&mesh.clients, 2);
    under_load(Duration::from_secs(2)).await;
    // The node leading the events stream crashes; the other two elect a new leader and carry on.
    let leader = mesh.stream_leader().await;
    mesh.nats.kill(leader);
    under_load(Duration::from_secs(2)).await;
    for svc in [Svc::Call, Svc::Rider, Svc::Payment, Svc::Report] {
        mesh.kill_replica(svc, 0).await;
        under_load(Duration::from_secs(1)).await;
    }
    under_load(Duration::from_secs(1)).await;
    for svc in [Svc::Payment, Svc::Call, Svc::Rider, Svc::Report] {
        mesh.start_replica(svc, 0).await;
    }
    under_load(Duration::from_secs(1)).await;
    let (ledger, failures) = load.finish().await;
    println!(
        "killed: {} failed attempt(s) retried by the clients: {failures:?}",
        failures.len()
    );
    // A crash may fail the calls it interrupts, as the transport's failure (tonic: UNAVAILABLE, CANCELLED,
    // or UNKNOWN "transport error" for a connection reset mid-call), never as an answer.
    for failure in &failures {
        assert!(
            [": Unavailable ", ": Cancelled ", ": Unknown transport error"]
                .iter()
                .any(|transport| failure.contains(transport)),
            "only interrupted calls fail: {failure}"
        );
    }
    assert!(
        ledger.placed.len() >= 10,
        "the load went on: {} calls",
        ledger.placed.len()
    );
    ledger.check("replicated: nats node and replicas killed", &mesh).await;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_a_rolling_restart_of_every_service_under_load_fails_no_call() {
    let mut mesh = ReplicatedMesh::start(2).await;
    let load = Load::start(&mesh.clients, 2);
    under_load(Duration::from_secs(1)).await;
    // As `kubectl rollout restart` does: one replica at a time, the next only once the new one is ready.
    for svc in [Svc::Payment, Svc::Call, Svc::Rider, Svc::Report] {
        for i in 0..mesh.replicas() {
            mesh.stop_replica(svc, i).await;
            mesh.start_replica(svc, i).await;
            under_load(Duration::from_millis(500)).await;
        }
    }
    let (ledger, failures) = load.finish().await;
    println!(
        "rolling restart: {} calls, {} failed attempt(s)",
        ledger.placed.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "a rolling restart fails no call: {failures:?}");
    assert!(
        ledger.placed.len() >= 10,
        "the load went on: {} calls",
        ledger.placed.len()
    );
    ledger.check("replicated: rolling restart", &mesh).await;
    mesh.stop().await;
}
