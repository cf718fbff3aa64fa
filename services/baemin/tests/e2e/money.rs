//! Money under concurrency and partial failure: what the clients are told and what payment holds agree
//! once every fault has ended.

use std::collections::HashSet;

use baemin::scenario::eventually;
use baemin_mesh_testkit::DbKind;
use baemin_proto::{call::v1 as call, payment::v1 as payment, rider::v1 as rider};
use tonic::Code;

use crate::{
    ledger::{connect, count, wait_for_rider_service},
    support::{PATIENCE, QUICK_REPAIRS, Svc, TestMesh, request_id},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_id_placed_concurrently_registers_one_fee_on_postgres() {
    const ROUNDS: usize = 12;
    const ATTEMPTS: usize = 16;
    let mesh = TestMesh::start(DbKind::Postgres).await;
    let mut calls = HashSet::new();
    for _ in 0..ROUNDS {
        let key = request_id();
        let attempts = (0..ATTEMPTS).map(|_| {
            let mut client = mesh.clients.call.clone();
            let request_id = key.clone();
            async move {
                client
                    .place_call(call::PlaceCallRequest {
                        request_id,
                        restaurant_id: "store-1".into(),
                        destination: "Seoul".into(),
                        fee: 3_000,
                    })
                    .await
            }
        });
        let mut answered = HashSet::new();
        for outcome in futures::future::join_all(attempts).await {
            match outcome {
                Ok(placed) => {
                    answered.insert(placed.into_inner().call.expect("call").call_id);
                }
                // Attempts still racing when the retries ran out are told to retry, and nothing else.
                Err(status) => assert_eq!(status.code(), Code::Aborted, "{status:?}"),
            }
        }
        assert_eq!(answered.len(), 1, "one key, one call: {answered:?}");
        calls.extend(answered);
    }
    // Checked at once: a second fee is registered synchronously by the attempt that claims it.
    let payments = connect(mesh.database_url(Svc::Payment)).await;
    let fees = count(&payments, "SELECT COUNT(*) AS n FROM payments").await;
    payments.close().await.ok();
    assert_eq!(
        fees as usize,
        calls.len(),
        "one fee per call, none under a call id that never exists"
    );
    mesh.stop().await;
}

/// A call placed by `store-1` and accepted by `rider_id`, once the rider service has it.
async fn accepted_call(mesh: &TestMesh, rider_id: &str) -> String {
    let mut c = mesh.clients.call.clone();
    let call_id = c
        .place_call(call::PlaceCallRequest {
            request_id: request_id(),
            restaurant_id: "store-1".into(),
            destination: "Seoul".into(),
            fee: 3_000,
        })
        .await
        .expect("PlaceCall")
        .into_inner()
        .call
        .expect("call")
        .call_id;
    wait_for_rider_service(&mesh.clients, &call_id).await;
    mesh.clients
        .rider
        .clone()
        .accept_call(rider::AcceptCallRequest {
            call_id: call_id.clone(),
            rider_id: rider_id.into(),
        })
        .await
        .expect("AcceptCall");
    call_id
}

async fn cancel(mesh: &TestMesh, call_id: &str) -> Result<call::Call, tonic::Status> {
    let answer = mesh
        .clients
        .call
        .clone()
        .cancel_call(call::CancelCallRequest {
            call_id: call_id.into(),
            reason: "the customer left".into(),
        })
        .await?;
    Ok(answer.into_inner().call.expect("call"))
}

async fn pick_up(mesh: &TestMesh, call_id: &str, rider_id: &str) -> Result<rider::Delivery, tonic::Status> {
    let answer = mesh
        .clients
        .rider
        .clone()
        .pick_up(rider::PickUpRequest {
            call_id: call_id.into(),
            rider_id: rider_id.into(),
        })
        .await?;
    Ok(answer.into_inner().delivery.expect("delivery"))
}

async fn complete(mesh: &TestMesh, call_id: &str, rider_id: &str) -> Result<rider::Delivery, tonic::Status> {
    let answer = mesh
        .clients
        .rider
        .clone()
        .complete_delivery(rider::CompleteDeliveryRequest {
            call_id: call_id.into(),
            rider_id: rider_id.into(),
        })
        .await?;
    Ok(answer.into_inner().delivery.expect("delivery"))
}

/// What each service says of `call_id` once it stopped changing: the call's status, the delivery's
/// status and payout, and payment's status.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Settled {
    call: call::CallStatus,
    delivery: rider::DeliveryStatus,
    payout: i64,
    payment: payment::PaymentStatus,
}

/// Waits until the call service, the rider service and payment agree on a final state of `call_id`
/// (no cancellation or settlement left under way), and returns it.
async fn converged(mesh: &TestMesh, call_id: &str) -> Settled {
    let clients = &mesh.clients;
    eventually(
        PATIENCE,
        "the three services to agree on a final state",
        || async move {
            let call = clients
                .call
                .clone()
                .get_call(call::GetCallRequest {
                    call_id: call_id.into(),
                })
                .await;
            let delivery = clients
                .rider
                .clone()
                .get_delivery(rider::GetDeliveryRequest {
                    call_id: call_id.into(),
                })
                .await;
            let paid = clients
                .payment
                .clone()
                .get_payment(payment::GetPaymentRequest {
                    call_id: call_id.into(),
                })
                .await;
            let (Ok(call), Ok(delivery), Ok(paid)) = (call, delivery, paid) else {
                return Ok(None);
            };
            let (call, delivery, paid) = (
                call.into_inner().call.expect("call"),
                delivery.into_inner().delivery.expect("delivery"),
                paid.into_inner().payment.expect("payment"),
            );
            let state = Settled {
                call: call.status(),
                delivery: delivery.status(),
                payout: delivery.payout,
                payment: paid.status(),
            };
            let cancelled = (
                call::CallStatus::Cancelled,
                rider::DeliveryStatus::Cancelled,
                payment::PaymentStatus::Voided,
            );
            let completed = (
                call::CallStatus::Completed,
                rider::DeliveryStatus::Completed,
                payment::PaymentStatus::Settled,
            );
            let final_state = (state.call, state.delivery, state.payment);
            let done = final_state == cancelled || (final_state == completed && state.payout > 0);
            Ok(done.then_some(state))
        },
    )
    .await
    .unwrap_or_else(|err| panic!("{err:#}"))
}

/// The history: a pick-up answered OK before payment went down, a cancel left pending by the
/// outage, a completion answered OK while payment is down, then both repair workers racing once it
/// is back. The pick-up came first at payment (its fee is held), so every interleaving ends COMPLETED
/// and SETTLED, and the cancel is refused from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_pending_through_a_payment_outage_never_reverses_a_pick_up_and_completion_answered_ok() {
    let mut settings = QUICK_REPAIRS.to_vec();
    settings.push(("PAYMENT_BREAKER_OPEN_WAIT", "500ms"));
    let mut mesh = TestMesh::processes(DbKind::Postgres, &settings).await;
    let call_id = accepted_call(&mesh, "r-1").await;
    // NATS stopped: the call service does not learn of the pick-up, so its cancel must ask payment.
    mesh.nats.stop();
    pick_up(&mesh, &call_id, "r-1")
        .await
        .expect("PickUp while payment is up");

    mesh.kill_service(Svc::Payment).await;
    let refused = cancel(&mesh, &call_id)
        .await
        .expect_err("payment cannot decide the cancel");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    let done = complete(&mesh, &call_id, "r-1")
        .await
        .expect("the food was delivered: the completion is OK while payment is down");
    assert_eq!(done.status(), rider::DeliveryStatus::Completed);
    mesh.nats.restart().await;
    mesh.start_service(Svc::Payment).await;

    let state = converged(&mesh, &call_id).await;
    assert_eq!(
        (state.call, state.delivery, state.payment, state.payout),
        (
            call::CallStatus::Completed,
            rider::DeliveryStatus::Completed,
            payment::PaymentStatus::Settled,
            2_700
        ),
        "the OKs the rider was given stand"
    );
    let again = cancel(&mesh, &call_id)
        .await
        .expect_err("a picked-up call cannot be cancelled");
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");
    mesh.stop().await;
}

/// The same outage with the pick-up asked for while payment is down: it is not answered OK (a cancel
/// may still win), and once payment is back exactly one of the two wins — whichever payment applies
/// first — and every service ends in that one's state; the rider's retry is told the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pick_up_and_a_cancel_both_pending_through_a_payment_outage_converge_on_the_one_payment_applied() {
    for fallback in ["reject", "defer"] {
        let mut settings = QUICK_REPAIRS.to_vec();
        settings.extend([
            ("PAYMENT_BREAKER_OPEN_WAIT", "500ms"),
            ("PLACE_CALL_FALLBACK", fallback),
        ]);
        let mut mesh = TestMesh::processes(DbKind::Postgres, &settings).await;
        let call_id = accepted_call(&mesh, "r-1").await;

        mesh.kill_service(Svc::Payment).await;
        let refused = cancel(&mesh, &call_id)
            .await
            .expect_err("payment cannot decide the cancel");
        assert_eq!(refused.code(), Code::Unavailable, "{fallback}: {refused:?}");
        let undecided = pick_up(&mesh, &call_id, "r-1")
            .await
            .expect_err("payment cannot decide the pick-up");
        assert_eq!(undecided.code(), Code::Unavailable, "{fallback}: {undecided:?}");
        mesh.start_service(Svc::Payment).await;

        // Both repair workers race; the rider retries too, as an app would.
        let retried = eventually(PATIENCE, "the pick-up to be decided", || async {
            match pick_up(&mesh, &call_id, "r-1").await {
                Ok(delivery) => Ok(Some(Ok(delivery))),
                Err(status) if status.code() == Code::Unavailable => Ok(None),
                Err(status) => Ok(Some(Err(status))),
            }
        })
        .await
        .unwrap_or_else(|err| panic!("{err:#}"));
        match retried {
            Ok(delivery) => {
                assert_eq!(delivery.status(), rider::DeliveryStatus::Picked);
                complete(&mesh, &call_id, "r-1")
                    .await
                    .expect("complete a pick-up that won");
                let state = converged(&mesh, &call_id).await;
                assert_eq!(
                    (state.call, state.delivery, state.payment),
                    (
                        call::CallStatus::Completed,
                        rider::DeliveryStatus::Completed,
                        payment::PaymentStatus::Settled
                    ),
                    "{fallback}"
                );
                let again = cancel(&mesh, &call_id).await.expect_err("the pick-up won");
                assert_eq!(again.code(), Code::FailedPrecondition, "{fallback}: {again:?}");
            }
            Err(status) => {
                assert_eq!(status.code(), Code::FailedPrecondition, "{fallback}: {status:?}");
                let state = converged(&mesh, &call_id).await;
                assert_eq!(
                    (state.call, state.delivery, state.payment),
                    (
                        call::CallStatus::Cancelled,
                        rider::DeliveryStatus::Cancelled,
                        payment::PaymentStatus::Voided
                    ),
                    "{fallback}"
                );
                let again = cancel(&mesh, &call_id)
                    .await
                    .expect("cancelling a cancelled call answers it");
                assert_eq!(again.status(), call::CallStatus::Cancelled);
            }
        }
        mesh.stop().await;
    }
}
