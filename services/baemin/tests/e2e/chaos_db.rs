//! Chaos, scenario 8: the database of one service unavailable for a while (PostgreSQL refusing
//! connections, every session to it terminated). Its RPCs answer UNAVAILABLE naming the database —
//! never INTERNAL —, nothing is half-written, and once it is back every call answered OK converges:
//! in the report in its right state, each completed delivery settled exactly once, no fee without a
//! call. Each scenario prints its ledger.

use std::time::{Duration, Instant};

use baemin::scenario::eventually;
use baemin_mesh_testkit::{DbKind, TestDatabases};
use baemin_proto::{call::v1 as call, payment::v1 as payment, rider::v1 as rider};
use tonic::Code;

use crate::{
    ledger::Ledger,
    support::{PATIENCE, Svc, TestMesh},
};

/// `reject` (PlaceCall refuses when payment cannot register the fee), a payment breaker and repair
/// workers quick enough to recover within a test.
const SETTINGS: [(&str, &str); 8] = [
    ("PLACE_CALL_FALLBACK", "reject"),
    ("PAYMENT_BREAKER_OPEN_WAIT", "1s"),
    ("PAYMENT_BREAKER_HALF_OPEN_CALLS", "1"),
    ("PAYMENT_DEADLINE", "500ms"),
    ("CALL_REPAIR_AFTER", "1s"),
    ("CALL_REPAIR_INTERVAL", "200ms"),
    ("RIDER_REPAIR_AFTER", "1s"),
    ("RIDER_REPAIR_INTERVAL", "200ms"),
];

/// How long the database stays away.
const OUTAGE: Duration = Duration::from_millis(1_500);

/// An outage answer: UNAVAILABLE, naming `database`'s service and its database.
fn assert_database_unavailable(status: &tonic::Status, service: &str) {
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains(&format!("{service} database is unavailable")),
        "the answer names the {service} database: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_payment_database_down_refuses_calls_with_unavailable_and_loses_nothing() {
    let mesh = TestMesh::processes(DbKind::Postgres, &SETTINGS).await;
    let clients = mesh.clients.clone();
    let mut ledger = Ledger::default();
    let done = ledger.place(&clients, 4).await;
    ledger.deliver(&clients, &done).await;
    // Two deliveries under way, to be completed while payment cannot settle; one call left open.
    let under_way = ledger.place(&clients, 2).await;
    for (id, rider_id) in under_way.iter().zip(["r-a", "r-b"]) {
        ledger.pick(&clients, id, rider_id).await;
    }
    ledger.place(&clients, 1).await;

    TestDatabases::take_down(mesh.database_url(Svc::Payment)).await;
    let down = Instant::now();
    // PlaceCall cannot register fees: UNAVAILABLE naming payment's database (or, once the failures
    // opened the call service's payment breaker, its open circuit), nothing stored.
    for attempt in 0..5 {
        let refused = ledger
            .try_place(&clients)
            .await
            .expect_err("payment's database is down");
        assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
        assert!(refused.message().starts_with("payment is unavailable"), "{refused:?}");
        if attempt == 0 {
            assert_database_unavailable(&refused, "payment");
        }
    }
    // Payment itself says so, not INTERNAL.
    let mut p = clients.payment.clone();
    let status = p
        .get_payment(payment::GetPaymentRequest {
            call_id: done[0].clone(),
        })
        .await
        .expect_err("payment's database is down");
    assert_database_unavailable(&status, "payment");
    // Its health stays SERVING: its answers are the designed ones, and an orchestrator that pulled every
    // replica for a shared database would turn a partial outage into a total one (README).
    let payment_url = format!("http://{}", mesh.addr(Svc::Payment).expect("payment runs"));
    assert!(baemin_mesh_server::probe::is_serving(&payment_url).await);
    // The food was delivered: completions go through with their settlement deferred.
    for (id, rider_id) in under_way.iter().zip(["r-a", "r-b"]) {
        ledger.complete(&clients, id, rider_id).await;
    }
    tokio::time::sleep(OUTAGE.saturating_sub(down.elapsed())).await;
    TestDatabases::bring_back(mesh.database_url(Svc::Payment)).await;

    // Calls are taken again once payment has its database back.
    let back = Instant::now();
    let again = ledger.place_when_back(&clients).await;
    println!(
        "payment database down for {:?}; calls taken again {:?} after it returned",
        back - down,
        back.elapsed()
    );
    let more = ledger.place(&clients, 2).await;
    ledger.deliver(&clients, &[again]).await;
    ledger.deliver(&clients, &more[..1]).await;
    ledger.check("database down: payment", &mesh).await;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_call_database_down_refuses_calls_with_unavailable_and_its_consumer_catches_up() {
    let mesh = TestMesh::processes(DbKind::Postgres, &SETTINGS).await;
    let clients = mesh.clients.clone();
    let mut ledger = Ledger::default();
    let done = ledger.place(&clients, 3).await;
    ledger.deliver(&clients, &done).await;
    let waiting = ledger.place(&clients, 2).await;
    // The rider service has both calls before the call service loses its database.
    for id in &waiting {
        let seen = eventually(PATIENCE, "the rider service to see the call", || {
            let mut r = clients.rider.clone();
            let call_id = id.clone();
            async move { Ok(r.get_delivery(rider::GetDeliveryRequest { call_id }).await.ok()) }
        })
        .await;
        assert!(seen.is_ok());
    }

    TestDatabases::take_down(mesh.database_url(Svc::Call)).await;
    let down = Instant::now();
    // PlaceCall cannot even write its intent: UNAVAILABLE naming the call database, payment untouched.
    for _ in 0..3 {
        let refused = ledger.try_place(&clients).await.expect_err("the call database is down");
        assert_database_unavailable(&refused, "call");
    }
    let mut c = clients.call.clone();
    let status = c
        .get_call(call::GetCallRequest {
            call_id: done[0].clone(),
        })
        .await
        .expect_err("the call database is down");
    assert_database_unavailable(&status, "call");
    // Riders work on: the call service's consumers cannot apply their events — a transient failure,
    // so each is nak'ed and redelivered, not dropped nor dead-lettered — until its database is back.
    ledger.deliver(&clients, &waiting).await;
    let jetstream = async_nats::jetstream::new(async_nats::connect(mesh.nats.url()).await.expect("NATS"));
    let retried = eventually(
        PATIENCE,
        "the call service's consumers to retry the rider's events",
        || {
            let jetstream = jetstream.clone();
            async move {
                let (_, lags) = baemin_mesh_events::consumer_lag(&jetstream).await?;
                let retried: usize = lags
                    .iter()
                    .filter(|l| l.name.starts_with("call__"))
                    .map(|l| l.redelivered)
                    .sum();
                Ok((retried > 0).then_some(retried))
            }
        },
    )
    .await;
    assert!(
        retried.is_ok(),
        "events are retried while the database is down: {retried:?}"
    );
    tokio::time::sleep(OUTAGE.saturating_sub(down.elapsed())).await;
    TestDatabases::bring_back(mesh.database_url(Svc::Call)).await;

    let again = ledger.place_when_back(&clients).await;
    ledger.deliver(&clients, &[again]).await;
    ledger.place(&clients, 1).await;
    ledger.check("database down: call", &mesh).await;
    // Every event the consumers retried was applied and acknowledged once the database was back, and
    // none was given up as a dead letter.
    let drained = eventually(PATIENCE, "the call service's consumers to catch up", || {
        let jetstream = jetstream.clone();
        async move {
            let (_, lags) = baemin_mesh_events::consumer_lag(&jetstream).await?;
            let behind: Vec<_> = lags
                .into_iter()
                .filter(|l| l.name.starts_with("call__") && (l.pending, l.ack_pending) != (0, 0))
                .collect();
            Ok(behind.is_empty().then_some(()))
        }
    })
    .await;
    assert!(drained.is_ok(), "{drained:?}");
    let dead = baemin_mesh_events::deadletter::list(&jetstream)
        .await
        .expect("dead letters");
    assert!(dead.is_empty(), "an outage never dead-letters an event: {dead:?}");
    mesh.stop().await;
}
