//! The chaos ledger: what the clients were told, checked against what every service shows once the
//! mesh has converged — every PlaceCall answered OK is in the report in its right final state, nothing
//! appears that was never placed, every completed delivery is settled (and announced) exactly once,
//! revenue equals the sum of commissions, a fee exists for every call and no other, no PlaceCall intent
//! is left behind. `check` prints the ledger line of its scenario.

use baemin_mesh_store::Db;
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use baemin::{clients::Clients, scenario::eventually};
use baemin_proto::{call::v1 as call, payment::v1 as payment, report::v1 as report, rider::v1 as rider};
use sea_orm::{ConnectionTrait, Statement};
use tonic::Code;

use crate::support::{PATIENCE, Svc, TestMesh, request_id};

/// A mesh the ledger can be checked against: its clients, and the databases of call and payment (for what
/// the API does not show).
pub trait Audited {
    /// Clients of every service.
    fn clients(&self) -> &Clients;
    /// The `DATABASE_URL` of `svc`.
    fn database_url(&self, svc: Svc) -> &str;
}

impl Audited for TestMesh {
    fn clients(&self) -> &Clients {
        &self.clients
    }

    fn database_url(&self, svc: Svc) -> &str {
        TestMesh::database_url(self, svc)
    }
}

/// What the clients were told OK: call id → (fee, completed by this rider).
#[derive(Default)]
pub struct Ledger {
    pub placed: HashMap<String, (i64, Option<String>)>,
    pub refused: usize,
}

impl Ledger {
    /// Places one call; `Err` is the refusal (not recorded as placed, counted).
    pub async fn try_place(&mut self, clients: &Clients) -> Result<String, tonic::Status> {
        let fee = 1_000 + self.placed.len() as i64 * 10;
        let mut c = clients.call.clone();
        let placed = c
            .place_call(call::PlaceCallRequest {
                request_id: request_id(),
                restaurant_id: "chaos".into(),
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
    pub async fn place(&mut self, clients: &Clients, n: usize) -> Vec<String> {
        let mut ids = Vec::new();
        for _ in 0..n {
            ids.push(self.try_place(clients).await.expect("PlaceCall"));
        }
        ids
    }

    /// Offers `n` calls: those answered OK are recorded, refusals counted (a fault may refuse some).
    pub async fn offer(&mut self, clients: &Clients, n: usize) {
        for _ in 0..n {
            let _ = self.try_place(clients).await;
        }
    }

    /// Takes every call placed so far and not yet delivered through to completion.
    pub async fn complete_all(&mut self, clients: &Clients) {
        let mut open: Vec<String> = self
            .placed
            .iter()
            .filter(|(_, (_, r))| r.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        open.sort();
        self.deliver(clients, &open).await;
    }

    /// Retries PlaceCall until it is taken again (each refusal counted).
    pub async fn place_when_back(&mut self, clients: &Clients) -> String {
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
    pub async fn pick(&self, clients: &Clients, call_id: &str, rider_id: &str) {
        wait_for_rider_service(clients, call_id).await;
        let mut r = clients.rider.clone();
        r.accept_call(rider::AcceptCallRequest {
            call_id: call_id.to_owned(),
            rider_id: rider_id.to_owned(),
        })
        .await
        .expect("accept");
        // Payment decides a pick-up: while it cannot (down, or the fee still pending registration) the
        // answer is UNAVAILABLE, and the rider retries.
        let picked = eventually(PATIENCE, "payment to decide the pick-up", || {
            let mut r = r.clone();
            async move {
                match r
                    .pick_up(rider::PickUpRequest {
                        call_id: call_id.to_owned(),
                        rider_id: rider_id.to_owned(),
                    })
                    .await
                {
                    Ok(_) => Ok(Some(())),
                    Err(status) if status.code() == Code::Unavailable => Ok(None),
                    Err(status) => Err(anyhow::anyhow!("pick up: {status:?}")),
                }
            }
        })
        .await;
        picked.expect("pick up");
    }

    /// Rider `rider` completes the picked-up `call_id`.
    pub async fn complete(&mut self, clients: &Clients, call_id: &str, rider_id: &str) {
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
    pub async fn deliver(&mut self, clients: &Clients, ids: &[String]) {
        for (n, id) in ids.iter().enumerate() {
            let rider_id = format!("r-{}", n % 3);
            self.pick(clients, id, &rider_id).await;
            self.complete(clients, id, &rider_id).await;
        }
    }

    /// Waits for the mesh to converge, then checks the ledger against the report and payment's own
    /// rows, prints it and asserts nothing was lost, duplicated or left behind.
    pub async fn check(&self, scenario: &str, mesh: &impl Audited) {
        let clients = mesh.clients();
        let rows = eventually(
            PATIENCE,
            "the report to show every placed call in its final state",
            || {
                let clients = clients.clone();
                async move {
                    // A transient failure (a replica going away) is asked again, not the end of the check.
                    let Ok(rows) = all_rows(&clients).await else {
                        return Ok(None);
                    };
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
                    let Ok(got) = c.get_call(call::GetCallRequest { call_id }).await else {
                        return Ok(None);
                    };
                    Ok((got.into_inner().call.expect("call").status() == want).then_some(()))
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
        // Counted in payment's own table, not from the ledger: a second settlement of a call would show
        // here (and in the events below) even though each call looked settled one by one above.
        let settled_once = count(
            &payments_db,
            "SELECT COUNT(*) AS n FROM payments WHERE status = 'SETTLED'",
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
pub(crate) async fn connect(url: &str) -> Db {
    baemin_mesh_store::open(url, 1).await.expect("the service's database")
}

/// The `n` of a `SELECT COUNT(*) AS n ...`.
pub(crate) async fn count(db: &Db, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .expect("one row");
    row.try_get::<i64>("", "n").unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Waits until the rider service has learnt of `call_id` (from its CallPlaced event).
pub async fn wait_for_rider_service(clients: &Clients, call_id: &str) {
    let seen = eventually(PATIENCE, "the rider service to see the call", || {
        let mut r = clients.rider.clone();
        let call_id = call_id.to_owned();
        async move { Ok(r.get_delivery(rider::GetDeliveryRequest { call_id }).await.ok()) }
    })
    .await;
    assert!(seen.is_ok(), "call {call_id} never reached the rider service");
}
