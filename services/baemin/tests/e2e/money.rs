//! Money under concurrency and partial failure: what the clients are told and what payment holds agree
//! once every fault has ended.

use std::collections::HashSet;

use baemin_mesh_testkit::DbKind;
use baemin_proto::call::v1 as call;
use tonic::Code;

use crate::{
    ledger::{connect, count},
    support::{Svc, TestMesh, request_id},
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
