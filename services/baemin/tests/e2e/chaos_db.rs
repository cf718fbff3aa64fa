//! Chaos, scenario 8: the database of one service unavailable for a while (PostgreSQL refusing
//! connections, every session to it terminated). Its RPCs answer UNAVAILABLE naming the database —
//! never INTERNAL —, nothing is half-written, and once it is back every call answered OK converges:
//! in the report in its right state, each completed delivery settled exactly once, no fee without a
//! call. Each scenario prints its ledger.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use baemin::{clients::Clients, scenario::eventually};
use baemin_mesh_testkit::{DbKind, TestDatabases};
use baemin_proto::{call::v1 as call, payment::v1 as payment, report::v1 as report, rider::v1 as rider};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use tonic::Code;

use crate::support::{PATIENCE, Svc, TestMesh, request_id};

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

/// What the clients were told OK: call id → (fee, completed by this rider).
#[derive(Default)]
struct Ledger {
    placed: HashMap<String, (i64, Option<String>)>,
    refused: usize,
}

impl Ledger {
    /// Places one call; `Err` is the refusal (not recorded as placed, counted).
    async fn try_place(&mut self, clients: &Clients) -> Result<String, tonic::Status> {
        let fee = 1_000 + self.placed.len() as i64 * 10;
        let mut c = clients.call.clone();
        let placed = c
            .place_call(call::PlaceCallRequest {
                request_id: request_id(),
                restaurant_id: "chaos-db".into(),
                destination: "Seoul".into(),
                fee,
            })
            .await;
        match placed {
            Ok(r) => {
                let id = r.into_inner().call.expect("call").call_id;
                self.placed.insert(id.clone(), (fee, None));
                Ok(id)
            }
            Err(status) => {
                self.refused += 1;
                Err(status)
            }
        }
    }

    /// Places `n` calls that must be taken.
    async fn place(&mut self, clients: &Clients, n: usize) -> Vec<String> {
        let mut ids = Vec::new();
        for _ in 0..n {
            ids.push(self.try_place(clients).await.expect("PlaceCall"));
        }
        ids
    }

    /// Retries PlaceCall until it is taken again (each refusal counted).
    async fn place_when_back(&mut self, clients: &Clients) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.try_place(clients).await {
                Ok(id) => return id,
                Err(status) if Instant::now() < deadline => {
                    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(status) => panic!("calls are not taken again: {status:?}"),
            }
        }
    }

    /// Rider `rider` accepts and picks up `call_id` once the rider service has it.
    async fn pick(&self, clients: &Clients, call_id: &str, rider_id: &str) {
        let seen = eventually(PATIENCE, "the rider service to see the call", || {
            let mut r = clients.rider.clone();
            let call_id = call_id.to_owned();
            async move { Ok(r.get_delivery(rider::GetDeliveryRequest { call_id }).await.ok()) }
        })
        .await;
        assert!(seen.is_ok(), "call {call_id} never reached the rider service");
        let mut r = clients.rider.clone();
        r.accept_call(rider::AcceptCallRequest {
            call_id: call_id.to_owned(),
            rider_id: rider_id.to_owned(),
        })
        .await
        .expect("accept");
        r.pick_up(rider::PickUpRequest {
            call_id: call_id.to_owned(),
            rider_id: rider_id.to_owned(),
        })
        .await
        .expect("pick up");
    }

    /// Rider `rider` completes the picked-up `call_id`.
    async fn complete(&mut self, clients: &Clients, call_id: &str, rider_id: &str) {
        let mut r = clients.rider.clone();
        r.complete_delivery(rider::CompleteDeliveryRequest {
            call_id: call_id.to_owned(),
            rider_id: rider_id.to_owned(),
        })
        .await
        .expect("complete");
        if let Some(entry) = self.placed.get_mut(call_id) {
            entry.1 = Some(rider_id.to_owned());
        }
    }

    /// Takes `ids` through to completion, riders `r-0`, `r-1`, `r-2` in turn.
    async fn deliver(&mut self, clients: &Clients, ids: &[String]) {
        for (n, id) in ids.iter().enumerate() {
            let rider_id = format!("r-{}", n % 3);
            self.pick(clients, id, &rider_id).await;
            self.complete(clients, id, &rider_id).await;
        }
    }

    /// Waits for the mesh to converge, then checks the ledger against the report and payment's own
    /// rows, prints it and asserts nothing was lost, duplicated or left behind.
    async fn check(&self, scenario: &str, mesh: &TestMesh) {
        let clients = &mesh.clients;
        let rows = eventually(
            PATIENCE,
            "the report to show every placed call in its final state",
            || {
                let clients = clients.clone();
                async move {
                    let rows = all_rows(&clients).await?;
                    let converged = self.placed.iter().all(|(id, (fee, rider))| {
                        rows.get(id).is_some_and(|v| {
                            v.fee == *fee
                                && match rider {
                                    Some(rider) => {
                                        v.status() == report::DeliveryStatus::Completed
                                            && v.payment_state() == report::PaymentState::Settled
                                            && &v.rider_id == rider
                                    }
                                    None => v.status() == report::DeliveryStatus::Called,
                                }
                        })
                    });
                    Ok(converged.then_some(rows))
                }
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{scenario}: {e:#}"));
        let in_report = self.placed.keys().filter(|id| rows.contains_key(*id)).count();
        let unknown = rows.keys().filter(|id| !self.placed.contains_key(*id)).count();

        // The call service agrees, and no PlaceCall intent is left behind: the fees of the refused
        // calls were voided (or never registered) by the repair worker.
        for (id, (_, rider)) in &self.placed {
            let want = if rider.is_some() {
                call::CallStatus::Completed
            } else {
                call::CallStatus::Called
            };
            let seen = eventually(PATIENCE, "the call service to follow the delivery", || {
                let mut c = clients.call.clone();
                let call_id = id.clone();
                async move {
                    let got = c.get_call(call::GetCallRequest { call_id }).await?.into_inner();
                    Ok((got.call.expect("call").status() == want).then_some(()))
                }
            })
            .await;
            assert!(seen.is_ok(), "{scenario}: call {id} in the call service: {seen:?}");
        }
        let calls_db = connect(mesh.database_url(Svc::Call)).await;
        let intents = eventually(PATIENCE, "the repair worker to clear the PlaceCall intents", || {
            let calls_db = &calls_db;
            async move {
                let left = count(calls_db, "SELECT COUNT(*) AS n FROM registrations").await;
                Ok((left == 0).then_some(left))
            }
        })
        .await;
        assert!(intents.is_ok(), "{scenario}: intents left behind: {intents:?}");

        // Payment: a fee for every placed call and no other; each completed delivery settled once,
        // announced once, with the commission the rules give.
        let mut settled_once = 0;
        let mut expected_revenue = 0;
        for (id, (fee, rider)) in &self.placed {
            let mut p = clients.payment.clone();
            let paid = p
                .get_payment(payment::GetPaymentRequest { call_id: id.clone() })
                .await
                .unwrap_or_else(|e| panic!("{scenario}: payment of {id}: {e:?}"))
                .into_inner()
                .payment
                .expect("payment");
            assert_eq!(paid.fee, *fee, "{scenario}: {id}");
            match rider {
                Some(rider) => {
                    assert_eq!(paid.status(), payment::PaymentStatus::Settled, "{scenario}: {id}");
                    assert_eq!(&paid.rider_id, rider, "{scenario}: {id}");
                    assert_eq!(paid.commission, fee / 10, "{scenario}: 10 % rounded down");
                    settled_once += 1;
                    expected_revenue += paid.commission;
                }
                None => assert_eq!(paid.status(), payment::PaymentStatus::Registered, "{scenario}: {id}"),
            }
        }
        let payments_db = connect(mesh.database_url(Svc::Payment)).await;
        let fees = count(&payments_db, "SELECT COUNT(*) AS n FROM payments").await;
        let voided = count(
            &payments_db,
            "SELECT COUNT(*) AS n FROM payments WHERE status = 'VOIDED'",
        )
        .await;
        let settled_events = count(
            &payments_db,
            "SELECT COUNT(*) AS n FROM outbox_events WHERE subject = 'baemin.events.payment.settled'",
        )
        .await;
        let mut r = clients.report.clone();
        let stats = r
            .get_stats(report::GetStatsRequest {})
            .await
            .expect("stats")
            .into_inner();
        let completed = self.placed.values().filter(|(_, r)| r.is_some()).count();
        let duplicated = (settled_events - settled_once).max(0) + (stats.settled_count - settled_once).max(0);
        println!(
            "ledger[{scenario}]: placed {} (refused {}), in report {in_report}, completed {completed}, \
             settled once {settled_once}, revenue {} (expected {expected_revenue}), fees {fees} (voided {voided}), \
             lost {}, duplicated {duplicated}, unknown {unknown}",
            self.placed.len(),
            self.refused,
            stats.revenue,
            self.placed.len() - in_report,
        );
        assert_eq!(in_report, self.placed.len(), "{scenario}: lost calls");
        assert_eq!(unknown, 0, "{scenario}: rows that were never placed");
        assert_eq!(
            settled_once as usize, completed,
            "{scenario}: every completed delivery settled"
        );
        assert_eq!(
            settled_events, settled_once,
            "{scenario}: each settlement announced once"
        );
        assert_eq!(
            stats.settled_count, settled_once,
            "{scenario}: settled exactly once in the report"
        );
        assert_eq!(
            stats.revenue, expected_revenue,
            "{scenario}: revenue = sum of commissions"
        );
        assert_eq!(
            fees as usize,
            self.placed.len(),
            "{scenario}: a fee for every call and no other"
        );
        assert_eq!(voided, 0, "{scenario}: no call was cancelled");
        calls_db.close().await.ok();
        payments_db.close().await.ok();
    }
}

/// Every row of the report, by call id.
async fn all_rows(clients: &Clients) -> anyhow::Result<HashMap<String, report::DeliveryView>> {
    let mut r = clients.report.clone();
    let mut rows = HashMap::new();
    let mut page_token = String::new();
    loop {
        let page = r
            .list_delivery_views(report::ListDeliveryViewsRequest {
                page_size: 100,
                page_token,
                ..Default::default()
            })
            .await?
            .into_inner();
        rows.extend(page.views.into_iter().map(|v| (v.call_id.clone(), v)));
        if page.next_page_token.is_empty() {
            return Ok(rows);
        }
        page_token = page.next_page_token;
    }
}

/// A connection of the test's own to a service's database (to read what the API does not show).
async fn connect(url: &str) -> DatabaseConnection {
    Database::connect(url).await.expect("the service's database")
}

/// The `n` of a `SELECT COUNT(*) AS n ...`.
async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .expect("one row");
    row.try_get::<i64>("", "n").unwrap_or_else(|e| panic!("{sql}: {e}"))
}

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
    let mesh = TestMesh::start_with(DbKind::Postgres, &SETTINGS).await;
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
    let mesh = TestMesh::start_with(DbKind::Postgres, &SETTINGS).await;
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
